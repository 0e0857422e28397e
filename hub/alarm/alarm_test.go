package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// harness drives an Engine with a fake clock and records its events.
type harness struct {
	t      *testing.T
	now    time.Time
	e      *Engine
	events []Event
}

func newHarness(t *testing.T, rulesYAML string) *harness {
	t.Helper()
	rs, err := ParseRules([]byte(rulesYAML))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	h := &harness{t: t, now: t0}
	h.e = New(rs, Options{
		Now:     func() time.Time { return h.now },
		OnEvent: func(ev Event) { h.events = append(h.events, ev) },
	})
	return h
}

// advance moves the clock and ticks, as Run would every second.
func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.e.Tick(h.now)
}

func (h *harness) device(d fleet.Device) {
	if d.Agent == "" {
		d.Agent = "ag1"
	}
	h.e.Observe(fleet.Change{Kind: fleet.ChangeDevice, To: d.Status, Device: &d})
}

func (h *harness) camera(id string, st wire.Status) {
	h.device(fleet.Device{ID: id, Kind: wire.KindCamera, Status: st, Criticality: 3})
}

// all returns every alarm, closed ones included.
func (h *harness) all() []Alarm {
	return h.e.Alarms(Filter{States: States})
}

// only returns the single alarm there must be.
func (h *harness) only() Alarm {
	h.t.Helper()
	as := h.all()
	if len(as) != 1 {
		h.t.Fatalf("want exactly 1 alarm, have %d: %+v", len(as), as)
	}
	return as[0]
}

func (h *harness) kinds() []EventKind {
	var ks []EventKind
	for _, ev := range h.events {
		ks = append(ks, ev.Kind)
	}
	return ks
}

const instantRules = `
rules:
  - source: device_offline
    severity: major
`

func TestDefaultRules(t *testing.T) {
	rs := DefaultRules()
	if len(rs) == 0 {
		t.Fatal("no default rules")
	}
	if _, err := ParseRules(DefaultYAML()); err != nil {
		t.Fatalf("default YAML: %v", err)
	}
	tests := []struct {
		src  Source
		dk   wire.DeviceKind
		sk   wire.SensorKind
		want Severity
	}{
		{SourceSensorTriggered, wire.KindSensor, wire.SensorSmoke, Critical},
		{SourceSensorTriggered, wire.KindSensor, wire.SensorDoor, Major}, // the general sensor rule
		{SourceSensorTriggered, wire.KindSensor, wire.SensorVibration, Minor},
		{SourceDeviceOffline, wire.KindCamera, "", Major},
		{SourceAgentOffline, "", "", Critical},
		{SourceStreamFailure, wire.KindCamera, "", Minor},
		{SourceMotion, wire.KindCamera, "", Warning}, // news, not a fault
	}
	for _, tt := range tests {
		r, ok := rs.match(tt.src, tt.dk, tt.sk, "")
		if !ok || r.Severity != tt.want {
			t.Errorf("%s/%s/%s: got %v %v, want %v", tt.src, tt.dk, tt.sk, r.Severity, ok, tt.want)
		}
	}
	if r, _ := rs.match(SourceDeviceOffline, wire.KindCamera, "", ""); r.Hold != 30*time.Second {
		t.Errorf("camera offline hold = %s, want 30s (a 3 s drop is not an alarm)", r.Hold)
	}
}

