package history

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// insertRows is how many transitions one INSERT carries: one statement
// per row costs more in database/sql than SQLite spends storing it.
const insertRows = 256

// load reads what the writer must know — the catalog, the closed days,
// every device's latest state — and marks every device the history last
// knew as unknown from the hub's last sign of life on.
func (h *History) load(ctx context.Context) error {
	var loc string
	err := h.wdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'location'`).Scan(&loc)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if want := h.opts.Location.String(); loc != want {
		// Days drawn in another zone are other days: roll them up again.
		if _, err := h.wdb.ExecContext(ctx, `DELETE FROM days;
			INSERT INTO meta (name, value) VALUES ('location', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, want); err != nil {
			return err
		}
	}
	if err := h.loadCatalog(ctx); err != nil {
		return err
	}
	var first, last sql.NullInt64
	var n int64
	if err := h.wdb.QueryRowContext(ctx, `SELECT MIN(day), MAX(day), COUNT(*) FROM days`).Scan(&first, &last, &n); err != nil {
		return err
	}
	h.first, h.closed = noDay, noDay
	switch {
	case n > 0 && last.Int64-first.Int64+1 == n:
		h.first, h.closed = day(first.Int64), day(last.Int64)
	case n > 0: // not contiguous: rebuild
		if _, err := h.wdb.ExecContext(ctx, `DELETE FROM days`); err != nil {
			return err
		}
	}
	sc, err := h.stateAt(ctx, h.wdb, math.MaxInt64)
	if err != nil {
		return err
	}
	h.cur = sc.tracker
	var alive, latest sql.NullInt64
	if err := h.wdb.QueryRowContext(ctx, `SELECT (SELECT value FROM meta WHERE name = 'alive'), (SELECT MAX(at) FROM transitions)`).
		Scan(&alive, &latest); err != nil {
		return err
	}
	seen := max(alive.Int64, latest.Int64)
	var es []entry
	for dev, s := range h.cur.st {
		if c := s.code(); c == absent || c == unknown {
			continue
		}
		es = append(es, entry{device: h.cat.names[dev], place: h.cat.places[s.place], at: max(seen, h.cur.at[dev]),
			code: unknown, cause: "hub", reason: "hub down"})
	}
	for len(es) > 0 {
		k := min(len(es), maxBatch)
		if err := h.write(ctx, es[:k]); err != nil {
			return fmt.Errorf("marking devices unknown while the hub was down: %w", err)
		}
		es = es[k:]
	}
	return nil
}

