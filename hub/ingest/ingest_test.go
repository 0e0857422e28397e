package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

func rejects(in *Ingest) map[wire.RejectReason]uint64 {
	m := map[wire.RejectReason]uint64{}
	for r, c := range in.rejects {
		if v := c.Value(); v > 0 {
			m[r] = v
		}
	}
	return m
}

func totalRejects(in *Ingest) uint64 {
	var n uint64
	for _, c := range in.rejects {
		n += c.Value()
	}
	return n
}

func TestHostileTrafficCountedGoodTrafficFlows(t *testing.T) {
	b := testenv.Mosquitto(t)
	reg := metrics.NewRegistry()
	rec := newRecorder()
	logs := &testenv.LogBuffer{}
	deps := rec.deps(reg)
	deps.Log = slog.New(slog.NewTextHandler(logs, nil))
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-hostile", Workers: 4}, deps)
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)

	a1 := newPublisher(t, b, "a1")
	b1 := newPublisher(t, b, "b1")
	evil := newPublisher(t, b, "evil")
	healthA1 := wire.Topic("a1", wire.ChannelHealth)
	healthEvil := wire.Topic("evil", wire.ChannelHealth)

	hostile := []struct {
		topic   string
		payload []byte
		reason  wire.RejectReason
	}{
		{healthEvil, []byte(`{"v":1,"agent":"evil",`), wire.RejectMalformed},
		{healthEvil, bytes.Replace(health(t, "evil", 1, nil), []byte(`"fps":15`), []byte(`"fps":1e999`), 1), wire.RejectMalformed},
		{healthEvil, bytes.Repeat([]byte("x"), wire.MaxPayload+1), wire.RejectTooLarge},
		{healthEvil, health(t, "a1", 1000, nil), wire.RejectAgentMismatch},
		{healthEvil, health(t, "evil", 2, func(h *wire.Health) { h.Interval = -1 }), wire.RejectInvalid},
		{healthEvil, health(t, "evil", 3, func(h *wire.Health) { h.TS = time.Now().Add(time.Hour) }), wire.RejectFuture},
		{healthEvil, health(t, "evil", 4, func(h *wire.Health) { h.V = 2 }), wire.RejectBadVersion},
		{"citywatch/v1/agents/bad id!/health", health(t, "evil", 5, nil), wire.RejectBadTopic},
		{wire.Topic("evil", "video"), health(t, "evil", 6, nil), wire.RejectBadTopic},
	}
	const good = 40
	for seq := uint64(1); seq <= good; seq++ {
		a1.publish(healthA1, health(t, "a1", seq, nil), false)
		b1.publish(wire.Topic("b1", wire.ChannelHealth), health(t, "b1", seq, nil), false)
		if i := int(seq) - 1; i < len(hostile) {
			evil.publish(hostile[i].topic, hostile[i].payload, false)
		}
		if seq == 10 {
			a1.publish(healthA1, health(t, "a1", 3, nil), false) // replayed
		}
	}
	// The hub's own commands are no reject.
	evil.publish(wire.Topic("a1", wire.ChannelCommands), []byte(`{"v":1,"id":"c1","ts":"2026-11-28T10:00:00Z","type":"probe"}`), false)

	want := map[wire.RejectReason]uint64{wire.RejectReplay: 1}
	for _, h := range hostile {
		want[h.reason]++
	}
	var wantTotal uint64
	for _, n := range want {
		wantTotal += n
	}
	eventually(t, "all messages processed", func() bool {
		return rec.count() == 2*good && totalRejects(in) == wantTotal && in.received["commands"].Value() == 1
	})
	if got := rejects(in); !maps.Equal(got, want) {
		t.Errorf("rejects = %v, want %v", got, want)
	}
	wantSeqs := make([]uint64, good)
	for i := range wantSeqs {
		wantSeqs[i] = uint64(i + 1)
	}
	if !slices.Equal(rec.seqs("a1"), wantSeqs) || !slices.Equal(rec.seqs("b1"), wantSeqs) {
		t.Errorf("accepted a1 %v b1 %v", rec.seqs("a1"), rec.seqs("b1"))
	}
	if rec.samples != 2*good {
		t.Errorf("samples written = %d, want %d", rec.samples, 2*good)
	}
	if n := in.received[channelOther].Value(); n != 1 {
		t.Errorf("messages on unknown channels = %d, want 1", n)
	}

	var text strings.Builder
	reg.WriteText(&text)
	for _, line := range []string{
		`citywatch_mqtt_rejects_total{reason="overload"} 0`,
		`citywatch_mqtt_rejects_total{reason="too_large"} 1`,
		`citywatch_mqtt_messages_total{channel="commands"} 1`,
		`citywatch_mqtt_connected 1`,
		`citywatch_ingest_queue_depth 0`,
	} {
		if !strings.Contains(text.String(), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, text.String())
		}
	}
	l := logs.String()
	if !strings.Contains(l, "agent=evil reason=agent_mismatch") {
		t.Errorf("reject log lacks agent and reason:\n%s", l)
	}
	for line := range strings.Lines(l) {
		if len(line) > 600 {
			t.Errorf("log line of %d bytes: payloads must not reach the log", len(line))
		}
	}
}

