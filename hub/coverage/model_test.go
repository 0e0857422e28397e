package coverage

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// twoDistricts are West (x from -500 to 0) and East (0 to 500), y from
// -500 to 500: 20 × 40 = 800 cells each. The school (weight 3) spans x
// from -50 to 50, y from 0 to 50: centres x ∈ {±12.5, ±37.5}, y ∈ {12.5,
// 37.5}, 8 cells, 4 in each district.
func twoDistricts(t testing.TB) Config {
	d := writeFile(t, "districts.geojson", collection(
		rectFeature(-500, -500, 0, 500, map[string]any{"name": "West"}),
		rectFeature(0, -500, 500, 500, map[string]any{"name": "East"}),
	))
	a := writeFile(t, "areas.geojson", collection(
		rectFeature(-50, 0, 50, 50, map[string]any{"name": "No. 3 School", "kind": "school", "weight": 3}),
	))
	return Config{Districts: d, Areas: a}
}

func summaryOf(t *testing.T, m *Model, scope auth.Scope) (map[string]Coverage, map[string]Coverage) {
	t.Helper()
	s := m.Summary(scope, "")
	ds, as := map[string]Coverage{}, map[string]Coverage{}
	for _, d := range s.Districts {
		ds[d.District] = d.Coverage
	}
	for _, a := range s.Areas {
		as[a.Name] = a.Coverage
	}
	return ds, as
}

// The north wedge (16 cells) crosses from West into East: its cells split
// by centre, 8 and 8 (columns i < 0 are West).
func TestDistrictsSplitWedgeByCellCentre(t *testing.T) {
	m := newModel(t, twoDistricts(t), newEnv(camAt("n", "East", 0, 0, 0, 90, 100)))
	ds, as := summaryOf(t, m, auth.Everything)
	west, east := ds["West"], ds["East"]
	if west.Cells != 800 || east.Cells != 800 || west.DesignedCells != 8 || east.DesignedCells != 8 {
		t.Fatalf("West %+v East %+v; want 800 cells each, 8 designed each", west, east)
	}
	if west.DesignedPct != 1 || west.CurrentPct != 1 || west.FragileCells != 8 {
		t.Errorf("West %+v", west)
	}
	// The wedge sees 6 of the school's 8 cells: (±12.5, 12.5) and
	// (±12.5, ±37.5 … 37.5).
	school := as["No. 3 School"]
	if school.Cells != 8 || school.DesignedCells != 6 || school.DesignedPct != 75 || school.WeightedDesignedPct != 75 {
		t.Errorf("school %+v", school)
	}
	// West weighs 800 + 4 school cells × (3 − 1) = 808; its designed
	// cells 8 + 3 of the school's × 2 = 14.
	if want := math.Round(10000*14.0/808) / 100; west.WeightedDesignedPct != want {
		t.Errorf("West weighted designed %v, want %v", west.WeightedDesignedPct, want)
	}
	s := m.Summary(auth.Everything, "")
	// The school names no district: the one holding the middle of its
	// box, (0, 25), is East's, whose west edge (x = 0) is inside it.
	if len(s.Areas) != 1 || s.Areas[0].District != "East" || s.Areas[0].Weight != 3 || s.Areas[0].Kind != "school" {
		t.Errorf("areas %+v", s.Areas)
	}
	ds, as = summaryOf(t, m, auth.Scope{Districts: []string{"West"}})
	if len(ds) != 1 || ds["West"].DesignedCells != 8 || len(as) != 0 {
		t.Errorf("West's view: %v %v", ds, as)
	}
	if s := m.Summary(auth.Scope{Sites: []string{"site-East"}}, ""); len(s.Districts) != 0 {
		t.Errorf("a scope of sites sees districts: %+v", s.Districts)
	}
	if s := m.Summary(auth.Everything, "East"); len(s.Districts) != 1 || s.Districts[0].District != "East" || len(s.Areas) != 1 {
		t.Errorf("filter East: %+v", s)
	}
}

