package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/internal/testenv"
)

// csp is the hub's Content-Security-Policy (hub/auth), which the map and
// its vendored libraries must live with.
const csp = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// cam is a camera as /api/devices lists it.
func cam(id, name, status, district string, lat, lon float64) map[string]any {
	return map[string]any{"id": id, "name": name, "kind": "camera", "status": status, "site": "S-" + id, "site_name": "Site <b>" + id + "</b>", "district": district,
		"location": map[string]any{"lat": lat, "lon": lon}, "camera": map[string]any{"heading": 90, "fov": 60, "range_m": 50}, "since": "2026-12-01T00:00:00Z", "last_seen": "2026-12-01T00:00:00Z"}
}

// square is a GeoJSON polygon ring d degrees wide.
func square(lon, lat, d float64) [][][2]float64 {
	return [][][2]float64{{{lon, lat}, {lon + d, lat}, {lon + d, lat + d}, {lon, lat + d}, {lon, lat}}}
}

func feature(geom any, props map[string]any) map[string]any {
	return map[string]any{"type": "Feature", "geometry": map[string]any{"type": "Polygon", "coordinates": geom}, "properties": props}
}

func fc(fs ...map[string]any) map[string]any {
	return map[string]any{"type": "FeatureCollection", "features": fs}
}

// serveJSON answers every request with v as JSON.
func serveJSON(v any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
}

