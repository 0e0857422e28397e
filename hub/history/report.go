package history

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
)

// Groups are what availability rows may group devices by.
var Groups = []string{"city", "district", "site", "kind", "vendor"}

// AvailabilityQuery asks for an availability report.
type AvailabilityQuery struct {
	From, To time.Time
	Group    string // one of Groups; "" is district
	District string // only this district, when set
	Scope    auth.Scope
}

// Availability is the time-weighted availability of the devices a query
// selects: a row per group and the city total.
type Availability struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Group     string    `json:"group"`
	Timezone  string    `json:"timezone"`
	Simulated bool      `json:"simulated"`
	Rows      []Row     `json:"rows"`
	Total     Row       `json:"total"`
}

// Row is one group's figures: seconds summed over its devices, rates as
// fractions (null when nothing was expected), down periods that began in
// the period and the mean length (detection → recovery) of those that
// ended in it (null when none did).
type Row struct {
	Key          string   `json:"key"`
	Devices      int      `json:"devices"`
	ExpectedS    float64  `json:"expected_s"`
	OnlineS      float64  `json:"online_s"`
	DegradedS    float64  `json:"degraded_s"`
	OfflineS     float64  `json:"offline_s"`
	UnreachableS float64  `json:"unreachable_s"`
	UnknownS     float64  `json:"unknown_s"`
	MaintenanceS float64  `json:"maintenance_s"`
	OnlineRate   *float64 `json:"online_rate"` // 在线率: (online + degraded) / expected
	IntactRate   *float64 `json:"intact_rate"` // 完好率: online / expected
	Outages      int      `json:"outages"`
	MTTRS        *float64 `json:"mttr_s"`
}

// Availability computes the report exactly from the transitions: per
// device, the time in each status within the period, maintenance windows
// taken out whatever the status, grouped by the place the device had at
// the time. Only devices (at places) the scope allows count.
func (h *History) Availability(ctx context.Context, q AvailabilityQuery) (Availability, error) {
	from, to, err := h.period(q.From, q.To)
	if err != nil {
		return Availability{}, err
	}
	group := cmp.Or(q.Group, "district")
	if !slices.Contains(Groups, group) {
		return Availability{}, fmt.Errorf("history: group %q is not one of %v", group, Groups)
	}
	var v *availability
	sim, err := h.scan(ctx, from.UnixNano(), to.UnixNano(), func(cv catView) visitor {
		v = &availability{plan: newPlanned(h.opts.Windows.Windows(), h.cat, cv, from.UnixNano(), to.UnixNano()),
			last: make([]int32, len(cv.names)), met: make([]bool, len(cv.names))}
		v.row, v.keys = h.lines(cv, q.Scope, q.District, func(p place) string { return groupKey(group, p) })
		v.rows = make([]tally, len(v.keys))
		return v
	})
	if err != nil {
		return Availability{}, fmt.Errorf("history: availability: %w", err)
	}
	out := Availability{From: from, To: to, Group: group, Timezone: h.opts.Location.String(), Simulated: sim, Rows: []Row{}}
	var city tally
	for i, k := range v.keys {
		out.Rows = append(out.Rows, v.rows[i].row(k))
		city.add(&v.rows[i])
	}
	city.devices = v.devices
	out.Total = city.row("city")
	return out, nil
}

func groupKey(group string, p place) string {
	var k string
	switch group {
	case "district":
		k = p.District
	case "site":
		k = p.Site
	case "kind":
		k = p.Kind
	case "vendor":
		k = p.Vendor
	default:
		return "city"
	}
	return cmp.Or(k, "unknown")
}

