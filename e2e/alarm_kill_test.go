package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/internal/testenv"
)

// runWorld runs the small simulated city against brokerURL until the test
// ends.
func runWorld(t *testing.T, brokerURL string) *sim.Sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{BrokerURL: brokerURL, City: smallCity, Interval: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return world
}

// kill -9 of the hub process in the middle of an alarm storm: started again
// on the same database it has every alarm, state and trail it had
// acknowledged to operators before it died.
func TestAlarmsSurviveKill9(t *testing.T) {
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("alarms: {rules: %q, db: %q}\n", rules, filepath.Join(dir, "alarms.db"))
	hub1 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: cfg})

	world := runWorld(t, broker.URL())

	var all []string
	for _, a := range world.City().Agents {
		for _, c := range a.Cameras {
			all = append(all, c.ID)
		}
	}
	var before alarmList
	eventually(t, 60*time.Second, func() error {
		if err := hub1.get("api/alarms", &before); err != nil {
			return err
		}
		// Keep the storm going until the hub has raised at least three.
		for _, cam := range all[:min(6, len(all))] {
			world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline})
		}
		if before.Total < 3 {
			return fmt.Errorf("%d alarms so far", before.Total)
		}
		return nil
	})
	alice := hub1.token(t, "alice", auth.Operator, auth.Everything)
	post := func(id, action, body string) {
		if code, answer := postAlarm(t, alice, id, action, body); code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", action, id, code, answer)
		}
	}
	acked, assigned := before.Alarms[0].ID, before.Alarms[1].ID
	post(acked, "ack", `{"note":"on it"}`)
	post(assigned, "assign", `{"to":"crew-7"}`)
	if err := hub1.get("api/alarms", &before); err != nil {
		t.Fatal(err)
	}
	trails := map[string][]alarm.Transition{}
	for _, a := range before.Alarms {
		if a.ID == acked && a.AckedBy != alice.name || a.ID == assigned && a.AssignedTo != "crew-7" {
			t.Errorf("alarm %s acknowledged by %q, assigned to %q", a.ID, a.AckedBy, a.AssignedTo)
		}
		var d alarmDetail
		if err := hub1.get("api/alarms/"+a.ID, &d); err != nil {
			t.Fatal(err)
		}
		trails[a.ID] = d.History
	}

	// The store commits asynchronously; kill once everything the operators
	// saw is committed, which is the promise (an ack answered a moment
	// before the kill may be lost, as in any write-behind log).
	seen := 0
	for _, tr := range trails {
		seen += len(tr)
	}
	eventually(t, 10*time.Second, func() error {
		if n := hub1.metric(t, "citywatch_alarmdb_transitions_written"); n < float64(seen) {
			return fmt.Errorf("%v of %d transitions committed", n, seen)
		}
		return nil
	})
	if err := hub1.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown code runs
		t.Fatal(err)
	}
	hub1.cmd.Wait()
	hub2 := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: cfg, successorOf: hub1})
	var after alarmList
	if err := hub2.get("api/alarms", &after); err != nil {
		t.Fatal(err)
	}
	for _, b := range before.Alarms {
		i := slices.IndexFunc(after.Alarms, func(a alarm.Alarm) bool { return a.ID == b.ID })
		if i < 0 {
			t.Errorf("alarm %s (%s) lost in the kill", b.ID, b.Device)
			continue
		}
		a := after.Alarms[i]
		if a.State != b.State || a.AckedBy != b.AckedBy || a.AssignedTo != b.AssignedTo || a.Device != b.Device {
			t.Errorf("alarm %s: after %+v, before %+v", b.ID, a, b)
		}
		var d alarmDetail
		if err := hub2.get("api/alarms/"+a.ID, &d); err != nil {
			t.Fatal(err)
		}
		if len(d.History) < len(trails[a.ID]) || !slices.EqualFunc(trails[a.ID], d.History[:len(trails[a.ID])], sameTransition) {
			t.Errorf("trail of %s: after %+v, before %+v", a.ID, d.History, trails[a.ID])
		}
	}
}
