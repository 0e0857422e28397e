package workorder

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// FigureGroups are what repair figures can be grouped by.
var FigureGroups = []string{"city", "crew", "district", "site", "vendor", "model"}

// ErrFigures is returned for a figures query that cannot be answered.
var ErrFigures = errors.New("workorder: bad figures query")

// FigureQuery asks for repair figures over [From, To).
type FigureQuery struct {
	From, To time.Time
	Group    string                           // one of FigureGroups
	Keep     func(district, site string) bool // the caller's scope; nil: everything
}

// FigureRow is one group's repair figures. Durations are seconds; rates
// are 0–1; null where nothing was there to measure.
type FigureRow struct {
	Key    string `json:"key"`
	Opened int    `json:"opened"` // orders detected in the period
	Closed int    `json:"closed"` // orders closed (verified or recovered) in the period
	// MTTA: detection → first accept or start, of orders responded to in
	// the period.
	MTTAS *float64 `json:"mtta_s"`
	// MTTR: detection → close, of orders closed in the period, holds
	// included (the city was blind all that time).
	MTTRS *float64 `json:"mttr_s"`
	// MTBF: device-hours of the period per device failure that came to an
	// order in it (a device joining an order is one failure).
	MTBFH    *float64 `json:"mtbf_h"`
	Failures int      `json:"failures"`
	Devices  int      `json:"devices"`
	// FirstTimeFix: of orders closed verified in the period, those never
	// reopened. RepeatRate: of orders closed in the period, those with a
	// repeat (a device failing again soon after an earlier close).
	FirstTimeFix *float64 `json:"first_time_fix"`
	RepeatRate   *float64 `json:"repeat_rate"`
	// RespondMet, FixMet: of orders closed in the period, those whose
	// response and fix deadline did not pass.
	RespondMet *float64 `json:"respond_met"`
	FixMet     *float64 `json:"fix_met"`
	// Backlog: orders open now, and the age of the oldest, from detection.
	Backlog        int      `json:"backlog"`
	BacklogMaxAgeH *float64 `json:"backlog_max_age_h"`
}

// Figures is the answer of GET /api/reports/maintenance.
type Figures struct {
	From  time.Time   `json:"from"`
	To    time.Time   `json:"to"`
	Group string      `json:"group"`
	Rows  []FigureRow `json:"rows"`
	Total FigureRow   `json:"total"`
}

// figureAcc sums one group.
type figureAcc struct {
	row                          FigureRow
	tta, ttr                     []float64
	verified, firstTime          int
	repeated, respondMet, fixMet int
	backlogAge                   float64
	devices                      map[string]bool
}

// Figures computes repair figures from the orders and their trails. The
// backlog is now's whatever the period.
func (m *Manager) Figures(q FigureQuery) (Figures, error) {
	if !q.From.Before(q.To) || q.To.Sub(q.From) > 400*24*time.Hour {
		return Figures{}, fmt.Errorf("%w: from must be before to, at most 400 days apart", ErrFigures)
	}
	if !slices.Contains(FigureGroups, q.Group) {
		return Figures{}, fmt.Errorf("%w: group is one of %v", ErrFigures, FigureGroups)
	}
	now := m.opts.Now()
	m.mu.Lock()
	orders := make([]Order, 0, len(m.orders))
	for _, e := range m.orders {
		if q.Keep == nil || q.Keep(e.order.District, e.order.Site) {
			orders = append(orders, clone(e.order))
		}
	}
	m.mu.Unlock()

	accs := map[string]*figureAcc{}
	total := &figureAcc{devices: map[string]bool{}}
	acc := func(key string) *figureAcc {
		a := accs[key]
		if a == nil {
			a = &figureAcc{row: FigureRow{Key: key}, devices: map[string]bool{}}
			accs[key] = a
		}
		return a
	}
	in := func(t time.Time) bool { return !t.Before(q.From) && t.Before(q.To) }
	for i := range orders {
		o := &orders[i]
		total.add(o, in, now)
		if q.Group == "city" {
			continue
		}
		for _, key := range m.keys(o, q.Group) {
			acc(key).add(o, in, now)
		}
	}
	// Devices per group, for MTBF: every device the scope sees.
	for _, d := range m.deps.Fleet.DevicesWhere(q.Keep) {
		key := ""
		switch q.Group {
		case "crew":
			key = m.crewOf(d.District)
		case "district":
			key = d.District
		case "site":
			key = d.Site
		case "vendor":
			key = cmp.Or(d.Vendor, "unknown")
		case "model":
			key = modelKey(d.Vendor, d.Model)
		}
		if q.Group != "city" {
			acc(key).devices[d.ID] = true
		}
		total.devices[d.ID] = true
	}
	hours := q.To.Sub(q.From).Hours()
	out := Figures{From: q.From.UTC(), To: q.To.UTC(), Group: q.Group, Rows: []FigureRow{}}
	for _, a := range accs {
		out.Rows = append(out.Rows, a.result(hours))
	}
	slices.SortFunc(out.Rows, func(a, b FigureRow) int { return cmp.Compare(a.Key, b.Key) })
	out.Total = total.result(hours)
	return out, nil
}

