package fleet_test

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// TestAgentDrops: what an agent says it dropped is kept per agent and
// summed hub-wide by its rises only: a repeated count, a late report's
// smaller one and a new boot's restart from zero add nothing twice.
func TestAgentDrops(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	h.setup("a2", "Harbour", "cam-2")

	report := func(agent, dev string, d *wire.Dropped) wire.Message {
		m := h.health(agent, line(dev, wire.StatusOnline, ""))
		m.Health.Dropped = d
		return m
	}
	check := func(step, agent string, want wire.Dropped, wantAt time.Time, total wire.Dropped) {
		t.Helper()
		a := h.agent(agent)
		if a.Dropped != want || !a.DroppedAt.Equal(wantAt) {
			t.Errorf("%s: agent %s dropped %+v at %v, want %+v at %v", step, agent, a.Dropped, a.DroppedAt, want, wantAt)
		}
		if got := h.r.AgentDrops(); got != total {
			t.Errorf("%s: hub-wide drops %+v, want %+v", step, got, total)
		}
	}

	h.must(report("a1", "cam-1", nil))
	check("nothing said", "a1", wire.Dropped{}, time.Time{}, wire.Dropped{})

	at := h.clk.Add(10 * time.Second)
	h.must(report("a1", "cam-1", &wire.Dropped{Health: 3, Events: 1}))
	check("first drops", "a1", wire.Dropped{Health: 3, Events: 1}, at, wire.Dropped{Health: 3, Events: 1})

	h.clk.Add(10 * time.Second)
	h.must(report("a1", "cam-1", &wire.Dropped{Health: 3, Events: 1}))
	check("same count again", "a1", wire.Dropped{Health: 3, Events: 1}, at, wire.Dropped{Health: 3, Events: 1})

	at2 := h.clk.Add(10 * time.Second)
	h.must(report("a2", "cam-2", &wire.Dropped{Events: 2}))
	check("another agent", "a2", wire.Dropped{Events: 2}, at2, wire.Dropped{Health: 3, Events: 3})

	// A report the agent kept through an outage comes late, with the
	// count it had then.
	late := report("a1", "cam-1", &wire.Dropped{Health: 1})
	at3 := h.clk.Add(10 * time.Second)
	h.must(report("a1", "cam-1", &wire.Dropped{Health: 5, Events: 1}))
	h.clk.Add(time.Second)
	if _, err := h.r.Apply(late, false); err != nil {
		t.Fatalf("late report refused: %v", err)
	}
	check("late report", "a1", wire.Dropped{Health: 5, Events: 1}, at3, wire.Dropped{Health: 5, Events: 3})

	// The agent restarts: its counts start again from zero.
	h.clk.Add(time.Minute)
	m := report("a1", "cam-1", &wire.Dropped{Health: 2})
	m.Health.Boot, m.Health.Seq = boot+60_000, 1
	at4 := h.clk.Now()
	h.must(m)
	check("new boot", "a1", wire.Dropped{Health: 2}, at4, wire.Dropped{Health: 7, Events: 3})
}
