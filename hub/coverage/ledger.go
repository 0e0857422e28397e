package coverage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// LedgerQuery asks for the coverage ledger of a period.
type LedgerQuery struct {
	From, To time.Time
	District string // "" for every district in scope
	Top      int    // cameras to rank; 0 takes Config.Top
	Scope    auth.Scope
}

// Loss is coverage lost over a period.
type Loss struct {
	CellHours    float64 `json:"cell_hours"`
	Weighted     float64 `json:"weighted"` // cell-hours × the cells' weights
	HectareHours float64 `json:"hectare_hours"`
}

// Losses are coverage lost by cause.
type Losses struct {
	// NeverCovered: cells of districts (with a districts file) and areas
	// of interest no camera is designed to see, over the whole period.
	NeverCovered Loss `json:"never_covered"`
	// Outage: designed cells no camera worked for while one was down
	// outside maintenance.
	Outage Loss `json:"outage"`
	// Maintenance: designed cells no camera worked for while every
	// camera down was in a maintenance window.
	Maintenance Loss `json:"maintenance"`
	// Unknown: designed cells whose cameras' state the hub did not know.
	Unknown Loss `json:"unknown"`
}

// DistrictLedger is one district's line of the ledger.
type DistrictLedger struct {
	District      string `json:"district"`
	Cells         int64  `json:"cells"`
	DesignedCells int64  `json:"designed_cells"`
	// CameraOnlineRate is the district's cameras' 在线率 over the period,
	// 0 to 1; null when they had no expected time.
	CameraOnlineRate *float64 `json:"camera_online_rate"`
	Losses
	// WeightedLostPct is the share of the district's weighted designed
	// coverage that outages cost, of the time it was expected (maintenance
	// and unknown time left out), 0 to 100.
	WeightedLostPct float64 `json:"weighted_lost_pct"`
	// Flagged: the online rate looks fine, the weighted coverage does not.
	Flagged bool `json:"flagged"`
}

// CameraLedger is one camera ranked by the coverage its outages cost.
type CameraLedger struct {
	ID                string  `json:"id"`
	Name              string  `json:"name,omitempty"`
	District          string  `json:"district"`
	Site              string  `json:"site"`
	DownHours         float64 `json:"down_hours"` // offline or unreachable outside maintenance
	CellHours         float64 `json:"cell_hours"` // outage cell-hours attributed to it
	WeightedCellHours float64 `json:"weighted_cell_hours"`
}

// MaintenanceLedger is the coverage planned maintenance cost, by the
// windows that planned it.
type MaintenanceLedger struct {
	Names      []string `json:"names"`
	ApprovedBy []string `json:"approved_by"`
	CellHours  float64  `json:"cell_hours"`
	Weighted   float64  `json:"weighted"`
}

// Ledger is the coverage lost over [From, To): the answer of GET
// /api/coverage/ledger.
type Ledger struct {
	From        time.Time           `json:"from"`
	To          time.Time           `json:"to"`
	Hours       float64             `json:"hours"`
	CellSizeM   float64             `json:"cell_size_m"`
	CellAreaM2  float64             `json:"cell_area_m2"`
	Totals      Losses              `json:"totals"`
	Districts   []DistrictLedger    `json:"districts"`
	Flagged     []string            `json:"flagged"` // districts whose online rate looks fine but whose weighted coverage does not
	Cameras     []CameraLedger      `json:"cameras"`
	Maintenance []MaintenanceLedger `json:"maintenance"`
	Simulated   bool                `json:"simulated"` // the history holds simulated records (a demo)
}

// ErrPeriod is returned for a period that is empty or too long.
var ErrPeriod = errors.New("coverage: bad period")

// Camera states over time, as the ledger sees them.
type state uint8

const (
	stUp      state = iota // online or degraded: it covers
	stDown                 // offline or unreachable outside maintenance
	stPlanned              // offline or unreachable in a maintenance window
	stUnknown              // unknown, or no record
	numStates
)

