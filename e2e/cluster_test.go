package e2e

import (
	"context"
	"fmt"
	"slices"
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
func clusterHub(t *testing.T, srv *testenv.NATSServer, id string) *hubProcess {
	t.Helper()
	return startHubProcess(t, hubProcessOptions{brokerURL: srv.MQTTURL(),
		yaml: fmt.Sprintf("cluster: {nats_url: %q, hub_id: %q, partitions: 16}\n", srv.URL(), id),
		env:  []string{"CITYWATCH_MQTT_CLIENT_ID=" + id}})
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

// Two hub processes share a simulated city through NATS JetStream: the
// agents speak MQTT to NATS's MQTT listener, each hub applies the agents
// of the partitions it holds, and together they know every device once.
// Then one hub is killed with SIGKILL: the other takes its partitions
// over from the stream, learns the dead hub's agents from their last
// inventory in the stream, and follows them — a camera failing after the
// kill shows offline on the survivor.
func TestClusterFailOver(t *testing.T) {
	srv := testenv.NATS(t)
	hubA, hubB := clusterHub(t, srv, "hub-a"), clusterHub(t, srv, "hub-b")

	ctx, cancel := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{BrokerURL: srv.MQTTURL(), City: sim.CityOptions{Seed: 11, Districts: 2, Sites: 8, Devices: 80},
		Interval: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var all []string
	camera := map[string]bool{}
	for _, a := range world.City().Agents {
		for _, c := range a.Cameras {
			all = append(all, c.ID)
			camera[c.ID] = true
		}
		for _, s := range a.Sensors {
			all = append(all, s.ID)
		}
	}
	slices.Sort(all)

	// Steady state: every device known online by exactly one hub.
	var onB []string
	eventually(t, 60*time.Second, func() error {
		a, err := devicesOf(hubA)
		if err != nil {
			return err
		}
		b, err := devicesOf(hubB)
		if err != nil {
			return err
		}
		onB = onB[:0]
		for _, id := range all {
			da, inA := a[id]
			db, inB := b[id]
			switch {
			case inA == inB:
				return fmt.Errorf("%s known by hub-a %v and hub-b %v", id, inA, inB)
			case inA && da.Status != wire.StatusOnline, inB && db.Status != wire.StatusOnline:
				return fmt.Errorf("%s not online yet", id)
			case inB:
				onB = append(onB, id)
			}
		}
		if len(a)+len(b) != len(all) {
			return fmt.Errorf("hub-a knows %d devices and hub-b %d, the city has %d", len(a), len(b), len(all))
		}
		if len(onB) == 0 || len(onB) == len(all) {
			return fmt.Errorf("hub-b follows %d of %d devices: not shared yet", len(onB), len(all))
		}
		return nil
	})
	ownedA, _ := ownedBy(hubA)
	ownedB, _ := ownedBy(hubB)
	t.Logf("steady: hub-b follows %d of %d devices; %s; %s", len(onB), len(all), ownedA, ownedB)

	// hub-b dies.
	if err := hubB.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var victim string
	for _, id := range onB {
		if camera[id] {
			victim = id
			break
		}
	}
	if victim == "" {
		t.Fatal("hub-b followed no camera")
	}
	if err := world.Fault(sim.Fault{Device: victim, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}

	var took time.Duration
	eventually(t, 60*time.Second, func() error {
		a, err := devicesOf(hubA)
		if err != nil {
			return err
		}
		if len(a) != len(all) {
			return fmt.Errorf("hub-a knows %d of %d devices", len(a), len(all))
		}
		if took == 0 {
			took = time.Since(killed)
		}
		for _, id := range all {
			want := wire.StatusOnline
			if id == victim {
				want = wire.StatusOffline
			}
			if a[id].Status != want {
				return fmt.Errorf("%s is %s on hub-a, want %s", id, a[id].Status, want)
			}
		}
		return nil
	})
	owned, err := ownedBy(hubA)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("consumes %d partitions", 16); !strings.Contains(owned, want) {
		t.Errorf("hub-a after the fail-over: %s, want it to consume all", owned)
	}
	t.Logf("hub-a knew all %d devices %v after the kill (lease TTL %v); %s", len(all), took.Round(100*time.Millisecond), cluster.DefaultTTL, owned)
}
