package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/wire"
)

// quickRules raise at once and clear after a second, so the tests need not
// wait out the default holds.
const quickRules = `
rules:
  - source: agent_offline
    severity: critical
    hold: 0s
    clear_hold: 1s
  - source: device_offline
    device_kind: camera
    severity: major
    hold: 0s
    clear_hold: 1s
  - source: device_offline
    device_kind: sensor
    severity: major
    hold: 0s
    clear_hold: 1s
  - source: sensor_triggered
    severity: critical
`

func quickAlarms(t *testing.T) func(*config.Config) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(quickRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) { c.Alarms.Rules = path }
}

// alarmView is an alarm as a console decodes it.
type alarmView struct {
	ID     string       `json:"id"`
	Source alarm.Source `json:"source"`
	Agent  string       `json:"agent"`
	Device string       `json:"device"`
	State  alarm.State  `json:"state"`
}

type alarmEvent struct {
	Kind       alarm.EventKind  `json:"kind"`
	Alarm      alarmView        `json:"alarm"`
	Transition alarm.Transition `json:"transition"`
}

// alarmClient is a console websocket client collecting alarm events.
type alarmClient struct {
	hello  map[string]int // alarm counts
	events chan alarmEvent
}

func dialAlarms(t *testing.T, hub *app.App) *alarmClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hub.ConsoleURL(), "http")+"api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var hello struct {
		Type   string         `json:"type"`
		Alarms map[string]int `json:"alarms"`
	}
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != "hello" || hello.Alarms == nil {
		t.Fatalf("first websocket message: %+v, %v; want a hello with alarm counts", hello, err)
	}
	c := &alarmClient{hello: hello.Alarms, events: make(chan alarmEvent, 10_000)}
	go func() {
		defer close(c.events)
		for {
			var m struct {
				Type  string      `json:"type"`
				Event *alarmEvent `json:"event"`
			}
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			if m.Type == "alarm" && m.Event != nil {
				c.events <- *m.Event
			}
		}
	}()
	return c
}

// await returns the first event for which match is true; every event before
// it goes to skipped, if not nil.
func (c *alarmClient) await(t *testing.T, within time.Duration, what string, match func(alarmEvent) bool, skipped func(alarmEvent)) alarmEvent {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("websocket closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
			if skipped != nil {
				skipped(ev)
			}
		case <-timeout:
			t.Fatalf("no alarm event within %s: %s", within, what)
		}
	}
}

