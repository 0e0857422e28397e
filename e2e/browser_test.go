package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	hubconfig "github.com/citywatch/citywatch/hub/config"
)

// The console in a real Chromium: it loads, lists every device, and a row
// changes live when a simulated camera goes offline — no reload.
func TestConsoleUpdatesLiveInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity})
	s.waitAllOnline(t)
	_, cam := firstCamera(t, s)
	browserAccount(t, s.hub, "duty-op", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "duty-op", 90*time.Second)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`#devices tr[data-device]`)); err != nil {
		t.Fatalf("console did not load: %v", err)
	}
	total, err := chromedp.Run(ctx, chromedp.AttributeValue(`[data-count="total"]`, "data-value"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#devices tr[data-device]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(s.deviceCount()); total.Value != want {
		t.Errorf("console counts %s devices, want %s", total.Value, want)
	}
	if rows < min(10, s.deviceCount()) {
		t.Errorf("only %d rows rendered", rows)
	}

	row := fmt.Sprintf(`#devices tr[data-device=%q]`, cam)
	err = chromedp.Do(ctx,
		chromedp.SendKeys(`#q`, cam),
		chromedp.WaitVisible(row+`[data-status="online"]`),
	)
	if err != nil {
		t.Fatalf("searching for %s: %v", cam, err)
	}
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(row+`[data-status="offline"]`)); err != nil {
		t.Fatalf("row of %s did not turn offline: %v", cam, err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text(row+` td`, chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	feed, err := chromedp.Run(ctx, chromedp.Text(`#feed`))
	if err != nil {
		t.Fatal(err)
	}
	if status != "offline" {
		t.Errorf("status cell says %q", status)
	}
	if feed == "" {
		t.Error("the live feed is empty after a device went offline")
	}

	// Another agent goes down whole: the hub says "every device of the
	// agent" without naming them, and the console finds them in its rows.
	var agentID string
	var agentDevices int
	for _, a := range s.sim.City().Agents {
		if !slices.ContainsFunc(a.Cameras, func(c config.Camera) bool { return c.ID == cam }) {
			agentID, agentDevices = a.ID, len(a.Cameras)+len(a.Sensors)
			break
		}
	}
	if err := s.sim.Fault(sim.Fault{Agent: agentID, Fault: sim.FaultDisconnect, For: time.Minute}); err != nil {
		t.Fatal(err)
	}
	unreachable := `[data-count="unreachable"][data-value="` + strconv.Itoa(agentDevices) + `"]`
	if err := chromedp.Do(ctx, chromedp.WaitReady(unreachable)); err != nil {
		got, _ := chromedp.Run(ctx, chromedp.AttributeValue(`[data-count="unreachable"]`, "data-value"))
		t.Fatalf("after agent %s went down: %v (console counts %s unreachable, want its %d devices)", agentID, err, got.Value, agentDevices)
	}
}

// framesDecoded asks the console for the frames its video elements have
// decoded, by camera and place.
type videoStat struct {
	Camera        string `json:"camera"`
	FramesDecoded int    `json:"framesDecoded"`
	Where         string `json:"where"`
}

func videoStats(t *testing.T, ctx context.Context) []videoStat {
	t.Helper()
	stats, err := chromedp.Run(ctx, chromedp.Evaluate[[]videoStat](`window.citywatch.videoStats()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

// decodingGrows waits until every listed camera has decoded frames at
// `where`, then until each has decoded more: the picture is live, not a
// single frozen frame.
func decodingGrows(t *testing.T, ctx context.Context, where string, cams []string) {
	t.Helper()
	frames := func() map[string]int {
		m := map[string]int{}
		for _, s := range videoStats(t, ctx) {
			if s.Where == where {
				m[s.Camera] = s.FramesDecoded
			}
		}
		return m
	}
	var first map[string]int
	eventually(t, 30*time.Second, func() error {
		first = frames()
		for _, c := range cams {
			if first[c] == 0 {
				return fmt.Errorf("%s: %s has decoded nothing yet (%v)", where, c, first)
			}
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		now := frames()
		for _, c := range cams {
			if now[c] < first[c]+10 {
				return fmt.Errorf("%s: %s decoded %d then %d frames", where, c, first[c], now[c])
			}
		}
		return nil
	})
}

// One click plays a camera: the live view's video decodes frames; and a
// four-tile wall plays four cameras at once.
func TestLiveViewAndWallInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, live: true})
	s.waitAllOnline(t)
	var cams []string
	for _, a := range s.sim.City().Agents {
		for _, c := range a.Cameras {
			cams = append(cams, c.ID)
		}
	}
	if len(cams) < 4 {
		t.Fatalf("the city has %d cameras, want 4", len(cams))
	}
	browserAccount(t, s.hub, "wall-op", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "wall-op", 120*time.Second)
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(`#devices tr[data-device]`),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.citywatch.openLive(%q)`, cams[0])),
		chromedp.WaitVisible(fmt.Sprintf(`#player[data-camera=%q][data-state="playing"]`, cams[0])),
	); err != nil {
		t.Fatalf("live view of %s: %v", cams[0], err)
	}
	decodingGrows(t, ctx, "player", cams[:1])

	four, _ := json.Marshal(cams[:4])
	wall := fmt.Sprintf(`window.citywatch.closeLive(); window.citywatch.wall.setLayout(4);
		%s.forEach((c, i) => window.citywatch.wall.assign(i, c));`, four)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](wall), chromedp.WaitVisible(`#wall[data-layout="4"]`)); err != nil {
		t.Fatal(err)
	}
	decodingGrows(t, ctx, "wall", cams[:4])
}

// The alarm desk in two browsers: a new alarm appears live on both, and an
// acknowledgement made on one page reaches the other.
func TestAlarmDeskInTwoBrowsers(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	_, cam := firstCamera(t, s)
	open := func(name string) context.Context {
		browserAccount(t, s.hub, name, auth.Operator, auth.Everything)
		ctx := consoleAs(t, s.hub, name, 90*time.Second)
		if err := chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](`window.citywatch.alarms.show()`),
			chromedp.WaitVisible(`#alarms`),
		); err != nil {
			t.Fatalf("alarm desk did not open: %v", err)
		}
		return ctx
	}
	first, second := open("desk-one"), open("desk-two")

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	row := `#alarm-list tr[data-alarm][data-state="active_unack"]`
	for _, ctx := range []context.Context{first, second} {
		if err := chromedp.Do(ctx, chromedp.WaitVisible(row)); err != nil {
			t.Fatalf("the new alarm did not appear live: %v", err)
		}
	}
	id, err := chromedp.Run(first, chromedp.AttributeValue(row, "data-alarm"))
	if err != nil || id.Value == "" {
		t.Fatalf("alarm id: %v %+v", err, id)
	}
	ok, err := chromedp.Run(first, chromedp.Evaluate[bool](
		fmt.Sprintf(`window.citywatch.alarms.act(%q, "ack", "crew on the way").then(r => r.ok)`, id.Value), chromedp.EvalAwaitPromise))
	if err != nil || !ok {
		t.Fatalf("acknowledge from the page: ok=%v err=%v", ok, err)
	}
	acked := fmt.Sprintf(`#alarm-list tr[data-alarm=%q][data-state="active_ack"]`, id.Value)
	if err := chromedp.Do(second, chromedp.WaitVisible(acked)); err != nil {
		t.Fatalf("the acknowledgement did not reach the second browser: %v", err)
	}
}

