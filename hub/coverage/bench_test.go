package coverage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// benchCity is 100,000 cameras over 20 × 20 km in 16 districts of 5 km,
// with 200 areas of interest of 100 m: ranges 30–150 m, fields of view
// 50–110°, headings anywhere.
const benchCameras = 100_000

func benchCity(b testing.TB) (*testEnv, Config) { return cityOf(b, benchCameras) }

// cityOf is benchCity with n cameras.
func cityOf(b testing.TB, n int) (*testEnv, Config) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var districts, areas []map[string]any
	name := func(x, y float64) string { return fmt.Sprintf("D%d%d", int((x+10_000)/5000), int((y+10_000)/5000)) }
	for i := range 4 {
		for j := range 4 {
			x, y := -10_000+5000*float64(i), -10_000+5000*float64(j)
			districts = append(districts, rectFeature(x, y, x+5000, y+5000, map[string]any{"name": name(x, y)}))
		}
	}
	for k := range 200 {
		x, y := rng.Float64()*19_800-9900, rng.Float64()*19_800-9900
		areas = append(areas, rectFeature(x, y, x+100, y+100, map[string]any{"name": fmt.Sprintf("school %d", k), "kind": "school", "weight": 3}))
	}
	cfg := Config{Districts: writeFile(b, "districts.geojson", collection(districts...)), Areas: writeFile(b, "areas.geojson", collection(areas...))}
	devices := make([]fleet.Device, n)
	for k := range devices {
		x, y := rng.Float64()*20_000-10_000, rng.Float64()*20_000-10_000
		d := name(x, y)
		devices[k] = camAt(fmt.Sprintf("cam-%06d", k), d, x, y, rng.Float64()*360, 50+rng.Float64()*60, 30+rng.Float64()*120)
		devices[k].Site = fmt.Sprintf("site-%d", k/50)
	}
	return newEnv(devices...), cfg
}

func BenchmarkRecompute100k(b *testing.B) {
	env, cfg := benchCity(b)
	b.ResetTimer()
	for b.Loop() {
		env.metrics = metrics.NewRegistry() // a model registers its metrics once per registry
		newModel(b, cfg, env)
	}
}

// BenchmarkCameraMemory100k measures the live heap the model keeps per
// camera of benchCity, its grid and the cells the cameras see included.
func BenchmarkCameraMemory100k(b *testing.B) {
	env, cfg := benchCity(b)
	var heap float64
	for b.Loop() {
		env.metrics = metrics.NewRegistry()
		heap += modelHeap(b, cfg, env)
	}
	b.ReportMetric(heap/float64(b.N), "heap-B/camera")
}

// The model's heap per camera, in a city whose cameras see ten cells
// each, is as much as the fleet keeps for the camera (issue 10: the hub's
// memory against Telegraf's). The bound is half as much again as the
// model took for this city of 20,000 cameras when it was set (461 bytes,
// where it had taken 1,119); a change that needs more should say why and
// move it.
func TestCameraMemory(t *testing.T) {
	const maxHeap = 700
	env, cfg := cityOf(t, 20_000)
	heap := modelHeap(t, cfg, env)
	t.Logf("%.0f bytes a camera", heap)
	if heap > maxHeap {
		t.Errorf("the model keeps %.0f bytes a camera, more than %d: see BenchmarkCameraMemory100k", heap, maxHeap)
	}
}

// modelHeap builds a model of env's cameras and returns the live heap it
// added per camera.
func modelHeap(t testing.TB, cfg Config, env *testEnv) float64 {
	before := testenv.LiveHeap()
	m := newModel(t, cfg, env)
	heap := float64(testenv.LiveHeap()-before) / float64(len(env.fleet.devices))
	runtime.KeepAlive(m)
	return heap
}

func BenchmarkApplyOfflineOnline100k(b *testing.B) {
	env, cfg := benchCity(b)
	m := newModel(b, cfg, env)
	d := env.fleet.devices[benchCameras/2]
	off, on := d, d
	off.Status = wire.StatusOffline
	b.ResetTimer()
	for b.Loop() {
		m.Apply(fleet.Change{Kind: fleet.ChangeDevice, From: wire.StatusOnline, To: wire.StatusOffline, Device: &off})
		m.Apply(fleet.Change{Kind: fleet.ChangeDevice, From: wire.StatusOffline, To: wire.StatusOnline, Device: &on})
	}
}

func BenchmarkSummary100k(b *testing.B) {
	env, cfg := benchCity(b)
	m := newModel(b, cfg, env)
	b.ResetTimer()
	for b.Loop() {
		m.Summary(auth.Everything, "")
	}
}

// BenchmarkCellsStreet100k is the map's cells request at street level
// (zoom 15, a 1400 × 900 px window: about 4 × 2.5 km) in the middle of the
// city of 100,000 cameras.
func BenchmarkCellsStreet100k(b *testing.B) {
	env, cfg := benchCity(b)
	m := newModel(b, cfg, env)
	sw, ne := at(-2000, -1250), at(2000, 1250)
	box := Box{West: sw.Lon, South: sw.Lat, East: ne.Lon, North: ne.Lat}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Cells(auth.Everything, box, "", ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLedger7Days100k: a week of 100,000 cameras, each with 1 to 4
// outages of 10 minutes to 6 hours.
func BenchmarkLedger7Days100k(b *testing.B) {
	env, cfg := benchCity(b)
	from := env.now.Add(-7 * 24 * time.Hour)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, d := range env.fleet.devices {
		var spans []fleet.StatusSpan
		t := from
		for range 1 + rng.IntN(4) {
			down := t.Add(time.Duration(rng.Int64N(int64(36 * time.Hour))))
			up := down.Add(10*time.Minute + time.Duration(rng.Int64N(int64(6*time.Hour))))
			spans = append(spans, fleet.StatusSpan{From: t, To: down, Status: wire.StatusOnline},
				fleet.StatusSpan{From: down, To: up, Status: wire.StatusOffline})
			t = up
		}
		spans = append(spans, fleet.StatusSpan{From: t, To: env.now, Status: wire.StatusOnline})
		env.history.spans[d.ID] = spans
	}
	m := newModel(b, cfg, env)
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Ledger(context.Background(), LedgerQuery{From: from, To: env.now, Scope: auth.Everything}); err != nil {
			b.Fatal(err)
		}
	}
}