func TestPersistentSession(t *testing.T) {
	b := testenv.Mosquitto(t)
	cfg := Config{BrokerURL: b.URL(), ClientID: "hub-persistent"}
	first, err := New(cfg, newRecorder().deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, first)
	stop() // the hub goes away; its session stays with the broker

	// Published while the hub is away; not retained, so only the session
	// can deliver it.
	newPublisher(t, b, "a1").publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", 7, nil), false)

	rec := newRecorder()
	second, err := New(cfg, rec.deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	start(t, second)
	eventually(t, "the queued message", func() bool { return rec.count() == 1 })
	if got := rec.seqs("a1"); !slices.Equal(got, []uint64{7}) || rec.retained != 0 {
		t.Fatalf("delivered %v (retained %d)", got, rec.retained)
	}
}

func TestRetainedFlagPassedOn(t *testing.T) {
	b := testenv.Mosquitto(t)
	newPublisher(t, b, "a1").publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", 1, nil), true)
	rec := newRecorder()
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-retained"}, rec.deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)
	eventually(t, "the retained message", func() bool { return rec.count() == 1 })
	if rec.retained != 1 {
		t.Fatal("retained flag lost")
	}
}

func TestOrderPerAgentAcrossShards(t *testing.T) {
	b := testenv.Mosquitto(t)
	rec := newRecorder()
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-order", Workers: 4, QueueLen: 4096}, rec.deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)

	const agents, perAgent = 12, 200
	var wg sync.WaitGroup
	for i := range agents {
		id := fmt.Sprintf("agent-%02d", i)
		p := newPublisher(t, b, id)
		// Health and events interleave, as from a real agent.
		topics, payloads := make([]string, perAgent), make([][]byte, perAgent)
		for s := range perAgent {
			topics[s], payloads[s] = wire.Topic(id, wire.ChannelHealth), health(t, id, uint64(s+1), nil)
			if s%2 == 1 {
				topics[s], payloads[s] = wire.Topic(id, wire.ChannelEvents), event(t, id, uint64(s+1))
			}
		}
		wg.Go(func() {
			// Tokens are awaited at the end, so publishes pipeline.
			toks := make([]mqtt.Token, perAgent)
			for s := range payloads {
				toks[s] = p.c.Publish(topics[s], 1, false, payloads[s])
			}
			for _, tok := range toks {
				tok.Wait()
			}
		})
	}
	wg.Wait()
	eventually(t, "every message", func() bool { return rec.count()+int(totalRejects(in)) == agents*perAgent })
	if n := totalRejects(in); n != 0 {
		t.Fatalf("rejects: %v", rejects(in))
	}
	want := make([]uint64, perAgent)
	for s := range want {
		want[s] = uint64(s + 1)
	}
	for i := range agents {
		id := fmt.Sprintf("agent-%02d", i)
		if got := rec.seqs(id); !slices.Equal(got, want) {
			t.Errorf("%s: received out of order or incomplete: %v", id, got)
		}
	}
}

func TestOverload(t *testing.T) {
	b := testenv.Mosquitto(t)
	reg := metrics.NewRegistry()
	rec := newRecorder()
	deps := rec.deps(reg)
	started, release := make(chan struct{}), make(chan struct{})
	inner := deps.Fleet
	var once sync.Once
	deps.Fleet = &fakeFleet{apply: func(m wire.Message, retained bool) ([]fleet.Sample, error) {
		once.Do(func() { close(started); <-release }) // a stuck consumer
		return inner.Apply(m, retained)
	}}
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-overload", Workers: 1, QueueLen: 2}, deps)
	if err != nil {
		t.Fatal(err)
	}
	in.overloadWait = 20 * time.Millisecond // stuck, not busy: 18 waits in turn
	start(t, in)
	p := newPublisher(t, b, "a1")
	topic := wire.Topic("a1", wire.ChannelHealth)

	p.publish(topic, health(t, "a1", 1, nil), false)
	<-started
	for seq := uint64(2); seq <= 21; seq++ {
		p.publish(topic, health(t, "a1", seq, nil), false)
	}
	eventually(t, "overload rejects", func() bool { return in.rejects[wire.RejectOverload].Value() == 18 })
	var text strings.Builder
	reg.WriteText(&text)
	if !strings.Contains(text.String(), "citywatch_ingest_queue_depth 2\n") {
		t.Errorf("queue depth not 2:\n%s", text.String())
	}

	close(release)
	eventually(t, "the queue drained", func() bool { return rec.count() == 3 })
	p.publish(topic, health(t, "a1", 22, nil), false)
	eventually(t, "traffic after overload", func() bool { return rec.count() == 4 })
	if got := rec.seqs("a1"); !slices.Equal(got, []uint64{1, 2, 3, 22}) {
		t.Fatalf("accepted %v", got)
	}
}

// A burst larger than the shards, met by a consumer that is busy rather
// than stuck, waits at the broker and is applied whole: nothing refused.
func TestBurstWaitsForRoom(t *testing.T) {
	b := testenv.Mosquitto(t)
	reg := metrics.NewRegistry()
	rec := newRecorder()
	deps := rec.deps(reg)
	inner := deps.Fleet
	release := make(chan struct{})
	deps.Fleet = &fakeFleet{apply: func(m wire.Message, retained bool) ([]fleet.Sample, error) {
		<-release // busy until the whole burst is at the broker
		return inner.Apply(m, retained)
	}}
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-burst", Workers: 1, QueueLen: 2}, deps)
	if err != nil {
		t.Fatal(err)
	}
	in.overloadWait = time.Minute // busy, not stuck: however slow the machine
	start(t, in)
	p := newPublisher(t, b, "a1")
	topic := wire.Topic("a1", wire.ChannelHealth)
	const burst = 200
	want := make([]uint64, 0, burst)
	for seq := uint64(1); seq <= burst; seq++ {
		p.publish(topic, health(t, "a1", seq, nil), false)
		want = append(want, seq)
	}
	eventually(t, "the shard full", func() bool { return in.backpressure.Value() > 0 })
	close(release)
	eventually(t, "the burst applied", func() bool { return rec.count() == burst })
	if got := rec.seqs("a1"); !slices.Equal(got, want) {
		t.Fatalf("applied out of order or incomplete: %v", got)
	}
	if n := in.rejects[wire.RejectOverload].Value(); n != 0 {
		t.Errorf("%v messages refused as overload", n)
	}
}

func TestRunStopsWhileConnecting(t *testing.T) {
	url := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t)) // nobody listens
	in, err := New(Config{BrokerURL: url, ClientID: "hub"}, newRecorder().deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- in.Run(ctx) }()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if in.Connected() {
		t.Fatal("connected to nothing")
	}
	if err := in.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestNewValidates(t *testing.T) {
	good := Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "hub"}
	gooddeps := func() Deps { return newRecorder().deps(metrics.NewRegistry()) }
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		deps func(*Deps)
		want string // in the error; "" = valid
	}{
		{"valid", nil, nil, ""},
		{"no url", func(c *Config) { c.BrokerURL = "" }, nil, "broker URL"},
		{"bad scheme", func(c *Config) { c.BrokerURL = "http://host:1883" }, nil, "scheme"},
		{"no client id", func(c *Config) { c.ClientID = "" }, nil, "client id"},
		{"negative workers", func(c *Config) { c.Workers = -1 }, nil, "workers"},
		{"negative queue", func(c *Config) { c.QueueLen = -1 }, nil, "queue"},
		{"no fleet", nil, func(d *Deps) { d.Fleet = nil }, "fleet"},
		{"no samples", nil, func(d *Deps) { d.Samples = nil }, "sample writer"},
		{"no metrics", nil, func(d *Deps) { d.Metrics = nil }, "metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, deps := good, gooddeps()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			if tc.deps != nil {
				tc.deps(&deps)
			}
			in, err := New(cfg, deps)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want == "" && (len(in.shards) == 0 || cap(in.shards[0]) != 1024):
				t.Fatalf("defaults not applied: %d shards", len(in.shards))
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestConfigLogRedacts(t *testing.T) {
	var buf bytes.Buffer
	cfg := Config{BrokerURL: "tcp://user:s3cret@host:1883", ClientID: "hub", Password: "hunter2"}
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "config", cfg)
	if out := buf.String(); strings.Contains(out, "s3cret") || strings.Contains(out, "hunter2") || !strings.Contains(out, "client_id=hub") {
		t.Fatalf("log: %s", out)
	}
}

