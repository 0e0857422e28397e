package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// fakeFleet is an Applier configured through its function field.
type fakeFleet struct {
	apply func(m wire.Message, retained bool) ([]fleet.Sample, error)
}

func (f *fakeFleet) Apply(m wire.Message, retained bool) ([]fleet.Sample, error) {
	return f.apply(m, retained)
}

// fakeSamples is a SampleWriter configured through its function field.
type fakeSamples struct{ write func([]fleet.Sample) }

func (f *fakeSamples) WriteSamples(s []fleet.Sample) { f.write(s) }

// recorder is the usual fake fleet: it accepts messages, rejecting seqs not
// above the agent's last as replays, and records what it accepted in order.
type recorder struct {
	mu       sync.Mutex
	accepted map[string][]uint64 // seqs by agent, in order of Apply
	retained int
	samples  int
}

func newRecorder() *recorder { return &recorder{accepted: map[string][]uint64{}} }

func (r *recorder) deps(reg *metrics.Registry) Deps {
	return Deps{
		Fleet: &fakeFleet{apply: func(m wire.Message, retained bool) ([]fleet.Sample, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			h := m.Header()
			seqs := r.accepted[m.Agent]
			if len(seqs) > 0 && h.Seq <= seqs[len(seqs)-1] {
				return nil, &wire.Error{Reason: wire.RejectReplay, Msg: fmt.Sprintf("seq %d", h.Seq)}
			}
			r.accepted[m.Agent] = append(seqs, h.Seq)
			if retained {
				r.retained++
			}
			return []fleet.Sample{{Device: "cam-1", Agent: m.Agent}}, nil
		}},
		Samples: &fakeSamples{write: func(s []fleet.Sample) {
			r.mu.Lock()
			r.samples += len(s)
			r.mu.Unlock()
		}},
		Metrics: reg,
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.accepted {
		n += len(s)
	}
	return n
}

func (r *recorder) seqs(agent string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.accepted[agent]...)
}

// start runs in until the test ends (or the returned stop is called) and
// waits until it is connected and subscribed.
func start(t *testing.T, in *Ingest) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- in.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	t.Cleanup(stop)
	eventually(t, "ingest connected", in.Connected)
	return stop
}

// eventually waits for cond, which becomes true through network delivery,
// not through the passing of time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// publisher is an MQTT client publishing like an agent (or an attacker).
type publisher struct {
	t *testing.T
	c mqtt.Client
}

func newPublisher(t *testing.T, b *testenv.Broker, id string) *publisher {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	wait(t, "connect "+id, c.Connect())
	t.Cleanup(func() { c.Disconnect(100) })
	return &publisher{t: t, c: c}
}

func (p *publisher) publish(topic string, payload []byte, retained bool) {
	p.t.Helper()
	wait(p.t, "publish "+topic, p.c.Publish(topic, 1, retained, payload))
}

func wait(t *testing.T, what string, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

const testBoot = int64(1795860000000)

// health returns the JSON of a one-device health report of agent, changed
// by mod if not nil.
func health(t testing.TB, agent string, seq uint64, mod func(*wire.Health)) []byte {
	h := &wire.Health{
		Header:   wire.Header{V: wire.Version, Agent: agent, Boot: testBoot, Seq: seq, TS: time.Now()},
		Interval: 10,
		Devices: []wire.DeviceHealth{{
			ID: "cam-1", Status: wire.StatusOnline, Since: time.Now().Add(-time.Hour),
			Metrics: map[string]float64{wire.MetricFPS: 15},
		}},
	}
	if mod != nil {
		mod(h)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// event returns the JSON of a status event of agent's cam-1.
func event(t testing.TB, agent string, seq uint64) []byte {
	b, err := json.Marshal(&wire.Event{
		Header: wire.Header{V: wire.Version, Agent: agent, Boot: testBoot, Seq: seq, TS: time.Now()},
		Device: "cam-1", Type: wire.EventStatus, From: wire.StatusOnline, To: wire.StatusOffline,
		Reason: wire.ReasonTimeout, At: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
