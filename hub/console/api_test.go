package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// do sends one request through the router the server's routes are in, as
// an admin unless header says who (an empty Authorization: anonymous).
func do(t testing.TB, s *Server, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("Authorization", "Bearer admin")
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	s.router.Handler().ServeHTTP(rec, req)
	return rec
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("response differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// transcript renders a JSON response for a golden file: the status line,
// then the body indented.
func transcript(t *testing.T, rec *httptest.ResponseRecorder) []byte {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body bytes.Buffer
	if err := json.Indent(&body, rec.Body.Bytes(), "", "  "); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, rec.Body.Bytes())
	}
	return fmt.Appendf(nil, "HTTP %d\n%s", rec.Code, body.Bytes())
}

func TestAPIGolden(t *testing.T) {
	history := fakeHistory(func(_ context.Context, device string, _ time.Time) (metricstore.History, error) {
		if device == "cam-market" {
			return metricstore.History{}, errors.New("influxdb: connection refused")
		}
		return metricstore.History{
			Device: device, Source: metricstore.SourceInfluxDB,
			Samples: []metricstore.Point{{At: t0.Add(-time.Minute), Status: wire.StatusOnline,
				Metrics: map[string]float64{wire.MetricFPS: 25}}},
			Transitions: []metricstore.Transition{{At: t0.Add(-time.Hour), From: wire.StatusOffline, To: wire.StatusOnline,
				Cause: metricstore.CauseDevice}},
		}, nil
	})
	deps := testDeps()
	deps.History = history
	deps.Health = func() HealthReport {
		return HealthReport{"mqtt": {Status: HealthOK, Since: t0}}
	}
	s := mustNew(t, Config{}, deps)

	for _, tc := range []struct {
		name, method, target string
		code                 int
	}{
		{"devices", "GET", "/api/devices", 200},
		{"devices_district_statuses", "GET", "/api/devices?district=Xicheng&status=offline&status=degraded", 200},
		{"devices_kind_search_page", "GET", "/api/devices?kind=camera&q=GATE&limit=1&offset=1", 200},
		{"devices_agent_site", "GET", "/api/devices?agent=agent-east&site=depot", 200},
		{"devices_empty_values_ignored", "GET", "/api/devices?district=&status=&q=market", 200},
		{"devices_offset_past_end", "GET", "/api/devices?offset=99", 200},
		{"devices_bad_status", "GET", "/api/devices?status=broken", 400},
		{"devices_bad_kind", "GET", "/api/devices?kind=drone", 400},
		{"devices_unknown_param", "GET", "/api/devices?state=offline", 400},
		{"devices_bad_limit", "GET", "/api/devices?limit=-1", 400},
		{"devices_zero_limit", "GET", "/api/devices?limit=0", 400},
		{"devices_two_limits", "GET", "/api/devices?limit=1&limit=2", 400},
		{"devices_bad_agent", "GET", "/api/devices?agent=a%2Fb", 400},
		{"devices_malformed_query", "GET", "/api/devices?status=%zz", 400},
		{"devices_after", "GET", "/api/devices?after=cam-gate-1&limit=2", 200},
		{"devices_after_last_page", "GET", "/api/devices?after=cam-gate-2&kind=camera&limit=2", 200},
		{"devices_after_and_offset", "GET", "/api/devices?after=cam-gate-1&offset=1&limit=2", 400},
		{"devices_bad_after", "GET", "/api/devices?after=..%2Fx", 400},
		{"device", "GET", "/api/devices/cam-gate-1?since=2h", 200},
		{"device_history_error", "GET", "/api/devices/cam-market", 200},
		{"device_unknown", "GET", "/api/devices/nope", 404},
		{"device_bad_since", "GET", "/api/devices/cam-gate-1?since=yesterday", 400},
		{"device_since_too_far", "GET", "/api/devices/cam-gate-1?since=1000h", 400},
		{"device_unknown_param", "GET", "/api/devices/cam-gate-1?window=1h", 400},
		{"agents", "GET", "/api/agents", 200},
		{"agents_online", "GET", "/api/agents?status=online", 200},
		{"agents_degraded_is_not_an_agent_status", "GET", "/api/agents?status=degraded", 400},
		{"agents_kind_is_not_an_agent_param", "GET", "/api/agents?kind=camera", 400},
		{"agent", "GET", "/api/agents/agent-east", 200},
		{"agent_unknown", "GET", "/api/agents/nope", 404},
		{"summary", "GET", "/api/summary", 200},
		{"healthz", "GET", "/healthz", 200},
		{"api_unknown", "GET", "/api/cameras", 404},
		{"api_devices_trailing_slash", "GET", "/api/devices/", 404},
		{"devices_post", "POST", "/api/devices", 405},
		{"device_delete", "DELETE", "/api/devices/cam-gate-1", 405},
		{"summary_put", "PUT", "/api/summary", 405},
		{"events_not_websocket", "GET", "/api/events", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, s, tc.method, tc.target, nil)
			if rec.Code != tc.code {
				t.Errorf("%s %s = %d, want %d: %s", tc.method, tc.target, rec.Code, tc.code, rec.Body.Bytes())
			}
			if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("405 without Allow: GET, HEAD")
			}
			if rec.Code < 300 && rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", rec.Header().Get("Cache-Control"))
			}
			golden(t, tc.name, transcript(t, rec))
		})
	}
}

