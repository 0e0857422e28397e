package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
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
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return startHubProcess(t, hubProcessOptions{brokerURL: mqttURL,
		yaml: fmt.Sprintf("cluster: {nats_url: %q, hub_id: %q, partitions: 16, replicas: %d}\nalarms: {rules: %q}\n", natsURLs, id, replicas, rules),
		env:  []string{"CITYWATCH_MQTT_CLIENT_ID=" + id}})
}

// runCity runs a simulated city of 8 agents against brokerURLs until the
// test ends, and lists its devices (all) and which agent each camera has.
func runCity(t *testing.T, brokerURLs string) (world *sim.Sim, all []string, agentOf map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{BrokerURL: brokerURLs, City: sim.CityOptions{Seed: 11, Districts: 2, Sites: 8, Devices: 80},
		Interval: time.Second, Logger: testLogger(t)})
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

// alarmsOn lists the open alarms a hub has for a device.
func alarmsOn(h *hubProcess, device string) (int, error) {
	var as struct{ Total int }
	err := h.get("api/alarms?device="+device, &as)
	return as.Total, err
}

// Two hub processes share a simulated city through NATS JetStream: the
// agents speak MQTT to NATS's MQTT listener; each hub owns some of the
// stream's partitions and follows the others, so both consoles show the
// whole city, while only a device's owner raises its alarms. Then the
// owner of a failed camera's agent is killed with SIGKILL: the other
// takes its partitions over from the stream — it already knows their
// agents — raises the failed camera's alarm, and follows a camera failing
// after the kill.
func TestClusterFailOver(t *testing.T) {
	const partitions = 16
	srv := testenv.NATS(t)
	hubA, hubB := clusterHub(t, srv.URL(), srv.MQTTURL(), "hub-a", 1), clusterHub(t, srv.URL(), srv.MQTTURL(), "hub-b", 1)
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

	// A camera of hub-b's fails: both consoles show it, hub-b alone alarms.
	first, second := camerasOfB[0], camerasOfB[1]
	if err := world.Fault(sim.Fault{Device: first, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if a, b := status(hubA, first), status(hubB, first); a != wire.StatusOffline || b != wire.StatusOffline {
			return fmt.Errorf("%s is %s on hub-a, %s on hub-b", first, a, b)
		}
		if n, err := alarmsOn(hubB, first); err != nil || n != 1 {
			return fmt.Errorf("hub-b has %d alarms for %s (%v)", n, first, err)
		}
		return nil
	})
	if n, err := alarmsOn(hubA, first); err != nil || n != 0 {
		t.Errorf("hub-a, which only follows %s, has %d alarms for it (%v)", first, n, err)
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
	reason, _ := ownedBy(hubA)
	t.Logf("hub-a owned all %d partitions %v after the kill (lease TTL %v) and raised both cameras' alarms; %s",
		partitions, took.Round(100*time.Millisecond), cluster.DefaultTTL, reason)
}