// keys are the groups an order counts in: one, except by vendor, where an
// order counts once for each vendor of its devices.
func (m *Manager) keys(o *Order, group string) []string {
	switch group {
	case "crew":
		return []string{cmp.Or(o.Crew, m.crewOf(o.District))}
	case "district":
		return []string{o.District}
	case "site":
		return []string{o.Site}
	case "vendor", "model":
		// An order counts once for each vendor (or model) of its devices.
		var ks []string
		for _, d := range o.Devices {
			v := "unknown"
			if fd, ok := m.deps.Fleet.Device(d.ID); ok {
				if group == "vendor" {
					v = cmp.Or(fd.Vendor, v)
				} else {
					v = modelKey(fd.Vendor, fd.Model)
				}
			}
			if !slices.Contains(ks, v) {
				ks = append(ks, v)
			}
		}
		return ks
	}
	return []string{""}
}

// modelKey names a model with its maker: two makers may use one model name.
func modelKey(vendor, model string) string {
	if model == "" {
		return "unknown"
	}
	return strings.TrimSpace(vendor + " " + model)
}

// crewOf is the first crew covering a district, or "".
func (m *Manager) crewOf(district string) string {
	for _, c := range m.opts.Crews {
		if slices.Contains(c.Districts, district) {
			return c.Name
		}
	}
	return ""
}

func (a *figureAcc) add(o *Order, in func(time.Time) bool, now time.Time) {
	r := &a.row
	if in(o.DetectedAt) {
		r.Opened++
	}
	for _, d := range o.Devices {
		if in(d.JoinedAt) {
			r.Failures++
		}
	}
	if !o.RespondedAt.IsZero() && in(o.RespondedAt) {
		a.tta = append(a.tta, o.RespondedAt.Sub(o.DetectedAt).Seconds())
	}
	if o.State == Closed && in(o.ClosedAt) {
		r.Closed++
		a.ttr = append(a.ttr, o.ClosedAt.Sub(o.DetectedAt).Seconds())
		if o.Resolution == "verified" {
			a.verified++
			if o.Reopens == 0 {
				a.firstTime++
			}
		}
		if o.Repeats > 0 {
			a.repeated++
		}
		if !slices.Contains(o.Breached, "respond") {
			a.respondMet++
		}
		if !slices.Contains(o.Breached, "fix") {
			a.fixMet++
		}
	}
	if !o.State.Terminal() {
		r.Backlog++
		a.backlogAge = math.Max(a.backlogAge, now.Sub(o.DetectedAt).Hours())
	}
}

func (a *figureAcc) result(hours float64) FigureRow {
	r := a.row
	r.Devices = len(a.devices)
	r.MTTAS, r.MTTRS = mean(a.tta), mean(a.ttr)
	if r.Failures > 0 && r.Devices > 0 {
		r.MTBFH = round4(float64(r.Devices) * hours / float64(r.Failures))
	}
	r.FirstTimeFix = rate(a.firstTime, a.verified)
	r.RepeatRate = rate(a.repeated, r.Closed)
	r.RespondMet = rate(a.respondMet, r.Closed)
	r.FixMet = rate(a.fixMet, r.Closed)
	if r.Backlog > 0 {
		r.BacklogMaxAgeH = round4(a.backlogAge)
	}
	return r
}

func mean(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return round4(s / float64(len(v)))
}

func rate(n, of int) *float64 {
	if of == 0 {
		return nil
	}
	return round4(float64(n) / float64(of))
}

// round4 keeps four decimals: a rate to a hundredth of a percent.
func round4(v float64) *float64 {
	r := math.Round(v*10000) / 10000
	return &r
}
