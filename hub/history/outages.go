package history

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/wire"
)

// MaxOutagesListed bounds the outages an Outages lists one by one; the
// counts always cover all of them.
const MaxOutagesListed = 500

// Outage is one down period of a device (offline or unreachable, however
// often it switched between the two) that touches a window: it began in
// it, ended in it, or was still under way at its end.
type Outage struct {
	Device   string      `json:"device"`
	District string      `json:"district"`
	Site     string      `json:"site"`
	Kind     string      `json:"kind"`
	Status   wire.Status `json:"status"` // as it began, or as it is at the window's end while under way
	From     time.Time   `json:"from"`
	To       time.Time   `json:"to,omitzero"` // recovery; zero while it goes on
	Ongoing  bool        `json:"ongoing"`     // still down at the window's end
	Removed  bool        `json:"removed"`     // the device left the fleet while down
	Planned  bool        `json:"planned"`     // began inside a maintenance window
}

// Outages are the down periods of a window [From, To) in a scope.
type Outages struct {
	From      time.Time      `json:"from"`
	To        time.Time      `json:"to"`
	Total     OutageTally    `json:"total"`
	Districts []DistrictOuts `json:"districts"`
	List      []Outage       `json:"list"` // under way first, longest first; then the ended, latest first
	More      int            `json:"more"` // outages beyond the list
}

// OutageTally counts down periods: Began in the window, Recovered in it
// (whenever they began), Ongoing at its end; MTTRS is the mean length,
// detection to recovery, of those recovered (null when none).
type OutageTally struct {
	Began     int      `json:"began"`
	Recovered int      `json:"recovered"`
	Ongoing   int      `json:"ongoing"`
	MTTRS     *float64 `json:"mttr_s"`
	repair    int64
}

// DistrictOuts is one district's outages.
type DistrictOuts struct {
	District string `json:"district"`
	OutageTally
}

// Outages lists the down periods of devices in scope that began in
// [from, to), ended in it, or were under way at its end, from the same
// record availability reports are computed from.
func (h *History) Outages(ctx context.Context, from, to time.Time, scope auth.Scope) (Outages, error) {
	from, to, err := h.period(from, to)
	if err != nil {
		return Outages{}, err
	}
	var v *outages
	if _, err := h.scan(ctx, from.UnixNano(), to.UnixNano(), func(cv catView) visitor {
		v = &outages{cv: cv, scope: scope, open: map[int32]int{}, before: map[int32]wire.Status{},
			plan: newPlanned(h.opts.Windows.Windows(), h.cat, cv, from.UnixNano(), to.UnixNano())}
		return v
	}); err != nil {
		return Outages{}, fmt.Errorf("history: outages: %w", err)
	}
	return v.result(from, to), nil
}

// outages is the visitor of Outages.
type outages struct {
	cv    catView
	scope auth.Scope
	plan  *planned
	list  []Outage
	open  map[int32]int // device → its outage under way in list
	// before is the status of devices already down when the window
	// began, by device: their outage's status.
	before map[int32]wire.Status
}

func (v *outages) add(dev int32, s state, since int64) (int, bool) {
	p := v.cv.places[s.place]
	if !v.scope.Allows(p.District, p.Site) {
		return 0, false
	}
	v.open[dev] = len(v.list)
	v.list = append(v.list, Outage{Device: v.cv.names[dev], District: p.District, Site: p.Site, Kind: p.Kind,
		Status: cmp.Or(v.before[dev], statusOf[s.code()]), From: time.Unix(0, since).UTC(), Planned: v.plan.covers(dev, s, since)})
	return len(v.list) - 1, true
}

// find returns dev's outage under way, adding it (it began before the
// window) when the list lacks it; false when its place is out of scope.
func (v *outages) find(dev int32, s state, since int64) (int, bool) {
	if i, ok := v.open[dev]; ok {
		return i, true
	}
	return v.add(dev, s, since)
}

func (v *outages) span(dev int32, s state, a, _ int64) {
	if a == v.plan.from && isDown(s.code()) {
		v.before[dev] = statusOf[s.code()]
	}
}

func (v *outages) down(dev int32, s state, at int64) { v.add(dev, s, at) }

func (v *outages) recovered(dev int32, s state, since, at int64) {
	if i, ok := v.find(dev, s, since); ok {
		delete(v.open, dev)
		v.list[i].To = time.Unix(0, at).UTC()
	}
}

// ongoing is told of every device down at the window's end (scanner.finish).
func (v *outages) ongoing(dev int32, s state, since int64) {
	if i, ok := v.find(dev, s, since); ok {
		delete(v.open, dev)
		v.list[i].Ongoing, v.list[i].Status = true, statusOf[s.code()]
	}
}

func (v *outages) result(from, to time.Time) Outages {
	// A down period neither recovered nor under way at the end ended with
	// the device leaving the fleet.
	for _, i := range v.open {
		v.list[i].Removed = true
	}
	out := Outages{From: from, To: to, Districts: []DistrictOuts{}, List: []Outage{}}
	dist := map[string]*OutageTally{}
	for _, o := range v.list {
		d := dist[o.District]
		if d == nil {
			d = &OutageTally{}
			dist[o.District] = d
		}
		for _, t := range []*OutageTally{&out.Total, d} {
			t.count(o, from)
		}
	}
	for k, d := range dist {
		d.mean()
		out.Districts = append(out.Districts, DistrictOuts{District: k, OutageTally: *d})
	}
	out.Total.mean()
	slices.SortFunc(out.Districts, func(a, b DistrictOuts) int { return cmp.Compare(a.District, b.District) })
	slices.SortFunc(v.list, func(a, b Outage) int {
		if a.Ongoing != b.Ongoing {
			if a.Ongoing {
				return -1
			}
			return 1
		}
		if a.Ongoing {
			return cmp.Or(a.From.Compare(b.From), cmp.Compare(a.Device, b.Device))
		}
		return cmp.Or(b.To.Compare(a.To), b.From.Compare(a.From), cmp.Compare(a.Device, b.Device))
	})
	if len(v.list) > MaxOutagesListed {
		out.More = len(v.list) - MaxOutagesListed
		v.list = v.list[:MaxOutagesListed]
	}
	out.List = append(out.List, v.list...)
	return out
}

func (t *OutageTally) count(o Outage, from time.Time) {
	if !o.From.Before(from) {
		t.Began++
	}
	if o.Ongoing {
		t.Ongoing++
	}
	if !o.To.IsZero() {
		t.Recovered++
		t.repair += o.To.Sub(o.From).Nanoseconds()
	}
}

func (t *OutageTally) mean() {
	if t.Recovered > 0 {
		m := float64(t.repair) / float64(t.Recovered) / 1e9
		t.MTTRS = &m
	}
}
