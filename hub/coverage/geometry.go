package coverage

import (
	"math"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/wire"
)

// earthRadius is the mean Earth radius in metres.
const earthRadius = 6_371_000

// Distance is the great-circle distance between a and b in metres.
func Distance(a, b wire.Location) float64 {
	φ1, φ2 := rad(a.Lat), rad(b.Lat)
	dφ, dλ := φ2-φ1, rad(b.Lon-a.Lon)
	h := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * earthRadius * math.Asin(math.Min(1, math.Sqrt(h)))
}

// Bearing is the initial bearing from a to b, degrees clockwise from north.
func Bearing(a, b wire.Location) float64 {
	φ1, φ2, dλ := rad(a.Lat), rad(b.Lat), rad(b.Lon-a.Lon)
	y := math.Sin(dλ) * math.Cos(φ2)
	x := math.Cos(φ1)*math.Sin(φ2) - math.Sin(φ1)*math.Cos(φ2)*math.Cos(dλ)
	return math.Mod(math.Atan2(y, x)*180/math.Pi+360, 360)
}

func rad(deg float64) float64 { return deg * math.Pi / 180 }

// projection is a local equirectangular projection around a reference
// point: x metres east, y metres north. Over a city (tens of kilometres)
// its scale error stays below half a percent, far below what a camera's
// stated range means.
type projection struct {
	ref    wire.Location
	kx, ky float64 // metres per degree of longitude and latitude
}

func newProjection(ref wire.Location) projection {
	ky := earthRadius * math.Pi / 180
	return projection{ref: ref, ky: ky, kx: ky * math.Cos(rad(ref.Lat))}
}

func (p projection) toXY(l wire.Location) orb.Point {
	return orb.Point{(l.Lon - p.ref.Lon) * p.kx, (l.Lat - p.ref.Lat) * p.ky}
}

func (p projection) toLoc(pt orb.Point) wire.Location {
	return wire.Location{Lat: p.ref.Lat + pt[1]/p.ky, Lon: p.ref.Lon + pt[0]/p.kx}
}

// CellID names one square of the grid: its column and row, counted from
// the grid's reference point, packed in 64 bits. It is stable while the
// reference point and the cell size stay the same.
type CellID uint64

func cellID(i, j int32) CellID { return CellID(uint64(uint32(i))<<32 | uint64(uint32(j))) }

// IJ returns the cell's column (east) and row (north).
func (c CellID) IJ() (i, j int32) { return int32(uint32(c >> 32)), int32(uint32(c)) }

// grid is the square grid of cells laid over the projection.
type grid struct {
	proj projection
	size float64 // metres
}

// index is the column or row holding coordinate v.
func (g *grid) index(v float64) int32 { return int32(math.Floor(v / g.size)) }

func (g *grid) centre(c CellID) orb.Point {
	i, j := c.IJ()
	return orb.Point{(float64(i) + 0.5) * g.size, (float64(j) + 0.5) * g.size}
}

// square is the cell's outline in WGS-84, counter-clockwise, closed.
func (g *grid) square(c CellID) [5]wire.Location {
	i, j := c.IJ()
	x0, y0 := float64(i)*g.size, float64(j)*g.size
	x1, y1 := x0+g.size, y0+g.size
	return [5]wire.Location{
		g.proj.toLoc(orb.Point{x0, y0}), g.proj.toLoc(orb.Point{x1, y0}), g.proj.toLoc(orb.Point{x1, y1}),
		g.proj.toLoc(orb.Point{x0, y1}), g.proj.toLoc(orb.Point{x0, y0}),
	}
}

// MaxRange bounds the useful range of a camera, in metres: no CCTV camera
// identifies anyone further away, and the bound keeps one wrong inventory
// entry (the protocol allows 10 km) from costing hundreds of thousands of
// cells. Ranges beyond it count as MaxRange, everywhere coverage is
// computed.
const MaxRange = 2000

// onSpot is how close to a camera a point is seen whatever the heading:
// the camera is on the spot.
const onSpot = 1.0

// edgeTolerance makes a point on a wedge's edge (a cell centre exactly on
// the 45° line of a 90° wedge) count as inside despite rounding.
const edgeTolerance = 1e-6

