package e2e

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
)

// The map and the alarm desk ask the hub rather than a copy of its code in
// the browser. In Chromium against the real hub: the city map draws a
// camera's field of view from /api/map/wedges and turns it red when the
// camera's agent reports it offline; a sensor alarm's detail lists exactly
// the cameras /api/coverage/nearest finds for that sensor.
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
	browserAccount(t, s.hub, "map-op", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "map-op", 150*time.Second)
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
}
