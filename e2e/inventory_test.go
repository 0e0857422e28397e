package e2e

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

type deviceList struct {
	Total int `json:"total"`
}

// A hub that hears from an agent whose inventory it lacks asks the agent
// for it, rather than rejecting the agent's reports until it happens to
// reconnect: here the broker lost one agent's retained inventory and the
// hub restarted on it.
func TestUnknownAgentIsAskedForItsInventory(t *testing.T) {
	broker := testenv.Mosquitto(t)
	hub1 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL()})
	world := runWorld(t, broker.URL())
	agent := world.City().Agents[0]
	want := len(agent.Cameras) + len(agent.Sensors)
	known := func(h *hubProcess) error {
		var l deviceList
		if err := h.get("api/devices?limit=1&agent="+url.QueryEscape(agent.ID), &l); err != nil {
			return err
		}
		if l.Total != want {
			return fmt.Errorf("the hub knows %d of %s's %d devices", l.Total, agent.ID, want)
		}
		return nil
	}
	eventually(t, 60*time.Second, func() error { return known(hub1) })

	// The broker forgets the agent's inventory; the hub restarts.
	c := mustConnectMQTT(t, broker.URL(), "eraser", "", "", nil)
	if tok := c.Publish(wire.Topic(agent.ID, wire.ChannelInventory), 1, true, []byte{}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("clearing the retained inventory: %v", tok.Error())
	}
	if err := hub1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	hub1.cmd.Wait()
	hub2 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), successorOf: hub1})
	eventually(t, 60*time.Second, func() error { return known(hub2) })
	if n := hub2.metric(t, `citywatch_ingest_agent_requests_total{command="inventory"}`); n < 1 {
		t.Errorf("the hub learnt the devices without asking (%v requests): the test did not test anything", n)
	}
}

// A hub asks every agent it knows only from a retained birth for a health
// report, so devices show the status their agents report at once rather
// than an interval later: here the agents report every 3 minutes, and a
// hub started after them, then killed and started again, shows within a
// minute every device status the agents know.
func TestRestartedHubAsksForReports(t *testing.T) {
	broker := testenv.Mosquitto(t)
	ctx, cancel := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{BrokerURL: broker.URL(), City: smallCity, Interval: 3 * time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-world.Ready():
	case err := <-done:
		t.Fatalf("sim: %v", err)
	}
	// The agents are up (and their births retained) before the hub is.
	hub1 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL()})
	known := func(h *hubProcess) (map[string]bool, error) {
		var l struct {
			Devices []fleet.Device `json:"devices"`
		}
		if err := h.get("api/devices", &l); err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, d := range l.Devices {
			if d.Status != wire.StatusUnknown {
				out[d.ID] = true
			}
		}
		return out, nil
	}
	var before map[string]bool
	eventually(t, 60*time.Second, func() (err error) {
		if before, err = known(hub1); err == nil && len(before) == 0 {
			err = fmt.Errorf("no device status known yet")
		}
		return err
	})
	if err := hub1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	hub1.cmd.Wait()
	hub2 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), successorOf: hub1})
	eventually(t, 60*time.Second, func() error {
		after, err := known(hub2)
		if err != nil {
			return err
		}
		for id := range before {
			if !after[id] {
				return fmt.Errorf("%s: known before the restart, unknown after (%d of %d known)", id, len(after), len(before))
			}
		}
		return nil
	})
	if n := hub2.metric(t, `citywatch_ingest_agent_requests_total{command="report"}`); n < float64(len(world.City().Agents)) {
		t.Errorf("%v report requests for %d agents", n, len(world.City().Agents))
	}
}
