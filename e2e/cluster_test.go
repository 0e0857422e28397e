package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to read the shared store

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// clusterHub starts a hub process of a cluster on srv: agents' messages
// from the stream, commands through NATS's MQTT listener.
func clusterHub(t *testing.T, natsURLs, mqttURL, id string, replicas int) *hubProcess {
	t.Helper()
	return sharedClusterHub(t, natsURLs, mqttURL, id, replicas, "", nil)
}

// sharedClusterHub is clusterHub with the database the hubs share (alarms
// and accounts) on PostgreSQL at pgURL ("" for none); the first hub
// makes the administrator's token, the others use that of peer.
func sharedClusterHub(t testing.TB, natsURLs, mqttURL, id string, replicas int, pgURL string, peer *hubProcess) *hubProcess {
	t.Helper()
	return clusterHubRules(t, natsURLs, mqttURL, id, replicas, pgURL, peer, quickRules, "")
}

// clusterHubRules is sharedClusterHub with alarm rules of the test's, and
// more of the hub's configuration (YAML) if extra is not empty.
func clusterHubRules(t testing.TB, natsURLs, mqttURL, id string, replicas int, pgURL string, peer *hubProcess, rulesYAML, extra string) *hubProcess {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return startHubProcess(t, hubProcessOptions{brokerURL: mqttURL,
		yaml: fmt.Sprintf("cluster: {nats_url: %q, hub_id: %q, partitions: 16, replicas: %d, postgres_url: %q}\nalarms: {rules: %q}\n%s",
			natsURLs, id, replicas, pgURL, rules, extra),
		env: []string{"CITYWATCH_MQTT_CLIENT_ID=" + id}, accountsOf: peer})
}

// runCity runs a simulated city of 8 agents against brokerURLs until the
// test ends, and lists its devices (all) and which agent each camera has.
func runCity(t *testing.T, brokerURLs string) (world *sim.Sim, all []string, agentOf map[string]string) {
	t.Helper()
	return runCityOf(t, sim.Options{BrokerURL: brokerURLs, City: sim.CityOptions{Seed: 11, Districts: 2, Sites: 8, Devices: 80}, Interval: time.Second})
}

// runCityOf is runCity of another city (o.Logger is the test's).
func runCityOf(t testing.TB, o sim.Options) (world *sim.Sim, all []string, agentOf map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o.Logger = testLogger(t)
	world, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	agentOf = map[string]string{}
	for _, a := range world.City().Agents {
		for _, c := range a.Cameras {
			all = append(all, c.ID)
			agentOf[c.ID] = a.ID
		}
		for _, s := range a.Sensors {
			all = append(all, s.ID)
		}
	}
	slices.Sort(all)
	return world, all, agentOf
}

// allOnline reports whether every device is online on every hub.
func allOnline(all []string, hubs ...*hubProcess) error {
	for _, h := range hubs {
		ds, err := devicesOf(h)
		if err != nil {
			return err
		}
		for _, id := range all {
			if d, ok := ds[id]; !ok || d.Status != wire.StatusOnline {
				return fmt.Errorf("%s is %q on one hub", id, d.Status)
			}
		}
	}
	return nil
}

// devicesOf lists the devices a hub knows, by id.
func devicesOf(h *hubProcess) (map[string]fleet.Device, error) {
	var list struct{ Devices []fleet.Device }
	if err := h.get("api/devices", &list); err != nil {
		return nil, err
	}
	out := make(map[string]fleet.Device, len(list.Devices))
	for _, d := range list.Devices {
		out[d.ID] = d
	}
	return out, nil
}

// ownedBy reads a hub's partitions from its /healthz.
func ownedBy(h *hubProcess) (string, error) {
	var hz console.Health
	if err := h.get("healthz", &hz); err != nil {
		return "", err
	}
	c, ok := hz.Components["cluster"]
	if !ok || c.Status != console.HealthOK {
		return "", fmt.Errorf("cluster component %+v", c)
	}
	return c.Reason, nil
}

