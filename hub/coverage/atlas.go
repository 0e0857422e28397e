package coverage

import (
	"errors"
	"fmt"
	"math"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/wire"
)

// Limits on what the files may ask of the grid.
const (
	// maxSpan is how far apart, in metres, anything on one map may lie: a
	// city, not a country (and not a file with latitude and longitude
	// swapped).
	maxSpan = 300_000
	// maxStaticCells bounds the cells of all districts together, and of
	// all areas of interest together.
	maxStaticCells = 20_000_000
	// districtBucket is the side of the squares districts are indexed
	// by, in metres.
	districtBucket = 500
)

// region is a district or an area of interest laid on the grid.
type region struct {
	feature
	poly   polygon
	dist   int32 // an area's district (index in names), or -1
	cells  int64 // cells whose centre it holds (a district: and no earlier district does)
	wcells int64 // their weights summed, in thousandths
}

// aoiCell is what the areas of interest say about one cell.
type aoiCell struct {
	areas     []int32 // indices in atlas.areas
	weight    int32   // the largest of their weights
	home      int32   // the cell's district, or -1
	inPolygon bool    // home is the district polygon holding the centre
}

// interned numbers values in the order they come: a record that keeps
// one of a few values keeps its number.
type interned[T comparable] struct {
	list  []T
	index map[T]int32
}

func (n *interned[T]) id(v T) int32 {
	if k, ok := n.index[v]; ok {
		return k
	}
	if n.index == nil {
		n.index = make(map[T]int32)
	}
	n.index[v] = int32(len(n.list))
	n.list = append(n.list, v)
	return int32(len(n.list) - 1)
}

// atlas is what the map knows before any camera: the grid, the districts,
// the areas of interest and the buildings, and the cells each district and
// area holds.
type atlas struct {
	grid      grid
	districts []region // the districts file's, in its order; empty without one
	areas     []region
	buildings *buildings // nil without a buildings file
	bucket    map[CellID][]int32
	aoi       map[CellID]int32 // cell → index in aoiCells
	aoiCells  []aoiCell
	// names numbers district names: those of the districts file first,
	// in its order, then others as cameras and areas name them.
	names interned[string]
	// Cells of the districts' polygons and of the areas of interest, by
	// district and for the whole map, and their weights.
	staticCells, staticWeight []int64
	cityCells, cityWeight     int64
}

// layers are the validated files.
type layers struct {
	districts, areas, buildings []feature
}

// bound is the box around everything the files hold, in degrees.
func (l *layers) bound() (orb.Bound, bool) {
	var b orb.Bound
	first := true
	for _, fs := range [][]feature{l.districts, l.areas, l.buildings} {
		for _, f := range fs {
			fb := f.geom.Bound()
			if first {
				b, first = fb, false
			} else {
				b = b.Union(fb)
			}
		}
	}
	return b, !first
}

// span is the diagonal of a box in degrees, in metres.
func span(b orb.Bound) float64 {
	return Distance(wire.Location{Lat: b.Min[1], Lon: b.Min[0]}, wire.Location{Lat: b.Max[1], Lon: b.Max[0]})
}

// newAtlas lays the files on a grid of size metres around ref.
func newAtlas(l layers, ref wire.Location, size float64) (*atlas, error) {
	if b, ok := l.bound(); ok {
		whole := b.Extend(orb.Point{ref.Lon, ref.Lat})
		if d := span(whole); d > maxSpan {
			return nil, fmt.Errorf("coverage: the districts, areas and buildings files and the reference point span %.0f km, more than %d km: one city is expected (are longitude and latitude swapped?)", d/1000, maxSpan/1000)
		}
	}
	a := &atlas{
		grid:   grid{proj: newProjection(ref), size: size},
		bucket: map[CellID][]int32{}, aoi: map[CellID]int32{},
	}
	cellArea := size * size
	var estimate [2]float64
	for i, f := range l.districts {
		a.names.id(f.name)
		r := region{feature: f, poly: newPolygon(f.geom, a.grid.proj), dist: int32(i)}
		estimate[0] += area(r.poly.bound) / cellArea
		a.districts = append(a.districts, r)
	}
	for _, f := range l.areas {
		r := region{feature: f, poly: newPolygon(f.geom, a.grid.proj), dist: -1}
		estimate[1] += area(r.poly.bound) / cellArea
		a.areas = append(a.areas, r)
	}
	for k, what := range []string{"districts", "areas of interest"} {
		if estimate[k] > maxStaticCells {
			return nil, fmt.Errorf("coverage: the %s cover about %.0f cells of %g m, more than %d: use a larger cell size", what, estimate[k], size, maxStaticCells)
		}
	}
	if err := a.placeAreas(); err != nil {
		return nil, err
	}
	if len(l.buildings) > 0 {
		var polys []orb.Polygon
		for _, f := range l.buildings {
			for _, p := range f.geom {
				polys = append(polys, projectPolygon(p, a.grid.proj))
			}
		}
		a.buildings = newBuildings(polys)
	}
	a.countDistricts()
	a.countAreas()
	return a, nil
}

func area(b orb.Bound) float64 { return (b.Max[0] - b.Min[0]) * (b.Max[1] - b.Min[1]) }

func projectPolygon(p orb.Polygon, proj projection) orb.Polygon {
	out := make(orb.Polygon, len(p))
	for i, ring := range p {
		out[i] = make(orb.Ring, len(ring))
		for k, pt := range ring {
			out[i][k] = proj.toXY(wire.Location{Lat: pt[1], Lon: pt[0]})
		}
	}
	return out
}

