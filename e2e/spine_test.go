package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// smallCity is big enough for several agents and every device kind, small
// enough to come online in seconds.
var smallCity = sim.CityOptions{Seed: 7, Districts: 2, Sites: 3, Devices: 24}

func firstCamera(t *testing.T, s *stack) (agent, camera string) {
	t.Helper()
	for _, a := range s.sim.City().Agents {
		if len(a.Cameras) > 0 {
			return a.ID, a.Cameras[0].ID
		}
	}
	t.Fatal("the city has no camera")
	return "", ""
}

// A camera goes offline at the edge → the agent's probe sees the refused
// connection → the hub's websocket delivers the change, and recovery too.
func TestCameraOfflineReachesConsole(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity})
	s.waitAllOnline(t)
	ev := s.api.events(t)
	_, cam := firstCamera(t, s)

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	c := ev.await(t, 30*time.Second, cam+" offline", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == cam && c.To == wire.StatusOffline
	})
	if c.From != wire.StatusOnline || c.Device.Reason != wire.ReasonRefused {
		t.Errorf("change %s, reason %q; want online→offline, refused", describe(c), c.Device.Reason)
	}
	var d console.DeviceDetail
	s.api.getJSON(t, "api/devices/"+cam, &d)
	if d.Device.Status != wire.StatusOffline || d.Device.Since.IsZero() || d.Device.LastSeen.IsZero() {
		t.Errorf("API device %+v", d.Device)
	}

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 30*time.Second, cam+" back online", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == cam && c.To == wire.StatusOnline
	})
}

// An agent's connection drops → the broker publishes its Last Will → the
// hub marks the agent offline and every device behind it unreachable, as ONE
// change; when the agent returns, its devices come back.
func TestAgentDisconnectMakesDevicesUnreachable(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, interval: 2 * time.Second})
	s.waitAllOnline(t)
	ev := s.api.events(t)
	agent := s.sim.City().Agents[1].ID
	want := s.devicesOf(agent)

	// Hold the agent out for longer than the heartbeat backstop would need
	// to notice (3 × 2 s): the change must still arrive as the will's.
	if err := s.sim.Fault(sim.Fault{Agent: agent, Fault: sim.FaultDisconnect, For: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	c := ev.await(t, 20*time.Second, agent+" offline", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeAgent && c.Agent.ID == agent && c.To == wire.StatusOffline
	})
	if c.Reason != "will" && c.Agent.Reason != "will" {
		t.Errorf("agent offline by %q/%q, want the Last Will (after %s)", c.Reason, c.Agent.Reason, time.Since(sent))
	}
	var got []string
	for _, d := range c.Affected {
		got = append(got, d.ID)
		if d.Status != wire.StatusUnreachable || d.Reason != wire.ReasonAgentOffline {
			t.Errorf("affected %s: %s/%s, want unreachable/agent_offline", d.ID, d.Status, d.Reason)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("affected %v, want every device of %s: %v", got, agent, want)
	}
	// One fact, not one per device: no device change for these devices.
	drain := time.After(time.Second)
	for done := false; !done; {
		select {
		case c := <-ev.changes:
			if c.Kind == fleet.ChangeDevice && slices.Contains(want, c.Device.ID) {
				t.Errorf("separate device change for %s after the agent change", c.Device.ID)
			}
		case <-drain:
			done = true
		}
	}
	var list console.DeviceList
	s.api.getJSON(t, "api/devices?agent="+agent, &list)
	for _, d := range list.Devices {
		if d.Status != wire.StatusUnreachable {
			t.Errorf("API: %s is %s while its agent is offline", d.ID, d.Status)
		}
	}
	// Other agents are untouched.
	sum := s.hub.Fleet().Summary()
	if sum.ByStatus[wire.StatusUnreachable] != len(want) {
		t.Errorf("%d unreachable in the summary, want %d", sum.ByStatus[wire.StatusUnreachable], len(want))
	}

	ev.await(t, 30*time.Second, agent+" back online", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeAgent && c.Agent.ID == agent && c.To == wire.StatusOnline
	})
	s.waitAllOnline(t)
}

// A sensor that stops checking in is a fault (supervision loss), and a
// trigger is reported as its own kind of change.
func TestSensorSupervisionAndTrigger(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity})
	s.waitAllOnline(t)
	ev := s.api.events(t)
	var sensor string
	for _, a := range s.sim.City().Agents {
		if len(a.Sensors) > 0 {
			sensor = a.Sensors[0].ID
			break
		}
	}
	if err := s.sim.Fault(sim.Fault{Device: sensor, Fault: sim.FaultTrigger}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 15*time.Second, sensor+" triggered", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeTrigger && c.Device.ID == sensor && c.Device.Triggered
	})
	if err := s.sim.Fault(sim.Fault{Device: sensor, Fault: sim.FaultSupervisionLoss}); err != nil {
		t.Fatal(err)
	}
	// The supervision window is the agent's (default 30 s).
	c := ev.await(t, 60*time.Second, sensor+" supervision lost", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == sensor && c.To == wire.StatusOffline
	})
	if c.Device.Reason != wire.ReasonSupervisionLost {
		t.Errorf("reason %q, want supervision_lost", c.Device.Reason)
	}
}
