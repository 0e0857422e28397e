package coverage

import (
	"math"
	"slices"
	"testing"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/wire"
)

func TestCellIDRoundTrip(t *testing.T) {
	for _, ij := range [][2]int32{{0, 0}, {-1, 1}, {1, -1}, {math.MaxInt32, math.MinInt32}, {-40000, 123456}} {
		i, j := cellID(ij[0], ij[1]).IJ()
		if i != ij[0] || j != ij[1] {
			t.Errorf("cell %v came back as %d,%d", ij, i, j)
		}
	}
	if cellID(-1, 0) == cellID(0, -1) {
		t.Error("two cells share an id")
	}
}

// The hand-counted case: a camera at a grid corner looking north with a
// 90° field of view and 100 m of range, over 25 m cells. Cell centres lie
// at odd multiples of 12.5 m; a centre (x, y) is seen when |x| ≤ y and
// x² + y² ≤ 100²:
//
//	y = 12.5  x = ±12.5                  2 cells (on the 45° edges: seen)
//	y = 37.5  x = ±12.5, ±37.5           4 cells
//	y = 62.5  x = ±12.5, ±37.5, ±62.5    6 cells
//	y = 87.5  x = ±12.5, ±37.5           4 cells (±62.5 is 107 m away)
//
// 16 cells.
var north90 = ids(
	[2]int32{-1, 0}, [2]int32{0, 0},
	[2]int32{-2, 1}, [2]int32{-1, 1}, [2]int32{0, 1}, [2]int32{1, 1},
	[2]int32{-3, 2}, [2]int32{-2, 2}, [2]int32{-1, 2}, [2]int32{0, 2}, [2]int32{1, 2}, [2]int32{2, 2},
	[2]int32{-2, 3}, [2]int32{-1, 3}, [2]int32{0, 3}, [2]int32{1, 3},
)

func TestWedgeCellsHandCounted(t *testing.T) {
	m := newModel(t, Config{}, newEnv(camAt("n", "west", 0, 0, 0, 90, 100)))
	if got := cellsOf(m, "n"); !slices.Equal(got, north90) {
		t.Fatalf("cells %v, want the 16 counted by hand %v", got, north90)
	}
	// Turned east, the same wedge is the same cells mirrored over the
	// diagonal: (i, j) → (j, i).
	m = newModel(t, Config{}, newEnv(camAt("e", "west", 0, 0, 90, 90, 100)))
	var want []CellID
	for _, c := range north90 {
		i, j := c.IJ()
		want = append(want, cellID(j, i))
	}
	slices.Sort(want)
	if got := cellsOf(m, "e"); !slices.Equal(got, want) {
		t.Fatalf("east wedge %v, want %v", got, want)
	}
}

func TestWedgeContains(t *testing.T) {
	w, ok := newWedge(orb.Point{}, &wire.CameraInfo{Heading: 350, FOV: 40, Range: 50})
	if !ok {
		t.Fatal("no wedge")
	}
	for _, tt := range []struct {
		p    orb.Point
		want bool
	}{
		{orb.Point{0, 49}, true},     // straight ahead of a heading across north
		{orb.Point{-17, 40}, true},   // 23° west of north: 13° off 350°
		{orb.Point{17, 40}, false},   // 23° east: 33° off
		{orb.Point{0, 51}, false},    // beyond range
		{orb.Point{0.5, -0.5}, true}, // on the spot
		{orb.Point{0, -10}, false},   // behind
	} {
		if got := w.contains(tt.p); got != tt.want {
			t.Errorf("contains(%v) = %v", tt.p, got)
		}
	}
	if _, ok := newWedge(orb.Point{}, &wire.CameraInfo{Heading: 0, FOV: 90}); ok {
		t.Error("a camera without range sees something")
	}
	if _, ok := newWedge(orb.Point{}, nil); ok {
		t.Error("a camera without details sees something")
	}
	far, _ := newWedge(orb.Point{}, &wire.CameraInfo{Heading: 0, FOV: 10, Range: 9000})
	if far.contains(orb.Point{0, MaxRange + 10}) || !far.contains(orb.Point{0, MaxRange - 10}) {
		t.Error("range is not bounded by MaxRange")
	}
	full, _ := newWedge(orb.Point{}, &wire.CameraInfo{Heading: 0, FOV: 360, Range: 30})
	if !full.contains(orb.Point{0, -29}) || len(full.outline()) < 70 {
		t.Error("a 360° camera does not see all around, or its outline is coarse")
	}
}