func TestDeviceHistorySince(t *testing.T) {
	got := make(chan time.Time, 1)
	deps := testDeps()
	deps.History = fakeHistory(func(ctx context.Context, _ string, since time.Time) (metricstore.History, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("history query has no deadline")
		}
		got <- since
		return metricstore.History{}, nil
	})
	s := mustNew(t, Config{}, deps)
	abs := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		query string
		want  func(now time.Time) time.Time
	}{
		{"", func(now time.Time) time.Time { return now.Add(-time.Hour) }},
		{"?since=90m", func(now time.Time) time.Time { return now.Add(-90 * time.Minute) }},
		{"?since=" + abs.Format(time.RFC3339), func(time.Time) time.Time { return abs }},
	} {
		before := time.Now()
		rec := do(t, s, "GET", "/api/devices/cam-gate-1"+tc.query, nil)
		after := time.Now()
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", tc.query, rec.Code, rec.Body)
		}
		since := <-got
		if lo, hi := tc.want(before), tc.want(after); since.Before(lo) || since.After(hi) {
			t.Errorf("%q: since = %v, want between %v and %v", tc.query, since, lo, hi)
		}
	}
	old := time.Now().Add(-maxHistory - time.Hour).Format(time.RFC3339)
	if rec := do(t, s, "GET", "/api/devices/cam-gate-1?since="+old, nil); rec.Code != 400 {
		t.Errorf("an absolute since beyond the limit = %d, want 400", rec.Code)
	}
}

func TestWithoutHistoryReader(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	rec := do(t, s, "GET", "/api/devices/cam-gate-1", nil)
	var got map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if _, ok := got["history"]; ok {
		t.Errorf("history present without a reader: %s", rec.Body)
	}
	if _, ok := got["device"]; !ok {
		t.Errorf("no device: %s", rec.Body)
	}
}

func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name   string
		report HealthReport
		code   int
		status HealthStatus
	}{
		{"nil report", nil, 200, HealthOK},
		{"all ok", HealthReport{"mqtt": {Status: HealthOK}, "influxdb": {Status: HealthOK}}, 200, HealthOK},
		{"degraded", HealthReport{"mqtt": {Status: HealthOK}, "influxdb": {Status: HealthDegraded, Reason: "dropping points"}}, 200, HealthDegraded},
		{"failing", HealthReport{"mqtt": {Status: HealthFailing, Reason: "connection refused"}, "influxdb": {Status: HealthDegraded}}, 503, HealthFailing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deps := testDeps()
			deps.Health = func() HealthReport { return tc.report }
			rec := do(t, mustNew(t, Config{}, deps), "GET", "/healthz", nil)
			var got Health
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if rec.Code != tc.code || got.Status != tc.status || len(got.Components) != len(tc.report) {
				t.Errorf("= %d %s, want %d with status %q and %d components", rec.Code, rec.Body, tc.code, tc.status, len(tc.report))
			}
		})
	}
}

func TestLargeFleetPaging(t *testing.T) {
	// Pages over a fleet the API must sort itself come out in id order,
	// without gaps or repeats.
	var devices []fleet.Device
	for i := range 2500 {
		devices = append(devices, fleet.Device{ID: fmt.Sprintf("d%05d", (i*7919)%2500), Kind: wire.KindCamera,
			District: "d", Status: wire.StatusOnline})
	}
	deps := testDeps()
	deps.Fleet = staticFleet(devices, nil)
	s := mustNew(t, Config{}, deps)
	var seen []string
	for offset := 0; ; offset += 1000 {
		rec := do(t, s, "GET", fmt.Sprintf("/api/devices?limit=1000&offset=%d", offset), nil)
		var page DeviceList
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != 200 {
			t.Fatalf("%d %v", rec.Code, err)
		}
		if page.Total != 2500 {
			t.Fatalf("total = %d", page.Total)
		}
		if len(page.Devices) == 0 {
			break
		}
		for _, d := range page.Devices {
			seen = append(seen, d.ID)
		}
	}
	if len(seen) != 2500 {
		t.Fatalf("paged %d devices, want 2500", len(seen))
	}
	for i, id := range seen {
		if want := fmt.Sprintf("d%05d", i); id != want {
			t.Fatalf("device %d is %s, want %s", i, id, want)
		}
	}
}