// piece is a stretch of time [from, next piece's from) in one state.
type piece struct {
	from   int64 // nanoseconds after the period's start
	st     state
	group  int32 // the windows of stPlanned (index in ledgerRun.groups), else -1
	window bool  // in a maintenance window (left out of the online rate)
}

// ledgerCam is a camera the ledger reads.
type ledgerCam struct {
	id, agent, site, district string
	dist                      int32
	cells                     []int32 // local indices of the selected cells it is designed to see
	ranked                    bool    // in the caller's scope: may be ranked
	rated                     bool    // counts in its district's online rate
	pieces                    []piece
	// During the sweep:
	st    state
	group int32
	// Results:
	up, down, attributed, weighted float64 // seconds (up and down outside maintenance); weighted: × weight
}

// ledgerCell is a selected cell.
type ledgerCell struct {
	weight    float64
	districts []int32 // the districts it counts in that the answer lists
	cams      []int32 // indices in ledgerRun.cams
	count     [numStates]int32
	since     int64
}

// ledgerRun is one ledger computation.
type ledgerRun struct {
	m       *Model
	q       LedgerQuery
	hours   float64
	names   []string
	listed  map[int32]*districtAcc
	cams    []ledgerCam
	cells   []ledgerCell
	groups  []maintenance.Named
	groupBy map[string]int32
	lost    []lossAcc // by group
	totals  [numStates]lossAcc
	city    tally
}

type lossAcc struct{ secs, weighted float64 }

type districtAcc struct {
	k        int32
	t        tally
	loss     [numStates]lossAcc
	up, down float64 // its cameras' seconds up and down outside maintenance
}

// Ledger computes the coverage lost over [q.From, q.To) (To no later
// than now) within q.Scope, from the cameras' stored timelines laid over
// today's design: cameras where they are now, as they look now.
func (m *Model) Ledger(ctx context.Context, q LedgerQuery) (Ledger, error) {
	if now := m.deps.Now(); q.To.After(now) {
		q.To = now
	}
	if !q.From.Before(q.To) {
		return Ledger{}, fmt.Errorf("%w: from must be before to (and before now)", ErrPeriod)
	}
	if q.To.Sub(q.From) > m.cfg.MaxPeriod {
		return Ledger{}, fmt.Errorf("%w: longer than %d days", ErrPeriod, int(m.cfg.MaxPeriod.Hours()/24))
	}
	q.Top = cmp.Or(q.Top, m.cfg.Top)
	run := &ledgerRun{m: m, q: q, hours: q.To.Sub(q.From).Hours(), listed: map[int32]*districtAcc{}, groupBy: map[string]int32{}}
	run.snapshot()
	ids := make([]string, len(run.cams))
	for i := range run.cams {
		ids[i] = run.cams[i].id
	}
	timelines, err := m.deps.History.Timelines(ctx, q.From, q.To, ids)
	if err != nil {
		return Ledger{}, fmt.Errorf("coverage: ledger: timelines: %w", err)
	}
	for i := range run.cams {
		run.pieces(&run.cams[i], timelines[run.cams[i].id])
	}
	run.sweep()
	out := run.result()
	ranked := make([]string, len(out.Cameras))
	for i := range out.Cameras {
		ranked[i] = out.Cameras[i].ID
	}
	for i, name := range m.deps.Fleet.DeviceNames(ranked) {
		out.Cameras[i].Name = name
	}
	if m.deps.Simulated != nil {
		if out.Simulated, err = m.deps.Simulated(ctx, q.From, q.To); err != nil {
			return Ledger{}, fmt.Errorf("coverage: ledger: %w", err)
		}
	}
	return out, nil
}

