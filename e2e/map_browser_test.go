package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/identity"
)

// The map and the alarm desk ask the hub rather than a copy of its code in
// the browser. In Chromium against the real hub: the city map draws a
// camera's field of view from /api/map/wedges; clicking it opens the
// camera's panel and live video plays one click further; the wedge turns
// red when the camera's agent reports it offline; a sensor alarm's detail
// lists exactly the cameras /api/coverage/nearest finds for that sensor;
// the reports page's CSV download parses and matches the API.
func TestMapAndNearestCamerasInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: mapCity(t, smallCity)})
	s.waitAllOnline(t)
	var cam config.Camera
	var sensor config.Sensor
	for _, a := range s.sim.City().Agents {
		if cam.ID == "" && len(a.Cameras) > 0 {
			cam = a.Cameras[0]
		}
		for _, sn := range a.Sensors {
			if sensor.ID == "" && sn.Kind != "power" {
				sensor = sn
			}
		}
	}
	if cam.ID == "" || sensor.ID == "" {
		t.Fatalf("the city lacks a camera or a sensor: %+v %+v", cam, sensor)
	}
	// A supervisor (live video, reports) granted downloads.
	if _, _, err := s.hub.Identity().AddAccount(context.Background(), cliActor, identity.AccountSpec{Name: "map-sup", Role: auth.Supervisor,
		Grants: []auth.Permission{auth.ReportExport}, Scope: auth.Everything, Password: testPassword, OwnPassword: true}); err != nil {
		t.Fatal(err)
	}
	ctx := consoleAs(t, s.hub, "map-sup", 180*time.Second)
	poll := func(what, expr string, within time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(within))); err != nil {
			t.Fatalf("%s (%s): %v", what, expr, err)
		}
	}

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 900), chromedp.Click(`#view-map`)); err != nil {
		t.Fatal(err)
	}
	poll("the map is drawn", `document.querySelector('[data-testid="city-map"]').dataset.state === 'ready'`, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](
		fmt.Sprintf(`void citywatchMap.map.jumpTo({center: [%f, %f], zoom: 17})`, cam.Location.Lon, cam.Location.Lat))); err != nil {
		t.Fatal(err)
	}
	wedge := fmt.Sprintf(`citywatchMap.wedgeColour(%q)`, cam.ID)
	poll("the camera's field of view, online", wedge+` === '#4cc38a'`, 20*time.Second)

	// Click the wedge where it is the top feature: the device panel opens,
	// and live video is one click away.
	xy, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
		const m = citywatchMap.map, r = m.getCanvas().getBoundingClientRect();
		const lon = %f, lat = %f, heading = %f, range = %f;
		for (const f of [0.5, 0.7, 0.3, 0.85]) for (const off of [0, -15, 15, -25, 25]) {
			const b = (heading + off) * Math.PI / 180, d = f * range;
			const at = [lon + d * Math.sin(b) / (111320 * Math.cos(lat * Math.PI / 180)), lat + d * Math.cos(b) / 111320];
			const p = m.project(at);
			const top = m.queryRenderedFeatures(p, {layers: ['alarms', 'points', 'clusters', 'wedges-fill']})[0];
			if (top && top.layer.id === 'wedges-fill' && top.properties.id === %q) return [r.left + p.x, r.top + p.y];
		}
		return [];
	})()`, cam.Location.Lon, cam.Location.Lat, cam.Heading, cam.RangeM, cam.ID)))
	if err != nil || len(xy) != 2 {
		t.Fatalf("no point of %s's field of view is on top of the map: %v %v", cam.ID, xy, err)
	}
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(xy[0], xy[1])); err != nil {
		t.Fatal(err)
	}
	poll("the wedge opens the camera's panel", fmt.Sprintf(`document.querySelector('#map-detail-slot #detail')?.dataset.id === %q`, cam.ID), 10*time.Second)
	// The panel redraws when the device's history arrives: click the
	// button the page has at that moment, not a node found earlier.
	poll("the panel's live button", `document.querySelector('#map-detail-slot #detail [data-live]') !== null`, 10*time.Second)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`void document.querySelector('#map-detail-slot #detail [data-live]').click()`),
		chromedp.WaitVisible(fmt.Sprintf(`#player[data-camera=%q][data-state="playing"]`, cam.ID))); err != nil {
		t.Fatalf("live video from the map's panel: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Escape)); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.Fault(sim.Fault{Device: cam.ID, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	poll("the field of view turns to the offline colour", wedge+` === '#ff6161'`, 30*time.Second)

	var want struct {
		Cameras []struct {
			ID string `json:"id"`
		} `json:"cameras"`
	}
	s.api.getJSON(t, "api/coverage/nearest?n=4&device="+url.QueryEscape(sensor.ID), &want)
	if len(want.Cameras) == 0 {
		t.Fatalf("the hub finds no camera for %s", sensor.ID)
	}
	if err := s.sim.Fault(sim.Fault{Device: sensor.ID, Fault: sim.FaultTrigger}); err != nil {
		t.Fatal(err)
	}
	find := fmt.Sprintf(`[...window.citywatch.alarms.map.values()].find(a => a.device === %q)?.id`, sensor.ID)
	poll("the sensor's alarm reaches the desk", find, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`void window.citywatch.alarms.show()`),
		chromedp.Evaluate[chromedp.Void](`void window.citywatch.alarms.openDetail(`+find+`)`)); err != nil {
		t.Fatal(err)
	}
	poll("the detail lists cameras", `document.querySelectorAll('#alarm-detail .a-cams li[data-camera]').length > 0`, 15*time.Second)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#alarm-detail .a-cams li[data-camera]')].map(li => li.dataset.camera)`))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range want.Cameras {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("the alarm detail lists cameras %v; the hub's coverage code finds %v", got, ids)
	}

	// The reports page's availability download parses, and says what the
	// API says for the same period.
	if err := chromedp.Do(ctx, chromedp.Click(`#view-reports`)); err != nil {
		t.Fatal(err)
	}
	poll("the availability table", `document.querySelector('#rep-avail tbody tr[data-key]') && document.querySelector('#rep-avail-csv')?.href`, 30*time.Second)
	got2, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(async () => {
		// The page's period runs to the end of today; the hub counts it
		// to now, so both asks end at one moment in the recorded past.
		const u = new URL(document.querySelector('#rep-avail-csv').href);
		u.searchParams.set('to', new Date(Date.now() - 10000).toISOString());
		const csv = await (await fetch(u)).text();
		u.searchParams.set('format', 'json');
		const json = await (await fetch(u)).text();
		return [csv, json];
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || len(got2) != 2 {
		t.Fatalf("downloads: %v", err)
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(got2[0], "\uFEFF"))).ReadAll()
	if err != nil || len(rows) < 2 || rows[0][0] != "key" {
		t.Fatalf("the CSV does not parse: %v\n%s", err, got2[0])
	}
	var report struct {
		Rows []struct {
			Key        string   `json:"key"`
			OnlineRate *float64 `json:"online_rate"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(got2[1]), &report); err != nil {
		t.Fatalf("%v: %s", err, got2[1])
	}
	if len(rows) != len(report.Rows)+2 {
		t.Fatalf("CSV has %d rows, the API %d (+ header and total)", len(rows), len(report.Rows))
	}
	col := slices.Index(rows[0], "online_rate")
	for i, r := range report.Rows {
		want := ""
		if r.OnlineRate != nil {
			want = strconv.FormatFloat(*r.OnlineRate*100, 'f', 2, 64)
		}
		if rows[i+1][0] != r.Key || rows[i+1][col] != want {
			t.Errorf("CSV row %q, API %s %s", rows[i+1], r.Key, want)
		}
	}
}
