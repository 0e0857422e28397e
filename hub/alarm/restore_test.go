package alarm

import (
	"reflect"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

const restoreRules = `
rules:
  - source: device_offline
    severity: minor
    clear_hold: 10s
    escalate_after: 1m
  - source: agent_offline
    severity: critical
    hold: 30s
`

// fourStates leaves h with an alarm in each state, one escalated, one
// assigned and one shelved: A1 active_unack (escalated, assigned), A2
// active_ack, A3 cleared_unack, A4 cleared_ack, A5 active_unack (shelved).
func fourStates(t *testing.T, h *harness) {
	t.Helper()
	h.camera("cam1", wire.StatusOffline)
	h.advance(time.Minute) // A1 escalates
	h.camera("cam2", wire.StatusOffline)
	h.camera("cam3", wire.StatusOffline)
	h.camera("cam4", wire.StatusOffline)
	h.camera("cam5", wire.StatusOffline)
	for _, err := range []error{
		h.e.Assign("A1", "ann", "bob", "yours"),
		h.e.Ack("A2", "ann", ""),
		h.e.Ack("A4", "ann", ""),
		h.e.Shelve("A5", "ann", h.now.Add(time.Hour), "roadworks"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	h.camera("cam3", wire.StatusOnline)
	h.camera("cam4", wire.StatusOnline)
	h.advance(10 * time.Second)
	want := map[string]State{"A1": ActiveUnack, "A2": ActiveAck, "A3": ClearedUnack, "A4": ClearedAck, "A5": ActiveUnack}
	for id, st := range want {
		if a, _, _ := h.e.Alarm(id); a.State != st {
			t.Fatalf("fixture: %s is %s, want %s", id, a.State, st)
		}
	}
	if a, _, _ := h.e.Alarm("A1"); a.Escalations != 1 {
		t.Fatalf("fixture: A1 escalations = %d, want 1", a.Escalations)
	}
}

// restored returns a second engine on h's clock holding h's snapshot.
func restored(t *testing.T, h *harness) *harness {
	t.Helper()
	alarms, trails, next := h.e.Snapshot()
	h2 := newHarness(t, restoreRules)
	h2.now = h.now
	if err := h2.e.Restore(alarms, trails, next); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return h2
}

func TestOnTransitionSeesEveryTransition(t *testing.T) {
	h := newHarness(t, restoreRules)
	var got []Transition
	h.e.onTrans = func(_ Alarm, tr Transition) { got = append(got, tr) }
	h.camera("cam1", wire.StatusOffline)
	if err := h.e.Shelve("A1", "ann", h.now.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	h.camera("cam1", wire.StatusOnline)
	h.advance(10 * time.Second) // a silent auto-clear: shelved
	_, trail, _ := h.e.Alarm("A1")
	if !reflect.DeepEqual(got, trail) {
		t.Errorf("OnTransition got\n%+v\nwant the trail\n%+v", got, trail)
	}
	if len(h.events) >= len(trail) {
		t.Errorf("OnEvent got %d events for %d transitions; the shelved auto-clear should be silent", len(h.events), len(trail))
	}
}

func TestRestoreKeepsAlarmsAndTrails(t *testing.T) {
	h := newHarness(t, restoreRules)
	fourStates(t, h)
	h2 := restored(t, h)
	if got, want := h2.all(), h.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Alarms after restore\n%+v\nwant\n%+v", got, want)
	}
	for _, a := range h.all() {
		_, want, _ := h.e.Alarm(a.ID)
		_, got, ok := h2.e.Alarm(a.ID)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s trail after restore\n%+v\nwant\n%+v", a.ID, got, want)
		}
	}

	// Both engines go on alike: a new alarm gets a fresh id, A1 escalates
	// again on time, A3 re-activates instead of a duplicate being opened.
	for _, x := range []*harness{h, h2} {
		x.camera("cam6", wire.StatusOffline)
		x.camera("cam3", wire.StatusOffline)
		x.advance(50 * time.Second)
	}
	if _, _, ok := h2.e.Alarm("A6"); !ok {
		t.Errorf("new alarm after restore is not A6: %+v", h2.all())
	}
	if a, _, _ := h2.e.Alarm("A1"); a.Escalations != 2 {
		t.Errorf("A1 escalations = %d after restore, want 2", a.Escalations)
	}
	if got, want := h2.all(), h.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("restored engine diverged\n%+v\nwant\n%+v", got, want)
	}
}

func TestRestoreNextIDNeverCollides(t *testing.T) {
	h := newHarness(t, restoreRules)
	// A stale next (0) must not reissue A1.
	if err := h.e.Restore([]Alarm{{ID: "A7", Key: "device_offline:device/x", Source: SourceDeviceOffline, State: ClearedAck}}, nil, 0); err != nil {
		t.Fatal(err)
	}
	h.camera("cam1", wire.StatusOffline)
	if _, _, ok := h.e.Alarm("A8"); !ok {
		t.Errorf("want A8 after restoring A7, have %+v", h.all())
	}
}

func TestRestoreErrors(t *testing.T) {
	h := newHarness(t, restoreRules)
	if err := h.e.Restore([]Alarm{{ID: "A1", Key: "k", State: "bogus"}}, nil, 1); err == nil {
		t.Error("unknown state: no error")
	}
	if err := h.e.Restore([]Alarm{{ID: "A1", Key: "k", State: ActiveAck}, {ID: "A1", Key: "k", State: ActiveAck}}, nil, 1); err == nil {
		t.Error("duplicate id: no error")
	}
	h.camera("cam1", wire.StatusOffline)
	if err := h.e.Restore(nil, nil, 1); err == nil {
		t.Error("restore into a used engine: no error")
	}
}

func TestReconcile(t *testing.T) {
	h := newHarness(t, restoreRules)
	fourStates(t, h)
	h2 := restored(t, h)
	h2.e.Reconcile([]fleet.Device{
		{ID: "cam1", Kind: wire.KindCamera, Agent: "ag1", Status: wire.StatusOnline, Criticality: 3},  // recovered while down
		{ID: "cam2", Kind: wire.KindCamera, Agent: "ag1", Status: wire.StatusOffline, Criticality: 3}, // still down
		{ID: "cam5", Kind: wire.KindCamera, Agent: "ag1", Status: wire.StatusUnknown, Criticality: 3}, // not heard from yet
	}, []fleet.Agent{{ID: "ag2", Status: wire.StatusOffline}})

	h2.advance(9 * time.Second)
	if a, _, _ := h2.e.Alarm("A1"); a.State != ActiveUnack {
		t.Errorf("A1 cleared before clear_hold: %s", a.State)
	}
	h2.advance(21 * time.Second)
	want := map[string]State{"A1": ClearedUnack, "A2": ActiveAck, "A5": ActiveUnack}
	for id, st := range want {
		if a, _, _ := h2.e.Alarm(id); a.State != st {
			t.Errorf("%s is %s, want %s", id, a.State, st)
		}
	}
	if as := h2.e.Alarms(Filter{Source: SourceAgentOffline}); len(as) != 1 || as[0].ID != "A6" {
		t.Errorf("offline agent after hold: want one alarm A6, have %+v", as)
	}
}

// TestReconcileAgentByAgent: the hub reconciles one agent and its devices
// at a time, to hold a few snapshots rather than the whole city; the
// alarms must end as one call over everything leaves them, the agent's
// alarm as critical as its most critical device included.
func TestReconcileAgentByAgent(t *testing.T) {
	devices := []fleet.Device{
		{ID: "cam1", Kind: wire.KindCamera, Agent: "ag1", Status: wire.StatusOnline, Criticality: 3},
		{ID: "cam2", Kind: wire.KindCamera, Agent: "ag1", Status: wire.StatusOffline, Criticality: 3},
		{ID: "cam3", Kind: wire.KindCamera, Agent: "ag2", Status: wire.StatusUnreachable, Criticality: 5},
		{ID: "cam4", Kind: wire.KindCamera, Agent: "ag2", Status: wire.StatusUnreachable, Criticality: 2},
		{ID: "cam5", Kind: wire.KindCamera, Agent: "ag3", Status: wire.StatusOnline, Criticality: 3},
	}
	agents := []fleet.Agent{{ID: "ag1", Status: wire.StatusOnline}, {ID: "ag2", Status: wire.StatusOffline}, {ID: "ag3", Status: wire.StatusOnline}}
	h := newHarness(t, restoreRules)
	fourStates(t, h)
	whole, byAgent := restored(t, h), restored(t, h)
	whole.e.Reconcile(devices, agents)
	for _, a := range agents {
		var mine []fleet.Device
		for _, d := range devices {
			if d.Agent == a.ID {
				mine = append(mine, d)
			}
		}
		byAgent.e.Reconcile(mine, []fleet.Agent{a})
	}
	for _, h := range []*harness{whole, byAgent} {
		h.advance(31 * time.Second)
	}
	if got, want := byAgent.all(), whole.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("reconciled agent by agent\n%+v\nwant as in one call\n%+v", got, want)
	}
	as := byAgent.e.Alarms(Filter{Source: SourceAgentOffline})
	if len(as) != 1 || as[0].Agent != "ag2" || as[0].Criticality != 5 {
		t.Errorf("offline agent: want one alarm for ag2 of criticality 5, have %+v", as)
	}
}
