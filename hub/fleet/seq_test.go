package fleet_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestLateHealthIsHistory: a health report kept by the agent through an
// outage and sent after newer ones fills its gap, gives its samples, and
// leaves the present alone; sent twice, the second is a replay.
func TestLateHealthIsHistory(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "north", "c1")
	h.clk.Add(10 * time.Second)
	late := h.health("a1", line("c1", wire.StatusOffline, wire.ReasonRefused)) // kept, not sent yet
	h.clk.Add(10 * time.Second)
	h.must(h.health("a1", line("c1", wire.StatusOnline, "")))
	if a := h.agent("a1"); a.Gaps != 1 {
		t.Fatalf("gaps = %d before the late report, want 1", a.Gaps)
	}
	h.take()

	samples := h.must(late)
	if len(samples) != 1 || samples[0].Status != wire.StatusOffline || !samples[0].At.Equal(late.Health.TS) {
		t.Fatalf("late samples = %+v, want the offline line at its own time %s", samples, late.Health.TS)
	}
	if d := h.device("c1"); d.Status != wire.StatusOnline {
		t.Fatalf("c1 is %s after a late report, want online: the present is the newer report", d.Status)
	}
	if cs := h.take(); len(cs) != 0 {
		t.Fatalf("a late health report emitted %+v", cs)
	}
	if a := h.agent("a1"); a.Gaps != 0 || a.Late != 1 {
		t.Fatalf("gaps %d late %d, want 0 and 1: the missing message came after all", a.Gaps, a.Late)
	}
	h.rejected(late, false, wire.RejectReplay)
}

// TestLateEventsRebuildTheTimeline: a camera that failed while its agent's
// link was down is recorded as failing when it did, and its recovery
// before the link came back as the link's outage, not as up.
func TestLateEventsRebuildTheTimeline(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "north", "c1", "c2")
	lost := h.clk.Add(time.Minute)
	h.must(h.will("a1", 1))
	if d := h.device("c1"); d.Status != wire.StatusUnreachable {
		t.Fatalf("c1 %s after the will", d.Status)
	}
	failed := h.clk.Add(time.Minute)
	down := h.event("a1", "c1", wire.EventStatus, wire.StatusOffline, wire.ReasonRefused)
	recovered := h.clk.Add(time.Minute)
	up := h.event("a1", "c1", wire.EventStatus, wire.StatusOnline, "")
	up.Event.From = wire.StatusOffline
	back := h.clk.Add(time.Minute)
	h.must(h.birth("a1", 2))
	h.take()

	h.must(down)
	h.must(up)
	cs := h.take()
	if len(cs) != 2 {
		t.Fatalf("changes %+v, want two late ones", cs)
	}
	var got []fleet.DeviceTransition
	for i := range cs {
		if cs[i].Kind != fleet.ChangeLate || !cs[i].At.Equal(back) {
			t.Fatalf("change %d: kind %s at %s, want late at %s (when the hub heard)", i, cs[i].Kind, cs[i].At, back)
		}
		got = slices.AppendSeq(got, fleet.Transitions(&cs[i]))
	}
	want := []struct {
		at     time.Time
		to     wire.Status
		reason string
	}{
		{failed, wire.StatusOffline, string(wire.ReasonRefused)},
		{recovered, wire.StatusUnreachable, string(wire.ReasonAgentOffline)},
	}
	for i, w := range want {
		g := got[i]
		if !g.At.Equal(w.at) || g.To != w.to || g.Reason != w.reason || g.Cause != fleet.CauseLate || g.Device.ID != "c1" {
			t.Fatalf("transition %d = %+v at %s, want %s (%s) at %s, cause late", i, g.Transition, g.At, w.to, w.reason, w.at)
		}
	}
	if !lost.Before(failed) {
		t.Fatal("test set-up: the failure must fall inside the outage")
	}
	if d := h.device("c1"); d.Status != wire.StatusOnline {
		t.Fatalf("c1 is %s now, want online (its last report): late events are history", d.Status)
	}
	checkInvariants(t, h.r)
}

