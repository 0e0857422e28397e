package coverage

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// caller is who calls a route in these tests.
type caller struct {
	scope auth.Scope
	perms []auth.Permission
}

var (
	analyst  = caller{auth.Everything, []auth.Permission{auth.StatusRead, auth.ReportRead, auth.ReportExport}}
	westOnly = caller{auth.Scope{Districts: []string{"West"}}, []auth.Permission{auth.StatusRead, auth.ReportRead}}
)

// call serves one request through the model's routes as c, checking the
// route's permission is one c holds.
func call(t *testing.T, m *Model, c caller, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	path, _, _ := strings.Cut(target, "?")
	for _, rt := range m.Routes() {
		if rt.Path != path || rt.Method != method {
			continue
		}
		p := &auth.Principal{Name: "ana", Perms: auth.Set{}, Scope: c.scope}
		for _, perm := range c.perms {
			p.Perms[perm] = struct{}{}
		}
		if !p.Can(rt.Perm) {
			t.Fatalf("%s %s needs %s", method, path, rt.Perm)
		}
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		rt.Handler.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		return w
	}
	t.Fatalf("no route %s %s", method, path)
	return nil
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	return v
}

type cellsAnswer struct {
	Type     string `json:"type"`
	Features []struct {
		Geometry struct {
			Type        string         `json:"type"`
			Coordinates [][][2]float64 `json:"coordinates"`
		} `json:"geometry"`
		Properties CellProps `json:"properties"`
	} `json:"features"`
}

func (c cellsAnswer) count() map[string]int {
	n := map[string]int{}
	for _, f := range c.Features {
		n[f.Properties.State]++
	}
	return n
}

// boxAround is a bbox parameter x0..x1, y0..y1 metres around ref.
func boxAround(x0, y0, x1, y1 float64) string {
	sw, ne := at(x0, y0), at(x1, y1)
	return strings.Join([]string{ftoa(sw.Lon), ftoa(sw.Lat), ftoa(ne.Lon), ftoa(ne.Lat)}, ",")
}

func ftoa(v float64) string { b, _ := json.Marshal(v); return string(b) }

// Cells in a box carry the same counts as the summary: the north wedge's
// 16 cells, 8 in each district; the east camera overlaps it, making some
// covered twice; an outage turns exactly the cells only it saw to lost.
func TestCellsFollowTheModel(t *testing.T) {
	e := newEnv(camAt("n", "East", 0, 0, 0, 90, 100), camAt("e", "East", 60, 60, 270, 90, 100))
	m := newModel(t, twoDistricts(t), e)
	box := "/api/coverage/cells?bbox=" + boxAround(-120, -20, 120, 120)

	got := decode[cellsAnswer](t, call(t, m, analyst, "GET", box, ""))
	n := got.count()
	sum := m.Summary(auth.Everything, "")
	var designed, fragile, current int64
	for _, d := range sum.Districts {
		designed += d.DesignedCells
		fragile += d.FragileCells
		current += d.CurrentCells
	}
	if got.Type != "FeatureCollection" || int64(n[CellCovered]+n[CellFragile]) != current || int64(n[CellFragile]) != fragile ||
		int64(n[CellCovered]+n[CellFragile]+n[CellLost]) != designed || n[CellLost] != 0 || n[CellGap] == 0 {
		t.Fatalf("cells %v; summary designed %d current %d fragile %d", n, designed, current, fragile)
	}
	if f := got.Features[0]; f.Geometry.Type != "Polygon" || len(f.Geometry.Coordinates[0]) != 5 || f.Properties.ID == "" {
		t.Errorf("first feature %+v", f)
	}

	// "e" goes offline: the cells only it saw are lost; those it shared
	// with "n" turn fragile.
	off := e.fleet.devices[1]
	off.Status = wire.StatusOffline
	m.Apply(fleet.Change{Kind: fleet.ChangeInventory, Affected: []fleet.Device{off}})
	after := decode[cellsAnswer](t, call(t, m, analyst, "GET", box+"&state=lost", ""))
	var currentAfter int64
	for _, d := range m.Summary(auth.Everything, "").Districts {
		currentAfter += d.CurrentCells
	}
	if lost := int64(len(after.Features)); lost == 0 || lost != current-currentAfter {
		t.Errorf("%d cells lost after e's outage; the summary's current cells went from %d to %d", lost, current, currentAfter)
	}
	for _, f := range after.Features {
		if p := f.Properties; p.State != CellLost || p.Working != 0 || p.Cameras != 1 || p.District == "" {
			t.Errorf("lost cell %+v", p)
		}
	}

	// West only sees West's cells.
	west := decode[cellsAnswer](t, call(t, m, westOnly, "GET", box, ""))
	for _, f := range west.Features {
		if f.Properties.District != "West" {
			t.Fatalf("West's operator sees %+v", f.Properties)
		}
	}
	if len(west.Features) == 0 || len(west.Features) >= len(got.Features) {
		t.Errorf("West sees %d of %d cells", len(west.Features), len(got.Features))
	}
}