// partitionsOf reads the partitions a hub consumes from its /healthz.
func partitionsOf(h *hubProcess) (map[int]bool, error) {
	reason, err := ownedBy(h)
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`consumes \d+ partitions \[([0-9 ]*)\]`).FindStringSubmatch(reason)
	if m == nil {
		return nil, fmt.Errorf("no partitions in %q", reason)
	}
	out := map[int]bool{}
	for _, f := range strings.Fields(m[1]) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out[p] = true
	}
	return out, nil
}

// alarmsOn counts the open alarms a hub has for a device.
func alarmsOn(h *hubProcess, device string) (int, error) {
	as, err := alarmListOn(h, device)
	return len(as), err
}

// alarmListOn lists the open alarms a hub has for a device.
func alarmListOn(h *hubProcess, device string) ([]alarm.Alarm, error) {
	var as console.AlarmList
	err := h.get("api/alarms?device="+device, &as)
	return as.Alarms, err
}

// alarmOn reads one alarm and its trail from a hub.
func alarmOn(h *hubProcess, id string) (alarm.Alarm, []alarm.Transition, error) {
	var detail console.AlarmDetail
	err := h.get("api/alarms/"+id, &detail)
	return detail.Alarm, detail.History, err
}

// Two hub processes share a simulated city through NATS JetStream and
// their alarms through PostgreSQL: the agents speak MQTT to NATS's MQTT
// listener; each hub owns some of the stream's partitions and follows the
// others, so both consoles show the whole city. A device's owner alone
// raises its alarm, and both consoles show that one alarm; an operator on
// the other hub acknowledges it, and the owner's console shows it
// acknowledged. Then the owner is killed with SIGKILL: the other takes its
// partitions over from the stream — it already knows their agents — and
// carries the same alarm on (one alarm, its trail in order, one row in the
// shared store), and raises that of a camera failing after the kill.
func TestClusterFailOver(t *testing.T) {
	const partitions = 16
	srv := testenv.NATS(t)
	pg := testenv.Postgres(t)
	hubA := sharedClusterHub(t, srv.URL(), srv.MQTTURL(), "hub-a", 1, pg, nil)
	hubB := sharedClusterHub(t, srv.URL(), srv.MQTTURL(), "hub-b", 1, pg, hubA)
	world, all, agentOf := runCity(t, srv.MQTTURL())

	// Steady state: both hubs show every device online; the partitions
	// are shared, each owned by one hub.
	var ownedB map[int]bool
	var camerasOfB []string
	eventually(t, 60*time.Second, func() error {
		if err := allOnline(all, hubA, hubB); err != nil {
			return err
		}
		ownedA, err := partitionsOf(hubA)
		if err != nil {
			return err
		}
		if ownedB, err = partitionsOf(hubB); err != nil {
			return err
		}
		if len(ownedA)+len(ownedB) != partitions || len(ownedA) == 0 || len(ownedB) == 0 {
			return fmt.Errorf("partitions owned: hub-a %v, hub-b %v", ownedA, ownedB)
		}
		for p := range ownedA {
			if ownedB[p] {
				return fmt.Errorf("partition %d owned by both", p)
			}
		}
		camerasOfB = camerasOfB[:0]
		for _, id := range all {
			if a, ok := agentOf[id]; ok && ownedB[cluster.Partition(a, partitions)] {
				camerasOfB = append(camerasOfB, id)
			}
		}
		if len(camerasOfB) < 2 {
			return fmt.Errorf("hub-b owns the agents of only %d cameras", len(camerasOfB))
		}
		return nil
	})
	status := func(h *hubProcess, id string) wire.Status {
		ds, err := devicesOf(h)
		if err != nil {
			return ""
		}
		return ds[id].Status
	}

	// A camera of hub-b's fails: both consoles show it and its one alarm,
	// which hub-b raised.
	first, second := camerasOfB[0], camerasOfB[1]
	if err := world.Fault(sim.Fault{Device: first, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var raised alarm.Alarm
	eventually(t, 30*time.Second, func() error {
		if a, b := status(hubA, first), status(hubB, first); a != wire.StatusOffline || b != wire.StatusOffline {
			return fmt.Errorf("%s is %s on hub-a, %s on hub-b", first, a, b)
		}
		onB, err := alarmListOn(hubB, first)
		if err != nil || len(onB) != 1 {
			return fmt.Errorf("hub-b has %d alarms for %s (%v)", len(onB), first, err)
		}
		onA, err := alarmListOn(hubA, first)
		if err != nil || len(onA) != 1 || onA[0].ID != onB[0].ID {
			return fmt.Errorf("hub-a shows %+v for %s, hub-b %s (%v)", onA, first, onB[0].ID, err)
		}
		raised = onB[0]
		return nil
	})
	if !strings.HasPrefix(raised.ID, "Ahub-b-") {
		t.Errorf("the alarm %s was not raised by hub-b", raised.ID)
	}

	// An operator on hub-a acknowledges it; hub-b, which holds it, shows it.
	acked := time.Now()
	if code, body := hubA.api.post(t, "api/alarms/"+raised.ID+"/ack", `{"note":"on it from hub-a"}`); code != 200 {
		t.Fatalf("ack on hub-a of hub-b's alarm: %d %s", code, body)
	}
	var ackTook time.Duration
	eventually(t, 10*time.Second, func() error {
		a, _, err := alarmOn(hubB, raised.ID)
		if err != nil || a.State != alarm.ActiveAck {
			return fmt.Errorf("hub-b shows %s as %s (%v)", raised.ID, a.State, err)
		}
		ackTook = time.Since(acked)
		return nil
	})
	if a, _, err := alarmOn(hubA, raised.ID); err != nil || a.State != alarm.ActiveAck || a.AckedBy != "token:e2e-admin" {
		t.Errorf("hub-a shows %s as %s acked by %q after its own ack (%v)", raised.ID, a.State, a.AckedBy, err)
	}

	// hub-b dies.
	if err := hubB.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := world.Fault(sim.Fault{Device: second, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var took time.Duration
	eventually(t, 60*time.Second, func() error {
		owned, err := partitionsOf(hubA)
		if err != nil || len(owned) != partitions {
			return fmt.Errorf("hub-a owns %v (%v)", owned, err)
		}
		if took == 0 {
			took = time.Since(killed)
		}
		for _, id := range []string{first, second} {
			if s := status(hubA, id); s != wire.StatusOffline {
				return fmt.Errorf("%s is %s on hub-a", id, s)
			}
			if n, err := alarmsOn(hubA, id); err != nil || n != 1 {
				return fmt.Errorf("hub-a has %d alarms for %s (%v)", n, id, err)
			}
		}
		return nil
	})
	// The first camera's alarm is the one hub-b raised, acknowledged, with
	// its trail in order — and nowhere twice.
	a, trail, err := alarmOn(hubA, raised.ID)
	if err != nil || a.State != alarm.ActiveAck {
		t.Fatalf("after the take-over hub-a shows %s as %s (%v)", raised.ID, a.State, err)
	}
	var acts []alarm.Action
	for _, tr := range trail {
		acts = append(acts, tr.Action)
	}
	if len(acts) < 2 || acts[0] != alarm.ActRaise || acts[1] != alarm.ActAck || trail[1].Note != "on it from hub-a" {
		t.Errorf("trail of %s after the take-over: %v, want raise then hub-a's ack", raised.ID, acts)
	}
	if rows := storedAlarms(t, pg, first); rows != 1 {
		t.Errorf("the shared store holds %d alarms for %s, want exactly 1", rows, first)
	}
	reason, _ := ownedBy(hubA)
	t.Logf("an ack on hub-a showed on hub-b %v later; hub-a owned all %d partitions %v after the kill (lease TTL %v), "+
		"carried hub-b's alarm on and raised the second camera's; %s",
		ackTook.Round(time.Millisecond), partitions, took.Round(100*time.Millisecond), cluster.DefaultTTL, reason)
}

// storedAlarms counts the alarms of a device in the shared store.
func storedAlarms(t *testing.T, pgURL, device string) int {
	t.Helper()
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM alarms WHERE device = $1`, device).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
