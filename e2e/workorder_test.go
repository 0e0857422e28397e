package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/workorder"
	"github.com/citywatch/citywatch/internal/testenv"
)

// quickWork opens orders 2 s after a fault and closes them after 3 s of
// health, with the quick alarm rules.
func quickWork(t *testing.T) func(*config.Config) {
	alarms := quickAlarms(t)
	return func(c *config.Config) {
		alarms(c)
		c.WorkOrders.Grace, c.WorkOrders.Hold = 2*time.Second, 3*time.Second
	}
}

type orderList struct {
	Orders []workorder.Order `json:"orders"`
	Total  int               `json:"total"`
}

type orderDetail struct {
	Order   workorder.Order        `json:"order"`
	History []workorder.Transition `json:"history"`
}

// The loop from "telemetry sees a fault" to "telemetry confirms the fix",
// with the simulator: a camera offline opens one order after the grace; a
// maintainer starts it and marks it fixed while the camera is still down,
// and it stays pending; the simulator recovers the camera and the order
// closes itself after the hold; the camera fails again and the order
// reopens as a repeat. An agent lost is one order listing its devices.
// Every action is in the audit trail against the maintainer.
func TestWorkOrderLoop(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickWork(t)})
	s.waitAllOnline(t)
	agent, cam := firstCamera(t, s)
	crew := newToken(t, s.hub, "crew-wang", auth.Maintainer, auth.Everything)

	orderOf := func(query string) (workorder.Order, error) {
		var l orderList
		if err := s.api.fetch("api/workorders?"+query, &l); err != nil {
			return workorder.Order{}, err
		}
		if len(l.Orders) != 1 {
			return workorder.Order{}, fmt.Errorf("%d orders for %s: %+v", len(l.Orders), query, l.Orders)
		}
		return l.Orders[0], nil
	}
	var o workorder.Order
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (err error) {
		o, err = orderOf("device=" + url.QueryEscape(cam))
		return err
	})
	if o.State != workorder.Open || len(o.Devices) != 1 || o.Devices[0].ID != cam || o.Devices[0].Healthy || o.Devices[0].Reason == "" {
		t.Fatalf("the camera's order: %+v", o)
	}

	act := func(action, body string) orderDetail {
		t.Helper()
		var d orderDetail
		crew.postJSON(t, "api/workorders/"+o.ID+"/"+action, body, &d)
		return d
	}
	act("start", `{}`)
	if d := act("fix", `{"note":"replaced the PoE injector"}`); d.Order.State != workorder.Fixed {
		t.Fatalf("after fix: %+v", d.Order)
	}
	time.Sleep(5 * time.Second) // longer than the hold: the camera is still down
	var d orderDetail
	s.api.getJSON(t, "api/workorders/"+o.ID, &d)
	if d.Order.State != workorder.Fixed {
		t.Fatalf("fixed while the camera is down became %s", d.Order.State)
	}
	// Re-probe now: the agent's fresh answer, in seconds, into the trail.
	var pr struct {
		Results []workorder.ProbeResult `json:"results"`
		orderDetail
	}
	probeAt := time.Now()
	crew.postJSON(t, "api/workorders/"+o.ID+"/probe", `{}`, &pr)
	if len(pr.Results) != 1 || !pr.Results[0].Fresh || pr.Results[0].Status != "offline" || pr.Results[0].Probed.Before(probeAt.Add(-time.Second)) ||
		pr.History[len(pr.History)-1].Action != workorder.ActProbe {
		t.Fatalf("re-probe: %+v, last of the trail %+v", pr.Results, pr.History[len(pr.History)-1])
	}

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		var d orderDetail
		if err := s.api.fetch("api/workorders/"+o.ID, &d); err != nil {
			return err
		}
		if d.Order.State != workorder.Closed || d.Order.Resolution != "verified" {
			return fmt.Errorf("order %s is %s (%s)", o.ID, d.Order.State, d.Order.Resolution)
		}
		return nil
	})
	// On verification the hub has the agent take the camera's picture,
	// kept with the order: the camera points where it should.
	eventually(t, 30*time.Second, func() error {
		var d orderDetail
		if err := s.api.fetch("api/workorders/"+o.ID, &d); err != nil {
			return err
		}
		for _, p := range d.Order.Photos {
			if p.Who == "system" && p.Note == "snapshot of "+cam && p.Type == "image/jpeg" && p.Size > 1000 {
				return nil
			}
		}
		return fmt.Errorf("no snapshot on verification: %+v", d.Order.Photos)
	})
	// And on request, from the crew.
	var shots struct {
		Results []workorder.SnapshotResult `json:"results"`
	}
	crew.postJSON(t, "api/workorders/"+o.ID+"/snapshot", `{}`, &shots)
	if len(shots.Results) != 1 || shots.Results[0].Photo == nil || shots.Results[0].Photo.Who != "token:crew-wang" {
		t.Errorf("snapshot on request: %+v", shots.Results)
	}

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		got, err := orderOf("device=" + url.QueryEscape(cam))
		if err == nil && (got.ID != o.ID || got.Repeats != 1 || got.State != workorder.Open) {
			err = fmt.Errorf("after the second failure: %+v", got)
		}
		return err
	})
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}

	// An agent lost: one order for its site listing every device.
	var other string
	for _, a := range s.sim.City().Agents {
		if a.ID != agent {
			other = a.ID
			break
		}
	}
	want := s.devicesOf(other)
	if err := s.sim.Fault(sim.Fault{Agent: other, Fault: sim.FaultDisconnect, For: 15 * time.Second}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		got, err := orderOf("device=" + url.QueryEscape(want[0]))
		if err != nil {
			return err
		}
		var ids []string
		for _, d := range got.Devices {
			ids = append(ids, d.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, sortedCopy(want)) {
			return fmt.Errorf("the lost agent's order lists %v, want %v", ids, want)
		}
		return nil
	})

	var trail struct {
		Records []struct {
			Actor, Action, Object, Outcome string
		} `json:"records"`
	}
	audit := newToken(t, s.hub, "auditor-li", auth.Auditor, auth.Everything)
	audit.getJSON(t, "api/audit?action=workorder.&object="+url.QueryEscape("workorder/"+o.ID), &trail)
	var acts []string
	for _, r := range trail.Records {
		if r.Actor == "token:crew-wang" && r.Outcome == "success" {
			acts = append(acts, r.Action)
		}
	}
	if !slices.Contains(acts, "workorder.start") || !slices.Contains(acts, "workorder.fix") || !slices.Contains(acts, "workorder.probe") {
		t.Errorf("the audit trail of %s: %+v", o.ID, trail.Records)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// kill -9 of the hub process: started again on the same data directory it
// has every work order and its whole history as it answered them, and the
// site's open order is still the one a new fault joins.
func TestWorkOrdersSurviveKill9(t *testing.T) {
	broker := testenv.Mosquitto(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("alarms: {rules: %q}\nworkorders: {grace: 1s, hold: 1h}\n", rules)
	hub1 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: cfg})
	world := runWorld(t, broker.URL())
	var cams []string
	for _, a := range world.City().Agents[:1] {
		for _, c := range a.Cameras {
			cams = append(cams, c.ID)
		}
	}
	if len(cams) < 2 {
		t.Fatalf("the first site has %d cameras", len(cams))
	}
	var o workorder.Order
	eventually(t, 60*time.Second, func() error {
		world.Fault(sim.Fault{Device: cams[0], Fault: sim.FaultOffline})
		var l orderList
		if err := hub1.get("api/workorders?device="+url.QueryEscape(cams[0]), &l); err != nil {
			return err
		}
		if len(l.Orders) != 1 {
			return fmt.Errorf("%d orders for %s", len(l.Orders), cams[0])
		}
		o = l.Orders[0]
		return nil
	})
	crew := hub1.token(t, "crew-li", auth.Maintainer, auth.Everything)
	var d orderDetail
	crew.postJSON(t, "api/workorders/"+o.ID+"/start", `{"note":"on site"}`, &d)
	crew.postJSON(t, "api/workorders/"+o.ID+"/hold", `{"note":"waiting for a spare camera"}`, &d)

	if err := hub1.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown code runs
		t.Fatal(err)
	}
	hub1.cmd.Wait()
	hub2 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: cfg, successorOf: hub1})
	var after orderDetail
	if err := hub2.get("api/workorders/"+o.ID, &after); err != nil {
		t.Fatal(err)
	}
	if after.Order.State != workorder.OnHold || after.Order.HoldReason != "waiting for a spare camera" || after.Order.Assignee != "token:crew-li" ||
		len(after.History) != len(d.History) || !after.Order.FixBy.Equal(d.Order.FixBy) {
		t.Fatalf("after the kill: %+v, %d of %d history entries", after.Order, len(after.History), len(d.History))
	}
	for i := range d.History {
		if h, b := after.History[i], d.History[i]; h.Action != b.Action || h.Who != b.Who || h.Note != b.Note || !h.At.Equal(b.At) {
			t.Errorf("history %d: after %+v, before %+v", i, h, b)
		}
	}
	// A new fault at the site joins the order that survived.
	eventually(t, 60*time.Second, func() error {
		world.Fault(sim.Fault{Device: cams[1], Fault: sim.FaultOffline})
		var got orderDetail
		if err := hub2.get("api/workorders/"+o.ID, &got); err != nil {
			return err
		}
		for _, dev := range got.Order.Devices {
			if dev.ID == cams[1] {
				return nil
			}
		}
		return fmt.Errorf("%s has not joined %s", cams[1], o.ID)
	})
}