// placeAreas indexes the districts and finds each area's district: the
// one its file names (which must exist when there is a districts file),
// else the district holding the middle of its box.
func (a *atlas) placeAreas() error {
	for k, d := range a.districts {
		b := d.poly.bound
		for i := districtIndex(b.Min[0]); i <= districtIndex(b.Max[0]); i++ {
			for j := districtIndex(b.Min[1]); j <= districtIndex(b.Max[1]); j++ {
				a.bucket[cellID(i, j)] = append(a.bucket[cellID(i, j)], int32(k))
			}
		}
	}
	var errs []error
	for k := range a.areas {
		r := &a.areas[k]
		switch {
		case r.feature.district != "" && len(a.districts) > 0:
			id, ok := a.names.index[r.feature.district]
			if !ok {
				errs = append(errs, fmt.Errorf("feature %d: district %q is not in the districts file", r.index, r.feature.district))
				continue
			}
			r.dist = id
		case r.feature.district != "":
			r.dist = a.names.id(r.feature.district)
		default:
			r.dist = a.home(r.poly.bound.Center())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("coverage: areas file: %w", errors.Join(errs...))
	}
	return nil
}

func districtIndex(v float64) int32 { return int32(math.Floor(v / districtBucket)) }

// home is the district whose polygon holds pt (the first in the file's
// order, should two overlap), or -1.
func (a *atlas) home(pt orb.Point) int32 {
	for _, k := range a.bucket[cellID(districtIndex(pt[0]), districtIndex(pt[1]))] {
		if a.districts[k].poly.contains(pt) {
			return k
		}
	}
	return -1
}

// countDistricts counts each district's cells: those whose centre its
// polygon holds and no earlier district's does.
func (a *atlas) countDistricts() {
	a.staticCells = make([]int64, len(a.names.list))
	a.staticWeight = make([]int64, len(a.names.list))
	for k := range a.districts {
		d := &a.districts[k]
		d.poly.cells(&a.grid, func(c CellID) bool {
			if a.home(a.grid.centre(c)) == int32(k) {
				d.cells++
			}
			return true
		})
		d.wcells = d.cells * unitWeight
		a.staticCells[k], a.staticWeight[k] = d.cells, d.wcells
		a.cityCells += d.cells
		a.cityWeight += d.wcells
	}
}

// countAreas finds the cells of the areas of interest and their weights,
// and adds to the districts the weight the areas give their cells (and the
// cells of areas outside every district polygon).
func (a *atlas) countAreas() {
	for k := range a.areas {
		r := &a.areas[k]
		r.poly.cells(&a.grid, func(c CellID) bool {
			idx, ok := a.aoi[c]
			if !ok {
				idx = int32(len(a.aoiCells))
				a.aoi[c] = idx
				a.aoiCells = append(a.aoiCells, aoiCell{home: -1})
			}
			ac := &a.aoiCells[idx]
			ac.areas = append(ac.areas, int32(k))
			ac.weight = max(ac.weight, r.weight)
			return true
		})
	}
	for len(a.staticCells) < len(a.names.list) {
		a.staticCells = append(a.staticCells, 0)
		a.staticWeight = append(a.staticWeight, 0)
	}
	for c, idx := range a.aoi {
		ac := &a.aoiCells[idx]
		if h := a.home(a.grid.centre(c)); h >= 0 {
			ac.home, ac.inPolygon = h, true
		} else {
			// Outside every district polygon: the district of the
			// weightiest area that names one.
			var best int32 = -1
			for _, k := range ac.areas {
				if r := &a.areas[k]; r.dist >= 0 && (best < 0 || r.weight > a.areas[best].weight) {
					best = k
				}
			}
			if best >= 0 {
				ac.home = a.areas[best].dist
			}
		}
		w := int64(ac.weight)
		for _, k := range ac.areas {
			a.areas[k].cells++
			a.areas[k].wcells += w
		}
		switch {
		case ac.inPolygon:
			a.staticWeight[ac.home] += w - unitWeight
			a.cityWeight += w - unitWeight
		case ac.home >= 0:
			a.staticCells[ac.home]++
			a.staticWeight[ac.home] += w
			fallthrough
		default:
			a.cityCells++
			a.cityWeight += w
		}
	}
}

// cellFacts is what the atlas says about one cell.
type cellFacts struct {
	home   int32 // district, or -1
	static bool  // part of a district polygon or an area of interest
	aoi    int32 // index in aoiCells, or -1
	weight int32 // thousandths
}

func (a *atlas) facts(c CellID) cellFacts { return a.factsOf(a.ref(c)) }

// factsRef is a cell's facts in one word, as the model keeps them: the
// cell's index in aoiCells when it is in an area of interest, else -2
// less its district (-1: none), from which the rest follows.
type factsRef int32

func (a *atlas) ref(c CellID) factsRef {
	if idx, ok := a.aoi[c]; ok {
		return factsRef(idx)
	}
	if len(a.districts) > 0 {
		if h := a.home(a.grid.centre(c)); h >= 0 {
			return factsRef(-2 - h)
		}
	}
	return -1
}

func (a *atlas) factsOf(f factsRef) cellFacts {
	if f >= 0 {
		ac := &a.aoiCells[f]
		return cellFacts{home: ac.home, static: true, aoi: int32(f), weight: ac.weight}
	}
	h := -2 - int32(f)
	return cellFacts{home: h, static: h >= 0, aoi: -1, weight: unitWeight}
}
