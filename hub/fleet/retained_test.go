package fleet_test

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Every hub reconnect brings the broker's retained set again; none of it
// may roll the hub's view back.
func TestRetainedRepeatsChangeNothing(t *testing.T) {
	h := newHarness(t)
	birth := h.birth("a1", 1)
	inv := h.inventory("a1", "Riverside", "cam-1")
	h.must(birth)
	h.must(inv)
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, "")))
	h.take()

	// The agent hangs with its TCP connection up: the backstop sweeps it.
	h.r.Sweep(h.clk.Add(31 * time.Second))
	if a := h.agent("a1"); a.Status != wire.StatusOffline || a.Reason != "heartbeat" {
		t.Fatalf("not swept: %+v", a)
	}
	h.take()
	// The hub reconnects; the broker replays the retained birth and
	// inventory. They are old news: the agent stays offline, no change.
	for _, m := range []struct {
		name string
		msg  wire.Message
	}{{"birth", birth}, {"inventory", inv}} {
		if _, err := h.r.Apply(m.msg, true); err != nil {
			t.Fatalf("retained %s: %v", m.name, err)
		}
	}
	if a := h.agent("a1"); a.Status != wire.StatusOffline {
		t.Errorf("retained copies revived the hung agent: %+v", a)
	}
	if ch := h.take(); len(ch) != 0 {
		t.Errorf("retained copies emitted %+v", ch)
	}
}

// A health report published with the retain flag is judged as live:
// re-delivered, it is a replay, not a rollback.
func TestRetainedHealthIsNotExempt(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	old := h.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused))
	h.must(old)
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, "")))
	h.take()
	h.rejected(old, true, wire.RejectReplay)
	if d := h.device("cam-1"); d.Status != wire.StatusOnline {
		t.Errorf("replayed retained health rolled cam-1 back to %s", d.Status)
	}
}

// An agent whose clock was corrected backwards restarts with a smaller
// boot: once its old incarnation is gone, its live birth is believed.
func TestBootBackwardsAfterClockCorrection(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	h.must(h.will("a1", 1))
	b := h.birth("a1", 1)
	b.State.Boot -= 3600_000 // an hour earlier
	b.State.Seq = 1
	h.must(b)
	if a := h.agent("a1"); a.Status != wire.StatusOnline || a.Boot != b.State.Boot {
		t.Fatalf("restarted agent with an older boot: %+v", a)
	}
	// While it is online, an older boot is still a replay.
	stale := h.birth("a1", 2)
	stale.State.Boot -= 7200_000
	h.rejected(stale, false, wire.RejectReplay)
}

func TestReasonChangeIsAChange(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	h.must(h.event("a1", "cam-1", wire.EventStatus, wire.StatusOffline, wire.ReasonRefused))
	h.take()
	h.must(h.event("a1", "cam-1", wire.EventStatus, wire.StatusOffline, wire.ReasonAuthFailed))
	ch := h.take()
	if len(ch) != 1 || ch[0].From != wire.StatusOffline || ch[0].To != wire.StatusOffline || ch[0].Device.Reason != wire.ReasonAuthFailed {
		t.Fatalf("changes %+v, want one offline→offline change with reason auth_failed", ch)
	}
	// The same reason again is not news.
	h.must(h.health("a1", wire.DeviceHealth{ID: "cam-1", Status: wire.StatusOffline, Reason: wire.ReasonAuthFailed, Since: t0}))
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("repeated reason emitted %+v", ch)
	}
}
