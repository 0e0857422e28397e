package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
)

// The hub stops in the middle of an alarm storm and starts again on the
// same database: every alarm comes back with its state and its trail.
// (alarmstore's own test covers SIGKILL of a writing process.)
func TestAlarmsSurviveRestart(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := filepath.Join(t.TempDir(), "alarms.db")
	data := t.TempDir() // accounts and tokens, kept across the restart too
	rules := quickAlarms(t)
	adjust := func(c *config.Config) {
		rules(c)
		c.Alarms.DB = db
		c.DataDir = data
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	hub1 := startHub(t, ctx1, broker.URL(), nil, adjust)
	api1 := newToken(t, hub1, "e2e", auth.Admin, auth.Everything)
	alice := newToken(t, hub1, "alice", auth.Operator, auth.Everything)
	bob := newToken(t, hub1, "bob", auth.Operator, auth.Everything)

	simCtx, stopSim := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{BrokerURL: broker.URL(), City: smallCity, Interval: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- world.Run(simCtx) }()
	t.Cleanup(func() { stopSim(); <-simDone })
	cams, sensors := world.City().Devices()
	eventually(t, 60*time.Second, func() error {
		if s := hub1.Fleet().Summary(); s.ByStatus["online"] != cams+sensors {
			return fmt.Errorf("%v", s.ByStatus)
		}
		return nil
	})

	// The storm: three cameras fail; one alarm is acknowledged, one shelved.
	var failed []string
	for _, a := range world.City().Agents {
		if len(a.Cameras) > 0 && len(failed) < 3 {
			failed = append(failed, a.Cameras[0].ID)
		}
	}
	for _, cam := range failed {
		if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
			t.Fatal(err)
		}
	}
	var before alarmList
	eventually(t, 30*time.Second, func() error {
		api1.getJSON(t, "api/alarms", &before)
		if before.Total < len(failed) {
			return fmt.Errorf("%d alarms", before.Total)
		}
		return nil
	})
	acked := before.Alarms[0].ID
	if code, body := postAlarm(t, alice, acked, "ack", `{"note":"crew sent"}`); code != 200 {
		t.Fatalf("ack: %d %s", code, body)
	}
	if code, body := postAlarm(t, bob, before.Alarms[1].ID, "shelve", `{"for":"1h"}`); code != 200 {
		t.Fatalf("shelve: %d %s", code, body)
	}
	api1.getJSON(t, "api/alarms", &before)
	trails := map[string][]alarm.Transition{}
	for _, a := range before.Alarms {
		if a.ID == acked && a.AckedBy != alice.name {
			t.Errorf("alarm %s acknowledged by %q, want the caller %q", a.ID, a.AckedBy, alice.name)
		}
		var d alarmDetail
		api1.getJSON(t, "api/alarms/"+a.ID, &d)
		trails[a.ID] = d.History
	}

	stop1()
	eventually(t, 30*time.Second, func() error {
		if res, err := httpClient.Get(hub1.ConsoleURL() + "healthz"); err == nil {
			res.Body.Close()
			return fmt.Errorf("hub 1 still serving")
		}
		return nil
	})
	ctx2, stop2 := context.WithCancel(context.Background())
	hub2 := startHub(t, ctx2, broker.URL(), nil, adjust)
	t.Cleanup(stop2) // runs before startHub's cleanup, which waits for the hub
	// The token made before the restart still works: it is kept in data_dir.
	api2 := api1.at(hub2.ConsoleURL())

	var after alarmList
	api2.getJSON(t, "api/alarms", &after)
	if len(after.Alarms) != len(before.Alarms) {
		t.Fatalf("%d alarms after the restart, %d before", len(after.Alarms), len(before.Alarms))
	}
	for i, b := range before.Alarms {
		a := after.Alarms[i]
		if a.ID != b.ID || a.State != b.State || a.Severity != b.Severity || a.AckedBy != b.AckedBy ||
			!a.ShelvedUntil.Equal(b.ShelvedUntil) || a.Device != b.Device || a.Count != b.Count {
			t.Errorf("alarm %d: after %+v, before %+v", i, a, b)
		}
		var d alarmDetail
		api2.getJSON(t, "api/alarms/"+a.ID, &d)
		if len(d.History) < len(trails[a.ID]) || !slices.EqualFunc(trails[a.ID], d.History[:len(trails[a.ID])], sameTransition) {
			t.Errorf("trail of %s: after %+v, before %+v", a.ID, d.History, trails[a.ID])
		}
	}
}

type alarmList struct {
	Alarms []alarm.Alarm `json:"alarms"`
	Total  int           `json:"total"`
}

type alarmDetail struct {
	Alarm   alarm.Alarm        `json:"alarm"`
	History []alarm.Transition `json:"history"`
}

func sameTransition(a, b alarm.Transition) bool {
	return a.At.Equal(b.At) && a.Who == b.Who && a.Action == b.Action && a.From == b.From && a.To == b.To && a.Note == b.Note
}