// What the map cannot answer is refused with the reason, never ignored.
func TestRoutesRefuseBadParameters(t *testing.T) {
	m := newModel(t, twoDistricts(t), newEnv(camAt("n", "East", 0, 0, 0, 90, 100)))
	small := boxAround(-50, -50, 50, 50)
	for _, target := range []string{
		"/api/coverage?since=yesterday",
		"/api/coverage?district=Atlantis",
		"/api/coverage/cells",
		"/api/coverage/cells?bbox=1,2,3",
		"/api/coverage/cells?bbox=114.3,30.6,114.2,30.7",
		"/api/coverage/cells?bbox=" + small + "&state=blue",
		"/api/coverage/cells?bbox=" + boxAround(-20000, -20000, 20000, 20000), // zoom in
		"/api/map/wedges?bbox=a,b,c,d",
		"/api/map/config?x=1",
		"/api/coverage/nearest?lat=30.59",
		"/api/coverage/nearest?device=n&lat=30.59&lon=114.3",
		"/api/coverage/nearest?lat=30.59&lon=114.3&n=999",
		"/api/coverage/ledger?format=csv",
		"/api/coverage/ledger?top=0",
		"/api/coverage/ledger?from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z",
	} {
		w := call(t, m, analyst, "GET", target, "")
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "error") {
			t.Errorf("GET %s: %d %s", target, w.Code, w.Body)
		}
	}
	for _, body := range []string{
		`{}`, `{"cameras": []}`, `{"camera": [{"lat": 30.59}]}`,
		`{"cameras": [{"lat": 30.59, "lon": 114.3, "heading": 0, "fov": 0, "range_m": 50}]}`,
		`{"cameras": [{"lat": 30.59, "lon": 114.3, "heading": 0, "fov": 90, "range_m": 5000}]}`,
		`{"cameras": [{"lat": 95, "lon": 114.3, "heading": 0, "fov": 90, "range_m": 50}]}`,
	} {
		if w := call(t, m, analyst, "POST", "/api/coverage/whatif", body); w.Code != http.StatusBadRequest {
			t.Errorf("POST what-if %s: %d %s", body, w.Code, w.Body)
		}
	}
	if w := call(t, m, westOnly, "GET", "/api/coverage/ledger?format=csv&table=cameras", ""); w.Code != http.StatusForbidden {
		t.Errorf("a download without report.export: %d", w.Code)
	}
	if w := call(t, m, analyst, "GET", "/api/map/basemap", ""); w.Code != http.StatusNotFound {
		t.Errorf("basemap not configured: %d", w.Code)
	}
}

type whatIfAnswer struct {
	AddedCells int64            `json:"added_cells"`
	AddedHa    float64          `json:"added_ha"`
	Districts  []DistrictChange `json:"districts"`
	Areas      []AreaChange     `json:"areas"`
	Cells      struct {
		Features []struct {
			Properties PlannedCellProps `json:"properties"`
		} `json:"features"`
	} `json:"cells"`
}