// The wedge's box must hold every point it contains, at every heading.
func TestWedgeBound(t *testing.T) {
	for heading := 0.0; heading < 360; heading += 7.5 {
		for _, fov := range []float64{5, 90, 181, 359} {
			w, _ := newWedge(orb.Point{3, -4}, &wire.CameraInfo{Heading: heading, FOV: fov, Range: 80})
			b := w.bound()
			for _, p := range w.outline() {
				if !b.Contains(p) {
					t.Fatalf("heading %v fov %v: outline point %v outside the box %v", heading, fov, p, b)
				}
			}
		}
	}
}

func TestProjectionRoundTrip(t *testing.T) {
	p := newProjection(ref)
	for _, xy := range []orb.Point{{0, 0}, {1234.5, -987.25}, {-20000, 15000}} {
		back := p.toXY(p.toLoc(xy))
		if math.Abs(back[0]-xy[0]) > 1e-6 || math.Abs(back[1]-xy[1]) > 1e-6 {
			t.Errorf("%v came back as %v", xy, back)
		}
	}
	// A kilometre east on the projection is a kilometre on the ground.
	if d := Distance(ref, p.toLoc(orb.Point{1000, 0})); math.Abs(d-1000) > 1 {
		t.Errorf("1 km east is %v m", d)
	}
}

// Buildings hide the cells behind them; a camera standing in a building
// (mounted on it) still sees out of it.
func TestBuildingsClip(t *testing.T) {
	for _, tt := range []struct {
		name      string
		buildings []map[string]any
		want      int
	}{
		{"none far away", []map[string]any{rectFeature(500, 500, 520, 520, nil)}, 16},
		// A wall across the whole view between 45 m and 55 m north
		// leaves the rows at 12.5 and 37.5 m: 2 + 4 cells.
		{"wall across", []map[string]any{rectFeature(-100, 45, 100, 55, nil)}, 6},
		// A wall over the east half hides the centres with x > 0 beyond
		// it: (12.5, 62.5), (37.5, 62.5), (62.5, 62.5), (12.5, 87.5),
		// (37.5, 87.5).
		{"wall east", []map[string]any{rectFeature(0, 45, 100, 55, nil)}, 11},
		{"kiosk the camera stands in", []map[string]any{rectFeature(-5, -5, 5, 5, nil)}, 16},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "buildings.geojson", collection(tt.buildings...))
			m := newModel(t, Config{Buildings: path}, newEnv(camAt("n", "west", 0, 0, 0, 90, 100)))
			got := cellsOf(m, "n")
			if len(got) != tt.want {
				t.Fatalf("%d cells seen, want %d: %v", len(got), tt.want, got)
			}
			for _, c := range got {
				if !slices.Contains(north90, c) {
					t.Errorf("cell %v is not in the unobstructed wedge", c)
				}
			}
		})
	}
}

func TestTraverseVisitsEveryBucket(t *testing.T) {
	var got []CellID
	traverse(orb.Point{10, 10}, orb.Point{160, 60}, func(c CellID) bool {
		got = append(got, c)
		return true
	})
	// From bucket (0,0) to (3,1): x crosses 50, 100, 150; y crosses 50
	// at x = 130.
	want := []CellID{cellID(0, 0), cellID(1, 0), cellID(2, 0), cellID(2, 1), cellID(3, 1)}
	if !slices.Equal(got, want) {
		t.Errorf("buckets %v, want %v", got, want)
	}
}

func TestPolygonScanMatchesContains(t *testing.T) {
	// An L shape with a hole, in metres.
	mp := orb.MultiPolygon{{
		{{0, 0}, {300, 0}, {300, 100}, {100, 100}, {100, 300}, {0, 300}, {0, 0}},
		{{20, 20}, {60, 20}, {60, 60}, {20, 60}, {20, 20}},
	}}
	proj := newProjection(ref)
	var geo orb.MultiPolygon
	for _, poly := range mp {
		var gp orb.Polygon
		for _, ring := range poly {
			var gr orb.Ring
			for _, p := range ring {
				l := proj.toLoc(p)
				gr = append(gr, orb.Point{l.Lon, l.Lat})
			}
			gp = append(gp, gr)
		}
		geo = append(geo, gp)
	}
	poly := newPolygon(geo, proj)
	g := grid{proj: proj, size: 25}
	scanned := map[CellID]bool{}
	poly.cells(&g, func(c CellID) bool { scanned[c] = true; return true })
	n := 0
	for i := int32(-4); i < 16; i++ {
		for j := int32(-4); j < 16; j++ {
			c := cellID(i, j)
			if in := poly.contains(g.centre(c)); in != scanned[c] {
				t.Errorf("cell %d,%d: contains %v, scan %v", i, j, in, scanned[c])
			} else if in {
				n++
			}
		}
	}
	// 300×100 + 100×200 = 50,000 m² = 80 cells, less the hole's
	// centres (37.5, 37.5) and ... (12.5 < x < 60): 37.5 only → 1.
	if n != 79 {
		t.Errorf("%d cells inside, want 79", n)
	}
}