// lines assigns the places the scope allows (in district, when set) to
// lines by key: the line index of each place (-1 when it does not count)
// and the keys, sorted.
func (h *History) lines(cv catView, scope auth.Scope, district string, key func(place) string) (byPlace []int32, keys []string) {
	byPlace = make([]int32, len(cv.places))
	for i, p := range cv.places {
		byPlace[i] = -1
		if i == 0 || !scope.Allows(p.District, p.Site) || (district != "" && p.District != district) {
			continue
		}
		k := key(p)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for i, p := range cv.places {
		if i > 0 && scope.Allows(p.District, p.Site) && (district == "" || p.District == district) {
			j, _ := slices.BinarySearch(keys, key(p))
			byPlace[i] = int32(j)
		}
	}
	return byPlace, keys
}

// sum adds up durations as whole seconds and the nanoseconds left over:
// a month of 100,000 devices (2.6e20 ns) would overflow an int64 of
// nanoseconds, and a float would not add hours up exactly.
type sum struct{ s, ns int64 }

func (x *sum) add(d int64) { x.s, x.ns = x.s+d/1e9, x.ns+d%1e9 }

func (x *sum) plus(y sum) { x.s, x.ns = x.s+y.s, x.ns+y.ns }

func (x sum) seconds() float64 { return float64(x.s) + float64(x.ns)/1e9 }

func total(xs ...sum) sum {
	var t sum
	for _, x := range xs {
		t.plus(x)
	}
	return t
}

// tally is a row's sums.
type tally struct {
	in               [numCodes]sum // time per status outside maintenance
	maint            sum
	devices, outages int
	repairs          int
	repair           sum
}

func (t *tally) add(o *tally) {
	for i := range t.in {
		t.in[i].plus(o.in[i])
	}
	t.maint.plus(o.maint)
	t.outages += o.outages
	t.repairs += o.repairs
	t.repair.plus(o.repair)
}

func (t *tally) row(key string) Row {
	expected := total(t.in[online], t.in[degraded], t.in[offline], t.in[unreachable])
	r := Row{Key: key, Devices: t.devices, ExpectedS: expected.seconds(), OnlineS: t.in[online].seconds(),
		DegradedS: t.in[degraded].seconds(), OfflineS: t.in[offline].seconds(), UnreachableS: t.in[unreachable].seconds(),
		UnknownS: t.in[unknown].seconds(), MaintenanceS: t.maint.seconds(), Outages: t.outages}
	r.OnlineRate = rate(total(t.in[online], t.in[degraded]), expected)
	r.IntactRate = rate(t.in[online], expected)
	if t.repairs > 0 {
		m := t.repair.seconds() / float64(t.repairs)
		r.MTTRS = &m
	}
	return r
}

func rate(part, whole sum) *float64 {
	if whole.seconds() == 0 {
		return nil
	}
	r := part.seconds() / whole.seconds()
	return &r
}

// availability is the visitor of an availability report.
type availability struct {
	plan    *planned
	row     []int32 // by place: the row, -1 when it does not count
	keys    []string
	rows    []tally
	met     []bool            // by device: a span of it came
	last    []int32           // by device: the row it last counted in, plus one
	seen    map[[2]int32]bool // (device, row) counted, once a device moved
	devices int               // distinct devices counted
}

// count counts dev in row g once, however often it comes back to it.
func (v *availability) count(dev, g int32) {
	last := v.last[dev]
	switch {
	case last == g+1:
		return
	case last == 0:
		v.rows[g].devices++
		v.devices++
	default:
		if v.seen == nil {
			v.seen = map[[2]int32]bool{}
		}
		v.seen[[2]int32{dev, last - 1}] = true
		if k := [2]int32{dev, g}; !v.seen[k] {
			v.seen[k] = true
			v.rows[g].devices++
		}
	}
	v.last[dev] = g + 1
}

func (v *availability) span(dev int32, s state, a, b int64) {
	if !v.met[dev] {
		v.met[dev] = true
		if a > v.plan.from {
			// Before the hub first knew of the device, it knew nothing.
			v.span(dev, state{st: unknown, place: s.place}, v.plan.from, a)
		}
	}
	g := v.row[s.place]
	if g < 0 {
		return
	}
	v.count(dev, g)
	m := v.plan.overlap(dev, s, a, b)
	t := &v.rows[g]
	t.maint.add(m)
	t.in[s.code()].add(b - a - m)
}

func (v *availability) down(dev int32, s state, at int64) {
	if g := v.row[s.place]; g >= 0 && !v.plan.covers(dev, s, at) {
		v.rows[g].outages++
	}
}

func (v *availability) recovered(dev int32, s state, since, at int64) {
	if g := v.row[s.place]; g >= 0 && !v.plan.covers(dev, s, since) {
		v.rows[g].repairs++
		v.rows[g].repair.add(at - since)
	}
}

// SeriesQuery asks for daily availability.
type SeriesQuery struct {
	From, To time.Time
	District string // only this district, when set
	Scope    auth.Scope
}

// Series is availability per calendar day (in the report time zone) and
// district, and for the city: every device the query selects. Rates are
// null for a day when nothing was expected.
type Series struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Timezone  string    `json:"timezone"`
	Simulated bool      `json:"simulated"`
	Days      []string  `json:"days"`
	City      Line      `json:"city"`
	Series    []Line    `json:"series"`
}

// Line is one district's daily rates (the city's has district "").
type Line struct {
	District   string     `json:"district"`
	OnlineRate []*float64 `json:"online_rate"`
	IntactRate []*float64 `json:"intact_rate"`
}

