package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// A hub killed (kill -9) in a fault storm leaves no sample behind: every
// health line of every report the agents' stream holds is a device_health
// point in InfluxDB, written by the hub that owned the agent or, for what
// it had applied and not stored, by the hub that took its partitions over
// (a hub acknowledges the stream only once InfluxDB has the samples).
func TestClusterKillKeepsEverySample(t *testing.T) {
	srv := testenv.NATS(t)
	influx := testenv.InfluxDB(t)
	env := []string{"INFLUX_URL=" + influx.URL(), "INFLUX_ORG=" + influx.Org(), "INFLUX_BUCKET=" + influx.Bucket(), "INFLUX_TOKEN=" + influx.Token()}
	hub := func(id string) *hubProcess {
		return startHubProcess(t, hubProcessOptions{brokerURL: srv.MQTTURL(),
			yaml: fmt.Sprintf("cluster: {nats_url: %q, hub_id: %q, partitions: 16}\n", srv.URL(), id),
			env:  append([]string{"CITYWATCH_MQTT_CLIENT_ID=" + id}, env...)})
	}
	hubA, hubB := hub("hub-a"), hub("hub-b")
	world, all, agentOf := runCity(t, srv.MQTTURL())
	eventually(t, 60*time.Second, func() error {
		for _, h := range []*hubProcess{hubA, hubB} {
			owned, err := partitionsOf(h)
			if err != nil || len(owned) == 0 {
				return fmt.Errorf("a hub owns %v (%v)", owned, err)
			}
			if n, err := onlineOn(h); err != nil || n != len(all) {
				return fmt.Errorf("a hub shows %d of %d devices online (%v)", n, len(all), err)
			}
		}
		return nil
	})

	// The storm: cameras fail and come back every 100 ms for 6 s; hub-b
	// is killed half-way through.
	var cameras []string
	for _, id := range all {
		if _, ok := agentOf[id]; ok {
			cameras = append(cameras, id)
		}
	}
	rng := rand.New(rand.NewPCG(13, 13))
	for i := range 60 {
		f := sim.FaultOffline
		if i%3 == 2 {
			f = sim.FaultRecover
		}
		if err := world.Fault(sim.Fault{Device: cameras[rng.IntN(len(cameras))], Fault: f}); err != nil {
			t.Fatal(err)
		}
		if i == 30 {
			if err := hubB.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, 60*time.Second, func() error {
		if owned, err := partitionsOf(hubA); err != nil || len(owned) != 16 {
			return fmt.Errorf("hub-a owns %v (%v)", owned, err)
		}
		return nil
	})

	// Every report in the stream so far, line by line.
	js := testenv.JetStream(t, srv.URL())
	stream, err := js.Stream(t.Context(), cluster.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	last := stream.CachedInfo().State.LastSeq
	cons, err := stream.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{"cw.*.*.health"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{} // device and report time
	reports := 0
	for done := false; !done; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, _ := m.Metadata()
			if meta.Sequence.Stream > last {
				done = true
				continue
			}
			parts := strings.Split(m.Subject(), ".") // cw.<partition>.<agent>.health
			if len(parts) != 4 {
				t.Fatalf("subject %s in the stream", m.Subject())
			}
			msg, err := wire.Decode(wire.Topic(parts[2], wire.ChannelHealth), m.Data(), time.Now())
			if err != nil {
				t.Fatalf("a report in the stream does not decode: %v", err)
			}
			reports++
			for _, l := range msg.Health.Devices {
				want[l.ID+"@"+msg.Health.TS.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)] = true
			}
		}
		if n == 0 {
			done = true
		}
	}
	if reports < 40 {
		t.Fatalf("only %d reports in the stream", reports)
	}

	// All of them in InfluxDB, once hub-a has applied and stored them.
	var missing []string
	eventually(t, 60*time.Second, func() error {
		rows := influx.Query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "device_health" and r._field == "status_code")
  |> keep(columns: ["_time", "device"])`, influx.Bucket()))
		have := map[string]bool{}
		for _, r := range rows {
			at, _ := r["_time"].(time.Time)
			dev, _ := r["device"].(string)
			have[dev+"@"+at.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)] = true
		}
		missing = missing[:0]
		for k := range want {
			if !have[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d samples of the stream's %d reports not in InfluxDB, e.g. %v",
				len(missing), len(want), reports, missing[:min(5, len(missing))])
		}
		return nil
	})
	t.Logf("%d samples of %d reports, hub-b killed mid-storm: all in InfluxDB", len(want), reports)
}