// snapshot copies, under the model's lock, the cells the query selects,
// the cameras designed to see them or rated in a listed district, and the
// tallies the never-covered figures come from.
func (r *ledgerRun) snapshot() {
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.atlas == nil {
		return
	}
	r.names = slices.Clone(m.atlas.names.list)
	r.city = m.city
	local := map[int32]int32{} // model camera → index in r.cams
	camIndex := func(k int32) int32 {
		if i, ok := local[k]; ok {
			return i
		}
		c := &m.cams[k]
		pl := m.placeOf(c)
		i := int32(len(r.cams))
		r.cams = append(r.cams, ledgerCam{id: c.id, agent: pl.agent, site: pl.site, district: m.districtName(c.dist), dist: c.dist,
			ranked: r.q.Scope.Allows(m.districtName(c.dist), pl.site)})
		local[k] = i
		return i
	}
	// The districts listed: those in scope (and asked for) that have
	// cells, are in the districts file or have cameras. Every camera of a
	// listed district counts in its online rate, seeing cells or not.
	for k := range m.dist {
		t := m.dist[k]
		if m.districtVisible(r.q.Scope, r.q.District, int32(k)) && (t.cells > 0 || k < len(m.atlas.districts)) {
			r.listed[int32(k)] = &districtAcc{k: int32(k), t: t}
		}
	}
	for k := range m.cams {
		c := &m.cams[k]
		if !c.used || !m.districtVisible(r.q.Scope, r.q.District, c.dist) {
			continue
		}
		if r.listed[c.dist] == nil {
			r.listed[c.dist] = &districtAcc{k: c.dist, t: m.dist[c.dist]}
		}
		r.cams[camIndex(int32(k))].rated = true
	}
	// The model counts the cameras of a cell; they list their cells.
	camsOf := m.camerasOfCells()
	var buf [8]int32
	for ci := range m.cells {
		c := &m.cells[ci]
		if c.designed == 0 {
			continue
		}
		cams := camsOf(int32(ci))
		ds := m.districtsOf(c, buf[:0])
		visible, inFilter := r.q.Scope.All, r.q.District == ""
		var counted []int32
		for _, d := range ds {
			if r.listed[d] != nil {
				counted = append(counted, d)
				visible = true
			}
			inFilter = inFilter || r.names[d] == r.q.District
		}
		for _, k := range cams {
			visible = visible || r.q.Scope.Allows(m.districtName(m.cams[k].dist), m.placeOf(&m.cams[k]).site)
		}
		if !visible || !inFilter {
			continue
		}
		lc := ledgerCell{weight: float64(m.atlas.factsOf(c.facts).weight) / unitWeight, districts: counted}
		li := int32(len(r.cells))
		for _, k := range cams {
			i := camIndex(k)
			lc.cams = append(lc.cams, i)
			r.cams[i].cells = append(r.cams[i].cells, li)
		}
		r.cells = append(r.cells, lc)
	}
}

// pieces turns camera c's timeline and maintenance windows into states
// over the period.
func (r *ledgerRun) pieces(c *ledgerCam, spans []fleet.StatusSpan) {
	from, to := r.q.From, r.q.To
	spans = slices.Clone(spans)
	slices.SortFunc(spans, func(a, b fleet.StatusSpan) int { return a.From.Compare(b.From) })
	windows := r.m.cfg.Maintenance.Windows().Spans(maintenance.Subject{Device: c.id, Agent: c.agent, Site: c.site, District: c.district}, from, to)
	off := func(t time.Time) int64 { return int64(t.Sub(from)) }
	end := off(to)
	si, wi := 0, 0
	for t := int64(0); t < end; {
		// The span and window at t, and when either changes next.
		next := end
		status := wire.StatusUnknown
		for si < len(spans) && off(spans[si].To) <= t {
			si++
		}
		if si < len(spans) {
			if s := spans[si]; off(s.From) <= t {
				status, next = s.Status, min(next, off(s.To))
			} else {
				next = min(next, off(s.From))
			}
		}
		for wi < len(windows) && off(windows[wi].To) <= t {
			wi++
		}
		group, inWindow := int32(-1), false
		if wi < len(windows) {
			if w := windows[wi]; off(w.From) <= t {
				inWindow, next = true, min(next, off(w.To))
				group = r.group(w)
			} else {
				next = min(next, off(w.From))
			}
		}
		p := piece{from: t, st: stUnknown, group: -1, window: inWindow}
		switch {
		case working(status):
			p.st = stUp
		case status == wire.StatusOffline || status == wire.StatusUnreachable:
			p.st = stDown
			if inWindow {
				p.st, p.group = stPlanned, group
			}
		}
		dur := float64(next-t) / 1e9
		switch {
		case inWindow, p.st == stUnknown:
		case p.st == stUp:
			c.up += dur
		default:
			c.down += dur
		}
		if n := len(c.pieces); n > 0 && c.pieces[n-1].st == p.st && c.pieces[n-1].group == p.group {
			c.pieces[n-1].window = c.pieces[n-1].window || p.window
		} else {
			c.pieces = append(c.pieces, p)
		}
		t = next
	}
}

