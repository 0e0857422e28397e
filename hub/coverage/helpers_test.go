package coverage

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// ref is the grid's origin in tests: positions are given in metres east
// and north of it, so cell centres fall at known places.
var ref = wire.Location{Lat: 30.59, Lon: 114.30}

var refProj = newProjection(ref)

// at is the position x metres east and y metres north of ref.
func at(x, y float64) wire.Location { return refProj.toLoc([2]float64{x, y}) }

func camAt(id, district string, x, y, heading, fov, rng float64) fleet.Device {
	return fleet.Device{ID: id, Name: "camera " + id, Kind: wire.KindCamera, Agent: "agent-1", Site: "site-" + district,
		District: district, Location: at(x, y), Status: wire.StatusOnline,
		Camera: &wire.CameraInfo{Heading: heading, FOV: fov, Range: rng}}
}

// fakeFleet serves a fixed device list.
type fakeFleet struct{ devices []fleet.Device }

func (f *fakeFleet) DeviceNames(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		for _, d := range f.devices {
			if d.ID == id {
				out[i] = d.Name
			}
		}
	}
	return out
}

func (f *fakeFleet) DevicesWhere(keep func(district, site string) bool) []fleet.Device {
	var out []fleet.Device
	for _, d := range f.devices {
		if keep == nil || keep(d.District, d.Site) {
			out = append(out, d)
		}
	}
	return out
}

// fakeHistory serves fixed timelines and remembers what it was asked.
type fakeHistory struct {
	spans map[string][]fleet.StatusSpan
	err   error
	asked []string
}

func (h *fakeHistory) Timelines(_ context.Context, from, to time.Time, devices []string) (map[string][]fleet.StatusSpan, error) {
	h.asked = slices.Clone(devices)
	if h.err != nil {
		return nil, h.err
	}
	out := map[string][]fleet.StatusSpan{}
	for _, d := range devices {
		if s, ok := h.spans[d]; ok {
			out[d] = s
		}
	}
	return out, nil
}

// fakeAuditor records exports; fail makes it refuse.
type fakeAuditor struct {
	mu      sync.Mutex
	records []audit.Record
	fail    bool
}

func (a *fakeAuditor) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return audit.Record{}, io.ErrClosedPipe
	}
	a.records = append(a.records, r)
	return r, nil
}

type testEnv struct {
	fleet   *fakeFleet
	history *fakeHistory
	audit   *fakeAuditor
	now     time.Time
	metrics *metrics.Registry
}

func newEnv(devices ...fleet.Device) *testEnv {
	return &testEnv{
		fleet: &fakeFleet{devices: devices}, history: &fakeHistory{spans: map[string][]fleet.StatusSpan{}},
		audit: &fakeAuditor{}, now: time.Date(2025, 3, 2, 1, 0, 0, 0, time.UTC), metrics: metrics.NewRegistry(),
	}
}

func (e *testEnv) deps() Deps {
	return Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: e.metrics, Fleet: e.fleet,
		History: e.history, Audit: e.audit, Now: func() time.Time { return e.now }}
}

// newModel builds a model around ref from the env's devices.
func newModel(t testing.TB, cfg Config, e *testEnv) *Model {
	t.Helper()
	if cfg.Reference == nil {
		r := ref
		cfg.Reference = &r
	}
	m, err := New(cfg, e.deps())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rect is a closed ring of the rectangle [x0, x1] × [y0, y1] metres
// around ref, as GeoJSON [lon, lat] positions.
func rect(x0, y0, x1, y1 float64) [][]float64 {
	var ring [][]float64
	for _, p := range [][2]float64{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}} {
		l := at(p[0], p[1])
		ring = append(ring, []float64{l.Lon, l.Lat})
	}
	return ring
}

// collection is a FeatureCollection of rectangles with properties.
func collection(features ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"type": "FeatureCollection", "features": features})
	if err != nil {
		panic(err)
	}
	return b
}

func rectFeature(x0, y0, x1, y1 float64, props map[string]any) map[string]any {
	return map[string]any{"type": "Feature", "properties": props,
		"geometry": map[string]any{"type": "Polygon", "coordinates": [][][]float64{rect(x0, y0, x1, y1)}}}
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cellsOf lists the cells a device's wedge covers on the model's grid.
func cellsOf(m *Model, id string) []CellID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []CellID
	k, ok := m.byID.get(id)
	if !ok {
		return nil
	}
	for _, ci := range m.cellsOf(&m.cams[k]) {
		out = append(out, m.cells[ci].id)
	}
	slices.Sort(out)
	return out
}

func ids(ij ...[2]int32) []CellID {
	var out []CellID
	for _, p := range ij {
		out = append(out, cellID(p[0], p[1]))
	}
	slices.Sort(out)
	return out
}
