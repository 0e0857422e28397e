package coverage

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/wire"
)

// MaxPlanned bounds the planned cameras of one what-if.
const MaxPlanned = 100

// Planned is a camera an analyst is thinking of buying.
type Planned struct {
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Heading float64 `json:"heading"` // degrees clockwise from north
	FOV     float64 `json:"fov"`     // degrees, up to 360
	RangeM  float64 `json:"range_m"` // metres, up to MaxRange
}

func (p Planned) check() error {
	switch {
	case !finite(p.Lat) || !finite(p.Lon) || math.Abs(p.Lat) > 85 || math.Abs(p.Lon) > 180:
		return errors.New("lat and lon must be a WGS-84 position within 85° of the equator")
	case !finite(p.Heading) || p.Heading < 0 || p.Heading >= 360:
		return errors.New("heading must be at least 0 and less than 360")
	case !(p.FOV > 0 && p.FOV <= 360):
		return errors.New("fov must be more than 0 and at most 360")
	case !(p.RangeM > 0 && p.RangeM <= MaxRange):
		return fmt.Errorf("range_m must be more than 0 and at most %d", MaxRange)
	}
	return nil
}

// WhatIf is what planned cameras would add to the coverage now.
type WhatIf struct {
	// AddedCells are cells no working camera sees now that a planned one
	// would; AddedHa the same in hectares.
	AddedCells int64   `json:"added_cells"`
	AddedHa    float64 `json:"added_ha"`
	// Districts and Areas are those whose coverage would change, before
	// and after.
	Districts []DistrictChange `json:"districts"`
	Areas     []AreaChange     `json:"areas"`
	// Cells are the cells the planned cameras would see, with their state
	// now ("covered", "fragile", "lost", "gap", or "" for a cell of no
	// district nor area no camera sees) and added: whether they would be
	// newly seen.
	Cells FeatureCollection `json:"cells"`
}

// DistrictChange is one district before and after the planned cameras.
type DistrictChange struct {
	District string   `json:"district"`
	Before   Coverage `json:"before"`
	After    Coverage `json:"after"`
}

// AreaChange is one area of interest before and after.
type AreaChange struct {
	ID     int      `json:"id"`
	Name   string   `json:"name"`
	Kind   string   `json:"kind,omitempty"`
	Before Coverage `json:"before"`
	After  Coverage `json:"after"`
}

// PlannedCellProps are a cell's properties in a what-if.
type PlannedCellProps struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Added   bool   `json:"added"`
	Planned int    `json:"planned"` // planned cameras that would see it
}