// operatorMux is a fake hub's API for an operator "li" with perms: the
// devices (by status in the summary), no agents, and the alarms. A test
// adds what else it needs.
func operatorMux(perms []string, devices, alarms []any) *http.ServeMux {
	byStatus := map[string]int{}
	for _, d := range devices {
		byStatus[d.(map[string]any)["status"].(string)]++
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/auth/me", serveJSON(map[string]any{"name": "li", "role": "operator", "permissions": perms, "csrf": "tok", "session": map[string]any{}}))
	mux.HandleFunc("/api/devices", serveJSON(map[string]any{"devices": append([]any{}, devices...), "total": len(devices)}))
	mux.HandleFunc("/api/summary", serveJSON(map[string]any{"devices": len(devices), "by_status": byStatus}))
	mux.HandleFunc("/api/agents", serveJSON(map[string]any{"agents": []any{}}))
	mux.HandleFunc("/api/alarms", serveJSON(map[string]any{"alarms": append([]any{}, alarms...), "total": len(alarms)}))
	return mux
}

// serveConsole serves the console's files beside a fake hub's API (mux),
// with the hub's CSP; anything else under /api/ is a 404.
func serveConsole(t testing.TB, mux *http.ServeMux) *httptest.Server {
	static := http.FileServerFS(FS())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			http.NotFound(w, r)
			return
		}
		static.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestMapAndReportsInBrowser runs the console in Chromium against a fake
// hub (the real one's CSP and answers of the shapes the brief fixes): the
// map starts under the CSP (module worker, no blob:), a camera's field of
// view turns red the moment the store hears it went offline, the what-if
// planner posts with the CSRF token and shows the hub's figures, the
// reports draw availability, the chart and the ledger in the hub's time
// zone, and hostile names stay text.
func TestMapAndReportsInBrowser(t *testing.T) {
	devices := []any{
		cam("CAM-1", "<img src=x onerror=alert(1)>", "online", "Xuhui", 31.2001, 121.4001),
		cam("CAM-2", "Gate", "online", "Xuhui", 31.2003, 121.4004),
		cam("CAM-3", "Yard", "offline", "Minhang", 31.1001, 121.3001),
	}
	for i := 0; i < 3000; i++ {
		devices = append(devices, cam(fmt.Sprintf("B-%d", i), "bulk", []string{"online", "online", "offline", "degraded"}[i%4], "Minhang", 31.05+float64(i%60)*0.002, 121.25+float64(i/60)*0.002))
	}
	var mu sync.Mutex // guards posts, written by the server
	var posts []string
	record := func(to *[]string, s string) { mu.Lock(); *to = append(*to, s); mu.Unlock() }
	copied := func(from *[]string) []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(*from) }
	mux := http.NewServeMux()
	mux.HandleFunc("/api/auth/me", serveJSON(map[string]any{"name": "ana", "role": "admin", "permissions": []string{"status.read", "alarm.read", "live.view", "report.read", "report.export"}, "csrf": "tok", "session": map[string]any{}}))
	mux.HandleFunc("/api/devices", serveJSON(map[string]any{"devices": devices, "total": len(devices)}))
	mux.HandleFunc("/api/summary", serveJSON(map[string]any{"devices": 3, "by_status": map[string]int{"online": 2, "offline": 1}}))
	mux.HandleFunc("/api/agents", serveJSON(map[string]any{"agents": []any{}}))
	mux.HandleFunc("/api/alarms", serveJSON(map[string]any{"alarms": []any{map[string]any{"id": "A1", "device": "CAM-3", "site": "S-CAM-3", "severity": "critical", "state": "active_unack", "source": "device_offline", "first_at": "2026-12-01T00:00:00Z", "last_at": "2026-12-01T00:00:00Z"}}, "total": 1}))
	mux.HandleFunc("/api/map/config", serveJSON(map[string]any{"center": map[string]any{"lat": 31.2, "lon": 121.4}, "bounds": nil, "cell_size_m": 25, "basemap": false, "layers": map[string]bool{"districts": true, "areas": true, "buildings": false}}))
	mux.HandleFunc("/api/map/districts", serveJSON(fc(feature(square(121.35, 31.15, 0.1), map[string]any{"name": "Xuhui"}), feature(square(121.2, 31.0, 0.15), map[string]any{"name": "Minhang"}))))
	mux.HandleFunc("/api/map/areas", serveJSON(fc(feature(square(121.399, 31.199, 0.003), map[string]any{"name": "<script>x</script>School", "kind": "school", "weight": 3, "district": "Xuhui"}))))
	mux.HandleFunc("/api/map/wedges", func(w http.ResponseWriter, r *http.Request) {
		var fs []map[string]any
		for _, d := range devices[:3] {
			m := d.(map[string]any)
			loc := m["location"].(map[string]any)
			lon, lat := loc["lon"].(float64), loc["lat"].(float64)
			fs = append(fs, feature([][][2]float64{{{lon, lat}, {lon + 0.0005, lat + 0.0002}, {lon + 0.0005, lat - 0.0002}, {lon, lat}}}, map[string]any{"id": m["id"], "name": m["name"], "status": m["status"], "site": m["site"], "district": m["district"]}))
		}
		serveJSON(fc(fs...))(w, r)
	})
	covd := map[string]any{"district": "Xuhui", "cells": 100, "designed_cells": 80, "current_cells": 70, "fragile_cells": 10, "designed_pct": 80, "current_pct": 70, "weighted_designed_pct": 85, "weighted_current_pct": 75}
	mux.HandleFunc("/api/coverage", serveJSON(map[string]any{"at": "2026-12-01T00:00:00Z", "cell_size_m": 25, "districts": []any{covd}, "areas": []any{}}))
	mux.HandleFunc("/api/coverage/cells", serveJSON(fc(feature(square(121.4, 31.2, 0.0002), map[string]any{"state": "lost", "cameras": 1, "working": 0, "weight": 1, "district": "Xuhui"}))))
	mux.HandleFunc("/api/coverage/whatif", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body)
		record(&posts, r.Header.Get("X-CSRF-Token")+" "+string(b))
		after := map[string]any{}
		for k, v := range covd {
			after[k] = v
		}
		after["current_pct"] = 72.5
		serveJSON(map[string]any{"added_cells": 12, "added_ha": 0.75, "districts": []any{map[string]any{"district": "Xuhui", "before": covd, "after": after}}, "areas": []any{},
			"cells": fc(feature(square(121.4005, 31.2005, 0.0002), map[string]any{}))})(w, r)
	})
	loss := map[string]any{"cell_hours": 10, "weighted": 20, "hectare_hours": 0.625}
	mux.HandleFunc("/api/coverage/ledger", serveJSON(map[string]any{"from": "x", "to": "y", "hours": 24, "cell_size_m": 25, "totals": map[string]any{"never_covered": loss, "outage": loss, "maintenance": loss, "unknown": loss},
		"districts": []any{map[string]any{"district": "Xuhui", "cells": 100, "designed_cells": 80, "camera_online_rate": 0.99, "never_covered": loss, "outage": loss, "maintenance": loss, "unknown": loss, "weighted_lost_pct": 12.5, "flagged": true}},
		"flagged":   []string{"Xuhui"}, "cameras": []any{map[string]any{"id": "CAM-3", "name": "<i>Yard</i>", "district": "Minhang", "site": "S-CAM-3", "down_hours": 5, "cell_hours": 40, "weighted_cell_hours": 80}},
		"maintenance": []any{map[string]any{"names": []string{"Upgrade <b>"}, "approved_by": []string{"wang"}, "cell_hours": 16, "weighted": 16}}, "simulated": true}))
	row := map[string]any{"key": "Xuhui", "devices": 2, "expected_s": 172800, "online_s": 170000, "degraded_s": 0, "offline_s": 2800, "unreachable_s": 0, "unknown_s": 0, "maintenance_s": 3600, "online_rate": 0.9838, "intact_rate": 0.94, "outages": 2, "mttr_s": 1400}
	mux.HandleFunc("/api/reports/availability", serveJSON(map[string]any{"from": "x", "to": "y", "group": "district", "timezone": "Asia/Shanghai", "simulated": false, "rows": []any{row}, "total": row}))
	repairs := func(key string, mttr float64) map[string]any {
		return map[string]any{"key": key, "opened": 4, "closed": 3, "mtta_s": 600, "mttr_s": mttr, "mtbf_h": 120.5, "failures": 5, "devices": 20,
			"first_time_fix": 0.75, "repeat_rate": 0.25, "respond_met": 1, "fix_met": 0.5, "backlog": 1, "backlog_max_age_h": 2.5}
	}
	mux.HandleFunc("/api/reports/maintenance", func(w http.ResponseWriter, r *http.Request) {
		serveJSON(map[string]any{"group": "crew", "rows": []any{repairs("Crew <i>North</i>", 3600), repairs("Crew South", 7200)}, "total": repairs("", 5400)})(w, r)
	})
	mux.HandleFunc("/api/reports/series", serveJSON(map[string]any{"timezone": "Asia/Shanghai", "days": []string{"2026-12-01", "2026-12-02", "2026-12-03"},
		"series": []any{map[string]any{"district": "", "online_rate": []any{0.99, 0.98, nil}, "intact_rate": []any{0.97, 0.96, 0.95}}, map[string]any{"district": "Xuhui", "online_rate": []any{0.97, 0.99, 0.985}, "intact_rate": []any{0.9, 0.91, 0.92}}}}))
	srv := serveConsole(t, mux)

	pg := openPage(t)
	do, str, poll, dump := pg.do, pg.str, pg.poll, pg.dump
	contains := func(what, got string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s = %q, want it to contain %q", what, got, w)
			}
		}
	}

	do("open the map", chromedp.EmulateViewport(1400, 900), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#view-map`), chromedp.Click(`#view-map`))
	poll(`document.querySelector('#map-canvas').dataset.state !== 'loading'`, 30*time.Second)
	if st := str(`document.querySelector('[data-testid="city-map"]').dataset.state`); st != "ready" {
		t.Fatalf("map state %s: %s\n%s", st, str(`document.querySelector('#map-canvas').textContent`), dump())
	}
	// The device list arrives over REST (no websocket here); then the
	// fields of view at street level.
	poll(`window.citywatch.store.loaded`, 15*time.Second)
	do("zoom in", chromedp.Evaluate[chromedp.Void](`void citywatchMap.map.jumpTo({center:[121.4002,31.2002], zoom: 17})`))
	poll(`citywatchMap.wedgeColour('CAM-1') !== null`, 15*time.Second)
	if c := str(`citywatchMap.wedgeColour('CAM-1')`); c != "#4cc38a" {
		t.Errorf("CAM-1 online: wedge colour %s, want the online colour #4cc38a", c)
	}
	do("CAM-1 goes offline", chromedp.Evaluate[chromedp.Void](`void window.citywatch.changes([{kind:'device', from:'online', to:'offline', device: {...window.citywatch.store.devices.get('CAM-1'), status:'offline'}}], null)`))
	poll(`citywatchMap.wedgeColour('CAM-1') === '#ff6161'`, 10*time.Second)
	// The side list follows within a second (it is redrawn at most once a second).
	poll(`document.querySelector('#map-districts').innerText.includes('50.0%')`, 5*time.Second)
	contains("district list", str(`document.querySelector('#map-districts').innerText`), "Xuhui", "70%", "Minhang", "74.9%")

	do("search", chromedp.Evaluate[chromedp.Void](`void (document.querySelector('#map-search').value='gate', document.querySelector('#map-search').dispatchEvent(new Event('input')))`))
	poll(`document.querySelector('#map-results [data-hit]')`, 5*time.Second)
	contains("search results", str(`document.querySelector('#map-results').innerText`), "CAM-2", "Gate")

	do("plan a camera", chromedp.Click(`#map-plan`), chromedp.Click(`#map-plan-centre`))
	poll(`document.querySelector('#map-whatif-added')`, 10*time.Second)
	contains("what-if result", str(`document.querySelector('#map-whatif-result').innerText`), "12", "0.75", "70% → 72.5%")
	if posts := copied(&posts); len(posts) != 1 || !strings.HasPrefix(posts[0], "tok ") || !strings.Contains(posts[0], `"fov":90`) || !strings.Contains(posts[0], `"range_m":60`) {
		t.Errorf("what-if requests %q, want one with the CSRF token and fov 90, range 60", posts)
	}

	do("open the reports", chromedp.Click(`#view-reports`))
	poll(`document.querySelector('#rep-avail tbody tr[data-key]') && document.querySelector('#rep-chart canvas') && document.querySelector('#rep-range').textContent.includes('Asia/Shanghai')`, 15*time.Second)
	contains("availability", str(`document.querySelector('#rep-avail').innerText`), "Xuhui", "98.3%", "94.0%", "48", "23 min", "Total")
	contains("ledger districts", str(`document.querySelector('#rep-ledger-districts tr[data-flagged="true"]').innerText`), "Xuhui", "online rate fine, coverage not", "12.5%")
	contains("ledger cameras", str(`document.querySelector('#rep-ledger-cameras').innerText`), "CAM-3", "<i>Yard</i>", "2.5")
	contains("maintenance", str(`document.querySelector('#rep-ledger-maintenance').innerText`), "Upgrade <b>", "wang")
	poll(`document.querySelector('#rep-repairs tbody tr[data-key]')`, 10*time.Second)
	contains("repairs", str(`document.querySelector('#rep-repairs').innerText`), "Crew <i>North</i>", "1 h 0 min", "2 h 0 min", "10 min", "120.5", "75.0%", "25.0%", "Total")
	if w := str(`document.querySelector('#rep-repairs tr[data-key="Crew South"] .r-bar').style.width`); w != "100%" {
		t.Errorf("the slowest crew's MTTR bar is %s wide, want 100%%", w)
	}
	contains("repairs CSV link", str(`document.querySelector('#rep-repairs-csv').href`), "/api/reports/maintenance?", "group=crew", "format=csv")
	if h := str(`String(document.querySelector('#rep-simulated').hidden)`); h != "false" {
		t.Error("the simulated-data banner is hidden, but the ledger says simulated")
	}
	// The week begins at midnight in Shanghai, 16:00 UTC the day before.
	contains("CSV link", str(`document.querySelector('#rep-avail-csv').href`), "/api/reports/availability?", "T16%3A00%3A00Z", "group=district", "format=csv")
	if n := str(`String(document.querySelectorAll('img[src="x"], #rep-ledger-cameras i, #map-side script').length)`); n != "0" {
		t.Errorf("%s elements made from hostile names", n)
	}
	do("switch language", chromedp.Click(`#lang`))
	contains("Chinese headings", str(`document.querySelector('#rep-avail thead').innerText`), "在线率", "完好率")
	do("back to English", chromedp.Click(`#lang`))

	do("open a camera from the ledger", chromedp.Click(`#rep-ledger-cameras button[data-device]`))
	poll(`document.body.dataset.view === 'map' && document.querySelector('#map-detail-slot #detail')?.dataset.id === 'CAM-3'`, 10*time.Second)
	do("back to monitoring", chromedp.Click(`#view-console`))
	poll(`document.querySelector('.side #detail')`, 5*time.Second)
	pg.noExceptions()
}

