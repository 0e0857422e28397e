package alarm

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestCameraMotion: a camera triggered by its motion detection raises a
// motion alarm at once, of the lowest severity and without its status's
// detail, beside (not instead of) what its status says; the motion's end
// clears it at once; a busy scene is one flapping alarm.
func TestCameraMotion(t *testing.T) {
	cam := fleet.Device{ID: "cam1", Kind: wire.KindCamera, Agent: "ag1", Site: "s1", District: "north", Criticality: 4,
		Status: wire.StatusDegraded, Reason: wire.ReasonLowFrameRate, Detail: "3.0 fps, expected at least 5"}
	observe := func(h *harness, triggered bool) {
		d := cam
		d.Triggered = triggered
		h.e.Observe(fleet.Change{Kind: fleet.ChangeTrigger, Device: &d})
	}
	motion := func(h *harness) Alarm {
		t.Helper()
		as := h.e.Alarms(Filter{States: States, Source: SourceMotion})
		if len(as) != 1 {
			t.Fatalf("motion alarms %+v, want one", as)
		}
		return as[0]
	}

	t.Run("raised and cleared", func(t *testing.T) {
		h := newHarness(t, string(DefaultYAML()))
		observe(h, true)
		a := motion(h)
		if a.State != ActiveUnack || a.Severity != Warning || a.Type != "motion" || a.Key != "motion:device/cam1" ||
			a.Device != "cam1" || a.Site != "s1" || a.District != "north" || a.Priority != Priority(Warning, 4) || a.Detail != "" {
			t.Fatalf("motion alarm %+v", a)
		}
		if dk, sk := kindsOf(a); dk != wire.KindCamera || sk != "" {
			t.Errorf("kinds of a motion alarm: %q %q", dk, sk)
		}
		h.advance(2 * time.Minute) // past the stream failure's hold
		if n := len(h.e.Alarms(Filter{Source: SourceStreamFailure})); n != 1 {
			t.Errorf("%d stream failure alarms beside the motion, want 1", n)
		}
		observe(h, false)
		if a := motion(h); a.State != ClearedUnack || a.ClearedAt != h.now {
			t.Errorf("after the motion ended: %+v", a)
		}
		h.advance(time.Hour)
		if a := motion(h); a.Escalations != 0 || a.Severity != Warning {
			t.Errorf("a motion alarm escalated: %+v", a)
		}
	})

	t.Run("busy scene flaps", func(t *testing.T) {
		h := newHarness(t, string(DefaultYAML()))
		for range 5 {
			observe(h, true)
			h.advance(10 * time.Second)
			observe(h, false)
			h.advance(10 * time.Second)
		}
		if a := motion(h); !a.Flapping || !a.State.Active() {
			t.Fatalf("after five motions in two minutes: %+v, want one active flapping alarm", a)
		}
		h.advance(6 * time.Minute) // quiet for the flap window
		if a := motion(h); a.Flapping || a.State.Active() {
			t.Errorf("after a quiet window: %+v, want cleared, no longer flapping", a)
		}
	})
}

// TestCameraMotionFromTheWire follows motion from an agent's messages, as
// the hub decodes them, through the fleet registry to the engine: a
// camera's triggered event with reason motion raises the motion alarm
// and leaves the camera online; its health lines carrying triggered keep
// it; the restored event clears it.
func TestCameraMotionFromTheWire(t *testing.T) {
	now := t0
	e := New(DefaultRules(), Options{Now: func() time.Time { return now }})
	reg := fleet.New(fleet.Options{Now: func() time.Time { return now }, OnChange: e.Observe})
	var seq uint64
	send := func(ch wire.Channel, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		m, err := wire.Decode(wire.Topic("ag1", ch), b, now)
		if err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
		if _, err := reg.Apply(m, false); err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
	}
	header := func() wire.Header {
		seq++
		return wire.Header{V: wire.Version, Agent: "ag1", Boot: t0.UnixMilli(), Seq: seq, TS: now}
	}
	health := func(triggered bool) {
		send(wire.ChannelHealth, wire.Health{Header: header(), Interval: 10, Devices: []wire.DeviceHealth{
			{ID: "cam1", Status: wire.StatusOnline, Since: t0, Triggered: triggered}}})
	}
	event := func(typ wire.EventType) {
		send(wire.ChannelEvents, wire.Event{Header: header(), Device: "cam1", Type: typ, Reason: wire.ReasonMotion, At: now})
	}
	send(wire.ChannelState, wire.State{Header: header(), State: wire.AgentOnline, Conn: 1, Interval: 10})
	send(wire.ChannelInventory, wire.Inventory{Header: header(),
		Site: wire.Site{ID: "s1", District: "north", Location: wire.Location{Lat: 30.5, Lon: 114.3}},
		Devices: []wire.Device{{ID: "cam1", Kind: wire.KindCamera, District: "north",
			Location: wire.Location{Lat: 30.5, Lon: 114.3}, Criticality: 3, Camera: &wire.CameraInfo{FOV: 70, Range: 40}}}})
	health(false)

	event(wire.EventTriggered)
	health(true)
	now = now.Add(time.Minute)
	e.Tick(now)
	as := e.Alarms(Filter{})
	if len(as) != 1 || as[0].Source != SourceMotion || as[0].Severity != Warning || as[0].Device != "cam1" || !as[0].State.Active() {
		t.Fatalf("alarms after the camera saw motion: %+v, want one active motion warning", as)
	}
	if d, _ := reg.Device("cam1"); d.Status != wire.StatusOnline || !d.Triggered {
		t.Errorf("camera in motion: %s, triggered %v; want online and triggered", d.Status, d.Triggered)
	}

	event(wire.EventRestored)
	health(false)
	if as := e.Alarms(Filter{States: States}); len(as) != 1 || as[0].State != ClearedUnack {
		t.Errorf("alarms after the motion ended: %+v, want the motion alarm cleared", as)
	}
}