// wedge is what one camera is designed to see, in projected metres: the
// points within its range and within half its field of view of its
// heading. It is the one answer to "does camera c see point p"; cells,
// wedges drawn on the map and the cameras suggested for a sensor alarm
// all ask it.
type wedge struct {
	at      orb.Point
	heading float64 // degrees clockwise from north
	fov     float64 // degrees, at most 360
	rng     float64 // metres, at most MaxRange
	hx, hy  float64 // unit vector of the heading
	cosHalf float64
}

// newWedge returns the wedge of a camera at pt with info; ok is false
// when the camera sees nothing (no details, no range).
func newWedge(pt orb.Point, info *wire.CameraInfo) (w wedge, ok bool) {
	if info == nil || !(info.Range > 0) || !(info.FOV > 0) {
		return wedge{}, false
	}
	w = wedge{at: pt, heading: math.Mod(info.Heading, 360), fov: math.Min(info.FOV, 360), rng: math.Min(info.Range, MaxRange)}
	h := rad(w.heading)
	w.hx, w.hy = math.Sin(h), math.Cos(h)
	w.cosHalf = math.Cos(rad(w.fov / 2))
	return w, true
}

// contains reports whether the wedge sees p: within range, and within
// half the field of view of the heading (edges included).
func (w *wedge) contains(p orb.Point) bool {
	dx, dy := p[0]-w.at[0], p[1]-w.at[1]
	d := math.Hypot(dx, dy)
	switch {
	case d > w.rng+edgeTolerance:
		return false
	case d <= onSpot || w.fov >= 360:
		return true
	}
	return dx*w.hx+dy*w.hy >= d*w.cosHalf-edgeTolerance
}

// direction is the unit vector of a bearing in degrees.
func direction(bearing float64) (x, y float64) {
	b := rad(bearing)
	return math.Sin(b), math.Cos(b)
}

// bound is the smallest box holding the wedge: its apex, the ends of its
// arc and the arc's extremes towards the four compass points it spans.
func (w *wedge) bound() orb.Bound {
	b := orb.Bound{Min: w.at, Max: w.at}
	extend := func(bearing float64) {
		x, y := direction(bearing)
		b = b.Extend(orb.Point{w.at[0] + w.rng*x, w.at[1] + w.rng*y})
	}
	extend(w.heading - w.fov/2)
	extend(w.heading + w.fov/2)
	for _, axis := range []float64{0, 90, 180, 270} {
		if off := math.Abs(math.Mod(axis-w.heading+540, 360) - 180); off <= w.fov/2 {
			extend(axis)
		}
	}
	return b.Pad(edgeTolerance)
}

// outline is the wedge as a closed ring in projected metres: the apex,
// then the arc in steps of at most 5°. A full circle has no apex.
func (w *wedge) outline() []orb.Point {
	steps := max(2, int(math.Ceil(w.fov/5)))
	start := w.heading - w.fov/2
	var ring []orb.Point
	if w.fov < 360 {
		ring = append(ring, w.at)
	}
	for k := 0; k <= steps; k++ {
		x, y := direction(start + w.fov*float64(k)/float64(steps))
		ring = append(ring, orb.Point{w.at[0] + w.rng*x, w.at[1] + w.rng*y})
	}
	if w.fov < 360 {
		ring = append(ring, w.at)
	}
	return ring
}

// cells calls f with every cell whose centre the wedge sees and, when
// blocked is not nil, whose line of sight no building blocks.
func (g *grid) cells(w *wedge, blocked func(from, to orb.Point) bool, f func(CellID)) {
	b := w.bound()
	// Centres lie at (i+0.5)·size: the columns whose centre may be inside.
	i0, i1 := int32(math.Ceil(b.Min[0]/g.size-0.5)), int32(math.Floor(b.Max[0]/g.size-0.5))
	j0, j1 := int32(math.Ceil(b.Min[1]/g.size-0.5)), int32(math.Floor(b.Max[1]/g.size-0.5))
	for i := i0; i <= i1; i++ {
		for j := j0; j <= j1; j++ {
			c := cellID(i, j)
			centre := g.centre(c)
			if w.contains(centre) && (blocked == nil || !blocked(w.at, centre)) {
				f(c)
			}
		}
	}
}