// page is a Chromium tab for a console test, keeping what the page logs
// and throws for failure reports; its actions end with the test or after
// two minutes.
type page struct {
	t    *testing.T
	ctx  context.Context
	mu   sync.Mutex // guards logs, written by the browser's listener
	logs []string
}

// openPage starts Chromium with opts (see testenv.Chromium).
func openPage(t *testing.T, opts ...chromedp.ExecAllocatorOption) *page {
	ctx := testenv.Chromium(t, opts...)
	p := &page{t: t}
	record := func(s string) { p.mu.Lock(); p.logs = append(p.logs, s); p.mu.Unlock() }
	chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			record(string(e.Type) + ": " + strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			exc := ""
			if e.ExceptionDetails.Exception != nil {
				exc = e.ExceptionDetails.Exception.Description
			}
			record("EXC: " + e.ExceptionDetails.Text + " " + exc)
		}
	})
	tctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(cancel)
	p.ctx = tctx
	return p
}

func (p *page) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logs, "\n")
}

func (p *page) do(what string, as ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, as...); err != nil {
		p.t.Fatalf("%s: %v\n%s", what, err, p.dump())
	}
}

func (p *page) str(expr string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", expr, err, p.dump())
	}
	return v
}

func (p *page) poll(expr string, d time.Duration) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(d))); err != nil {
		p.t.Fatalf("waiting for %s: %v\n%s", expr, err, p.dump())
	}
}