func TestRejectLogRateLimited(t *testing.T) {
	logs := &testenv.LogBuffer{}
	deps := newRecorder().deps(metrics.NewRegistry())
	deps.Log = slog.New(slog.NewTextHandler(logs, nil))
	in, err := New(Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "hub"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("payload ", 100)
	for range rejectLogLimit + 15 {
		in.reject("a1", wire.RejectMalformed, long)
	}
	in.reject("a2", wire.RejectReplay, "seq 3 is not above 9")
	out := logs.String()
	if n := strings.Count(out, "message rejected"); n != rejectLogLimit+1 {
		t.Fatalf("%d reject lines, want %d:\n%s", n, rejectLogLimit+1, out)
	}
	if strings.Contains(out, long) || !strings.Contains(out, "agent=a2 reason=replay") {
		t.Fatalf("log lines not clipped or lacking agent/reason:\n%s", out)
	}
	if in.rejects[wire.RejectMalformed].Value() != rejectLogLimit+15 {
		t.Fatal("suppressed rejects not counted")
	}

	in.rejectLog.flush()
	out = logs.String()
	if !strings.Contains(out, "reason=malformed suppressed=15") || strings.Contains(out, "reason=replay suppressed") {
		t.Fatalf("summary:\n%s", out)
	}
	in.reject("a1", wire.RejectMalformed, "again") // a new window logs again
	if n := strings.Count(logs.String(), "message rejected"); n != rejectLogLimit+2 {
		t.Fatalf("%d reject lines after the window", n)
	}
}

// Reports that outrun their agent's inventory (a hub restarting under a
// busy broker) wait for it instead of being refused: applied, in order,
// once the inventory is, and not counted as rejects.
// gatedFleet refuses an agent's messages as unknown_device until its
// inventory has come, then records the seqs it applies.
type gatedFleet struct {
	mu      sync.Mutex
	known   bool
	applied []uint64
}

func (g *gatedFleet) Apply(m wire.Message, _ bool) ([]fleet.Sample, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.Inventory != nil {
		g.known = true
		return nil, nil
	}
	if !g.known {
		return nil, &wire.Error{Reason: wire.RejectUnknownDevice, Msg: "no inventory from this agent yet"}
	}
	g.applied = append(g.applied, m.Header().Seq)
	return nil, nil
}

func (g *gatedFleet) seqs() []uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.applied)
}