// postAlarm sends an action and returns the status and body.
func postAlarm(t *testing.T, hub *app.App, id, action, body string) (int, string) {
	t.Helper()
	res, err := httpClient.Post(hub.ConsoleURL()+"api/alarms/"+id+"/"+action, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// A lost agent is ONE alarm, not one per device behind it, and it clears
// itself when the agent returns.
func TestAlarmAgentOffline(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, interval: 2 * time.Second, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	ws := dialAlarms(t, s.hub)
	agent := s.sim.City().Agents[1].ID
	devices := s.devicesOf(agent)
	deviceAlarm := func(ev alarmEvent) {
		if slices.Contains(devices, ev.Alarm.Device) {
			t.Errorf("device alarm %s %s for %s behind the lost agent", ev.Kind, ev.Alarm.Source, ev.Alarm.Device)
		}
	}

	if err := s.sim.Fault(sim.Fault{Agent: agent, Fault: sim.FaultDisconnect, For: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	raised := ws.await(t, 20*time.Second, agent+" agent_offline raised", func(ev alarmEvent) bool {
		return ev.Kind == alarm.EventRaise && ev.Alarm.Source == alarm.SourceAgentOffline && ev.Alarm.Agent == agent
	}, deviceAlarm)
	var list struct {
		Alarms []alarmView    `json:"alarms"`
		Total  int            `json:"total"`
		Counts map[string]int `json:"counts"`
	}
	getJSON(t, s.hub.ConsoleURL()+"api/alarms?agent="+agent, &list)
	if list.Total != 1 || list.Alarms[0].ID != raised.Alarm.ID || list.Counts["critical"] != 1 {
		t.Errorf("alarms of %s: %+v, want only %s", agent, list, raised.Alarm.ID)
	}
	var detail struct {
		Children []struct {
			Device string `json:"device"`
			Status string `json:"status"`
		} `json:"children"`
	}
	getJSON(t, s.hub.ConsoleURL()+"api/alarms/"+raised.Alarm.ID, &detail)
	var attached []string
	for _, c := range detail.Children {
		if c.Status == "suppressed" {
			attached = append(attached, c.Device)
		}
	}
	slices.Sort(attached)
	slices.Sort(devices)
	if !slices.Equal(attached, devices) {
		t.Errorf("devices attached to %s: %v, want every device of %s: %v", raised.Alarm.ID, attached, agent, devices)
	}
	if c := dialAlarms(t, s.hub); c.hello["critical"] < 1 {
		t.Errorf("a new client's hello counts %v, want the critical alarm", c.hello)
	}

	ws.await(t, 40*time.Second, agent+" agent_offline cleared", func(ev alarmEvent) bool {
		return ev.Kind == alarm.EventClear && ev.Alarm.ID == raised.Alarm.ID
	}, deviceAlarm)
	s.waitAllOnline(t)
	getJSON(t, s.hub.ConsoleURL()+"api/alarms?agent="+agent+"&state=active_unack&state=active_ack", &list)
	if list.Total != 0 {
		t.Errorf("active alarms of %s after its return: %+v", agent, list)
	}
}

// An operator's action reaches every console, and the API refuses what it
// must.
func TestAlarmAckReachesOtherConsoles(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	alice, bob := dialAlarms(t, s.hub), dialAlarms(t, s.hub)
	_, cam := firstCamera(t, s)

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	isCam := func(ev alarmEvent) bool {
		return ev.Alarm.Device == cam && ev.Alarm.Source == alarm.SourceDeviceOffline
	}
	raised := alice.await(t, 30*time.Second, cam+" offline raised", func(ev alarmEvent) bool {
		return isCam(ev) && ev.Kind == alarm.EventRaise
	}, nil)
	id := raised.Alarm.ID

	code, body := postAlarm(t, s.hub, id, "ack", `{"who":"alice","note":"crew sent"}`)
	if code != http.StatusOK {
		t.Fatalf("ack: %d %s", code, body)
	}
	var reply struct{ Alarm alarmView }
	if err := json.Unmarshal([]byte(body), &reply); err != nil || reply.Alarm.State != alarm.ActiveAck {
		t.Errorf("ack reply %s (%v)", body, err)
	}
	ev := bob.await(t, 10*time.Second, "the ack on the other console", func(ev alarmEvent) bool {
		return ev.Alarm.ID == id && ev.Kind == alarm.EventUpdate
	}, nil)
	if ev.Alarm.State != alarm.ActiveAck || ev.Transition.Who != "alice" || ev.Transition.Action != alarm.ActAck {
		t.Errorf("other console got %+v", ev)
	}

	for _, tt := range []struct {
		name, id, action, body string
		code                   int
	}{
		{"unknown id", "A999999", "ack", `{"who":"alice"}`, http.StatusNotFound},
		{"clear", id, "clear", `{"who":"alice"}`, http.StatusOK},
		{"clear twice", id, "clear", `{"who":"alice"}`, http.StatusConflict},
		{"bad JSON", id, "ack", `{"who":`, http.StatusBadRequest},
		{"no who", id, "ack", `{}`, http.StatusBadRequest},
	} {
		if code, body := postAlarm(t, s.hub, tt.id, tt.action, tt.body); code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.code)
		} else if code != http.StatusOK && !strings.Contains(body, `"error"`) {
			t.Errorf("%s: body %s has no error", tt.name, body)
		}
	}
	res, err := httpClient.Get(s.hub.ConsoleURL() + "api/alarms/A999999")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET unknown alarm: %s", res.Status)
	}
}

// The agent comes back with one camera still broken: the agent's alarm
// clears and that camera — and only it — gets its own alarm.
func TestAlarmAgentReturnsWithBrokenCamera(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, interval: 2 * time.Second, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	ws := dialAlarms(t, s.hub)
	a := s.sim.City().Agents[1]
	cam := a.Cameras[0].ID
	if err := s.sim.Fault(sim.Fault{Agent: a.ID, Fault: sim.FaultDisconnect, For: 8 * time.Second}); err != nil {
		t.Fatal(err)
	}
	parent := ws.await(t, 20*time.Second, a.ID+" agent_offline raised", func(ev alarmEvent) bool {
		return ev.Kind == alarm.EventRaise && ev.Alarm.Source == alarm.SourceAgentOffline && ev.Alarm.Agent == a.ID
	}, nil)
	// While the site is cut off, one of its cameras breaks too.
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var others []string
	ev := ws.await(t, 60*time.Second, cam+" raised after the agent returned", func(ev alarmEvent) bool {
		return ev.Kind == alarm.EventRaise && ev.Alarm.Device == cam
	}, func(ev alarmEvent) {
		if ev.Kind == alarm.EventRaise && ev.Alarm.Device != "" && ev.Alarm.Device != cam {
			others = append(others, ev.Alarm.Device)
		}
	})
	if ev.Alarm.Source != alarm.SourceDeviceOffline {
		t.Errorf("%s raised %s, want device_offline", cam, ev.Alarm.Source)
	}
	if len(others) > 0 {
		t.Errorf("other devices of the site raised alarms: %v", others)
	}
	var d struct {
		Alarm alarmView `json:"alarm"`
	}
	eventually(t, 20*time.Second, func() error {
		getJSON(t, s.hub.ConsoleURL()+"api/alarms/"+parent.Alarm.ID, &d)
		if d.Alarm.State.Active() {
			return fmt.Errorf("the agent's alarm is still %s", d.Alarm.State)
		}
		return nil
	})
}

// A sensor's alarm comes with the cameras to verify it by: those looking at
// the sensor, nearest first, from the sensor's own site.
func TestSensorAlarmSuggestsNearestCameras(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	ws := dialAlarms(t, s.hub)
	var sensor, site string
	cameras := map[string]string{} // camera → site
	for _, a := range s.sim.City().Agents {
		for _, c := range a.Cameras {
			cameras[c.ID] = a.Site.ID
		}
		if sensor == "" && len(a.Sensors) > 0 && len(a.Cameras) > 0 {
			for _, d := range a.Sensors {
				if d.Kind == wire.SensorIntrusion || d.Kind == wire.SensorDoor {
					sensor, site = d.ID, a.Site.ID
					break
				}
			}
		}
	}
	if sensor == "" {
		t.Fatal("no intrusion or door sensor at a site with cameras")
	}
	if err := s.sim.Fault(sim.Fault{Device: sensor, Fault: sim.FaultTrigger}); err != nil {
		t.Fatal(err)
	}
	ev := ws.await(t, 20*time.Second, sensor+" triggered", func(ev alarmEvent) bool {
		return ev.Kind == alarm.EventRaise && ev.Alarm.Device == sensor
	}, nil)
	var d struct {
		Cameras []struct {
			ID        string  `json:"id"`
			DistanceM float64 `json:"distance_m"`
			Covers    bool    `json:"covers"`
		} `json:"cameras"`
	}
	getJSON(t, s.hub.ConsoleURL()+"api/alarms/"+ev.Alarm.ID, &d)
	if len(d.Cameras) == 0 {
		t.Fatalf("alarm %s of sensor %s suggests no camera", ev.Alarm.ID, sensor)
	}
	if cameras[d.Cameras[0].ID] != site {
		t.Errorf("first suggested camera %s is at %q, the sensor at %q", d.Cameras[0].ID, cameras[d.Cameras[0].ID], site)
	}
	for i, c := range d.Cameras {
		if _, ok := cameras[c.ID]; !ok {
			t.Errorf("suggested %s is not a camera", c.ID)
		}
		if i > 0 && c.Covers == d.Cameras[i-1].Covers && c.DistanceM < d.Cameras[i-1].DistanceM {
			t.Errorf("cameras not nearest first: %+v", d.Cameras)
		}
	}
}