// WhatIf lays planned cameras over the coverage now, without changing it,
// and tells what they would add to the districts and areas scope sees.
// The cells are those of the same wedge test, clipped by the same
// buildings, as the cameras installed.
func (m *Model) WhatIf(scope auth.Scope, planned []Planned) (WhatIf, error) {
	if len(planned) == 0 || len(planned) > MaxPlanned {
		return WhatIf{}, fmt.Errorf("%w: between 1 and %d planned cameras, not %d", ErrPlan, MaxPlanned, len(planned))
	}
	for i, p := range planned {
		if err := p.check(); err != nil {
			return WhatIf{}, fmt.Errorf("%w: camera %d: %v", ErrPlan, i, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.atlas == nil {
		// No camera and no map file yet: lay the grid around the first
		// planned camera, as the first installed one would.
		if err := m.setAtlas(wire.Location{Lat: planned[0].Lat, Lon: planned[0].Lon}); err != nil {
			return WhatIf{}, err
		}
	}
	g := &m.atlas.grid
	seen := map[CellID]int{}
	var order []CellID
	for i, p := range planned {
		pt := g.proj.toXY(wire.Location{Lat: p.Lat, Lon: p.Lon})
		if math.Hypot(pt[0], pt[1]) > maxSpan {
			return WhatIf{}, fmt.Errorf("%w: camera %d is more than %d km from the map's reference point", ErrPlan, i, maxSpan/1000)
		}
		w, _ := newWedge(pt, &wire.CameraInfo{Heading: p.Heading, FOV: p.FOV, Range: p.RangeM})
		var blocked func(from, to orb.Point) bool
		if b := m.atlas.buildings; b != nil {
			blocked = b.blocker(pt)
		}
		g.cells(&w, blocked, func(id CellID) {
			if seen[id] == 0 {
				order = append(order, id)
			}
			seen[id]++
		})
		if len(order) > m.cfg.MaxCells {
			return WhatIf{}, fmt.Errorf("%w: the planned cameras see more than %d cells", ErrTooMany, m.cfg.MaxCells)
		}
	}

	dist := map[int32]*tally{}
	aoi := map[int32]*tally{}
	var out WhatIf
	cells := make([]Feature, 0, len(order))
	var buf [8]int32
	for _, id := range order {
		var cur cell
		if ci, ok := m.cellAt.get(id); ok {
			cur = m.cells[ci]
		} else {
			cur = cell{id: id, facts: m.atlas.ref(id), dist: -1}
		}
		f := m.atlas.factsOf(cur.facts)
		p := int32(seen[id])
		after := cell{id: id, designed: cur.designed + p, working: cur.working + p, facts: cur.facts, dist: cur.dist}
		added := cur.working == 0
		if added {
			out.AddedCells++
		}
		ds := m.districtsOf(&cur, buf[:0])
		if len(ds) == 0 && f.home >= 0 {
			ds = append(ds, f.home)
		}
		for _, k := range ds {
			if m.districtVisible(scope, "", k) {
				change(dist, k, m.dist[k], &cur, &after, f.weight, f.home < 0)
			}
		}
		if f.aoi >= 0 {
			for _, k := range m.atlas.aoiCells[f.aoi].areas {
				if m.districtVisible(scope, "", m.atlas.areas[k].dist) {
					change(aoi, k, m.aoi[k], &cur, &after, f.weight, false)
				}
			}
		}
		i, j := id.IJ()
		sq := g.square(id)
		cells = append(cells, polygonFeature(sq[:], PlannedCellProps{ID: strconv.Itoa(int(i)) + "," + strconv.Itoa(int(j)),
			State: cellState(int(cur.designed), int(cur.working), f.static), Added: added, Planned: int(p)}))
	}
	out.AddedHa = math.Round(float64(out.AddedCells)*m.cfg.CellSize*m.cfg.CellSize/100) / 100
	out.Cells = featureCollection(cells)
	out.Districts = []DistrictChange{}
	for k, t := range dist {
		out.Districts = append(out.Districts, DistrictChange{District: m.districtName(k), Before: m.dist[k].coverage(), After: t.coverage()})
	}
	slices.SortFunc(out.Districts, func(a, b DistrictChange) int { return cmp.Compare(a.District, b.District) })
	out.Areas = []AreaChange{}
	for k, t := range aoi {
		r := &m.atlas.areas[k]
		out.Areas = append(out.Areas, AreaChange{ID: r.index, Name: r.name, Kind: r.kind, Before: m.aoi[k].coverage(), After: t.coverage()})
	}
	slices.SortFunc(out.Areas, func(a, b AreaChange) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// ErrPlan is returned for planned cameras that cannot be placed.
var ErrPlan = errors.New("coverage: bad plan")

// change moves what cell before contributes to tally k of into what after
// would; base is the tally now, weight the cell's. countCell is the
// districts' rule without a districts file: a cell counts while a camera
// is designed to see it.
func change(into map[int32]*tally, k int32, base tally, before, after *cell, weight int32, countCell bool) {
	t := into[k]
	if t == nil {
		t = &base
		into[k] = t
	}
	t.add(before, weight, -1, countCell)
	t.add(after, weight, 1, countCell)
}

// add adds (sign 1) or takes away (-1) what cell c of that weight
// contributes to t.
func (t *tally) add(c *cell, weight int32, sign int64, countCell bool) {
	designed := c.designed > 0
	d, cur, frag := b2i(designed)*sign, b2i(c.working > 0)*sign, b2i(c.working == 1)*sign
	w := int64(weight)
	if countCell {
		t.cells += d
		t.wCells += d * w
	}
	t.designed += d
	t.current += cur
	t.fragile += frag
	t.wDesigned += d * w
	t.wCurrent += cur * w
	t.wFragile += frag * w
}