// A planned camera where nothing looks adds its wedge's cells; one on top
// of a working camera adds nothing but makes its cells covered twice;
// neither changes the coverage now.
func TestWhatIf(t *testing.T) {
	m := newModel(t, twoDistricts(t), newEnv(camAt("n", "East", 0, 0, 0, 90, 100)))
	before := m.Summary(auth.Everything, "")
	plan := func(x, y, heading float64) string {
		l := at(x, y)
		b, _ := json.Marshal(map[string]any{"cameras": []Planned{{Lat: l.Lat, Lon: l.Lon, Heading: heading, FOV: 90, RangeM: 100}}})
		return string(b)
	}

	// At (300, 0) facing east: the wedge of "n" turned a quarter, 16
	// cells, all in East, none seen now.
	r := decode[whatIfAnswer](t, call(t, m, analyst, "POST", "/api/coverage/whatif", plan(300, 0, 90)))
	if r.AddedCells != 16 || r.AddedHa != 1 || len(r.Districts) != 1 || r.Districts[0].District != "East" {
		t.Fatalf("what-if east: %+v", r)
	}
	if d := r.Districts[0]; d.After.CurrentCells != d.Before.CurrentCells+16 || d.After.DesignedCells != d.Before.DesignedCells+16 ||
		d.After.FragileCells != d.Before.FragileCells+16 || d.After.CurrentPct <= d.Before.CurrentPct {
		t.Errorf("East before %+v after %+v", d.Before, d.After)
	}
	if len(r.Cells.Features) != 16 || !r.Cells.Features[0].Properties.Added || r.Cells.Features[0].Properties.State != CellGap {
		t.Errorf("what-if cells %+v", r.Cells.Features)
	}

	// On top of "n": nothing added; the 16 fragile cells become covered,
	// and the school's 6 with them.
	r = decode[whatIfAnswer](t, call(t, m, analyst, "POST", "/api/coverage/whatif", plan(0, 0, 0)))
	if r.AddedCells != 0 || len(r.Districts) != 2 {
		t.Fatalf("what-if on n: %+v", r)
	}
	for _, d := range r.Districts {
		if d.After.CurrentCells != d.Before.CurrentCells || d.After.FragileCells != d.Before.FragileCells-8 {
			t.Errorf("%s before %+v after %+v", d.District, d.Before, d.After)
		}
	}
	if len(r.Areas) != 1 || r.Areas[0].After.FragileCells != r.Areas[0].Before.FragileCells-6 {
		t.Errorf("school %+v", r.Areas)
	}

	// West's analyst hears only of West.
	r = decode[whatIfAnswer](t, call(t, m, westOnly, "POST", "/api/coverage/whatif", plan(0, 0, 0)))
	if len(r.Districts) != 1 || r.Districts[0].District != "West" {
		t.Errorf("West's what-if: %+v", r.Districts)
	}
	if after := m.Summary(auth.Everything, ""); !equalJSON(t, before, after) {
		t.Errorf("a what-if changed the coverage: %+v → %+v", before, after)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// The nearest cameras come from the same wedge test as the grid, for a
// sensor by id or a point, within the caller's scope.
func TestNearestRoute(t *testing.T) {
	sensor := fleet.Device{ID: "door", Kind: wire.KindSensor, District: "West", Site: "site-West", Location: at(-10, 50), Status: wire.StatusOnline}
	e := newEnv(camAt("n", "East", 0, 0, 0, 90, 100), camAt("w", "West", -200, 0, 90, 60, 100), sensor)
	m := newModel(t, twoDistricts(t), e)
	type answer struct {
		Cameras []Camera `json:"cameras"`
	}
	got := decode[answer](t, call(t, m, analyst, "GET", "/api/coverage/nearest?device=door", ""))
	if len(got.Cameras) != 1 || got.Cameras[0].ID != "n" || !got.Cameras[0].Covers {
		t.Errorf("cameras seeing the door: %+v", got.Cameras)
	}
	// West's operator may not see "n": the nearest of theirs, not covering.
	got = decode[answer](t, call(t, m, westOnly, "GET", "/api/coverage/nearest?device=door", ""))
	if len(got.Cameras) != 1 || got.Cameras[0].ID != "w" || got.Cameras[0].Covers {
		t.Errorf("West's cameras for the door: %+v", got.Cameras)
	}
	if w := call(t, m, westOnly, "GET", "/api/coverage/nearest?device=n", ""); w.Code != http.StatusNotFound {
		t.Errorf("a device out of scope: %d", w.Code)
	}
}

// The map's layers, configuration and basemap; the basemap answers the
// range requests PMTiles readers make.
func TestMapFiles(t *testing.T) {
	cfg := twoDistricts(t)
	cfg.Basemap = filepath.Join(t.TempDir(), "city.pmtiles")
	tiles := append([]byte("PMTiles\x03"), bytes.Repeat([]byte{7}, 1000)...)
	if err := os.WriteFile(cfg.Basemap, tiles, 0o600); err != nil {
		t.Fatal(err)
	}
	m := newModel(t, cfg, newEnv(camAt("n", "East", 0, 0, 0, 90, 100)))

	c := decode[MapConfig](t, call(t, m, analyst, "GET", "/api/map/config", ""))
	if !c.Basemap || !c.Layers.Districts || !c.Layers.Areas || c.Layers.Buildings || c.Bounds == nil || c.CellSizeM != 25 {
		t.Errorf("config %+v", c)
	}
	type layer struct {
		Features []struct {
			Geometry   Geometry       `json:"geometry"`
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	if l := decode[layer](t, call(t, m, analyst, "GET", "/api/map/districts", "")); len(l.Features) != 2 || l.Features[0].Properties["name"] != "West" || l.Features[0].Geometry.Type != "MultiPolygon" {
		t.Errorf("districts %+v", l)
	}
	if l := decode[layer](t, call(t, m, westOnly, "GET", "/api/map/districts", "")); len(l.Features) != 1 {
		t.Errorf("West's districts %+v", l)
	}
	if l := decode[layer](t, call(t, m, analyst, "GET", "/api/map/areas", "")); len(l.Features) != 1 || l.Features[0].Properties["kind"] != "school" || l.Features[0].Properties["weight"] != 3.0 {
		t.Errorf("areas %+v", l)
	}
	if w := call(t, m, analyst, "GET", "/api/map/buildings", ""); w.Code != http.StatusNotFound {
		t.Errorf("buildings not configured: %d", w.Code)
	}

	w := call(t, m, analyst, "GET", "/api/map/basemap", "", "Range", "bytes=0-7")
	if w.Code != http.StatusPartialContent || w.Body.String() != "PMTiles\x03" || w.Header().Get("Content-Range") != "bytes 0-7/1008" {
		t.Errorf("range request: %d %q %q", w.Code, w.Body, w.Header().Get("Content-Range"))
	}

	type wedges struct {
		Features []struct {
			Properties WedgeProps `json:"properties"`
		} `json:"features"`
	}
	in := decode[wedges](t, call(t, m, analyst, "GET", "/api/map/wedges?bbox="+boxAround(-10, 90, 10, 110), ""))
	out := decode[wedges](t, call(t, m, analyst, "GET", "/api/map/wedges?bbox="+boxAround(-10, -300, 10, -200), ""))
	// The name is the fleet's.
	if len(in.Features) != 1 || in.Features[0].Properties.ID != "n" || in.Features[0].Properties.Name != "camera n" ||
		in.Features[0].Properties.RangeM != 100 || len(out.Features) != 0 {
		t.Errorf("wedges reaching the box: %+v; elsewhere: %+v", in, out)
	}
}

// The ledger downloads as CSV, recorded in the audit log.
func TestLedgerCSV(t *testing.T) {
	e := newEnv(camAt("n", "East", 0, 0, 0, 90, 100))
	m := newModel(t, twoDistricts(t), e)
	w := call(t, m, analyst, "GET", "/api/coverage/ledger?format=csv&table=districts&from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z", "")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/csv") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(w.Body.String(), "\uFEFF"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "district" || rows[1][0] != "East" || rows[2][0] != "West" {
		t.Errorf("rows %q", rows)
	}
	// West: 800 cells, 8 designed, so 792 cells never covered for 24 h;
	// 25 m cells are 1/16 ha.
	if rows[2][4] != "1188" {
		t.Errorf("West never covered %s ha·h, want 792 × 24 / 16 = 1188", rows[2][4])
	}
	if len(e.audit.records) != 1 || !strings.Contains(e.audit.records[0].Detail, "coverage ledger (districts)") {
		t.Errorf("audit %+v", e.audit.records)
	}
}