// noExceptions fails the test for every uncaught exception the page threw.
func (p *page) noExceptions() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		if strings.HasPrefix(l, "EXC:") {
			p.t.Errorf("uncaught exception: %s", l)
		}
	}
}

// TestBlockedSoundIsShown opens the console in a browser that blocks
// sound until a click (as one just opened on a wall screen does): the
// console says so at once, flashes the notice when a critical alarm's
// tone cannot play, notifies the desktop while the tab is hidden (with
// permission), and one click on the notice turns sound on and hides it.
func TestBlockedSoundIsShown(t *testing.T) {
	mux := operatorMux([]string{"status.read", "alarm.read", "alarm.ack"}, []any{cam("CAM-1", "Gate", "online", "Xuhui", 31.2, 121.4)}, nil)
	srv := serveConsole(t, mux)

	pg := openPage(t, chromedp.Flag("autoplay-policy", "document-user-activation-required"))
	pg.do("open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#alarms-btn`))
	// Not pg.poll: chromedp's polling runs as a user gesture, which would
	// unlock sound.
	if st := pg.str(`String(window.citywatch.sound.ctx?.state)`); st != "suspended" {
		t.Fatalf("audio context %s before any gesture, want suspended (is autoplay blocked?) %s", st, pg.str(`String(navigator.userActivation.hasBeenActive)`))
	}
	pg.do("the notice is shown", chromedp.WaitVisible(`#sound-blocked`))
	if got := pg.str(`document.querySelector('#sound-blocked').textContent`); !strings.Contains(got, "click") {
		t.Errorf("notice %q does not say what to do", got)
	}
	// The tab goes to the background with desktop alerts allowed: a
	// stand-in for the Notification API records what the console shows.
	pg.do("hide the tab", chromedp.Evaluate[chromedp.Void](`void (Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}),
		window.shown = [],
		window.citywatch.desktop.api = class { static permission = 'granted'; constructor(title, o) { window.shown.push([title, o.body, o.tag]); } close() {} })`))
	// The store knows the device by name (this fake hub sends no events,
	// so the console never loads its list by itself).
	pg.do("a known device", chromedp.Evaluate[chromedp.Void](`void window.citywatch.store.devices.set('CAM-1', {id: 'CAM-1', name: 'Gate', site: 'S-1', site_name: 'North gate', district: 'Xuhui'})`))
	pg.do("a critical alarm", chromedp.Evaluate[chromedp.Void](`void window.citywatch.alarms.event({kind: 'raise', alarm: {id: 'A9', severity: 'critical', state: 'active_unack', source: 'sensor_triggered', type: 'intrusion', device: 'CAM-1', site: 'S-1', district: 'Xuhui', count: 1, first_at: new Date().toISOString(), last_at: new Date().toISOString()}})`))
	if pg.str(`String(document.querySelector('#sound-blocked').classList.contains('urgent'))`) != "true" {
		t.Errorf("the notice did not flash when the alarm's tone could not play")
	}
	// The device by its name as the console shows it, with its id.
	if got := pg.str(`JSON.stringify(window.shown)`); !strings.Contains(got, `"A9"`) || !strings.Contains(got, "Gate (CAM-1) · North gate · Xuhui") {
		t.Errorf("desktop notifications %s, want one for A9 naming Gate (CAM-1)", got)
	}
	pg.do("click the notice's button", chromedp.Click(`#sound-enable`))
	pg.poll(`window.citywatch.sound.ctx.state === 'running'`, 5*time.Second)
	pg.poll(`document.querySelector('#sound-blocked').hidden`, 5*time.Second)

	// With sound on, each new alarm sounds its severity's tone: a minor
	// one none, a major one two notes, a critical one six.
	pg.do("count tones", chromedp.Evaluate[chromedp.Void](`void (window.tones = [], window.citywatch.sound.tone = ((play) => function (notes, force) {
		const ok = play.call(this, notes, force); if (ok) window.tones.push(notes.length); return ok; })(window.citywatch.sound.tone))`))
	for i, sev := range []string{"minor", "major", "critical"} {
		pg.do("a "+sev+" alarm", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void window.citywatch.alarms.event({kind: 'raise', alarm: {id: 'B%d', severity: %q, state: 'active_unack', source: 'device_offline', type: 'camera_offline', device: 'CAM-1', count: 1, first_at: new Date().toISOString(), last_at: new Date().toISOString()}})`, i, sev)))
	}
	if got := pg.str(`window.tones.join(',')`); got != "2,6" {
		t.Errorf("tones played %q, want 2,6 (none for minor, two notes for major, six for critical)", got)
	}
	pg.noExceptions()
}

// TestAlarmBulkAckInBrowser acknowledges twenty alarms in one action from
// the keyboard (* ticks every alarm listed, c asks for the note, Enter
// sends): one request names all twenty with the note, and the desk shows
// them acknowledged with the selection cleared.
func TestAlarmBulkAckInBrowser(t *testing.T) {
	alarm := func(i int, state string) map[string]any {
		return map[string]any{"id": fmt.Sprintf("A%d", i), "device": fmt.Sprintf("CAM-%d", i), "site": "S-1", "district": "Xuhui", "severity": "major",
			"state": state, "source": "device_offline", "type": "camera_offline", "count": 1, "first_at": "2026-12-01T00:00:00Z", "last_at": "2026-12-01T00:00:00Z"}
	}
	var list []any
	for i := range 20 {
		list = append(list, alarm(i+1, "active_unack"))
	}
	var mu sync.Mutex
	var posts []map[string]any
	mux := operatorMux([]string{"status.read", "alarm.read", "alarm.ack"}, nil, list)
	mux.HandleFunc("POST /api/alarm-actions/ack", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		posts = append(posts, body)
		mu.Unlock()
		var results []any
		for _, id := range body["ids"].([]any) {
			var n int
			fmt.Sscanf(id.(string), "A%d", &n)
			a := alarm(n, "active_ack")
			a["acked_by"] = "li"
			results = append(results, map[string]any{"id": id, "status": 200, "alarm": a})
		}
		serveJSON(map[string]any{"results": results})(w, r)
	})
	srv := serveConsole(t, mux)

	pg := openPage(t)
	pg.do("open the console", chromedp.EmulateViewport(1440, 900), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#alarms-btn`))
	// While the desk is hidden, alarm events keep its badge current but
	// build no rows.
	pg.do("events while the desk is hidden", chromedp.Evaluate[chromedp.Void](`void (window.rowWrites = 0,
		new MutationObserver((ms) => { window.rowWrites += ms.length; }).observe(document.querySelector('#alarm-list'), {childList: true}),
		[...Array(200).keys()].forEach((i) => window.citywatch.alarms.event({kind: 'raise', alarm: {id: 'H' + i, severity: 'minor', state: 'active_unack', source: 'device_offline', type: 'camera_offline', device: 'CAM-H' + i, count: 1, first_at: new Date().toISOString(), last_at: new Date().toISOString()}})))`))
	pg.poll(`document.querySelector('#alarms-btn .badge')?.textContent === '200'`, 5*time.Second)
	if got := pg.str(`String(window.rowWrites)`); got != "0" {
		t.Errorf("the hidden desk rebuilt its rows %s times", got)
	}
	pg.do("hidden ones cleared", chromedp.Evaluate[chromedp.Void](`void [...Array(200).keys()].forEach((i) => window.citywatch.alarms.event({kind: 'ack', alarm: {...window.citywatch.alarms.map.get('H' + i), state: 'cleared_ack'}}))`))
	pg.do("open the desk", chromedp.Click(`#alarms-btn`))
	pg.poll(`document.querySelectorAll('#alarm-list tr[data-state="active_unack"]').length === 20`, 10*time.Second)
	pg.do("tick every alarm", chromedp.Focus(`#alarm-scroller`), chromedp.KeyEvent("*"))
	if got := pg.str(`document.querySelector('.a-marked').hidden ? 'hidden' : document.querySelector('.a-marked .n').textContent`); got != "20 selected" {
		t.Fatalf("selection bar %q, want 20 selected", got)
	}
	pg.do("acknowledge them", chromedp.KeyEvent("c"), chromedp.WaitVisible(`#alarm-act [name=note]`),
		chromedp.SendKeys(`#alarm-act [name=note]`, "night check"), chromedp.KeyEvent("\r"))
	pg.poll(`document.querySelectorAll('#alarm-list tr[data-state="active_ack"]').length === 20`, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 {
		t.Fatalf("%d bulk requests, want 1: %v", len(posts), posts)
	}
	if ids, _ := posts[0]["ids"].([]any); len(ids) != 20 || posts[0]["note"] != "night check" {
		t.Errorf("request %v, want 20 ids and the note", posts[0])
	}
	if got := pg.str(`String(document.querySelector('.a-marked').hidden) + ' ' + document.querySelectorAll('#alarm-list input[data-mark]:checked').length`); got != "true 0" {
		t.Errorf("after the action: bar hidden, ticked = %s, want true 0", got)
	}
	pg.noExceptions()
}

// TestAlarmDeskFiltersInURL filters the desk by district from the URL,
// collapses cleared unacknowledged alarms into a counter, narrows to
// unacknowledged alarms with the state filter, and finds both filters
// still applied after a reload and after the device table changed its own
// filters in the same URL.
func TestAlarmDeskFiltersInURL(t *testing.T) {
	alarm := func(id, district, state string) map[string]any {
		return map[string]any{"id": id, "device": "CAM-" + id, "site": "S-1", "district": district, "severity": "major",
			"state": state, "source": "device_offline", "type": "camera_offline", "count": 1, "first_at": "2026-12-01T00:00:00Z", "last_at": "2026-12-01T00:00:00Z"}
	}
	list := []any{alarm("A1", "Xuhui", "active_unack"), alarm("A2", "Xuhui", "active_ack"), alarm("A3", "Xuhui", "cleared_unack"),
		alarm("A4", "Minhang", "active_unack"), alarm("A5", "Minhang", "cleared_unack")}
	mux := operatorMux([]string{"status.read", "alarm.read"}, nil, list)
	srv := serveConsole(t, mux)

	pg := openPage(t)
	rows := `[...document.querySelectorAll('#alarm-list tr')].map((tr) => tr.dataset.alarm).join(',')`
	pg.do("open the desk on Xuhui", chromedp.EmulateViewport(1440, 900), chromedp.Navigate(srv.URL+"/?adist=Xuhui"), chromedp.WaitVisible(`#alarms-btn`), chromedp.Click(`#alarms-btn`))
	pg.poll(`document.querySelectorAll('#alarm-list tr').length > 0`, 10*time.Second)
	if got := pg.str(rows); got != "A1,A2" {
		t.Errorf("rows %s, want A1,A2 (Xuhui, the cleared one collapsed)", got)
	}
	if got := pg.str(`document.querySelector('[data-af-cleared]').textContent`); !strings.HasPrefix(got, "1 ") {
		t.Errorf("cleared counter %q, want 1 (Xuhui's)", got)
	}
	pg.do("unacknowledged only", chromedp.SetValue(`[data-af="fState"]`, "unack"),
		chromedp.Evaluate[chromedp.Void](`void document.querySelector('[data-af="fState"]').dispatchEvent(new Event('change', {bubbles: true}))`))
	if got := pg.str(rows + ` + ' ' + location.search`); got != "A1 ?adist=Xuhui&astate=unack" {
		t.Errorf("rows and URL %q, want A1 ?adist=Xuhui&astate=unack", got)
	}
	pg.do("the device table filters", chromedp.Evaluate[chromedp.Void](`void window.citywatch.setFilter({status: 'offline'})`))
	pg.do("reload", chromedp.Reload(), chromedp.WaitVisible(`#alarms-btn`), chromedp.Click(`#alarms-btn`))
	pg.poll(`document.querySelectorAll('#alarm-list tr').length > 0`, 10*time.Second)
	if got := pg.str(rows + ` + ' ' + document.querySelector('[data-af="fState"]').value + ' ' + new URLSearchParams(location.search).get('status')`); got != "A1 unack offline" {
		t.Errorf("after reload: %q, want A1 unack offline", got)
	}
	pg.do("show the cleared ones", chromedp.Click(`[data-af-cleared]`))
	if got := pg.str(rows); got != "A3" {
		t.Errorf("cleared rows %s, want A3", got)
	}
	pg.noExceptions()
}

// TestSummaryAndFeedLayout loads a city whose district names are long and
// one of whose districts has over a thousand devices down, at 1280 and
// 1920 px, in English and in Chinese, and checks the layout by element
// bounds: no district name is cut, no part of a district's row runs into
// the next part or out of the row, and no word of the live feed is broken
// across lines.
func TestSummaryAndFeedLayout(t *testing.T) {
	districts := []string{"Railway Station", "Hi-Tech Park", "Old Town", "Riverside", "University", "Harbour"}
	var devices []any
	for i := range 1400 {
		d := districts[i%len(districts)]
		status := "online"
		if d == "Railway Station" || i%9 == 0 {
			status = "offline"
		}
		devices = append(devices, cam(fmt.Sprintf("railway-station-01-cam-%02d", i), "cam", status, d, 31.2, 121.4))
	}
	mux := operatorMux([]string{"status.read", "alarm.read"}, devices, nil)
	srv := serveConsole(t, mux)

	pg := openPage(t)
	pg.do("open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#districts button`))
	pg.poll(`window.citywatch.store.loaded && document.querySelectorAll('#districts button').length === 6`, 10*time.Second)
	// A feed line of ordinary words, long enough to wrap in the side column.
	pg.do("feed lines", chromedp.Evaluate[chromedp.Void](`void window.citywatch.changes([{kind: 'device', seq: 1, at: new Date().toISOString(), from: 'online', to: 'offline', reason: 'unreachable',
		device: {...window.citywatch.store.devices.get('railway-station-01-cam-01'), status: 'offline', reason: 'unreachable', detail: 'no answer from the camera at its configured address within the probe timeout after three attempts'}}], null)`))
	pg.poll(`document.querySelector('#feed .msg')`, 5*time.Second)
	problems := `(() => {
		const out = [];
		for (const b of document.querySelectorAll('#districts button')) {
			const dn = b.querySelector('.dn');
			if (dn.scrollWidth > dn.clientWidth + 1) out.push('cut name ' + dn.textContent + ' (' + dn.scrollWidth + ' px in ' + dn.clientWidth + ')');
			const box = b.getBoundingClientRect();
			let prev = null;
			for (const c of b.children) {
				const r = c.getBoundingClientRect();
				if (!r.width) continue;
				if (r.left < box.left - 1 || r.right > box.right + 1) out.push('outside its row: ' + (c.className || c.tagName) + ' of ' + dn.textContent);
				if (prev && r.left < prev.right - 1) out.push('overlap: ' + (c.className || c.tagName) + ' of ' + dn.textContent);
				prev = r;
			}
		}
		for (const msg of document.querySelectorAll('#feed .msg')) {
			const walker = document.createTreeWalker(msg, NodeFilter.SHOW_TEXT);
			for (let n = walker.nextNode(); n; n = walker.nextNode()) {
				const re = /[A-Za-z]{2,}/g;
				for (let m = re.exec(n.data); m; m = re.exec(n.data)) {
					const range = document.createRange();
					range.setStart(n, m.index);
					range.setEnd(n, m.index + m[0].length);
					const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
					if (tops.size > 1) out.push('word broken: ' + m[0]);
				}
			}
		}
		if (!document.querySelector('#feed .msg')) out.push('no feed line');
		return out.join('; ');
	})()`
	for _, lang := range []string{"en", "zh-CN"} {
		if lang == "zh-CN" {
			pg.do("中文", chromedp.Click(`#lang`))
			pg.poll(`document.documentElement.lang === 'zh-CN'`, 5*time.Second)
		}
		for _, w := range []int64{1280, 1920} {
			pg.do("resize", chromedp.EmulateViewport(w, 900))
			if got := pg.str(problems); got != "" {
				t.Errorf("%s at %d px: %s", lang, w, got)
			}
		}
	}
	pg.noExceptions()
}
