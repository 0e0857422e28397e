package workorder

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Coverage tells what the cameras of an order cost the city's coverage
// now (hub/coverage's Model).
type Coverage interface {
	// LostBy is the area, in hectares (plain and weighted by the areas of
	// interest), that no working camera sees now but one of cameras is
	// designed to see.
	LostBy(cameras []string) (ha, weightedHa float64)
}

// Rank says why an order comes where it does in "fix first": every part
// is shown to the crew, so nobody has to trust an opaque number.
type Rank struct {
	Score float64 `json:"score"` // 0–100, higher first
	// What the order costs: coverage lost (when the hub has the map),
	// else cameras and sensors blind.
	CoverageLostHa float64 `json:"coverage_lost_ha"`
	WeightedHa     float64 `json:"weighted_ha"`
	BlindCameras   int     `json:"blind_cameras"`
	BlindSensors   int     `json:"blind_sensors"`
	Criticality    int     `json:"criticality"` // the most critical device's, 1–5
	AgeH           float64 `json:"age_h"`
	// FixLeftMin is the time to the fix deadline, negative once passed.
	FixLeftMin float64 `json:"fix_left_min"`
	Why        string  `json:"why"`
}

// Ranked is an order with its rank.
type Ranked struct {
	Order
	Rank Rank `json:"rank"`
}

// Weights of the rank's parts, summing to 1.
const (
	wCost        = 0.4
	wCriticality = 0.2
	wDeadline    = 0.3
	wAge         = 0.1
	// costFull is the weighted hectares (or, without coverage, blind
	// camera-equivalents × 10) that count as the most an order can cost.
	costFull = 5.0
	ageFull  = 72 * time.Hour
)

// rank scores one order at now; why is left for the page shown.
func (m *Manager) rank(o *Order, now time.Time) Rank {
	var r Rank
	var cams []string
	for _, d := range o.Devices {
		if d.Healthy {
			continue
		}
		if d.Kind == string(wire.KindCamera) {
			r.BlindCameras++
			cams = append(cams, d.ID)
		} else {
			r.BlindSensors++
		}
		r.Criticality = max(r.Criticality, d.Criticality)
	}
	r.Criticality = min(max(r.Criticality, 1), 5)
	var cost float64
	if m.deps.Coverage != nil {
		r.CoverageLostHa, r.WeightedHa = m.deps.Coverage.LostBy(cams)
		cost = r.WeightedHa / costFull
	} else {
		cost = (float64(r.BlindCameras) + float64(r.BlindSensors)/2) / (costFull * 2)
	}
	// The share of the fix time used, counted as the deadline counts it:
	// working time (with business hours) since detection, less holds.
	h := m.opts.Hours
	used := h.between(o.DetectedAt, now) - o.Paused
	left := o.FixBy.Sub(now)
	if o.State == OnHold {
		used -= h.between(o.HoldSince, now) // the clock is stopped
		left += now.Sub(o.HoldSince)
	}
	r.FixLeftMin = math.Round(left.Minutes()*10) / 10
	deadline := used.Seconds() / m.opts.SLA[o.Priority].Fix.Seconds()
	age := now.Sub(o.DetectedAt)
	r.AgeH = math.Round(age.Hours()*100) / 100
	unit := func(v float64) float64 { return math.Max(0, math.Min(1, v)) }
	r.Score = math.Round(100*(wCost*unit(cost)+wCriticality*float64(r.Criticality)/5+wDeadline*unit(deadline)+wAge*unit(age.Seconds()/ageFull.Seconds()))*10) / 10
	return r
}

// explain says a rank in words.
func (m *Manager) explain(r *Rank) {
	parts := []string{fmt.Sprintf("%d cameras and %d sensors blind", r.BlindCameras, r.BlindSensors)}
	if m.deps.Coverage != nil {
		parts = append(parts, fmt.Sprintf("%.2f ha of coverage lost (%.2f weighted)", r.CoverageLostHa, r.WeightedHa))
	}
	age := time.Duration(r.AgeH * float64(time.Hour))
	left := time.Duration(r.FixLeftMin * float64(time.Minute))
	parts = append(parts, fmt.Sprintf("criticality %d", r.Criticality), fmt.Sprintf("detected %s ago", age.Round(time.Minute)))
	if left < 0 {
		parts = append(parts, fmt.Sprintf("fix deadline passed %s ago", (-left).Round(time.Minute)))
	} else {
		parts = append(parts, fmt.Sprintf("%s to the fix deadline", left.Round(time.Minute)))
	}
	r.Why = strings.Join(parts, "; ")
}

// Sorts of a page of orders.
const (
	SortRank     = "rank"     // fix first: highest score first
	SortPriority = "priority" // priority, then the fix deadline
)

// Page returns orders f selects, sorted by, from offset, at most limit,
// with their ranks, and how many f selects in all. Only the page is
// copied and explained, so a page of a long list stays cheap.
func (m *Manager) Page(f Filter, by string, offset, limit int) ([]Ranked, int) {
	now := m.opts.Now()
	type item struct {
		e *entry
		r Rank
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var items []item
	for _, e := range m.orders {
		if f.match(&e.order, m.opts.Crews) {
			items = append(items, item{e, m.rank(&e.order, now)})
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		if by == SortRank {
			if c := cmp.Compare(b.r.Score, a.r.Score); c != 0 {
				return c
			}
		}
		return byPriority(&a.e.order, &b.e.order)
	})
	out := []Ranked{}
	for i := offset; i < len(items) && len(out) < limit; i++ {
		r := Ranked{Order: clone(items[i].e.order), Rank: items[i].r}
		m.explain(&r.Rank)
		out = append(out, r)
	}
	return out, len(items)
}

// RankedOrders returns every order f selects, fix first.
func (m *Manager) RankedOrders(f Filter) []Ranked {
	out, _ := m.Page(f, SortRank, 0, math.MaxInt)
	return out
}