// linkageRules: an intrusion puts the camera that covers the sensor on
// the first wall tile, and its alarm needs a note to be acknowledged.
const linkageRules = `
rules:
  - source: sensor_triggered
    severity: critical
    video: wall
    wall_tile: 1
    ack_note: true
  - source: device_offline
    severity: major
  - source: agent_offline
    severity: critical
`

// A sensor's trigger puts the camera the hub finds nearest to it on the
// wall of an operator's console, playing, by the alarm rule's linkage
// (报警联动); the alarm cannot be acknowledged without a note.
func TestAlarmLinkageInChromium(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(linkageRules), 0o644); err != nil {
		t.Fatal(err)
	}
	withMap := mapCity(t, smallCity)
	s := startStack(t, stackOptions{city: smallCity, live: true, hubCfg: func(c *hubconfig.Config) { withMap(c); c.Alarms.Rules = rules }})
	s.waitAllOnline(t)
	var sensor string
	for _, a := range s.sim.City().Agents {
		for _, sn := range a.Sensors {
			if sensor == "" && sn.Kind != "power" {
				sensor = sn.ID
			}
		}
	}
	var near struct {
		Cameras []struct {
			ID string `json:"id"`
		} `json:"cameras"`
	}
	s.api.getJSON(t, "api/coverage/nearest?n=1&device="+url.QueryEscape(sensor), &near)
	if sensor == "" || len(near.Cameras) == 0 {
		t.Fatalf("no sensor with a covering camera (sensor %q, cameras %+v)", sensor, near.Cameras)
	}
	cam := near.Cameras[0].ID
	browserAccount(t, s.hub, "link-op", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "link-op", 120*time.Second)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`#devices tr[data-device]`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.sim.Fault(sim.Fault{Device: sensor, Fault: sim.FaultTrigger}); err != nil {
		t.Fatal(err)
	}
	tile := `#wall:not([hidden]) .tile[data-tile="0"][data-state="playing"]`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(tile)); err != nil {
		t.Fatalf("the covering camera did not come on the wall: %v", err)
	}
	t.Logf("trigger to the camera playing on the wall: %s", time.Since(start).Round(10*time.Millisecond))
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.citywatch.wall.current().tiles[0]`))
	if err != nil || got != cam {
		t.Fatalf("tile 1 shows %q (%v), want %s, the camera nearest %s", got, err, cam, sensor)
	}
	decodingGrows(t, ctx, "wall", []string{cam})

	find := fmt.Sprintf(`[...window.citywatch.alarms.map.values()].find(a => a.device === %q)?.id`, sensor)
	ack := func(note string) bool {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`window.citywatch.alarms.act(%s, "ack", %q).then(r => r.ok)`, find, note), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if ack("") {
		t.Error("acknowledged without the note its rule wants")
	}
	if !ack("guard sent to the gate") {
		t.Error("acknowledgement with a note refused")
	}
}