func (h *History) loadCatalog(ctx context.Context) error {
	rows, err := h.wdb.QueryContext(ctx, `SELECT id, name FROM devices ORDER BY id`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			rows.Close()
			return err
		}
		if id != int64(len(h.cat.names)) {
			rows.Close()
			return fmt.Errorf("devices: id %d where %d was expected", id, len(h.cat.names))
		}
		h.cat.ids[name] = int32(id)
		h.cat.names = append(h.cat.names, name)
	}
	if err := cmp.Or(rows.Err(), rows.Close()); err != nil {
		return err
	}
	rows, err = h.wdb.QueryContext(ctx, `SELECT id, agent, district, site, kind, vendor FROM places ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var p place
		if err := rows.Scan(&id, &p.Agent, &p.District, &p.Site, &p.Kind, &p.Vendor); err != nil {
			return err
		}
		if id != int64(len(h.cat.places)) {
			return fmt.Errorf("places: id %d where %d was expected", id, len(h.cat.places))
		}
		h.cat.placeIDs[p] = uint32(id)
		h.cat.places = append(h.cat.places, p)
	}
	return rows.Err()
}

// querier is what reading the history needs of a database or a read
// transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stateAt is a tracker of every device's state up to before, from the
// last closed day and the transitions after it. The writer calls it (the
// catalog is then its own).
func (h *History) stateAt(ctx context.Context, q querier, before int64) (*scanner, error) {
	sc := &scanner{places: len(h.cat.places)}
	sc.grow(len(h.cat.names))
	cursor := int64(math.MinInt64)
	if h.closed != noDay {
		var b []byte
		err := q.QueryRowContext(ctx, `SELECT start_ns, end_ns, record FROM days WHERE day = ?`, int64(h.closed)).Scan(&sc.from, &cursor, &b)
		if err != nil {
			return nil, fmt.Errorf("day %s: %w", h.closed, err)
		}
		sc.to = sc.from // an empty period: track, tell nobody
		if err := sc.day(b, sc.from, cursor); err != nil {
			return nil, fmt.Errorf("day %s: %w", h.closed, err)
		}
	}
	return sc, sc.replay(ctx, q, cursor, before)
}

// replay runs the stored transitions of [from, to) through sc, in the
// order they were written.
func (sc *scanner) replay(ctx context.Context, q querier, from, to int64) error {
	rows, err := q.QueryContext(ctx, `SELECT device, at, status, place, simulated FROM transitions
		WHERE at >= ? AND at < ? ORDER BY at, rowid`, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		dev, c, err := scanChange(rows)
		if err == nil {
			err = sc.check(dev, c.state)
		}
		if err != nil {
			return err
		}
		sc.step(dev, c.state, c.at)
	}
	return rows.Err()
}

func scanChange(rows *sql.Rows) (int32, change, error) {
	var dev, at, status, pl int64
	var sim bool
	if err := rows.Scan(&dev, &at, &status, &pl, &sim); err != nil {
		return 0, change{}, err
	}
	if status < 0 || status >= int64(numCodes) || dev <= 0 || dev > math.MaxInt32 || pl < 0 || pl > math.MaxUint32 {
		return 0, change{}, fmt.Errorf("%w: transition of device %d to status %d at place %d", errRecord, dev, status, pl)
	}
	st := uint8(status)
	if sim {
		st |= simBit
	}
	return int32(dev), change{at: at, state: state{st: st, place: uint32(pl)}}, nil
}

// markAlive records that the hub is alive now: when it next starts, the
// time since is time nobody knew what the devices did.
func (h *History) markAlive() {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if _, err := h.wdb.Exec(aliveSQL, h.opts.Now().UnixNano()); err != nil {
		h.log.Warn("cannot record that the hub is alive; a restart would count more time as unknown", "err", err)
	}
}

const aliveSQL = `INSERT INTO meta (name, value) VALUES ('alive', ?1)
	ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)`

// write stores es in one transaction, leaving out what changes nothing (a
// device already in that state at that place) and the removal of devices
// never recorded. A transition into a day already rolled up reopens the
// days from it on; Run rolls them up again.
func (h *History) write(ctx context.Context, es []entry) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	type latest struct {
		s  state
		at int64
	}
	p := h.cat.pending()
	over := map[int32]latest{} // the batch's effect on h.cur, applied once it commits
	cur := func(dev int32) latest {
		if l, ok := over[dev]; ok {
			return l
		}
		if int(dev) < len(h.cur.st) {
			return latest{h.cur.st[dev], h.cur.at[dev]}
		}
		return latest{at: math.MinInt64}
	}
	args := make([]any, 0, 7*len(es))
	reopen := day(math.MaxInt64)
	closedEnd := int64(math.MinInt64)
	if h.closed != noDay {
		closedEnd = (h.closed + 1).start(h.opts.Location).UnixNano()
	}
	for i := range es {
		e := &es[i]
		dev := p.device(e.device, e.code != absent)
		if dev == 0 {
			continue
		}
		was := cur(dev)
		s := state{st: e.code, place: was.s.place}
		if e.code != absent {
			s.place = p.place(e.place)
		}
		if e.sim {
			s.st |= simBit
		}
		if e.at >= was.at {
			if s == was.s {
				continue
			}
			over[dev] = latest{s, e.at}
		}
		if e.at < closedEnd {
			reopen = min(reopen, dayOf(e.at, h.opts.Location))
		}
		args = append(args, dev, e.at, e.code, s.place, e.sim, e.cause, e.reason)
	}
	tx, err := h.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for i, n := range p.names {
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (id, name) VALUES (?, ?)`, len(h.cat.names)+i, n); err != nil {
			return err
		}
	}
	for i, pl := range p.places {
		if _, err := tx.ExecContext(ctx, `INSERT INTO places (id, agent, district, site, kind, vendor) VALUES (?, ?, ?, ?, ?, ?)`,
			len(h.cat.places)+i, pl.Agent, pl.District, pl.Site, pl.Kind, pl.Vendor); err != nil {
			return err
		}
	}
	if err := insertTransitions(ctx, tx, args); err != nil {
		return err
	}
	closed, first := h.closed, h.first
	if reopen != math.MaxInt64 {
		closed = reopen - 1
		if closed < first {
			closed, first = noDay, noDay
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM days WHERE day > ?`, int64(closed)); err != nil {
			return err
		}
	}
	h.cat.mu.Lock()
	err = tx.Commit()
	if err == nil {
		p.publish()
	}
	h.cat.mu.Unlock()
	if err != nil {
		return err
	}
	h.closed, h.first = closed, first
	h.cur.grow(len(h.cat.names))
	for dev, l := range over {
		h.cur.apply(dev, l.s, l.at)
	}
	return nil
}

// insertTransitions inserts rows of 7 arguments each, insertRows at a
// time.
func insertTransitions(ctx context.Context, tx *sql.Tx, args []any) error {
	const cols = 7
	var stmt *sql.Stmt
	for len(args) > 0 {
		n := min(len(args)/cols, insertRows)
		if stmt == nil || n < insertRows {
			q := `INSERT INTO transitions (device, at, status, place, simulated, cause, reason) VALUES ` +
				strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", n-1) + "(?, ?, ?, ?, ?, ?, ?)"
			s, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return err
			}
			defer s.Close()
			stmt = s
		}
		if _, err := stmt.ExecContext(ctx, args[:n*cols]...); err != nil {
			return err
		}
		args = args[n*cols:]
	}
	return nil
}

// closeNext rolls up the day after the last closed one (the first: the
// day of the earliest transition) when it is over, and reports whether
// the day after it is over too.
func (h *History) closeNext(ctx context.Context) (more bool, err error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	now := h.opts.Now().UnixNano()
	d := h.closed + 1
	if h.closed == noDay {
		var earliest sql.NullInt64
		if err := h.wdb.QueryRowContext(ctx, `SELECT MIN(at) FROM transitions`).Scan(&earliest); err != nil || !earliest.Valid {
			return false, err
		}
		d = dayOf(earliest.Int64, h.opts.Location)
	}
	loc := h.opts.Location
	start, end := d.start(loc).UnixNano(), (d + 1).start(loc).UnixNano()
	if end > now {
		return false, nil
	}
	rec, err := h.rollDay(ctx, start, end)
	if err != nil {
		return false, fmt.Errorf("day %s: %w", d, err)
	}
	tx, err := h.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO days (day, start_ns, end_ns, record) VALUES (?, ?, ?, ?)`,
		int64(d), start, end, rec); err != nil {
		return false, fmt.Errorf("day %s: %w", d, err)
	}
	// Closing a day is a sign of life too, so the marker is never before
	// the end of a closed day.
	if _, err := tx.ExecContext(ctx, aliveSQL, now); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("day %s: %w", d, err)
	}
	h.closed = d
	if h.first == noDay {
		h.first = d
	}
	h.rolled.Inc()
	return (d + 2).start(loc).UnixNano() <= now, nil
}

