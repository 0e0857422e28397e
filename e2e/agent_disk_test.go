package e2e

import (
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/fleet"
)

// smallDisk mounts a tmpfs of size bytes for the test and returns its
// path: a disk that really fills up (ENOSPC), not a simulated one. It needs
// root, which the project's machines and CI have.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d-byte tmpfs for a disk that fills up (needs root): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// The broker is down while an agent's spool sits on a disk too small for
// the outage: the disk fills, the agent keeps running and counts what it
// had to drop, and after it reconnects the hub shows those drops on the
// agent, in /metrics, on /healthz and as one alarm.
func TestAgentDiskFullDropsCounted(t *testing.T) {
	disk := smallDisk(t, 8<<10)
	s := startStack(t, stackOptions{
		city:     sim.CityOptions{Seed: 21, Districts: 1, Sites: 1, Devices: 20},
		interval: time.Second,
		agents: func(o *sim.Options, _ *app.App) {
			o.SpoolDir, o.SpoolBytes = disk, 16<<20 // a quota the disk cannot hold
		},
	})
	s.waitAllOnline(t)
	agentID := s.sim.City().Agents[0].ID

	s.broker.Stop()
	eventually(t, time.Minute, func() error {
		st := s.sim.AgentStats()[agentID]
		if st.SpoolErrors == 0 || st.DroppedHealth < 5 {
			return fmt.Errorf("agent with a full disk: %d spool errors, %d health reports dropped", st.SpoolErrors, st.DroppedHealth)
		}
		return nil
	})
	s.broker.Restart()
	back := time.Now()

	// The agent kept running: it reconnected and reports the present.
	var detail struct{ Agent fleet.Agent }
	eventually(t, time.Minute, func() error {
		if err := s.api.fetch("api/agents/"+url.PathEscape(agentID), &detail); err != nil {
			return err
		}
		if a := detail.Agent; a.Status != "online" || !a.LastSeen.After(back) {
			return fmt.Errorf("agent %s is %s, last seen %s; want online after %s", a.ID, a.Status, a.LastSeen, back)
		}
		return nil
	})
	// Its drops stopped with the outage; the hub learns their total from
	// the next reports.
	st := s.sim.AgentStats()[agentID]
	eventually(t, 30*time.Second, func() error {
		if err := s.api.fetch("api/agents/"+url.PathEscape(agentID), &detail); err != nil {
			return err
		}
		if d := detail.Agent.Dropped; d.Health != st.DroppedHealth || d.Events != st.DroppedEvents || detail.Agent.DroppedAt.IsZero() {
			return fmt.Errorf("hub says agent dropped %+v at %s; the agent says health %d, events %d",
				d, detail.Agent.DroppedAt, st.DroppedHealth, st.DroppedEvents)
		}
		return nil
	})
	if now := s.sim.AgentStats()[agentID]; now.DroppedHealth != st.DroppedHealth {
		t.Errorf("agent still dropping after reconnecting: %d then %d", st.DroppedHealth, now.DroppedHealth)
	}

	eventually(t, 30*time.Second, func() error {
		if got := s.api.metric(t, `citywatch_agent_dropped_total{kind="health"}`); got != float64(st.DroppedHealth) {
			return fmt.Errorf("citywatch_agent_dropped_total{kind=health} = %v, want %d", got, st.DroppedHealth)
		}
		var h healthz
		if err := s.api.fetch("healthz", &h); err != nil {
			return err
		}
		if c := h.Components["agents"]; h.Status != "degraded" || c.Status != "degraded" || !strings.Contains(c.Reason, agentID) {
			return fmt.Errorf("healthz %+v: want degraded, naming %s", h, agentID)
		}
		var alarms struct {
			Alarms []struct {
				Type, Agent, Detail string
			}
		}
		if err := s.api.fetch("api/alarms?source=system", &alarms); err != nil {
			return err
		}
		n := 0
		for _, a := range alarms.Alarms {
			if a.Type == "agent_dropping" {
				n++
				if a.Agent != agentID || !strings.Contains(a.Detail, "health reports") {
					return fmt.Errorf("alarm %+v", a)
				}
			}
		}
		if n != 1 {
			return fmt.Errorf("%d agent_dropping alarms, want 1: %+v", n, alarms.Alarms)
		}
		return nil
	})
	t.Logf("agent with an 8 KiB disk: %d spool errors, %d health reports and %d events dropped, all counted by the hub",
		st.SpoolErrors, st.DroppedHealth, st.DroppedEvents)
}