func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every one must be reported
	}{
		{"unknown key", "rules:\n  - source: device_offline\n    severity: major\n    hodl: 3s\n", []string{"hodl"}},
		{"empty", "", []string{"empty"}},
		{"bad duration", "rules:\n  - source: device_offline\n    severity: major\n    hold: soon\n", []string{"soon"}},
		{"all problems at once", `
rules:
  - source: device_ofline
    severity: huge
  - source: sensor_triggered
    device_kind: camera
    sensor_kind: smoke
  - source: power_lost
    severity: minor
    hold: -1s
    flap: {transitions: 1, window: 1m}
  - source: power_lost
    severity: major
  - source: threshold
    severity: warning
    flap: {window: 1m}
  - source: stream_failure
    severity: minor
    flap: {transitions: 3}
`, []string{
			`rule 1: unknown source "device_ofline"`,
			`rule 1: unknown severity "huge"`,
			`rule 2: sensor_kind "smoke" with device_kind camera never matches`,
			`rule 2: severity is required`,
			`rule 3: hold is negative`,
			`rule 3: flap.transitions must be 0 (off) or at least 2`,
			`rule 4: same source, device_kind and sensor_kind as rule 3`,
			`rule 5: flap.window without flap.transitions`,
			`rule 6: flap.transitions needs a positive flap.window`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestSeverity(t *testing.T) {
	tests := []struct{ in, up Severity }{{Warning, Minor}, {Minor, Major}, {Major, Critical}, {Critical, Critical}}
	for _, tt := range tests {
		if got := tt.in.Up(); got != tt.up {
			t.Errorf("%s.Up() = %s, want %s", tt.in, got, tt.up)
		}
		s, err := ParseSeverity(tt.in.String())
		if err != nil || s != tt.in {
			t.Errorf("ParseSeverity(%q) = %v, %v", tt.in, s, err)
		}
	}
	if Priority(Critical, 1) <= Priority(Major, 5) {
		t.Error("severity must dominate criticality")
	}
	if Priority(Major, 0) != Priority(Major, 1) || Priority(Major, 9) != Priority(Major, 5) {
		t.Error("criticality is not clamped to 1–5")
	}
}

func TestActions(t *testing.T) {
	// into puts a fresh alarm into a state through operator actions.
	into := map[State]func(e *Engine, id string){
		ActiveUnack:  func(*Engine, string) {},
		ActiveAck:    func(e *Engine, id string) { _ = e.Ack(id, "op", "") },
		ClearedUnack: func(e *Engine, id string) { _ = e.Clear(id, "op", "") },
		ClearedAck:   func(e *Engine, id string) { _ = e.Clear(id, "op", ""); _ = e.Ack(id, "op", "") },
	}
	actions := map[Action]func(e *Engine, id string, now time.Time) error{
		ActAck:      func(e *Engine, id string, _ time.Time) error { return e.Ack(id, "bob", "seen") },
		ActAssign:   func(e *Engine, id string, _ time.Time) error { return e.Assign(id, "bob", "crew7", "") },
		ActShelve:   func(e *Engine, id string, now time.Time) error { return e.Shelve(id, "bob", now.Add(time.Hour), "") },
		ActUnshelve: func(e *Engine, id string, _ time.Time) error { return e.Unshelve(id, "bob", "") },
		ActClear:    func(e *Engine, id string, _ time.Time) error { return e.Clear(id, "bob", "fixed") },
	}
	const bad = State("error")
	tests := []struct {
		action Action
		want   map[State]State // from → to, or bad
	}{
		{ActAck, map[State]State{ActiveUnack: ActiveAck, ActiveAck: bad, ClearedUnack: ClearedAck, ClearedAck: bad}},
		{ActAssign, map[State]State{ActiveUnack: ActiveUnack, ActiveAck: ActiveAck, ClearedUnack: ClearedUnack, ClearedAck: bad}},
		{ActShelve, map[State]State{ActiveUnack: ActiveUnack, ActiveAck: ActiveAck, ClearedUnack: ClearedUnack, ClearedAck: bad}},
		{ActUnshelve, map[State]State{ActiveUnack: bad, ActiveAck: bad, ClearedUnack: bad, ClearedAck: bad}}, // not shelved
		{ActClear, map[State]State{ActiveUnack: ClearedUnack, ActiveAck: ClearedAck, ClearedUnack: bad, ClearedAck: bad}},
	}
	for _, tt := range tests {
		for _, from := range States {
			t.Run(string(tt.action)+"/"+string(from), func(t *testing.T) {
				h := newHarness(t, instantRules)
				h.camera("cam1", wire.StatusOffline)
				id := h.only().ID
				into[from](h.e, id)
				if got := h.only().State; got != from {
					t.Fatalf("setup: state %s, want %s", got, from)
				}
				_, before, _ := h.e.Alarm(id)
				err := actions[tt.action](h.e, id, h.now)
				a, trail, _ := h.e.Alarm(id)
				want := tt.want[from]
				if want == bad {
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("err = %v, want ErrInvalid", err)
					}
					if a.State != from || len(trail) != len(before) {
						t.Fatalf("a refused action changed the alarm: %s, %d transitions", a.State, len(trail))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				last := trail[len(trail)-1]
				if a.State != want || last.Action != tt.action || last.From != from || last.To != want || last.Who != "bob" {
					t.Fatalf("state %s, last transition %+v; want %s", a.State, last, want)
				}
			})
		}
	}
	t.Run("unknown id", func(t *testing.T) {
		h := newHarness(t, instantRules)
		for name, act := range actions {
			if err := act(h.e, "A404", h.now); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", name, err)
			}
		}
	})
	t.Run("unshelve when shelved", func(t *testing.T) {
		h := newHarness(t, instantRules)
		h.camera("cam1", wire.StatusOffline)
		id := h.only().ID
		if err := h.e.Shelve(id, "bob", h.now, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("shelve until now: err = %v, want ErrInvalid", err)
		}
		if err := h.e.Shelve(id, "bob", h.now.Add(time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		if err := h.e.Unshelve(id, "bob", ""); err != nil {
			t.Fatal(err)
		}
		if a := h.only(); !a.ShelvedUntil.IsZero() {
			t.Errorf("still shelved until %s", a.ShelvedUntil)
		}
	})
}

func TestHold(t *testing.T) {
	h := newHarness(t, `
rules:
  - source: device_offline
    severity: major
    hold: 30s
`)
	h.camera("cam1", wire.StatusOffline)
	h.advance(20 * time.Second)
	h.camera("cam1", wire.StatusOnline)
	h.advance(time.Minute)
	if as := h.all(); len(as) != 0 || len(h.events) != 0 {
		t.Fatalf("a 20 s drop raised %+v, events %v", as, h.kinds())
	}
	h.camera("cam1", wire.StatusOffline)
	for range 29 {
		h.advance(time.Second)
	}
	if as := h.all(); len(as) != 0 {
		t.Fatalf("raised before the hold: %+v", as)
	}
	h.advance(time.Second)
	h.advance(time.Minute)
	a := h.only()
	if a.State != ActiveUnack || a.Count != 1 || !a.FirstAt.Equal(t0.Add(110*time.Second)) {
		t.Errorf("alarm %+v", a)
	}
	if !slices.Equal(h.kinds(), []EventKind{EventRaise}) {
		t.Errorf("events %v, want one raise", h.kinds())
	}
}

func TestHysteresisAndDedupe(t *testing.T) {
	h := newHarness(t, `
rules:
  - source: device_offline
    severity: major
    clear_hold: 60s
`)
	h.camera("cam1", wire.StatusOffline)
	h.advance(10 * time.Second)
	h.camera("cam1", wire.StatusOnline) // a brief recovery…
	h.advance(59 * time.Second)
	if a := h.only(); a.State != ActiveUnack {
		t.Fatalf("cleared after %s, before clear_hold: %s", 59*time.Second, a.State)
	}
	h.camera("cam1", wire.StatusOffline) // …and it is back: the same alarm, counted
	a := h.only()
	if a.State != ActiveUnack || a.Count != 2 {
		t.Fatalf("after the repeat: %s count %d", a.State, a.Count)
	}
	h.camera("cam1", wire.StatusOnline)
	h.advance(60 * time.Second)
	a = h.only()
	if a.State != ClearedUnack || !a.ClearedAt.Equal(h.now) {
		t.Fatalf("not auto-cleared after clear_hold: %+v", a)
	}
	_, trail, _ := h.e.Alarm(a.ID)
	var acts []string
	for _, tr := range trail {
		acts = append(acts, string(tr.Action))
	}
	if got := strings.Join(acts, ","); got != "raise,repeat,auto_clear" {
		t.Errorf("trail %s", got)
	}
	if !slices.Equal(h.kinds(), []EventKind{EventRaise, EventUpdate, EventClear}) {
		t.Errorf("events %v", h.kinds())
	}

	// Cleared but not acknowledged: a new occurrence re-activates it.
	h.camera("cam1", wire.StatusOffline)
	if a = h.only(); a.State != ActiveUnack || a.Count != 3 || !a.ClearedAt.IsZero() {
		t.Fatalf("re-activation: %+v", a)
	}
	// Closed (cleared and acknowledged): a new occurrence is a new alarm.
	if err := h.e.Clear(a.ID, "op", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Ack(a.ID, "op", ""); err != nil {
		t.Fatal(err)
	}
	h.camera("cam1", wire.StatusOnline)
	h.camera("cam1", wire.StatusOffline)
	open := h.e.Alarms(Filter{})
	if len(open) != 1 || open[0].ID == a.ID || open[0].Count != 1 {
		t.Fatalf("after closing, open alarms %+v", open)
	}
	if len(h.all()) != 2 {
		t.Errorf("the closed alarm is gone")
	}
}

func TestManualClearWhileConditionPersists(t *testing.T) {
	h := newHarness(t, instantRules)
	h.camera("cam1", wire.StatusOffline)
	id := h.only().ID
	if err := h.e.Clear(id, "op", "known outage"); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Hour)
	if a := h.only(); a.State != ClearedUnack || a.Count != 1 {
		t.Errorf("the still-present condition was raised again: %+v", a)
	}
}

func TestFlapping(t *testing.T) {
	h := newHarness(t, `
rules:
  - source: device_offline
    severity: major
    hold: 30s
    clear_hold: 30s
    flap: {transitions: 4, window: 1m}
`)
	st := wire.StatusOffline
	for range 12 { // 12 transitions, 5 s apart: each too short for the hold
		h.camera("cam1", st)
		h.advance(5 * time.Second)
		if st == wire.StatusOffline {
			st = wire.StatusOnline
		} else {
			st = wire.StatusOffline
		}
	}
	a := h.only()
	if !a.Flapping || a.State != ActiveUnack || a.Count != 1 {
		t.Fatalf("flapping alarm %+v", a)
	}
	if !slices.Equal(h.kinds(), []EventKind{EventFlap}) {
		t.Fatalf("events %v, want a single flap", h.kinds())
	}
	// The last transition was to online; once quiet for the window the
	// flapping ends and, the camera being up, the alarm clears.
	h.advance(50 * time.Second) // the last transition was 55 s after the first, the clock is at 60 s
	if a = h.only(); !a.Flapping {
		t.Fatal("flapping ended before a quiet window")
	}
	h.advance(5 * time.Second)
	a = h.only()
	if a.Flapping || a.State != ClearedUnack {
		t.Fatalf("after a quiet window: %+v", a)
	}
	if !slices.Equal(h.kinds(), []EventKind{EventFlap, EventFlap, EventClear}) {
		t.Errorf("events %v", h.kinds())
	}
	// Slow changes afterwards are ordinary occurrences again.
	h.camera("cam1", wire.StatusOffline)
	h.advance(31 * time.Second)
	if a = h.only(); a.Flapping || a.State != ActiveUnack || a.Count != 2 {
		t.Errorf("after flapping, a real outage: %+v", a)
	}
}

func TestEscalation(t *testing.T) {
	const rules = `
rules:
  - source: device_offline
    severity: minor
    escalate_after: 5m
`
	t.Run("unacknowledged", func(t *testing.T) {
		h := newHarness(t, rules)
		h.camera("cam1", wire.StatusOffline)
		want := []Severity{Major, Critical, Critical}
		for i, sev := range want {
			h.advance(4*time.Minute + 59*time.Second)
			if a := h.only(); a.Escalations != i {
				t.Fatalf("escalated early: %+v", a)
			}
			h.advance(time.Second)
			a := h.only()
			if a.Severity != sev || a.Escalations != i+1 || a.Priority != Priority(sev, 3) {
				t.Fatalf("escalation %d: %s, %d escalations, priority %d", i+1, a.Severity, a.Escalations, a.Priority)
			}
			ev := h.events[len(h.events)-1]
			if ev.Kind != EventEscalate || ev.Alarm.Escalations != i+1 {
				t.Fatalf("event %+v", ev)
			}
		}
	})
	t.Run("acknowledged", func(t *testing.T) {
		h := newHarness(t, rules)
		h.camera("cam1", wire.StatusOffline)
		h.advance(time.Minute)
		if err := h.e.Ack(h.only().ID, "op", ""); err != nil {
			t.Fatal(err)
		}
		h.advance(time.Hour)
		if a := h.only(); a.Severity != Minor || a.Escalations != 0 {
			t.Errorf("acknowledged alarm escalated: %+v", a)
		}
	})
}

func TestShelving(t *testing.T) {
	h := newHarness(t, `
rules:
  - source: device_offline
    severity: minor
    escalate_after: 5m
`)
	h.camera("cam1", wire.StatusOffline)
	id := h.only().ID
	if err := h.e.Shelve(id, "op", h.now.Add(10*time.Minute), "road works"); err != nil {
		t.Fatal(err)
	}
	h.events = nil
	for range 4 { // recoveries and repeats, and time past escalate_after
		h.camera("cam1", wire.StatusOnline)
		h.advance(time.Minute)
		h.camera("cam1", wire.StatusOffline)
		h.advance(time.Minute)
	}
	if len(h.events) != 0 {
		t.Fatalf("a shelved alarm notified: %v", h.kinds())
	}
	a := h.only()
	if a.Escalations != 0 || a.Count != 5 {
		t.Fatalf("while shelved: %+v", a)
	}
	h.advance(2 * time.Minute) // shelving expires
	if a = h.only(); !a.ShelvedUntil.IsZero() || !slices.Equal(h.kinds(), []EventKind{EventUpdate}) {
		t.Fatalf("after shelving: %+v, events %v", a, h.kinds())
	}
	h.advance(5 * time.Minute) // escalation counts from the end of shelving
	if a = h.only(); a.Escalations != 1 {
		t.Errorf("escalations %d after shelving, want 1", a.Escalations)
	}
}

func TestPriorityOrder(t *testing.T) {
	h := newHarness(t, `
rules:
  - source: device_offline
    severity: minor
  - source: sensor_triggered
    severity: critical
`)
	h.device(fleet.Device{ID: "cam-low", Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 1})
	h.device(fleet.Device{ID: "cam-high", Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 5})
	h.advance(time.Second)
	h.device(fleet.Device{ID: "cam-low2", Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 1})
	h.device(fleet.Device{ID: "door", Kind: wire.KindSensor, SensorKind: wire.SensorDoor, Status: wire.StatusOnline, Triggered: true, Criticality: 1})
	var got []string
	for _, a := range h.e.Alarms(Filter{}) {
		got = append(got, a.Device)
	}
	// Severity first, then criticality, then the most recent.
	if s := strings.Join(got, ","); s != "door,cam-high,cam-low2,cam-low" {
		t.Errorf("order %s", s)
	}
	if n := len(h.e.Alarms(Filter{MinSeverity: Critical})); n != 1 {
		t.Errorf("MinSeverity critical: %d alarms", n)
	}
}

func TestObserve(t *testing.T) {
	rules := string(DefaultYAML())
	tests := []struct {
		name   string
		device fleet.Device
		want   Source // "" for no alarm
		typ    string
	}{
		{"camera offline", fleet.Device{Kind: wire.KindCamera, Status: wire.StatusOffline, Reason: wire.ReasonUnreachable}, SourceDeviceOffline, "camera_offline"},
		{"camera online", fleet.Device{Kind: wire.KindCamera, Status: wire.StatusOnline}, "", ""},
		{"camera no stream", fleet.Device{Kind: wire.KindCamera, Status: wire.StatusDegraded, Reason: wire.ReasonNoStream}, SourceStreamFailure, "no_stream"},
		{"camera unreachable behind its agent", fleet.Device{Kind: wire.KindCamera, Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline}, "", ""},
		{"sensor supervision lost", fleet.Device{Kind: wire.KindSensor, SensorKind: wire.SensorDoor, Status: wire.StatusOffline, Reason: wire.ReasonSupervisionLost}, SourceSupervisionLost, "supervision_lost"},
		{"smoke triggered", fleet.Device{Kind: wire.KindSensor, SensorKind: wire.SensorSmoke, Status: wire.StatusOnline, Triggered: true}, SourceSensorTriggered, "smoke"},
		{"power sensor triggered", fleet.Device{Kind: wire.KindSensor, SensorKind: wire.SensorPower, Status: wire.StatusOnline, Triggered: true}, SourcePowerLost, "power_lost"},
		{"power sensor offline", fleet.Device{Kind: wire.KindSensor, SensorKind: wire.SensorPower, Status: wire.StatusOffline}, SourcePowerLost, "power_lost"},
		{"camera motion", fleet.Device{Kind: wire.KindCamera, Status: wire.StatusOnline, Triggered: true}, SourceMotion, "motion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, rules)
			tt.device.ID = "d1"
			h.device(tt.device)
			h.advance(2 * time.Minute) // past every default hold
			as := h.all()
			if tt.want == "" {
				if len(as) != 0 {
					t.Fatalf("raised %+v", as)
				}
				return
			}
			if len(as) != 1 || as[0].Source != tt.want || as[0].Type != tt.typ || as[0].Key != string(tt.want)+":device/d1" {
				t.Fatalf("alarms %+v, want one %s/%s", as, tt.want, tt.typ)
			}
		})
	}
	t.Run("trigger restored clears", func(t *testing.T) {
		h := newHarness(t, rules)
		d := fleet.Device{ID: "s1", Kind: wire.KindSensor, SensorKind: wire.SensorIntrusion, Status: wire.StatusOnline, Triggered: true}
		h.e.Observe(fleet.Change{Kind: fleet.ChangeTrigger, Device: &d})
		d.Triggered = false
		h.e.Observe(fleet.Change{Kind: fleet.ChangeTrigger, Device: &d})
		if a := h.only(); a.State != ClearedUnack || a.Severity != Critical {
			t.Errorf("intrusion alarm %+v", a)
		}
	})
	t.Run("agent offline is one alarm", func(t *testing.T) {
		h := newHarness(t, rules)
		ag := fleet.Agent{ID: "ag1", Site: "s1", District: "north", Status: wire.StatusOffline, Reason: "will"}
		affected := []fleet.Device{{ID: "c1", Criticality: 2}, {ID: "c2", Criticality: 4}}
		h.e.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOffline, Agent: &ag, Affected: affected})
		for _, d := range affected {
			d.Kind, d.Agent, d.Status, d.Reason = wire.KindCamera, "ag1", wire.StatusUnreachable, wire.ReasonAgentOffline
			h.device(d)
		}
		h.advance(time.Minute)
		a := h.only()
		if a.Source != SourceAgentOffline || a.Key != "agent_offline:agent/ag1" || a.Criticality != 4 || a.Priority != Priority(Critical, 4) {
			t.Fatalf("agent alarm %+v", a)
		}
		ag.Status = wire.StatusOnline
		h.e.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOnline, Agent: &ag})
		h.advance(time.Minute)
		if a = h.only(); a.State != ClearedUnack || a.Criticality != 4 {
			t.Errorf("after the agent returned: %+v", a)
		}
	})
	t.Run("removed device clears", func(t *testing.T) {
		h := newHarness(t, instantRules)
		h.camera("cam1", wire.StatusOffline)
		h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Removed: []string{"cam1"}})
		if a := h.only(); a.State != ClearedUnack {
			t.Errorf("alarm of a removed device: %s", a.State)
		}
	})
}