// A switch down with the cameras behind it is one root-cause alarm and one
// work order listing every one of those cameras.
func TestSwitchDownIsOneOrder(t *testing.T) {
	city := smallCity
	city.Switches = true
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules+"  - source: topology\n    severity: critical\n    clear_hold: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	work := quickWork(t)
	s := startStack(t, stackOptions{city: city, hubCfg: func(c *config.Config) { work(c); c.Alarms.Rules = rules }})
	s.waitAllOnline(t)
	var cams []string
	var site string
	for _, a := range s.sim.City().Agents {
		if len(a.Cameras) > len(cams) {
			cams, site = nil, a.Site.ID
			for _, c := range a.Cameras {
				cams = append(cams, c.ID)
			}
		}
	}
	if len(cams) < 2 {
		t.Fatalf("no site with two cameras: %v", cams)
	}
	for _, c := range cams {
		if err := s.sim.Fault(sim.Fault{Device: c, Fault: sim.FaultOffline}); err != nil {
			t.Fatal(err)
		}
	}
	var o workorder.Order
	eventually(t, 30*time.Second, func() error {
		var l orderList
		if err := s.api.fetch("api/workorders?site="+url.QueryEscape(site), &l); err != nil {
			return err
		}
		if len(l.Orders) != 1 {
			return fmt.Errorf("%d orders at %s", len(l.Orders), site)
		}
		o = l.Orders[0]
		var ids []string
		for _, d := range o.Devices {
			ids = append(ids, d.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, sortedCopy(cams)) {
			return fmt.Errorf("the order lists %v, want the switch's cameras %v", ids, cams)
		}
		return nil
	})
	var alarms struct {
		Alarms []struct {
			ID     string `json:"id"`
			Source string `json:"source"`
		} `json:"alarms"`
	}
	s.api.getJSON(t, "api/alarms?source=topology&site="+url.QueryEscape(site), &alarms)
	if len(alarms.Alarms) != 1 || !slices.Contains(o.Alarms, alarms.Alarms[0].ID) {
		t.Errorf("the switch's root-cause alarm %+v is not among the order's alarms %v", alarms.Alarms, o.Alarms)
	}
}