// Series computes daily 在线率 and 完好率 per district, exactly as
// Availability does for each day's part of the period.
func (h *History) Series(ctx context.Context, q SeriesQuery) (Series, error) {
	from, to, err := h.period(q.From, q.To)
	if err != nil {
		return Series{}, err
	}
	loc := h.opts.Location
	out := Series{From: from, To: to, Timezone: loc.String(), Series: []Line{}}
	starts := []int64{from.UnixNano()}
	for d := dayOf(from.UnixNano(), loc); ; d++ {
		out.Days = append(out.Days, d.String())
		next := (d + 1).start(loc).UnixNano()
		if next >= to.UnixNano() {
			break
		}
		starts = append(starts, next)
	}
	starts = append(starts, to.UnixNano())
	var v *series
	out.Simulated, err = h.scan(ctx, from.UnixNano(), to.UnixNano(), func(cv catView) visitor {
		v = &series{plan: newPlanned(h.opts.Windows.Windows(), h.cat, cv, from.UnixNano(), to.UnixNano()), starts: starts}
		v.line, v.keys = h.lines(cv, q.Scope, q.District, func(p place) string { return p.District })
		v.acc = make([][]dayTally, len(v.keys))
		for i := range v.acc {
			v.acc[i] = make([]dayTally, len(out.Days))
		}
		return v
	})
	if err != nil {
		return Series{}, fmt.Errorf("history: series: %w", err)
	}
	city := make([]dayTally, len(out.Days))
	for i, k := range v.keys {
		out.Series = append(out.Series, line(k, v.acc[i]))
		for d := range city {
			city[d].up.plus(v.acc[i][d].up)
			city[d].intact.plus(v.acc[i][d].intact)
			city[d].expected.plus(v.acc[i][d].expected)
		}
	}
	out.City = line("", city)
	return out, nil
}

type dayTally struct{ up, intact, expected sum }

func line(district string, days []dayTally) Line {
	l := Line{District: district, OnlineRate: make([]*float64, len(days)), IntactRate: make([]*float64, len(days))}
	for i, d := range days {
		l.OnlineRate[i], l.IntactRate[i] = rate(d.up, d.expected), rate(d.intact, d.expected)
	}
	return l
}

// series is the visitor of a daily series.
type series struct {
	plan   *planned
	starts []int64 // the days' boundaries within the period, and its end
	line   []int32 // by place: the district's line, -1 when it does not count
	keys   []string
	acc    [][]dayTally
}

func (v *series) span(dev int32, s state, a, b int64) {
	g, c := v.line[s.place], s.code()
	if g < 0 || c == unknown {
		return
	}
	for i := sort.Search(len(v.starts), func(i int) bool { return v.starts[i] > a }) - 1; a < b; i++ {
		e := min(b, v.starts[i+1])
		n := e - a - v.plan.overlap(dev, s, a, e)
		t := &v.acc[g][i]
		t.expected.add(n)
		if isUp(c) {
			t.up.add(n)
		}
		if c == online {
			t.intact.add(n)
		}
		a = e
	}
}

func (*series) down(int32, state, int64)             {}
func (*series) recovered(int32, state, int64, int64) {}

// Timelines returns each listed device's status spans within [from, to),
// ordered and not overlapping (for the coverage ledger). Time no span
// covers the hub knew nothing of; devices never recorded are left out.
func (h *History) Timelines(ctx context.Context, from, to time.Time, devices []string) (map[string][]fleet.StatusSpan, error) {
	from, to, err := h.period(from, to)
	if err != nil {
		return nil, err
	}
	v := &timelines{want: h.cat.lookup(devices), out: map[string][]fleet.StatusSpan{}}
	if _, err := h.scan(ctx, from.UnixNano(), to.UnixNano(), func(catView) visitor { return v }); err != nil {
		return nil, fmt.Errorf("history: timelines: %w", err)
	}
	return v.out, nil
}

type timelines struct {
	want map[int32]string
	out  map[string][]fleet.StatusSpan
}

func (v *timelines) span(dev int32, s state, a, b int64) {
	name, ok := v.want[dev]
	if !ok {
		return
	}
	st, from, to := statusOf[s.code()], time.Unix(0, a).UTC(), time.Unix(0, b).UTC()
	spans := v.out[name]
	if n := len(spans); n > 0 && spans[n-1].Status == st && spans[n-1].To.Equal(from) {
		spans[n-1].To = to
		return
	}
	v.out[name] = append(spans, fleet.StatusSpan{From: from, To: to, Status: st})
}

func (*timelines) down(int32, state, int64)             {}
func (*timelines) recovered(int32, state, int64, int64) {}

// Simulated reports whether any device state in [from, to) comes from a
// simulated (seeded) transition, so reports over it can say so.
func (h *History) Simulated(ctx context.Context, from, to time.Time) (bool, error) {
	from, to, err := h.period(from, to)
	if err != nil {
		return false, err
	}
	var some bool
	if err := h.rdb.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM transitions WHERE simulated = 1)`).Scan(&some); err != nil || !some {
		return false, err
	}
	sim, err := h.scan(ctx, from.UnixNano(), to.UnixNano(), func(catView) visitor { return &timelines{} })
	if err != nil {
		return false, fmt.Errorf("history: simulated: %w", err)
	}
	return sim, nil
}