func TestStatic(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	for _, tc := range []struct {
		path, ctype string
	}{
		{"/", "text/html; charset=utf-8"},
		{"/index.html", "text/html; charset=utf-8"},
		{"/app.js", "javascript"},
		{"/style.css", "text/css; charset=utf-8"},
		{"/i18n/zh.json", "application/json"},
		{"/img/logo.webp", "image/webp"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := do(t, s, "GET", tc.path, nil)
			h := rec.Header()
			if rec.Code != 200 || !strings.Contains(h.Get("Content-Type"), tc.ctype) {
				t.Fatalf("= %d %q, want 200 %q", rec.Code, h.Get("Content-Type"), tc.ctype)
			}
			if h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "" {
				t.Errorf("Cache-Control %q, ETag %q: want no-cache and an ETag", h.Get("Cache-Control"), h.Get("ETag"))
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(h.Get("Content-Security-Policy"), "connect-src 'self';") {
				t.Errorf("security headers missing: %v", h)
			}
			again := do(t, s, "GET", tc.path, http.Header{"If-None-Match": {h.Get("ETag")}})
			if again.Code != http.StatusNotModified {
				t.Errorf("revalidation = %d, want 304", again.Code)
			}
		})
	}
	if rec := do(t, s, "HEAD", "/app.js", nil); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD = %d with %d bytes", rec.Code, rec.Body.Len())
	}
	for _, p := range []string{"/missing.js", "/i18n", "/i18n/"} {
		if rec := do(t, s, "GET", p, nil); rec.Code != 404 {
			t.Errorf("GET %s = %d, want 404", p, rec.Code)
		}
	}
	if rec := do(t, s, "POST", "/", nil); rec.Code != 405 {
		t.Errorf("POST / = %d, want 405", rec.Code)
	}
	if rec := do(t, s, "GET", "/api/summary", nil); rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("API responses lack nosniff")
	}
}

func TestContainsFold(t *testing.T) {
	for _, tc := range []struct {
		s, q string
		want bool
	}{
		{"North Gate 2", "gate", true},
		{"North Gate 2", "gate 2", true},
		{"North Gate 2", "gates", false},
		{"西城区北门", "北门", true},
		{"Ärztehaus", "ärzte", true},
		{"", "a", false},
		{"abc", "", true},
	} {
		if got := containsFold(tc.s, tc.q); got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v", tc.s, tc.q, got)
		}
	}
}

func TestListShapes(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	var agents AgentList
	rec := do(t, s, "GET", "/api/agents?q=NORTH", nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &agents); err != nil || agents.Total != 1 || len(agents.Agents) != 1 || agents.Agents[0].ID != "agent-north" {
		t.Errorf("agents?q=NORTH = %s (%v)", rec.Body, err)
	}
	var devices DeviceList
	rec = do(t, s, "GET", "/api/devices?agent=agent-north&limit=2", nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &devices); err != nil || devices.Total != 3 || len(devices.Devices) != 2 {
		t.Errorf("devices?agent=agent-north&limit=2 = %s (%v)", rec.Body, err)
	}
	rec = do(t, s, "GET", "/api/devices?district=Nowhere", nil)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"devices":[],"total":0}` {
		t.Errorf("no match = %s, want an empty list, not null", got)
	}
}

// TestSinceFilters lists what changed at or after a time, given as RFC
// 3339 or as a duration back from now.
func TestSinceFilters(t *testing.T) {
	s, e := alarmServer(t)
	var devs DeviceList
	rec := do(t, s, "GET", "/api/devices?since="+t0.Add(-5*time.Minute).Format(time.RFC3339), nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &devs); err != nil || devs.Total != 3 {
		t.Errorf("devices changed since t0-5m: %d (%s)", devs.Total, rec.Body)
	}
	var agents AgentList
	rec = do(t, s, "GET", "/api/agents?since="+t0.Add(-time.Hour).Format(time.RFC3339), nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &agents); err != nil || agents.Total != 1 || agents.Agents[0].ID != "agent-east" {
		t.Errorf("agents changed since t0-1h: %s", rec.Body)
	}
	// Alarms change now (the engine's clock): all are recent, none is a
	// year old.
	var list AlarmList
	if rec := do(t, s, "GET", "/api/alarms?since=1h", nil); json.Unmarshal(rec.Body.Bytes(), &list) != nil || list.Total != len(e.Alarms(alarm.Filter{})) {
		t.Errorf("alarms since 1h: %s", rec.Body)
	}
	if rec := do(t, s, "GET", "/api/alarms?since="+time.Now().Add(time.Hour).Format(time.RFC3339), nil); json.Unmarshal(rec.Body.Bytes(), &list) != nil || list.Total != 0 {
		t.Errorf("alarms since an hour ahead: %s", rec.Body)
	}
	for _, q := range []string{"/api/devices?since=yesterday", "/api/agents?since=-1h", "/api/alarms?since=1h&since=2h"} {
		if rec := do(t, s, "GET", q, nil); rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", q, rec.Code)
		}
	}
}