// group numbers a maintenance span by its windows' names and approvers.
func (r *ledgerRun) group(w maintenance.Named) int32 {
	key := strings.Join(w.Names, "\x00") + "\x01" + strings.Join(w.ApprovedBy, "\x00")
	if g, ok := r.groupBy[key]; ok {
		return g
	}
	g := int32(len(r.groups))
	r.groups = append(r.groups, maintenance.Named{Names: w.Names, ApprovedBy: w.ApprovedBy})
	r.lost = append(r.lost, lossAcc{})
	r.groupBy[key] = g
	return g
}

// event is a camera entering a piece.
type event struct {
	at  int64
	cam int32
	p   int32 // index in the camera's pieces
}

// sweep walks every camera's change of state in time order, keeping each
// selected cell's count of cameras per state, and charges the time a cell
// spends without a working camera to its cause (and an outage's to the
// cameras down then) when the cell's counts change and at the end.
func (r *ledgerRun) sweep() {
	var events []event
	for i := range r.cams {
		c := &r.cams[i]
		if len(c.cells) == 0 {
			continue
		}
		c.st, c.group = c.pieces[0].st, c.pieces[0].group
		for _, ci := range c.cells {
			r.cells[ci].count[c.st]++
		}
		for p := 1; p < len(c.pieces); p++ {
			events = append(events, event{at: c.pieces[p].from, cam: int32(i), p: int32(p)})
		}
	}
	slices.SortFunc(events, func(a, b event) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.cam, b.cam))
	})
	for _, e := range events {
		c := &r.cams[e.cam]
		for _, ci := range c.cells {
			r.charge(ci, e.at)
			r.cells[ci].count[c.st]--
		}
		p := c.pieces[e.p]
		c.st, c.group = p.st, p.group
		for _, ci := range c.cells {
			r.cells[ci].count[c.st]++
		}
	}
	end := int64(r.q.To.Sub(r.q.From))
	for ci := range r.cells {
		r.charge(int32(ci), end)
	}
}

// charge books cell ci's time since it last changed, up to at.
func (r *ledgerRun) charge(ci int32, at int64) {
	c := &r.cells[ci]
	secs := float64(at-c.since) / 1e9
	c.since = at
	if secs <= 0 || c.count[stUp] > 0 {
		return
	}
	cause := stUnknown
	switch {
	case c.count[stDown] > 0:
		cause = stDown
		share := secs / float64(c.count[stDown])
		for _, k := range c.cams {
			if cam := &r.cams[k]; cam.st == stDown {
				cam.attributed += share
				cam.weighted += share * c.weight
			}
		}
	case c.count[stPlanned] > 0:
		cause = stPlanned
		share := secs / float64(c.count[stPlanned])
		for _, k := range c.cams {
			if cam := &r.cams[k]; cam.st == stPlanned {
				g := &r.lost[cam.group]
				g.secs += share
				g.weighted += share * c.weight
			}
		}
	}
	r.totals[cause].secs += secs
	r.totals[cause].weighted += secs * c.weight
	for _, d := range c.districts {
		acc := r.listed[d]
		acc.loss[cause].secs += secs
		acc.loss[cause].weighted += secs * c.weight
	}
}