// Two wedges from one corner, north and east, share the 3 cells of the
// diagonal; the other 26 have one camera each (k = 1, fragile).
func TestOverlapAndFragile(t *testing.T) {
	n, e := camAt("n", "East", 0, 0, 0, 90, 100), camAt("e", "East", 0, 0, 90, 90, 100)
	m := newModel(t, Config{}, newEnv(n, e))
	ds, _ := summaryOf(t, m, auth.Everything)
	east := ds["East"]
	if east.Cells != 29 || east.DesignedCells != 29 || east.CurrentCells != 29 || east.FragileCells != 26 || east.DesignedPct != 100 {
		t.Fatalf("East %+v; want 29 cells, 26 fragile", east)
	}
	// The east camera fails: its 13 own cells go dark, the diagonal
	// becomes fragile.
	e.Status = wire.StatusOffline
	m.Apply(fleet.Change{Kind: fleet.ChangeDevice, From: wire.StatusOnline, To: wire.StatusOffline, Device: &e})
	ds, _ = summaryOf(t, m, auth.Everything)
	if east := ds["East"]; east.CurrentCells != 16 || east.FragileCells != 16 || east.DesignedCells != 29 {
		t.Fatalf("after the east camera failed: %+v", east)
	}
	// Degraded still covers.
	e.Status = wire.StatusDegraded
	m.Apply(fleet.Change{Kind: fleet.ChangeDevice, From: wire.StatusOffline, To: wire.StatusDegraded, Device: &e})
	if ds, _ := summaryOf(t, m, auth.Everything); ds["East"].CurrentCells != 29 {
		t.Fatalf("a degraded camera does not cover: %+v", ds["East"])
	}
}

// Fleet changes move the model: an agent lost makes its cameras
// unreachable, an inventory adds, moves and removes cameras.
func TestModelFollowsFleetChanges(t *testing.T) {
	n, e := camAt("n", "East", 0, 0, 0, 90, 100), camAt("e", "East", 0, 0, 90, 90, 100)
	env := newEnv(n)
	m := newModel(t, Config{}, env)
	current := func() int64 { ds, _ := summaryOf(t, m, auth.Everything); return ds["East"].CurrentCells }
	designed := func() int64 { ds, _ := summaryOf(t, m, auth.Everything); return ds["East"].DesignedCells }

	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{e}})
	if designed() != 29 || current() != 29 {
		t.Fatalf("after adding the east camera: designed %d current %d", designed(), current())
	}
	lost := []fleet.Device{n, e}
	for i := range lost {
		lost[i].Status = wire.StatusUnreachable
	}
	m.Apply(fleet.Change{Kind: fleet.ChangeAgent, From: wire.StatusOnline, To: wire.StatusOffline, Affected: lost})
	if current() != 0 || designed() != 29 {
		t.Fatalf("agent lost: current %d designed %d", current(), designed())
	}
	m.Apply(fleet.Change{Kind: fleet.ChangeAgent, From: wire.StatusOffline, To: wire.StatusOnline, Affected: []fleet.Device{n, e}})
	if current() != 29 {
		t.Fatalf("agent back: current %d", current())
	}
	// The east camera turns north: the two wedges are the same 16 cells.
	turned := e
	turned.Camera = &wire.CameraInfo{Heading: 0, FOV: 90, Range: 100}
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{turned}})
	if ds, _ := summaryOf(t, m, auth.Everything); ds["East"].DesignedCells != 16 || ds["East"].FragileCells != 0 {
		t.Fatalf("after turning: %+v", ds["East"])
	}
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Removed: []string{"n"}})
	if ds, _ := summaryOf(t, m, auth.Everything); ds["East"].FragileCells != 16 {
		t.Fatalf("after removing one: %+v", ds["East"])
	}
	// A camera moved to another district takes its cells with it.
	moved := turned
	moved.District = "North"
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{moved}})
	ds, _ := summaryOf(t, m, auth.Everything)
	if _, ok := ds["East"]; ok || ds["North"].DesignedCells != 16 {
		t.Fatalf("after the district changed: %+v", ds)
	}
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Removed: []string{"e"}})
	if ds, _ := summaryOf(t, m, auth.Everything); len(ds) != 0 {
		t.Fatalf("cells left after every camera went: %+v", ds)
	}
	if v := env.metrics; v == nil || m.camerasGauge.Value() != 0 || m.cellsGauge.Value() != 0 {
		t.Errorf("gauges: cameras %v cells %v", m.camerasGauge.Value(), m.cellsGauge.Value())
	}
}

// Without districts file, a cell seen by cameras of two districts counts
// in both; a camera too far from the reference point is not laid, and one
// whose range is beyond the maximum is bounded; both are counted.
func TestWithoutDistrictsFile(t *testing.T) {
	a, b := camAt("a", "Old Town", 0, 0, 0, 90, 100), camAt("b", "高新区", 0, 0, 90, 90, 100)
	far := camAt("far", "Old Town", 400_000, 0, 0, 90, 100)
	long := camAt("long", "Old Town", -5000, -5000, 0, 10, 9000)
	env := newEnv(a, b, far, long)
	m := newModel(t, Config{}, env)
	ds, _ := summaryOf(t, m, auth.Everything)
	if ds["Old Town"].DesignedPct != 100 || ds["高新区"].Cells != 16 {
		t.Errorf("districts %+v", ds)
	}
	if c := cellsOf(m, "far"); len(c) != 0 {
		t.Errorf("a camera 400 km away has cells: %d", len(c))
	}
	if got := m.limited.With("far").Value(); got != 1 {
		t.Errorf("far counted %d times", got)
	}
	if got := m.limited.With("range").Value(); got != 1 {
		t.Errorf("long range counted %d times", got)
	}
	// 10° of 2 km: π·2000²·10/360 m² ≈ 560 cells.
	if n := len(cellsOf(m, "long")); n < 500 || n > 620 {
		t.Errorf("the long-range camera has %d cells", n)
	}
}

// Without a districts file a cell counts in the district of every camera
// designed to see it, and the map names it after the district whose camera
// was laid there first. The model counts a cell's cameras rather than list
// them; whatever order cameras come, move, change district and go in, it
// agrees with such a list.
func TestMixedCellDistricts(t *testing.T) {
	t.Run("from the start", func(t *testing.T) { testMixedCellDistricts(t, 0) })
	// Cameras are numbered in the order they were laid; that number may
	// wrap in a hub that runs for years.
	t.Run("numbers wrap", func(t *testing.T) { testMixedCellDistricts(t, math.MaxUint32-500) })
}