// TestNoSingleMessageLocksOut: one bad message — a seq from far ahead, a
// boot stamped in the future within the clock allowance — never shuts
// the agent's real messages out for longer than two health intervals.
func TestNoSingleMessageLocksOut(t *testing.T) {
	t.Run("seq 2^63", func(t *testing.T) {
		h := newHarness(t)
		h.setup("a1", "north", "c1")
		bad := h.health("a1", line("c1", wire.StatusOffline, wire.ReasonRefused))
		bad.Health.Seq = math.MaxInt64 + 1
		h.rejected(bad, false, wire.RejectInvalid)
		h.clk.Add(time.Second)
		h.must(h.health("a1", line("c1", wire.StatusOffline, wire.ReasonRefused)))
		if d := h.device("c1"); d.Status != wire.StatusOffline {
			t.Fatalf("c1 %s: the real report after the bad one was not applied", d.Status)
		}
	})
	t.Run("seq ahead within the jump", func(t *testing.T) {
		h := newHarness(t)
		h.setup("a1", "north", "c1")
		bad := h.health("a1", line("c1", wire.StatusOnline, ""))
		bad.Health.Seq += 1000
		h.must(bad)
		h.clk.Add(time.Second)
		h.must(h.health("a1", line("c1", wire.StatusOffline, wire.ReasonRefused)))
		if d := h.device("c1"); d.Status != wire.StatusOffline {
			t.Fatalf("c1 %s: a real report stamped after the runaway seq was filed as history", d.Status)
		}
	})
	t.Run("boot in the future", func(t *testing.T) {
		h := newHarness(t)
		h.setup("a1", "north", "c1")
		bad := h.health("a1", line("c1", wire.StatusOnline, ""))
		bad.Health.Boot = boot + 110_000
		h.must(bad)
		var applied bool
		for i := range 6 {
			h.clk.Add(10 * time.Second)
			m := h.health("a1", line("c1", wire.StatusOffline, wire.ReasonRefused))
			_, err := h.r.Apply(m, false)
			if err == nil {
				applied = true
				if i < 2 {
					t.Fatalf("report %d accepted: the refusals must last two intervals before the hub gives in", i)
				}
				break
			}
		}
		if !applied {
			t.Fatal("the agent is still refused after six intervals")
		}
		a := h.agent("a1")
		if a.Boot != boot || a.Resyncs != 1 {
			t.Fatalf("boot %d resyncs %d, want the real boot %d and one resync", a.Boot, a.Resyncs, boot)
		}
		if d := h.device("c1"); d.Status != wire.StatusOffline {
			t.Fatalf("c1 %s after the resync", d.Status)
		}
		h.clk.Add(10 * time.Second)
		h.must(h.health("a1", line("c1", wire.StatusOnline, "")))
	})
}

// TestWindowKeepsHolesBounded: many holes below the highest are
// remembered up to a bound; beyond it the oldest are given up (refused),
// newer ones still fill.
func TestWindowKeepsHolesBounded(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "north", "c1")
	start := h.agent("a1").Seq
	var held []wire.Message
	for range 100 {
		held = append(held, h.health("a1", line("c1", wire.StatusOnline, ""))) // lost for now
		h.clk.Add(time.Second)
		h.must(h.health("a1", line("c1", wire.StatusOnline, "")))
	}
	if a := h.agent("a1"); a.Seq != start+200 || a.Gaps != 100 {
		t.Fatalf("seq %d gaps %d, want %d and 100", a.Seq, a.Gaps, start+200)
	}
	h.rejected(held[0], false, wire.RejectReplay) // its hole was given up
	h.must(held[99])
	if a := h.agent("a1"); a.Late != 1 || a.Gaps != 99 {
		t.Fatalf("late %d gaps %d after one filled hole", a.Late, a.Gaps)
	}
}