// result turns the sums into the answer.
func (r *ledgerRun) result() Ledger {
	size := r.m.cfg.CellSize
	out := Ledger{
		From: r.q.From.UTC(), To: r.q.To.UTC(), Hours: round6(r.hours), CellSizeM: size, CellAreaM2: size * size,
		Districts: []DistrictLedger{}, Flagged: []string{}, Cameras: []CameraLedger{}, Maintenance: []MaintenanceLedger{},
	}
	loss := func(secs, weighted float64) Loss {
		h := secs / 3600
		return Loss{CellHours: round6(h), Weighted: round6(weighted / 3600), HectareHours: round6(h * size * size / 10_000)}
	}
	never := func(t tally) Loss {
		secs := float64(t.cells-t.designed) * r.hours * 3600
		return loss(secs, float64(t.wCells-t.wDesigned)/unitWeight*r.hours*3600)
	}
	losses := func(acc *[numStates]lossAcc) Losses {
		return Losses{
			Outage:      loss(acc[stDown].secs, acc[stDown].weighted),
			Maintenance: loss(acc[stPlanned].secs, acc[stPlanned].weighted),
			Unknown:     loss(acc[stUnknown].secs, acc[stUnknown].weighted),
		}
	}
	for i := range r.cams {
		c := &r.cams[i]
		if acc := r.listed[c.dist]; acc != nil && c.rated {
			acc.up += c.up
			acc.down += c.down
		}
	}
	var neverSum tally
	for _, acc := range r.listed {
		d := DistrictLedger{District: r.names[acc.k], Cells: acc.t.cells, DesignedCells: acc.t.designed, Losses: losses(&acc.loss)}
		d.NeverCovered = never(acc.t)
		neverSum.cells += acc.t.cells
		neverSum.designed += acc.t.designed
		neverSum.wCells += acc.t.wCells
		neverSum.wDesigned += acc.t.wDesigned
		if exp := acc.up + acc.down; exp > 0 {
			rate := math.Round(acc.up/exp*10000) / 10000
			d.CameraOnlineRate = &rate
		}
		expected := float64(acc.t.wDesigned)/unitWeight*r.hours*3600 - acc.loss[stPlanned].weighted - acc.loss[stUnknown].weighted
		if expected > 0 {
			d.WeightedLostPct = math.Round(acc.loss[stDown].weighted/expected*10000) / 100
		}
		d.Flagged = d.CameraOnlineRate != nil && *d.CameraOnlineRate >= r.m.cfg.OnlineRateOK && d.WeightedLostPct >= r.m.cfg.LostFlag*100
		out.Districts = append(out.Districts, d)
	}
	slices.SortFunc(out.Districts, func(a, b DistrictLedger) int { return cmp.Compare(a.District, b.District) })
	for _, d := range out.Districts {
		if d.Flagged {
			out.Flagged = append(out.Flagged, d.District)
		}
	}
	out.Totals = losses(&r.totals)
	if r.q.Scope.All && r.q.District == "" {
		out.Totals.NeverCovered = never(r.city)
	} else {
		out.Totals.NeverCovered = never(neverSum)
	}
	for i := range r.cams {
		c := &r.cams[i]
		if c.ranked && c.attributed > 0 {
			out.Cameras = append(out.Cameras, CameraLedger{ID: c.id, District: c.district, Site: c.site,
				DownHours: round6(c.down / 3600), CellHours: round6(c.attributed / 3600), WeightedCellHours: round6(c.weighted / 3600)})
		}
	}
	slices.SortFunc(out.Cameras, func(a, b CameraLedger) int {
		return cmp.Or(cmp.Compare(b.CellHours, a.CellHours), cmp.Compare(b.WeightedCellHours, a.WeightedCellHours), cmp.Compare(a.ID, b.ID))
	})
	out.Cameras = out.Cameras[:min(len(out.Cameras), r.q.Top)]
	for g, acc := range r.lost {
		if acc.secs > 0 {
			out.Maintenance = append(out.Maintenance, MaintenanceLedger{Names: r.groups[g].Names, ApprovedBy: orEmpty(r.groups[g].ApprovedBy),
				CellHours: round6(acc.secs / 3600), Weighted: round6(acc.weighted / 3600)})
		}
	}
	slices.SortFunc(out.Maintenance, func(a, b MaintenanceLedger) int { return cmp.Compare(b.CellHours, a.CellHours) })
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// round6 keeps a microhour (3.6 ms) of a figure: enough for a camera down
// seconds to count exactly, without the binary noise of a float sum.
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }
