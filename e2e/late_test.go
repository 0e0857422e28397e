package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// An agent cut off from the broker keeps what it sees; a camera that
// fails in the middle of the cut is, after the reconnect, in the hub's
// history at the time it failed (flagged late), the link's outage apart
// from it, and the health reports of the outage are in the metric store
// at their own times.
func TestCutOffAgentTellsWhatHappened(t *testing.T) {
	broker := testenv.Mosquitto(t)
	hub := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL()})
	world := runWorld(t, broker.URL())
	a := world.City().Agents[0]
	cam := a.Cameras[0].ID
	status := func(want wire.Status) func() error {
		return func() error {
			var d struct{ Device fleet.Device }
			if err := hub.get("api/devices/"+url.PathEscape(cam), &d); err != nil {
				return err
			}
			if d.Device.Status != want {
				return fmt.Errorf("%s is %s, want %s", cam, d.Device.Status, want)
			}
			return nil
		}
	}
	eventually(t, 60*time.Second, status(wire.StatusOnline))

	cut := time.Now()
	const outage = 15 * time.Second
	if err := world.Fault(sim.Fault{Agent: a.ID, Fault: sim.FaultDisconnect, For: outage}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, status(wire.StatusUnreachable))
	time.Sleep(3 * time.Second) // into the middle of the cut
	failed := time.Now()
	if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	back := cut.Add(outage)
	eventually(t, 60*time.Second, status(wire.StatusOffline))

	var d struct {
		Device  fleet.Device
		History metricstore.History
	}
	eventually(t, 30*time.Second, func() error {
		if err := hub.get("api/devices/"+url.PathEscape(cam)+"?since=1h", &d); err != nil {
			return err
		}
		for _, tr := range d.History.Transitions {
			if tr.Cause == fleet.CauseLate && tr.To == wire.StatusOffline {
				if tr.At.Before(failed.Add(-time.Second)) || !tr.At.Before(back) {
					return fmt.Errorf("the late failure is at %s, want between %s and %s", tr.At, failed, back)
				}
				return nil
			}
		}
		return fmt.Errorf("no late failure in %+v", d.History.Transitions)
	})
	var link bool
	for _, tr := range d.History.Transitions {
		if tr.Cause == fleet.CauseAgent && tr.To == wire.StatusUnreachable && !tr.At.Before(cut) && tr.At.Before(failed) {
			link = true
		}
	}
	if !link {
		t.Errorf("the link's outage is not in the history apart from the camera's: %+v", d.History.Transitions)
	}
	inside := 0
	for _, p := range d.History.Samples {
		if p.At.After(cut.Add(2*time.Second)) && p.At.Before(back.Add(-2*time.Second)) {
			inside++
		}
	}
	if inside == 0 {
		t.Error("no health sample from inside the outage reached the metric store")
	}
	var ag fleet.Agent
	if err := hub.get("api/agents/"+url.PathEscape(a.ID), &struct{ Agent *fleet.Agent }{&ag}); err != nil {
		t.Fatal(err)
	}
	if ag.Late == 0 {
		t.Errorf("agent %s: seq_late 0, gaps %d: nothing came late", a.ID, ag.Gaps)
	}
}