func TestKeepClosed(t *testing.T) {
	rs, err := ParseRules([]byte(instantRules))
	if err != nil {
		t.Fatal(err)
	}
	e := New(rs, Options{Now: func() time.Time { return t0 }, KeepClosed: 2})
	for _, id := range []string{"c1", "c2", "c3"} {
		d := fleet.Device{ID: id, Kind: wire.KindCamera, Status: wire.StatusOffline}
		e.Observe(fleet.Change{Kind: fleet.ChangeDevice, Device: &d})
		a := e.Alarms(Filter{Device: id})[0]
		if err := e.Clear(a.ID, "op", ""); err != nil {
			t.Fatal(err)
		}
		if err := e.Ack(a.ID, "op", ""); err != nil {
			t.Fatal(err)
		}
	}
	as := e.Alarms(Filter{States: []State{ClearedAck}})
	if len(as) != 2 || as[0].Device == "c1" || as[1].Device == "c1" {
		t.Errorf("kept %+v, want the 2 newest closed alarms", as)
	}
}

func TestRunStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(nil, Options{}).Run(ctx); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte(instantRules))
	f.Add([]byte("rules: [{source: power_lost, severity: minor, flap: {transitions: 2, window: 1s}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseRules(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			if !r.Severity.Valid() || r.Hold < 0 || r.ClearHold < 0 || r.EscalateAfter < 0 {
				t.Fatalf("accepted an invalid rule %+v", r)
			}
		}
	})
}

