package alarm

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestNotice raises a security event as an alarm that waits, cleared but
// unacknowledged; a second notice of the same key folds into it, and after
// it is acknowledged a new notice is a new alarm.
func TestNotice(t *testing.T) {
	h := newHarness(t, `rules:
  - source: security
    severity: major
`)
	tmpl := Alarm{Key: "security:agent/ag7", Source: SourceSecurity, Type: "agent_revoked", Agent: "ag7",
		District: "north", Detail: "credential revoked by sec1"}
	h.e.Notice(tmpl)
	a := h.only()
	if a.State != ClearedUnack || a.Type != "agent_revoked" || a.Severity != Major || a.District != "north" || a.Count != 1 {
		t.Fatalf("after a notice: %+v", a)
	}
	if ks := h.kinds(); len(ks) != 2 || ks[0] != EventRaise || ks[1] != EventClear {
		t.Errorf("events %v, want raise then clear", ks)
	}
	h.advance(time.Minute)
	h.e.Notice(tmpl)
	if a := h.only(); a.Count != 2 || a.State != ClearedUnack {
		t.Fatalf("a second notice: %+v", a)
	}
	if err := h.e.Ack(a.ID, "op1", "seen"); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Minute)
	h.e.Notice(tmpl)
	if as := h.all(); len(as) != 2 {
		t.Fatalf("a notice after the first was closed: %d alarms, want 2", len(as))
	}

	// A rules file without a rule for the source still gets the notice,
	// as a major alarm: a security event must not vanish.
	h2 := newHarness(t, instantRules)
	h2.e.Notice(tmpl)
	if as := h2.all(); len(as) != 1 || as[0].Severity != Major || as[0].State != ClearedUnack {
		t.Errorf("a notice without a rule: %+v", as)
	}
}

// TestRetiredAgentAlarmsClear clears the alarms of an agent whose
// credential was revoked, for the agent and its devices alike.
func TestRetiredAgentAlarmsClear(t *testing.T) {
	h := newHarness(t, instantRules)
	h.camera("cam-1", wire.StatusOffline)
	ag := fleet.Agent{ID: "ag1", Status: wire.StatusOffline}
	h.e.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOffline, Agent: &ag})
	active := 0
	for _, a := range h.all() {
		if a.State.Active() {
			active++
		}
	}
	if active == 0 {
		t.Fatal("no active alarm to clear")
	}
	h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Agent: &ag, Removed: []string{"cam-1"}, Retired: true})
	h.advance(time.Hour)
	for _, a := range h.all() {
		if a.State.Active() {
			t.Errorf("alarm %s (%s) still active after its agent was retired", a.ID, a.Source)
		}
	}
}
