package app

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// dropsFleet is a registry as agentDrops reads it.
type dropsFleet struct {
	total  wire.Dropped
	agents []fleet.Agent
}

func (f *dropsFleet) AgentDrops() wire.Dropped { return f.total }
func (f *dropsFleet) Agents() []fleet.Agent    { return f.agents }

// TestAgentDropsEpisodes: an agent that starts dropping is counted,
// logged and raised once per episode, with its site and district so
// scoped operators see it; /healthz is degraded while any agent dropped
// within dropWindow and recovers after it.
func TestAgentDropsEpisodes(t *testing.T) {
	f := &dropsFleet{}
	var raised []alarm.Alarm
	var logs bytes.Buffer
	m := metrics.NewRegistry()
	w := newAgentDrops(f, func(a alarm.Alarm) { raised = append(raised, a) }, slog.New(slog.NewTextHandler(&logs, nil)), m)
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

	w.check(t0)
	if ok, _, _ := w.health(); !ok || len(raised) != 0 || logs.Len() != 0 {
		t.Fatalf("nothing dropped: healthy %v, alarms %+v, log %q", ok, raised, logs.String())
	}

	drop := func(at time.Time, h, e uint64) {
		f.total.Health += h
		f.total.Events += e
		a := fleet.Agent{ID: "agent-1", Site: "site-1", District: "Riverside", DroppedAt: at}
		if len(f.agents) > 0 {
			a.Dropped = f.agents[0].Dropped
		}
		a.Dropped.Health += h
		a.Dropped.Events += e
		f.agents = []fleet.Agent{a, {ID: "agent-2", Site: "site-2", District: "Harbour"}}
	}
	drop(t0.Add(time.Second), 3, 1)
	w.check(t0.Add(2 * time.Second))
	if len(raised) != 1 {
		t.Fatalf("alarms %+v, want one", raised)
	}
	if a := raised[0]; a.Source != alarm.SourceSystem || a.Type != "agent_dropping" || a.Agent != "agent-1" ||
		a.Site != "site-1" || a.District != "Riverside" || !strings.Contains(a.Detail, "3 health reports and 1 events") ||
		a.Args["health"] != "3" || a.Args["events"] != "1" {
		t.Errorf("alarm %+v", a)
	}
	if !strings.Contains(logs.String(), "agents=1 health=3 events=1 first=agent-1") {
		t.Errorf("log %q", logs.String())
	}
	ok, why, since := w.health()
	if ok || !strings.Contains(why, "1 agents dropped") || !strings.Contains(why, "agent-1") || !since.Equal(t0.Add(time.Second)) {
		t.Errorf("health %v %q %v", ok, why, since)
	}

	// Still dropping: the same episode, counted but not raised again.
	drop(t0.Add(20*time.Second), 2, 0)
	w.check(t0.Add(21 * time.Second))
	if len(raised) != 1 {
		t.Errorf("alarms %+v, want still one", raised)
	}
	var text bytes.Buffer
	m.WriteText(&text)
	for _, want := range []string{`citywatch_agent_dropped_total{kind="health"} 5`, `citywatch_agent_dropped_total{kind="events"} 1`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, text.String())
		}
	}

	// Quiet for longer than dropWindow: healthy again; a new loss is a new
	// episode.
	quiet := t0.Add(21*time.Second + dropWindow + time.Second)
	w.check(quiet)
	if ok, why, _ := w.health(); !ok {
		t.Errorf("after a quiet window: %q", why)
	}
	drop(quiet.Add(time.Second), 1, 0)
	w.check(quiet.Add(2 * time.Second))
	if len(raised) != 2 || !strings.Contains(raised[1].Detail, "6 health reports") {
		t.Errorf("alarms %+v, want a second episode", raised)
	}
}