func TestAlarmJSONRoundTrip(t *testing.T) {
	in := Alarm{ID: "A1", Key: "device_offline:device/cam-1", Source: SourceDeviceOffline, Severity: Major, State: ActiveUnack, Count: 2,
		Args: map[string]string{"node": "sw-1"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Alarm
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"severity":"apocalyptic"}`), &out); err == nil {
		t.Error("unknown severity decoded")
	}
}

// TestOneFaultOneAlarm puts every sensor kind in every condition a sensor
// can report and checks that each raises exactly the one alarm that names
// the fault, or none: a power sensor that stopped checking in has lost
// supervision, not mains power; an open tamper contact is a tamper alarm
// whatever the sensor detects; a sensor behind an offline agent is the
// agent's alarm.
func TestOneFaultOneAlarm(t *testing.T) {
	rules := string(DefaultYAML())
	type want struct {
		src Source
		typ string
	}
	conditions := []struct {
		name   string
		device fleet.Device
		want   func(k wire.SensorKind) *want
	}{
		{"online", fleet.Device{Status: wire.StatusOnline}, func(wire.SensorKind) *want { return nil }},
		{"triggered", fleet.Device{Status: wire.StatusOnline, Triggered: true}, func(k wire.SensorKind) *want {
			if k == wire.SensorPower {
				return &want{SourcePowerLost, "power_lost"}
			}
			return &want{SourceSensorTriggered, string(k)}
		}},
		{"supervision lost", fleet.Device{Status: wire.StatusOffline, Reason: wire.ReasonSupervisionLost}, func(wire.SensorKind) *want {
			return &want{SourceSupervisionLost, "supervision_lost"}
		}},
		{"offline", fleet.Device{Status: wire.StatusOffline, Reason: wire.ReasonProbeError}, func(k wire.SensorKind) *want {
			if k == wire.SensorPower {
				return &want{SourcePowerLost, "power_lost"}
			}
			return &want{SourceDeviceOffline, "sensor_offline"}
		}},
		{"tamper contact open", fleet.Device{Status: wire.StatusDegraded, Reason: wire.ReasonTamper}, func(k wire.SensorKind) *want {
			return &want{SourceTamper, string(k)}
		}},
		{"behind an offline agent", fleet.Device{Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline}, func(wire.SensorKind) *want { return nil }},
	}
	for _, k := range wire.SensorKinds {
		for _, c := range conditions {
			t.Run(string(k)+"/"+c.name, func(t *testing.T) {
				h := newHarness(t, rules)
				d := c.device
				d.ID, d.Kind, d.SensorKind, d.Criticality = "s1", wire.KindSensor, k, 3
				h.device(d)
				h.advance(2 * time.Minute) // past every default hold
				as := h.all()
				w := c.want(k)
				if w == nil {
					if len(as) != 0 {
						t.Fatalf("raised %d alarms, want none: %+v", len(as), as)
					}
					return
				}
				if len(as) != 1 || as[0].Source != w.src || as[0].Type != w.typ {
					var got []string
					for _, a := range as {
						got = append(got, string(a.Source)+"/"+a.Type)
					}
					t.Fatalf("raised %v, want one %s/%s", got, w.src, w.typ)
				}
				// The sensor back to normal clears it.
				d.Status, d.Reason, d.Triggered = wire.StatusOnline, "", false
				h.device(d)
				h.advance(2 * time.Minute)
				if a := h.only(); a.State != ClearedUnack {
					t.Errorf("after recovery: %s", a.State)
				}
			})
		}
	}
}

// TestLinkage reads a rule's linkage (video on a wall tile or a pop-up,
// covering cameras, a note to acknowledge), refuses bad values all at
// once, gives the alarm its rule's linkage, and refuses to acknowledge
// without a note an alarm whose rule wants one.
func TestLinkage(t *testing.T) {
	rules := `
rules:
  - source: sensor_triggered
    sensor_kind: intrusion
    severity: critical
    video: wall
    wall_tile: 2
    ack_note: true
  - source: device_offline
    severity: major
    video: popup
    cameras: 2
`
	h := newHarness(t, rules)
	h.device(fleet.Device{ID: "pir-1", Kind: wire.KindSensor, SensorKind: wire.SensorIntrusion, Status: wire.StatusOnline, Triggered: true})
	h.camera("cam-1", wire.StatusOffline)
	var pir, cam Alarm
	for _, a := range h.all() {
		switch a.Device {
		case "pir-1":
			pir = a
		case "cam-1":
			cam = a
		}
	}
	if want := (Linkage{Video: VideoWall, Tile: 2, Cameras: 1, AckNote: true}); pir.Linkage != want {
		t.Errorf("intrusion linkage %+v, want %+v", pir.Linkage, want)
	}
	if want := (Linkage{Video: VideoPopup, Cameras: 2}); cam.Linkage != want {
		t.Errorf("camera linkage %+v, want %+v", cam.Linkage, want)
	}
	if err := h.e.Ack(pir.ID, "li", "  "); !errors.Is(err, ErrNoteRequired) {
		t.Errorf("ack without a note: %v, want ErrNoteRequired", err)
	}
	if err := h.e.Ack(pir.ID, "li", "guard sent"); err != nil {
		t.Errorf("ack with a note: %v", err)
	}
	if err := h.e.Ack(cam.ID, "li", ""); err != nil {
		t.Errorf("ack of an alarm that needs no note: %v", err)
	}
	// The store keeps no linkage: a restored alarm gets its rule's again.
	alarms, trails, next := h.e.Snapshot()
	for i := range alarms {
		alarms[i].Linkage = Linkage{}
	}
	h2 := newHarness(t, rules)
	h2.now = h.now
	if err := h2.e.Restore(alarms, trails, next); err != nil {
		t.Fatal(err)
	}
	if a, _, _ := h2.e.Alarm(cam.ID); a.Linkage != cam.Linkage {
		t.Errorf("restored linkage %+v, want %+v", a.Linkage, cam.Linkage)
	}

	_, err := ParseRules([]byte(`
rules:
  - source: device_offline
    severity: major
    video: screen
  - source: power_lost
    severity: major
    wall_tile: 3
  - source: stream_failure
    severity: minor
    video: popup
    wall_tile: 1
  - source: supervision_lost
    severity: major
    video: wall
    cameras: 9
`))
	for _, want := range []string{`rule 1: video "screen"`, "rule 2: wall_tile and cameras need video", "rule 3: wall_tile is for video: wall", "rule 4: cameras 9"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRules: %v, want it to report %q", err, want)
		}
	}
}

// TestCameraImageQuality: a camera whose analytics find its picture too
// blurry, dark or bright is a stream failure of type image_quality.
func TestCameraImageQuality(t *testing.T) {
	h := newHarness(t, string(DefaultYAML()))
	h.device(fleet.Device{ID: "cam1", Kind: wire.KindCamera, Status: wire.StatusDegraded, Reason: wire.ReasonImageQuality, Criticality: 3})
	h.advance(2 * time.Minute) // past the stream failure's hold
	if a := h.only(); a.Source != SourceStreamFailure || a.Type != string(wire.ReasonImageQuality) || a.Device != "cam1" {
		t.Fatalf("alarm = %+v", a)
	}
}

// TestCameraTamper: a camera whose analytics report tampering (degraded,
// reason tamper) raises one tamper alarm of type camera, not a stream
// failure, and it clears when the camera is online again.
func TestCameraTamper(t *testing.T) {
	h := newHarness(t, string(DefaultYAML()))
	h.device(fleet.Device{ID: "cam1", Kind: wire.KindCamera, Status: wire.StatusDegraded, Reason: wire.ReasonTamper, Criticality: 4})
	h.advance(time.Second)
	a := h.only()
	if a.Source != SourceTamper || a.Type != "camera" || a.Device != "cam1" || a.Severity != Major {
		t.Fatalf("alarm = %+v", a)
	}
	if dk, sk := kindsOf(a); dk != wire.KindCamera || sk != "" {
		t.Errorf("kinds of a camera's tamper alarm: %s %s", dk, sk)
	}
	h.device(fleet.Device{ID: "cam1", Kind: wire.KindCamera, Status: wire.StatusOnline, Criticality: 4})
	h.advance(time.Minute)
	if a := h.only(); a.State == ActiveUnack || a.State == ActiveAck {
		t.Errorf("after the camera came back: %+v", a)
	}
}