func testMixedCellDistricts(t *testing.T, firstSeq uint32) {
	m := newModel(t, Config{}, newEnv())
	m.laid = firstSeq
	rng := rand.New(rand.NewPCG(7, 8))
	type laid struct{ id, district string }
	var order []laid // the cameras that see the cell at (0, 0), in the order they were laid
	cam := func(id, district string) fleet.Device {
		// A full circle of 30 m sees the four cells around (0, 0); the
		// range changes a little at every move, which lays it again.
		return camAt(id, district, 0, 0, 0, 360, 30+rng.Float64())
	}
	box := Box{West: at(-10, -10).Lon, South: at(-10, -10).Lat, East: at(10, 10).Lon, North: at(10, 10).Lat}
	for step := range 3000 {
		district := fmt.Sprintf("D%d", rng.IntN(3))
		switch i := rng.IntN(max(1, len(order))); {
		case len(order) == 0 || rng.IntN(4) == 0:
			id := fmt.Sprintf("c%d", step)
			m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{cam(id, district)}})
			order = append(order, laid{id, district})
		case rng.IntN(3) == 0:
			m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Removed: []string{order[i].id}})
			order = slices.Delete(order, i, i+1)
		case rng.IntN(2) == 0:
			id := order[i].id
			m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{cam(id, district)}})
			order = append(slices.Delete(order, i, i+1), laid{id, district})
		default: // its status only: not laid again
			k, _ := m.byID.get(order[i].id)
			d := fleet.Device{ID: order[i].id, Kind: wire.KindCamera, District: order[i].district, Location: m.cams[k].loc,
				Camera: m.cams[k].info, Status: wire.StatusOffline}
			m.Apply(fleet.Change{Kind: fleet.ChangeDevice, Device: &d})
		}
		var want []string
		for _, c := range order {
			if !slices.Contains(want, c.district) {
				want = append(want, c.district)
			}
		}
		var got []string
		if ci, ok := m.cellAt.get(cellID(0, 0)); ok {
			for _, k := range m.districtsOf(&m.cells[ci], nil) {
				got = append(got, m.districtName(k))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: the cell counts in %v, want %v (cameras %v)", step, got, want, order)
		}
		if len(want) < 2 && len(m.mixed) > 0 {
			t.Fatalf("step %d: cells of one district kept as mixed: %v", step, m.mixed)
		}
		ds, _ := summaryOf(t, m, auth.Everything)
		for _, d := range want {
			if ds[d].Cells != 4 || ds[d].DesignedCells != 4 {
				t.Fatalf("step %d: district %s %+v, want its cameras' 4 cells", step, d, ds[d])
			}
		}
		if len(ds) != len(want) {
			t.Fatalf("step %d: districts %v, want %v", step, ds, want)
		}
		fc, err := m.Cells(auth.Everything, box, "", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fc.Features {
			if p := f.Properties.(CellProps); p.ID == "0,0" && (len(want) == 0 || p.District != want[0]) {
				t.Fatalf("step %d: the map names the cell after %q, want %v", step, p.District, want)
			}
		}
	}
	if firstSeq > 0 && m.laid >= firstSeq {
		t.Fatalf("the numbers did not wrap: %d", m.laid)
	}
}

// With no reference point, no files and no cameras, the grid waits for
// the first camera.
func TestGridWaitsForFirstCamera(t *testing.T) {
	env := newEnv()
	m, err := New(Config{}, env.deps())
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Summary(auth.Everything, ""); len(s.Districts) != 0 {
		t.Fatalf("summary of nothing: %+v", s)
	}
	c := camAt("n", "East", 0, 0, 0, 90, 100)
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, At: time.Now(), Affected: []fleet.Device{c}})
	if got := cellsOf(m, "n"); len(got) != 16 {
		t.Fatalf("first camera laid %d cells", len(got))
	}
}

// What a camera's outage costs: the cells only it saw, in hectares; a
// camera whose cells another working camera sees costs nothing.
func TestLostBy(t *testing.T) {
	e := newEnv(camAt("n", "East", 0, 0, 0, 90, 100), camAt("twin", "East", 0, 0, 0, 90, 100))
	m := newModel(t, twoDistricts(t), e)
	if ha, w := m.LostBy([]string{"n"}); ha != 0 || w != 0 {
		t.Errorf("both working: %v ha", ha)
	}
	off := e.fleet.devices[0]
	off.Status = wire.StatusOffline
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{off}})
	if ha, _ := m.LostBy([]string{"n"}); ha != 0 {
		t.Errorf("its twin still sees its cells: %v ha", ha)
	}
	off2 := e.fleet.devices[1]
	off2.Status = wire.StatusOffline
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{off2}})
	// 16 cells of 1/16 ha; 6 of them the school's, weight 3.
	if ha, w := m.LostBy([]string{"n", "twin", "unknown"}); ha != 1 || w != 1+6*2.0/16 {
		t.Errorf("both down: %v ha, %v weighted; want 1 and %v", ha, w, 1+6*2.0/16)
	}
}

// The model keeps a record of every camera and of every cell they see, so
// a word more in either is a megabyte more in a city: these sizes are
// what the bound of TestCameraMemory rests on.
func TestRecordSizes(t *testing.T) {
	if n := unsafe.Sizeof(camera{}); n > 64 {
		t.Errorf("camera is %d bytes, more than 64", n)
	}
	if n := unsafe.Sizeof(cell{}); n > 24 {
		t.Errorf("cell is %d bytes, more than 24", n)
	}
}
