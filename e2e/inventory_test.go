package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"

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
	if n := hub2.metric(t, "citywatch_ingest_inventory_requests_total"); n < 1 {
		t.Errorf("the hub learnt the devices without asking (%v requests): the test did not test anything", n)
	}
}