// rollDay builds the record of [start, end): every device's state at
// start (from the previous day's record) and its transitions within.
func (h *History) rollDay(ctx context.Context, start, end int64) ([]byte, error) {
	sc, err := h.stateAt(ctx, h.wdb, start)
	if err != nil {
		return nil, err
	}
	type devChange struct {
		dev int32
		change
	}
	rows, err := h.wdb.QueryContext(ctx, `SELECT device, at, status, place, simulated FROM transitions
		WHERE at >= ? AND at < ? ORDER BY at, rowid`, start, end)
	if err != nil {
		return nil, err
	}
	var cs []devChange
	for rows.Next() {
		dev, c, err := scanChange(rows)
		if err == nil {
			err = sc.check(dev, c.state)
		}
		if err != nil {
			rows.Close()
			return nil, err
		}
		cs = append(cs, devChange{dev, c})
	}
	if err := cmp.Or(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	slices.SortStableFunc(cs, func(a, b devChange) int { return cmp.Compare(a.dev, b.dev) })
	w := newRecordWriter(start)
	var e dayEntry
	for dev, j := 1, 0; dev < len(sc.st); dev++ {
		e = dayEntry{dev: int32(dev), start: sc.st[dev], since: sc.since[dev], changes: e.changes[:0]}
		for ; j < len(cs) && cs[j].dev == int32(dev); j++ {
			e.changes = append(e.changes, cs[j].change)
		}
		if e.start.code() != absent || len(e.changes) > 0 {
			w.add(&e)
		}
	}
	return w.bytes(), nil
}