// startGated runs an ingest whose fleet is a gatedFleet.
func startGated(t *testing.T, b *testenv.Broker, id string) (*Ingest, *gatedFleet) {
	t.Helper()
	fl := &gatedFleet{}
	in, err := New(Config{BrokerURL: b.URL(), ClientID: id}, Deps{Fleet: fl, Samples: &fakeSamples{write: func([]fleet.Sample) {}}, Metrics: metrics.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return in, fl
}

func inventoryOf(t *testing.T, agent string, seq uint64) []byte {
	t.Helper()
	inv, err := json.Marshal(wire.Inventory{
		Header: wire.Header{V: wire.Version, Agent: agent, Boot: testBoot, Seq: seq, TS: time.Now().UTC()},
		Site:   wire.Site{ID: "s1", District: "d1", Location: wire.Location{Lat: 30, Lon: 114}},
		Devices: []wire.Device{{ID: "cam-1", Name: "Cam", Kind: wire.KindCamera, District: "d1",
			Location: wire.Location{Lat: 30, Lon: 114}, Criticality: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestReportsWaitForTheInventory(t *testing.T) {
	b := testenv.Mosquitto(t)
	in, fl := startGated(t, b, "hub-park")
	start(t, in)
	p := newPublisher(t, b, "a1")
	// An agent's start: a message per device, far more than a handful.
	const early = 300
	var want []uint64
	for seq := uint64(5); seq < 5+early; seq++ {
		p.publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", seq, nil), false)
		want = append(want, seq)
	}
	eventually(t, "all parked", func() bool { return in.parkedN.Value() == early })
	p.publish(wire.Topic("a1", wire.ChannelInventory), inventoryOf(t, "a1", 5+early), false)
	eventually(t, "the parked reports applied", func() bool { return len(fl.seqs()) == early })
	if got := fl.seqs(); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if in.parkedBytes != 0 {
		t.Errorf("%d bytes still counted as parked", in.parkedBytes)
	}
	if n := in.rejects[wire.RejectUnknownDevice].Value(); n != 0 {
		t.Fatalf("%d unknown_device rejects for reports that were applied", n)
	}
}

// What waits for inventories is bounded in bytes over all agents: beyond
// it a message is refused (and counted) rather than kept.
func TestParkedBytesBounded(t *testing.T) {
	b := testenv.Mosquitto(t)
	in, fl := startGated(t, b, "hub-park-bytes")
	report := health(t, "a1", 1, nil)
	in.parkLimit = 3*len(report) + len(report)/2 // room for three reports
	start(t, in)
	p := newPublisher(t, b, "a1")
	for seq := uint64(1); seq <= 5; seq++ {
		p.publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", seq, nil), false)
	}
	eventually(t, "three parked, two refused", func() bool {
		return in.parkedN.Value() == 3 && in.rejects[wire.RejectUnknownDevice].Value() == 2
	})
	p.publish(wire.Topic("a1", wire.ChannelInventory), inventoryOf(t, "a1", 6), false)
	eventually(t, "the parked reports applied", func() bool { return len(fl.seqs()) == 3 })
	if got := fl.seqs(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("applied %v, want 1, 2, 3", got)
	}
}

// In a cluster the agents' messages come from the stream through Apply,
// applied before it returns, and the MQTT connection subscribes to
// nothing: what agents publish to the broker is another route's.
func TestFromStream(t *testing.T) {
	b := testenv.Mosquitto(t)
	newPublisher(t, b, "a1").publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", 1, nil), true)
	rec := newRecorder()
	deps := rec.deps(metrics.NewRegistry())
	if _, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-stream", FromStream: true}, deps); err == nil {
		t.Fatal("a hub of a cluster with no way to apply records was made")
	}
	deps.Records = fleet.New(fleet.Options{})
	snaps := &fakeSnaps{}
	deps.Snapshots = snaps
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-stream", FromStream: true}, deps)
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)
	in.Apply(wire.Topic("a2", wire.ChannelHealth), health(t, "a2", 5, nil), false, false)
	in.Apply(wire.Topic("a2", wire.ChannelCommands), []byte(`{}`), false, false)
	in.Apply(wire.Topic("a2", wire.ChannelHealth), health(t, "a2", 6, nil), true, false)
	if got := rec.seqs("a2"); !slices.Equal(got, []uint64{5, 6}) || rec.retained != 1 || rec.samples != 2 {
		t.Fatalf("applied %v (retained %d, samples %d), want [5 6] with one retained and their samples, at once", got, rec.retained, rec.samples)
	}
	// An agent another hub owns: its state is kept, its samples are the
	// owner's to write.
	in.Apply(wire.Topic("a3", wire.ChannelHealth), health(t, "a3", 1, nil), false, true)
	if got := rec.seqs("a3"); !slices.Equal(got, []uint64{1}) || rec.samples != 2 {
		t.Fatalf("followed agent: applied %v, samples %d; want applied and no sample written", got, rec.samples)
	}
	// Other hubs' records: one that does not decode, and one of an agent
	// whose inventory has not come, are refused and counted.
	in.ApplyRecord("a4", []byte(`{"agent":`))
	now := time.Now()
	r4 := fleet.Record{Agent: "a4", Status: wire.StatusOnline, Since: now,
		Health: wire.Health{Header: wire.Header{V: wire.Version, Agent: "a4", Boot: now.UnixMilli(), TS: now}, Interval: 10}}
	b4, err := r4.Encode()
	if err != nil {
		t.Fatal(err)
	}
	in.ApplyRecord("a4", b4)
	if in.received[channelRecord].Value() != 2 || in.rejects[wire.RejectInvalid].Value() != 1 || in.rejects[wire.RejectUnknownDevice].Value() != 1 {
		t.Fatalf("records received %d, refused as invalid %d, of unknown devices %d; want 2, 1, 1", in.received[channelRecord].Value(),
			in.rejects[wire.RejectInvalid].Value(), in.rejects[wire.RejectUnknownDevice].Value())
	}
	time.Sleep(300 * time.Millisecond) // time for a subscription's retained delivery
	if got := rec.seqs("a1"); len(got) != 0 {
		t.Fatalf("the broker's retained message reached a hub that reads the stream: %v", got)
	}
	// A camera's picture reaches every hub from the broker, for the one
	// that asked for it, whichever owns the agent; from the stream it is
	// not handed over a second time.
	in.Apply(wire.Topic("a2", wire.ChannelSnapshot), snapshot(t, "a2", 7, "snap-stream"), false, false)
	newPublisher(t, b, "a2").publish(wire.Topic("a2", wire.ChannelSnapshot), snapshot(t, "a2", 8, "snap-broker"), false)
	eventually(t, "the snapshot from the broker", func() bool { return len(snaps.requests()) > 0 })
	if got := snaps.requests(); !slices.Equal(got, []string{"snap-broker"}) {
		t.Fatalf("snapshots handed over: %v, want the broker's alone", got)
	}
}

// fakeSnaps records the snapshots it is handed.
type fakeSnaps struct {
	mu   sync.Mutex
	reqs []string
}

func (f *fakeSnaps) HandleSnapshot(_ string, s wire.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, s.Request)
}

func (f *fakeSnaps) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func snapshot(t *testing.T, agent string, seq uint64, request string) []byte {
	t.Helper()
	b, err := json.Marshal(&wire.Snapshot{Header: wire.Header{V: wire.Version, Agent: agent, Boot: testBoot, Seq: seq, TS: time.Now()},
		Request: request, Device: "cam-1", JPEG: []byte("\xFF\xD8\xFF\xE0 a picture")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
