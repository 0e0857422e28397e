package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/citywatch/citywatch/hub/maintenance"
)

// ErrPeriod is the error of a report asked for a period it cannot cover.
var ErrPeriod = errors.New("history: bad period")

// MaxPeriod is the longest period a report or timeline covers.
const MaxPeriod = 400 * 24 * time.Hour

// period checks [from, to), clipping to to now: the future is not history.
func (h *History) period(from, to time.Time) (time.Time, time.Time, error) {
	if now := h.opts.Now(); to.After(now) {
		to = now
	}
	switch {
	case !from.Before(to):
		return from, to, fmt.Errorf("%w: from must be before to (and before now)", ErrPeriod)
	case to.Sub(from) > MaxPeriod:
		return from, to, fmt.Errorf("%w: longer than %d days", ErrPeriod, int(MaxPeriod.Hours()/24))
	}
	return from, to, nil
}

// scan runs the history of [from, to) through the visitor mk makes, in
// one read transaction: closed days from their records, the days after
// from the transitions. At most `queries` scans run at once; others wait.
// It reports whether any state in the period was simulated.
func (h *History) scan(ctx context.Context, from, to int64, mk func(catView) visitor) (sim bool, err error) {
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-h.slots }()
	tx, err := h.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var first, last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(day), MAX(day) FROM days`).Scan(&first, &last); err != nil {
		return false, err
	}
	// The transaction's snapshot is taken: the catalog now knows every id
	// it can show (see catalog).
	cv := h.cat.view()
	sc := &scanner{from: from, to: to, places: len(cv.places), v: mk(cv)}
	sc.grow(len(cv.names))
	cursor := int64(math.MinInt64)
	if last.Valid {
		// From the day from falls in, or the last closed day when from is
		// after it (its record gives the state at its end).
		d0 := min(max(int64(dayOf(from, h.opts.Location)), first.Int64), last.Int64)
		if cursor, err = sc.days(ctx, tx, d0, cursor); err != nil {
			return false, err
		}
	}
	if cursor < to {
		if err := sc.replay(ctx, tx, cursor, to); err != nil {
			return false, err
		}
	}
	sc.finish()
	return sc.sim, nil
}

// days runs the day records from d0 that begin before the period's end
// through sc and returns where the last one ends (cursor when none).
func (sc *scanner) days(ctx context.Context, tx *sql.Tx, d0, cursor int64) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT day, start_ns, end_ns, record FROM days WHERE day >= ? AND start_ns < ? ORDER BY day`, d0, sc.to)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var d day
		var start int64
		var b []byte
		if err := rows.Scan(&d, &start, &cursor, &b); err != nil {
			return 0, err
		}
		if err := sc.day(b, start, cursor); err != nil {
			return 0, fmt.Errorf("day %s: %w", d, err)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return cursor, rows.Err()
}

// planned is how much of a device's time maintenance windows cover,
// computed once per device and place for a report's period.
type planned struct {
	ws       maintenance.Windows
	from, to int64
	cv       catView
	maybe    []bool         // by place: a window names its agent, site or district
	named    map[int32]bool // devices a window names
	spans    map[[2]uint32][]maintenance.Named
}

func newPlanned(ws maintenance.Windows, cat *catalog, cv catView, from, to int64) *planned {
	p := &planned{ws: ws, from: from, to: to, cv: cv, maybe: make([]bool, len(cv.places)),
		named: map[int32]bool{}, spans: map[[2]uint32][]maintenance.Named{}}
	if len(ws) == 0 {
		return p
	}
	for _, w := range ws {
		for i, pl := range cv.places {
			p.maybe[i] = p.maybe[i] || w.Applies(maintenance.Subject{Agent: pl.Agent, Site: pl.Site, District: pl.District})
		}
		for id := range cat.lookup(w.Devices) {
			p.named[id] = true
		}
	}
	return p
}

func (p *planned) subject(dev int32, s state) maintenance.Subject {
	pl := p.cv.places[s.place]
	return maintenance.Subject{Device: p.cv.names[dev], Agent: pl.Agent, Site: pl.Site, District: pl.District}
}

// of is when windows cover dev at its place within the period.
func (p *planned) of(dev int32, s state) []maintenance.Named {
	if !p.maybe[s.place] && !p.named[dev] {
		return nil
	}
	k := [2]uint32{uint32(dev), s.place}
	sp, ok := p.spans[k]
	if !ok {
		sp = p.ws.Spans(p.subject(dev, s), time.Unix(0, p.from), time.Unix(0, p.to))
		p.spans[k] = sp
	}
	return sp
}

// overlap is how much of [a, b) windows cover for dev in state s.
func (p *planned) overlap(dev int32, s state, a, b int64) int64 {
	sp := p.of(dev, s)
	var n int64
	for i := sort.Search(len(sp), func(i int) bool { return sp[i].To.UnixNano() > a }); i < len(sp); i++ {
		f, t := max(a, sp[i].From.UnixNano()), min(b, sp[i].To.UnixNano())
		if f >= b {
			break
		}
		n += max(0, t-f)
	}
	return n
}

// covers reports whether a window covered dev at at (which may be before
// the period: an outage's start).
func (p *planned) covers(dev int32, s state, at int64) bool {
	if at >= p.from && at < p.to {
		return p.overlap(dev, s, at, at+1) > 0
	}
	if !p.maybe[s.place] && !p.named[dev] {
		return false
	}
	return p.ws.Spans(p.subject(dev, s), time.Unix(0, at), time.Unix(0, at+1)) != nil
}
