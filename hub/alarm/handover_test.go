package alarm

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestHandOverBetweenHubs moves the alarms of one agent from hub a to hub
// b as a cluster does when b takes the agent's partition over: a releases
// them without a transition, b adopts them with their trails, and then b
// carries them on — the operator's ack lands on the same alarm, a repeat
// of the condition folds into it instead of opening a second one, and b's
// own new alarms carry b's prefix.
func TestHandOverBetweenHubs(t *testing.T) {
	a := newHarness(t, restoreRules)
	var aTrans int
	a.e.onTrans = func(Alarm, Transition) { aTrans++ }
	a.e.prefix = "Aa-"
	a.device(fleet.Device{ID: "cam1", Agent: "ag1", Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 3})
	a.device(fleet.Device{ID: "cam2", Agent: "ag2", Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 3})
	if err := a.e.Assign("Aa-1", "ann", "bob", "yours"); err != nil {
		t.Fatal(err)
	}
	before := aTrans

	released, trails := a.e.Release(func(agent string) bool { return agent != "ag1" })
	if len(released) != 1 || released[0].ID != "Aa-1" || len(trails["Aa-1"]) != 2 {
		t.Fatalf("released %+v with trails %v, want Aa-1 with raise and assign", released, trails)
	}
	if aTrans != before {
		t.Fatalf("release recorded %d transitions, want none: the alarm goes on elsewhere", aTrans-before)
	}
	if _, _, ok := a.e.Alarm("Aa-1"); ok {
		t.Fatal("hub a still holds the released alarm")
	}
	if _, _, ok := a.e.Alarm("Aa-2"); !ok {
		t.Fatal("hub a lost the alarm of the agent it kept")
	}
	// The released condition is gone too: ag1's camera recovering on a
	// (a late message) records nothing.
	a.device(fleet.Device{ID: "cam1", Agent: "ag1", Kind: wire.KindCamera, Status: wire.StatusOnline, Criticality: 3})
	a.advance(time.Minute)
	if _, _, ok := a.e.Alarm("Aa-1"); ok {
		t.Fatal("hub a brought the released alarm back")
	}

	b := newHarness(t, restoreRules)
	b.e.prefix = "Ab-"
	b.now = a.now
	n, err := b.e.Adopt(released, trails)
	if err != nil || n != 1 {
		t.Fatalf("Adopt = %d, %v; want 1, nil", n, err)
	}
	if n, err := b.e.Adopt(released, trails); err != nil || n != 0 {
		t.Fatalf("adopting again = %d, %v; want 0 (already held), nil", n, err)
	}
	if err := b.e.Ack("Aa-1", "cho", ""); err != nil {
		t.Fatalf("ack on the new owner: %v", err)
	}
	// The condition still holds on b: a repeat folds in, no second alarm.
	b.device(fleet.Device{ID: "cam1", Agent: "ag1", Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 3})
	b.camera("cam9", wire.StatusOffline)
	all := b.all()
	if len(all) != 2 {
		t.Fatalf("hub b has %d alarms, want the adopted one and cam9's: %+v", len(all), all)
	}
	got, trail, _ := b.e.Alarm("Aa-1")
	if got.State != ActiveAck || got.AssignedTo != "bob" {
		t.Fatalf("adopted alarm is %s assigned to %q, want active_ack assigned to bob", got.State, got.AssignedTo)
	}
	if acts := actions(trail); len(acts) != 3 || acts[0] != ActRaise || acts[1] != ActAssign || acts[2] != ActAck {
		t.Fatalf("trail %v, want raise, assign, ack in order", acts)
	}
	if _, _, ok := b.e.Alarm("Ab-1"); !ok {
		t.Fatalf("b's own alarm is not Ab-1: %+v", all)
	}
	// And it clears on b when the camera recovers.
	b.device(fleet.Device{ID: "cam1", Agent: "ag1", Kind: wire.KindCamera, Status: wire.StatusOnline, Criticality: 3})
	b.advance(11 * time.Second)
	if got, _, _ := b.e.Alarm("Aa-1"); got.State != ClearedAck {
		t.Fatalf("adopted alarm is %s after recovery, want cleared_ack", got.State)
	}
}

func TestAdoptRejectsBadAlarms(t *testing.T) {
	h := newHarness(t, restoreRules)
	_, err := h.e.Adopt([]Alarm{{ID: "Ax-1", Key: "k", State: "weird"}, {ID: "", Key: "k2", State: ActiveUnack}}, nil)
	if err == nil {
		t.Fatal("Adopt took alarms with an unknown state and no id")
	}
	if len(h.all()) != 0 {
		t.Fatal("a rejected adoption left alarms behind")
	}
}

func TestValidIDPrefix(t *testing.T) {
	for p, ok := range map[string]bool{"A": true, "Ahub-a-": true, "Ab_": true, "": false, "A1": false, "1A": false, "A/": false, "A.": false, "-A": false} {
		if err := ValidIDPrefix(p); (err == nil) != ok {
			t.Errorf("ValidIDPrefix(%q) = %v, want ok %v", p, err, ok)
		}
	}
	if n, ok := seqOf("Ahub-a-", "Ahub-a-17"); !ok || n != 17 {
		t.Errorf("seqOf = %d, %v", n, ok)
	}
	if _, ok := seqOf("Ahub-a-", "A17"); ok {
		t.Error("seqOf took an id of another prefix")
	}
}

func actions(trail []Transition) []Action {
	var out []Action
	for _, t := range trail {
		out = append(out, t.Action)
	}
	return out
}
