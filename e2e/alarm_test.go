package e2e

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/identity"
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
  - source: security
    severity: major
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
	Type   string       `json:"type"`
	Agent  string       `json:"agent"`
	Device string       `json:"device"`
	State  alarm.State  `json:"state"`
	// Args are the figures of a detail the hub wrote.
	Args map[string]string `json:"args"`
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

func dialAlarms(t *testing.T, as *apiClient) *alarmClient {
	t.Helper()
	conn, err := as.dial(websocket.Dialer{})
	if err != nil {
		t.Fatalf("event stream as %s: %v", as.name, err)
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

// postAlarm sends an action as caller and returns the status and body.
func postAlarm(t testing.TB, as *apiClient, id, action, body string) (int, string) {
	t.Helper()
	return as.post(t, "api/alarms/"+id+"/"+action, body)
}

// A lost agent is ONE alarm, not one per device behind it, and it clears
// itself when the agent returns.
func TestAlarmAgentOffline(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, interval: 2 * time.Second, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	ws := dialAlarms(t, s.api)
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
	s.api.getJSON(t, "api/alarms?agent="+agent, &list)
	if list.Total != 1 || list.Alarms[0].ID != raised.Alarm.ID || list.Counts["critical"] != 1 {
		t.Errorf("alarms of %s: %+v, want only %s", agent, list, raised.Alarm.ID)
	}
	var detail struct {
		Children []struct {
			Device string `json:"device"`
			Status string `json:"status"`
		} `json:"children"`
	}
	s.api.getJSON(t, "api/alarms/"+raised.Alarm.ID, &detail)
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
	if c := dialAlarms(t, s.api); c.hello["critical"] < 1 {
		t.Errorf("a new client's hello counts %v, want the critical alarm", c.hello)
	}

	ws.await(t, 40*time.Second, agent+" agent_offline cleared", func(ev alarmEvent) bool {
		return ev.Kind == alarm.EventClear && ev.Alarm.ID == raised.Alarm.ID
	}, deviceAlarm)
	s.waitAllOnline(t)
	s.api.getJSON(t, "api/alarms?agent="+agent+"&state=active_unack&state=active_ack", &list)
	if list.Total != 0 {
		t.Errorf("active alarms of %s after its return: %+v", agent, list)
	}
}

// A person's action reaches every console under their own name, and the
// API refuses what it must.
func TestAlarmAckReachesOtherConsoles(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	aliceAPI := signIn(t, s.hub, identity.AccountSpec{Name: "alice", Role: auth.Supervisor, Scope: auth.Everything})
	bobAPI := signIn(t, s.hub, identity.AccountSpec{Name: "bob", Role: auth.Operator, Scope: auth.Everything})
	alice, bob := dialAlarms(t, aliceAPI), dialAlarms(t, bobAPI)
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

	code, body := postAlarm(t, aliceAPI, id, "ack", `{"note":"crew sent"}`)
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
	page, err := s.hub.Audit().Query(context.Background(), audit.Filter{Action: "alarm.ack", Object: "alarm/" + id})
	if err != nil || len(page.Records) != 1 || page.Records[0].Actor != "alice" || page.Records[0].Outcome != audit.Success ||
		page.Records[0].Detail != "crew sent" {
		t.Errorf("the ack in the audit trail: %+v, %v", page.Records, err)
	}

	noCSRF := *aliceAPI
	noCSRF.csrf = ""
	for _, tt := range []struct {
		name   string
		as     *apiClient
		id     string
		action string
		body   string
		code   int
	}{
		{"unknown id", aliceAPI, "A999999", "ack", `{}`, http.StatusNotFound},
		{"operator clears", bobAPI, id, "clear", `{}`, http.StatusForbidden},
		{"session without CSRF token", &noCSRF, id, "clear", `{}`, http.StatusForbidden},
		{"clear", aliceAPI, id, "clear", `{"note":"fixed"}`, http.StatusOK},
		{"clear twice", aliceAPI, id, "clear", `{}`, http.StatusConflict},
		{"bad JSON", aliceAPI, id, "ack", `{"note":`, http.StatusBadRequest},
		{"who is named in the body", aliceAPI, id, "ack", `{"who":"mallory"}`, http.StatusBadRequest},
	} {
		if code, body := postAlarm(t, tt.as, tt.id, tt.action, tt.body); code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.code)
		} else if code != http.StatusOK && !strings.Contains(body, `"error"`) {
			t.Errorf("%s: body %s has no error", tt.name, body)
		}
	}
	if code, body := bobAPI.call(t, http.MethodGet, "api/alarms/A999999", ""); code != http.StatusNotFound {
		t.Errorf("GET unknown alarm: %d %s", code, body)
	}
}

// The agent comes back with one camera still broken: the agent's alarm
// clears and that camera — and only it — gets its own alarm.
func TestAlarmAgentReturnsWithBrokenCamera(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, interval: 2 * time.Second, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	ws := dialAlarms(t, s.api)
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
		s.api.getJSON(t, "api/alarms/"+parent.Alarm.ID, &d)
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
	ws := dialAlarms(t, s.api)
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
	s.api.getJSON(t, "api/alarms/"+ev.Alarm.ID, &d)
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
