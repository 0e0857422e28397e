package coverage

import (
	"math"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
)

// buildingBucket is the side of the squares building edges are sorted
// into, in metres: a line of sight tests only the edges of the squares it
// passes through.
const buildingBucket = 50

// buildings are footprints that block cameras' lines of sight, in
// projected metres, indexed by a coarse grid of buckets.
type buildings struct {
	polys []orb.Polygon
	edges map[CellID][]edge  // bucket → the edges that touch it
	cover map[CellID][]int32 // bucket → the footprints whose bounds touch it
}

type edge struct {
	a, b orb.Point
	poly int32
}

func bucketIndex(v float64) int32 { return int32(math.Floor(v / buildingBucket)) }

func newBuildings(polys []orb.Polygon) *buildings {
	b := &buildings{polys: polys, edges: map[CellID][]edge{}, cover: map[CellID][]int32{}}
	for k, poly := range polys {
		bd := poly.Bound()
		for i := bucketIndex(bd.Min[0]); i <= bucketIndex(bd.Max[0]); i++ {
			for j := bucketIndex(bd.Min[1]); j <= bucketIndex(bd.Max[1]); j++ {
				b.cover[cellID(i, j)] = append(b.cover[cellID(i, j)], int32(k))
			}
		}
		for _, ring := range poly {
			for n := 1; n < len(ring); n++ {
				e := edge{ring[n-1], ring[n], int32(k)}
				traverse(e.a, e.b, func(key CellID) bool {
					b.edges[key] = append(b.edges[key], e)
					return true
				})
			}
		}
	}
	return b
}

// inside lists the footprints that contain pt: a camera mounted on a
// building, whose position falls within its outline, still sees out.
func (b *buildings) inside(pt orb.Point) []int32 {
	var out []int32
	for _, k := range b.cover[cellID(bucketIndex(pt[0]), bucketIndex(pt[1]))] {
		if planar.PolygonContains(b.polys[k], pt) {
			out = append(out, k)
		}
	}
	return out
}

// blocker returns the line-of-sight test for a camera at pt: whether the
// segment from it to a point crosses a building other than the ones the
// camera stands in.
func (b *buildings) blocker(pt orb.Point) func(from, to orb.Point) bool {
	own := b.inside(pt)
	return func(from, to orb.Point) bool {
		hit := false
		traverse(from, to, func(key CellID) bool {
			for _, e := range b.edges[key] {
				if !contains32(own, e.poly) && segmentsCross(from, to, e.a, e.b) {
					hit = true
					return false
				}
			}
			return true
		})
		return hit
	}
}

func contains32(list []int32, v int32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// traverse calls f with every bucket the segment from p to q passes
// through, in order, until f returns false (Amanatides and Woo's walk).
func traverse(p, q orb.Point, f func(CellID) bool) {
	i, j := bucketIndex(p[0]), bucketIndex(p[1])
	iEnd, jEnd := bucketIndex(q[0]), bucketIndex(q[1])
	dx, dy := q[0]-p[0], q[1]-p[1]
	stepI, tMaxX, tDeltaX := walkAxis(p[0], dx)
	stepJ, tMaxY, tDeltaY := walkAxis(p[1], dy)
	steps := abs32(iEnd-i) + abs32(jEnd-j)
	for n := int32(0); ; n++ {
		if !f(cellID(i, j)) {
			return
		}
		if n >= steps {
			// Rounding may have walked a step aside; the last bucket is
			// where the segment ends.
			if i != iEnd || j != jEnd {
				f(cellID(iEnd, jEnd))
			}
			return
		}
		if tMaxX < tMaxY {
			i += stepI
			tMaxX += tDeltaX
		} else {
			j += stepJ
			tMaxY += tDeltaY
		}
	}
}

// walkAxis returns, for one axis of a segment starting at v and moving by
// d, the step direction, the fraction of the segment at which the first
// bucket boundary is crossed, and the fraction between boundaries.
func walkAxis(v, d float64) (step int32, tMax, tDelta float64) {
	switch {
	case d > 0:
		next := (math.Floor(v/buildingBucket) + 1) * buildingBucket
		return 1, (next - v) / d, buildingBucket / d
	case d < 0:
		prev := math.Floor(v/buildingBucket) * buildingBucket
		return -1, (prev - v) / d, -buildingBucket / d
	}
	return 0, math.Inf(1), math.Inf(1)
}

func abs32(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}

// segmentsCross reports whether segments ab and cd meet, touching
// included.
func segmentsCross(a, b, c, d orb.Point) bool {
	o1, o2 := orient(a, b, c), orient(a, b, d)
	o3, o4 := orient(c, d, a), orient(c, d, b)
	if o1*o2 < 0 && o3*o4 < 0 {
		return true
	}
	return (o1 == 0 && onSegment(a, b, c)) || (o2 == 0 && onSegment(a, b, d)) ||
		(o3 == 0 && onSegment(c, d, a)) || (o4 == 0 && onSegment(c, d, b))
}

// orient is the sign of the turn a → b → c: 1 left, -1 right, 0 straight.
func orient(a, b, c orb.Point) int {
	v := (b[0]-a[0])*(c[1]-a[1]) - (b[1]-a[1])*(c[0]-a[0])
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// onSegment reports whether p, collinear with ab, lies between a and b.
func onSegment(a, b, p orb.Point) bool {
	return math.Min(a[0], b[0]) <= p[0] && p[0] <= math.Max(a[0], b[0]) &&
		math.Min(a[1], b[1]) <= p[1] && p[1] <= math.Max(a[1], b[1])
}
