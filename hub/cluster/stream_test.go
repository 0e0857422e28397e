package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// applied is what the hubs' handlers saw, in the order they saw it.
type applied struct {
	mu       sync.Mutex
	seen     map[string][]int // agent → health payload numbers
	hubs     map[string]map[string]bool
	knows    map[string]bool // hub+agent: the hub applied the agent's inventory
	replayed int             // inventories applied as Retained
	bad      []string
}

// applies reports whether hub has applied any agent's report.
func (a *applied) applies(hub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, hubs := range a.hubs {
		if hubs[hub] {
			return true
		}
	}
	return false
}

func (a *applied) handler(hub string) Handler {
	return func(_ context.Context, m Message) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if m.Partition != Partition(m.Agent, partitions) {
			a.bad = append(a.bad, fmt.Sprintf("%s got %+v in the wrong partition", hub, m))
			return
		}
		if m.Channel == wire.ChannelInventory {
			a.knows[hub+"/"+m.Agent] = true
			if m.Retained {
				a.replayed++
			}
			return
		}
		n, err := strconv.Atoi(string(m.Payload))
		switch {
		case err != nil || m.Channel != wire.ChannelHealth || m.Retained:
			a.bad = append(a.bad, fmt.Sprintf("%s got %+v", hub, m))
			return
		case !a.knows[hub+"/"+m.Agent]:
			a.bad = append(a.bad, fmt.Sprintf("%s applied %s's report %d before its inventory", hub, m.Agent, n))
		}
		a.seen[m.Agent] = append(a.seen[m.Agent], n)
		if a.hubs[m.Agent] == nil {
			a.hubs[m.Agent] = map[string]bool{}
		}
		a.hubs[m.Agent][hub] = true
	}
}

// agentsStream starts a NATS server holding the agents' stream, and gives
// a way for each hub's own connection to open it.
func agentsStream(t *testing.T) (*testenv.NATSServer, func(jetstream.JetStream) jetstream.Stream) {
	t.Helper()
	srv := testenv.NATS(t)
	ajs := testenv.JetStream(t, srv.URL())
	if _, err := EnsureStream(t.Context(), ajs, partitions, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureViewStream(t.Context(), ajs, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	return srv, func(js jetstream.JetStream) jetstream.Stream {
		s, err := js.Stream(t.Context(), StreamName)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// clusterHub is a hub's leases and consumers on its own connection. With
// record it shares the agents it owns (records made by record) and
// follows the others'; without, it only owns.
func clusterHub(t *testing.T, url, id string, stream func(js jetstream.JetStream) jetstream.Stream, h Handler,
	record func(agent string) ([]byte, bool)) (*nats.Conn, *Consumers, *Publisher) {
	t.Helper()
	l, nc := newLeases(t, url, id)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConsumersConfig{Stream: stream(js), Owner: l, Handle: h, Log: slog.New(slog.DiscardHandler)}
	var pub *Publisher
	if record != nil {
		view, err := js.Stream(t.Context(), ViewStreamName)
		if err != nil {
			t.Fatal(err)
		}
		pub = newRecordPublisher(js, l, partitions, cfg.Log, record, func() []string { return nil })
		cfg.Follow, cfg.View, cfg.Publisher = partitions, view, pub
	}
	cons, err := NewConsumers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	l.onOwned = func(owned []int) { cons.Own(ctx, owned) }
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Run(ctx); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	})
	if pub != nil {
		wg.Go(func() { pub.Run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait(); cons.Wait() })
	return nc, cons, pub
}

// Agents publish over MQTT to NATS's MQTT listener; the stream keeps
// their messages by partition, two hubs apply each agent's messages in
// order, and when one hub dies mid-stream the other takes its partitions
// over from the last acknowledged message: every message is applied, in
// each agent's order, the only repeats being what the dead hub applied
// and had not acknowledged (which the hub's replay window drops), and no
// hub applies an agent's report before it knows the agent's inventory
// (the new owner gets the last one replayed).
func TestPartitionedStreamFailOver(t *testing.T) {
	srv, stream := agentsStream(t)
	const agents, perAgent = 16, 150
	got := &applied{seen: map[string][]int{}, hubs: map[string]map[string]bool{}, knows: map[string]bool{}}
	_, consA, _ := clusterHub(t, srv.URL(), "hub-a", stream, got.handler("hub-a"), nil)
	ncB, consB, _ := clusterHub(t, srv.URL(), "hub-b", stream, got.handler("hub-b"), nil)

	// The agents, over MQTT QoS 1 as in the field.
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for i := range agents {
		agent := fmt.Sprintf("agent-%02d", i)
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(srv.MQTTURL()).SetClientID(agent).SetCleanSession(true))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect: %v", agent, tok.Error())
		}
		defer c.Disconnect(100)
		if tok := c.Publish(wire.Topic(agent, wire.ChannelInventory), 1, true, "devices"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: inventory: %v", agent, tok.Error())
		}
		wg.Go(func() {
			for n := 1; n <= perAgent; n++ {
				tok := c.Publish(wire.Topic(agent, wire.ChannelHealth), 1, false, strconv.Itoa(n))
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Errorf("%s: publish %d: %v", agent, n, tok.Error())
					return
				}
				if n == perAgent/2 && i == 0 {
					close(killed)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	<-killed
	// On a loaded machine hub-b may not have applied anything yet, and
	// then nothing would fail over: let it own some agents first.
	for deadline := time.Now().Add(20 * time.Second); !got.applies("hub-b"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hub-b applied nothing in 20 s; stats b %+v", consB.Stats())
		}
	}
	ncB.Close() // hub-b dies: nothing released, nothing more acknowledged
	wg.Wait()

	deadline := time.Now().Add(20 * time.Second)
	for {
		got.mu.Lock()
		complete := 0
		for _, s := range got.seen {
			if len(s) > 0 && s[len(s)-1] == perAgent {
				complete++
			}
		}
		got.mu.Unlock()
		if complete == agents {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s %d of %d agents' messages all applied; stats a %+v b %+v", complete, agents, consA.Stats(), consB.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}

	got.mu.Lock()
	defer got.mu.Unlock()
	if len(got.bad) > 0 {
		t.Fatalf("messages on the wrong channel or partition: %v", got.bad[:min(5, len(got.bad))])
	}
	repeats, movedAgents := 0, 0
	for agent, s := range got.seen {
		// What a replay window keeps: each number once, in order.
		last := 0
		for _, n := range s {
			switch {
			case n == last+1:
				last = n
			case n <= last:
				repeats++
			default:
				t.Fatalf("%s: %d applied after %d: a gap or reordering in %v", agent, n, last, s)
			}
		}
		if last != perAgent {
			t.Fatalf("%s: applied up to %d of %d", agent, last, perAgent)
		}
		if len(got.hubs[agent]) > 1 {
			movedAgents++
		}
	}
	if movedAgents == 0 || got.replayed == 0 {
		t.Errorf("%d agents moved from hub-b to hub-a, %d inventories replayed: the test did not fail anything over", movedAgents, got.replayed)
	}
	t.Logf("%d agents moved hubs, %d inventories replayed; %d messages applied twice across the fail-over; stats a %+v", movedAgents, got.replayed, repeats, consA.Stats())
}

// Every hub follows the partitions it does not own, for its read view:
// the owner stores each agent's inventory in the view stream as it
// applies it, and its record of the agent when it changes; the follower
// gets each agent's inventory (as retained, before any record) and its
// records, marked Follow, never the agents' own reports.
func TestFollowersSeeEveryAgent(t *testing.T) {
	srv, stream := agentsStream(t)
	const agents, reports = 8, 20
	var pubs []mqtt.Client
	for i := range agents {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(srv.MQTTURL()).SetClientID(fmt.Sprintf("agent-%02d", i)))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(100)
		// Before any hub runs: the owner learns it by replay and shares it.
		if tok := c.Publish(wire.Topic(fmt.Sprintf("agent-%02d", i), wire.ChannelInventory), 1, true, "devices"); !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("inventory not published")
		}
		pubs = append(pubs, c)
	}

	type seen struct {
		inventory, retained bool
		last                int // owned: the last report applied; followed: the last record's
		followed, owned     int
	}
	var mu sync.Mutex
	var bad []string
	views := map[string]map[string]*seen{"hub-a": {}, "hub-b": {}}
	pubOf := map[string]*Publisher{}
	handler := func(hub string) Handler {
		return func(_ context.Context, m Message) {
			mu.Lock()
			defer mu.Unlock()
			v := views[hub][m.Agent]
			if v == nil {
				v = &seen{}
				views[hub][m.Agent] = v
			}
			if m.Follow {
				v.followed++
			} else {
				v.owned++
			}
			switch {
			case m.Channel == wire.ChannelInventory:
				v.inventory, v.retained = true, m.Retained
			case m.Follow && m.Record:
				if !v.inventory {
					bad = append(bad, hub+" got a record of "+m.Agent+" before its inventory")
				}
				n, _ := strconv.Atoi(string(m.Payload))
				v.last = max(v.last, n)
			case m.Follow:
				bad = append(bad, fmt.Sprintf("%s followed an agent's own message %+v", hub, m))
			case m.Channel == wire.ChannelHealth:
				n, _ := strconv.Atoi(string(m.Payload))
				v.last = max(v.last, n)
				pubOf[hub].Changed(m.Agent)
			}
		}
	}
	record := func(hub string) func(string) ([]byte, bool) {
		return func(agent string) ([]byte, bool) {
			mu.Lock()
			defer mu.Unlock()
			v := views[hub][agent]
			if v == nil {
				return nil, false
			}
			return []byte(strconv.Itoa(v.last)), true
		}
	}
	mu.Lock()
	for _, hub := range []string{"hub-a", "hub-b"} {
		_, _, pubOf[hub] = clusterHub(t, srv.URL(), hub, stream, handler(hub), record(hub))
	}
	mu.Unlock()
	time.Sleep(2 * testInterval) // both hubs hold their shares
	for n := 1; n <= reports; n++ {
		for i, c := range pubs {
			c.Publish(wire.Topic(fmt.Sprintf("agent-%02d", i), wire.ChannelHealth), 1, false, strconv.Itoa(n)).WaitTimeout(10 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for hub, view := range views {
			for i := range agents {
				agent := fmt.Sprintf("agent-%02d", i)
				if v := view[agent]; v == nil || !v.inventory || v.last != reports {
					return fmt.Errorf("%s's view of %s: %+v", hub, agent, v)
				}
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	followedSome := false
	for hub, view := range views {
		for agent, v := range view {
			if v.owned == 0 && !v.retained {
				t.Errorf("%s follows %s but its inventory was not marked retained", hub, agent)
			}
			followedSome = followedSome || v.followed > 0
		}
	}
	if !followedSome {
		t.Error("no hub followed any agent: the read view was not exercised")
	}
	for hub, p := range pubOf {
		if st := p.Stats(); st.Records == 0 || st.Inventories == 0 || st.Failed != 0 {
			t.Errorf("%s's publisher: %+v", hub, st)
		}
	}
}

// agentsIn returns n agent ids of partition p.
func agentsIn(p, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if agent := fmt.Sprintf("agent-%03d", i); Partition(agent, partitions) == p {
			out = append(out, agent)
		}
	}
	return out
}

// viewOnly are consumers that follow every partition of the view stream
// and own none, handing what they follow to h.
func viewOnly(t *testing.T, js jetstream.JetStream, view jetstream.Stream, h Handler) *Consumers {
	t.Helper()
	agents, err := js.Stream(t.Context(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	pub := newRecordPublisher(js, nobody{}, partitions, slog.New(slog.DiscardHandler),
		func(string) ([]byte, bool) { return nil, false }, func() []string { return nil })
	c, err := NewConsumers(ConsumersConfig{Stream: agents, Owner: nobody{}, Handle: h, Log: slog.New(slog.DiscardHandler),
		Follow: partitions, View: view, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A follower that fails follows on from the message after the last it
// applied, not from each agent's last message: nothing in between is
// skipped.
func TestFollowerFollowsOn(t *testing.T) {
	srv, _ := agentsStream(t)
	js := testenv.JetStream(t, srv.URL())
	view, err := js.Stream(t.Context(), ViewStreamName)
	if err != nil {
		t.Fatal(err)
	}
	const p = 3
	agents := agentsIn(p, 10)
	var seqs []uint64
	for n, agent := range agents {
		ack, err := js.Publish(t.Context(), viewSubject(p, agent, viewRecord), []byte(strconv.Itoa(n+1)))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	var got []string
	var mu sync.Mutex
	c := viewOnly(t, js, view, func(_ context.Context, m Message) {
		mu.Lock()
		defer mu.Unlock()
		if !m.Follow || !m.Record || m.Partition != p {
			t.Errorf("followed %+v", m)
		}
		got = append(got, string(m.Payload))
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	next := seqs[5] // as after a failure: the sixth record is the next to apply
	if err := c.followFrom(ctx, p, &next, &failures{c: c, p: p, role: "follower"}); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"6", "7", "8", "9", "10"}; !slices.Equal(got, want) || next != seqs[9]+1 {
		t.Errorf("followed on with %v, next %d; want %v and next %d", got, next, want, seqs[9]+1)
	}
}

// nobody owns no partition.
type nobody struct{}

func (nobody) Owns(int) bool { return false }

// A follower whose consumer cannot be made again after a failure — here
// the stream allows no more consumers; in the field JetStream elects a
// leader, or the consumer's name is bound to a NATS node that died —
// tries again, with backoff, until it can: it neither gives its partition
// up nor keeps its hub from stopping. (The ordered consumers of nats.go,
// which followers used, make their consumer again inside Fetch, for ever,
// whatever the context: Wait never returned.)
func TestFollowerRetriesUntilConsumerMade(t *testing.T) {
	srv := testenv.NATS(t)
	js := testenv.JetStream(t, srv.URL())
	if _, err := EnsureStream(t.Context(), js, partitions, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := viewStreamConfig(1, time.Hour)
	cfg.MaxConsumers = partitions
	stream, err := js.CreateStream(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// An agent in each partition, whose owner sends its records.
	agentOf := map[int]string{}
	for p := range partitions {
		agentOf[p] = agentsIn(p, 1)[0]
	}
	report := func(n int) {
		t.Helper()
		for p, agent := range agentOf {
			if _, err := js.Publish(t.Context(), viewSubject(p, agent, viewRecord), []byte(strconv.Itoa(n))); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	followed := map[int]int{} // partition → last record followed
	run := func() (*Consumers, func()) {
		c := viewOnly(t, js, stream, func(_ context.Context, m Message) {
			mu.Lock()
			defer mu.Unlock()
			if n, err := strconv.Atoi(string(m.Payload)); err == nil && m.Follow && m.Record && m.Agent == agentOf[m.Partition] {
				followed[m.Partition] = max(followed[m.Partition], n)
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		c.Own(ctx, nil)
		return c, func() { cancel(); waitStops(t, c) }
	}
	allFollowed := func(n int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			for p := range partitions {
				if followed[p] != n {
					return fmt.Errorf("partition %d followed up to record %d of %d", p, followed[p], n)
				}
			}
			return nil
		}
	}
	allFailing := func(c *Consumers) func() error {
		return func() error {
			if st := c.Stats(); st.Failing != partitions {
				return fmt.Errorf("%d of %d followers failing: %+v", st.Failing, partitions, st)
			}
			return nil
		}
	}
	// take deletes the followers' consumers, as a failure would, and
	// takes every consumer the stream allows before they make theirs
	// again.
	var taken []string
	take := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for len(taken) < partitions {
			names := stream.ConsumerNames(t.Context())
			for name := range names.Name() {
				if !strings.HasPrefix(name, "taken-") {
					stream.DeleteConsumer(t.Context(), name)
				}
			}
			name := fmt.Sprintf("taken-%d", len(taken))
			if _, err := stream.CreateConsumer(t.Context(), jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckNonePolicy}); err == nil {
				taken = append(taken, name)
			}
			if time.Now().After(deadline) {
				t.Fatalf("took %d of %d consumers in 30s", len(taken), partitions)
			}
		}
	}

	// A hub whose followers fail stops.
	report(1)
	c, stop := run()
	testenv.Eventually(t, 30*time.Second, allFollowed(1))
	take()
	testenv.Eventually(t, 30*time.Second, allFailing(c))
	stop()

	// One that goes on follows every partition again once it can.
	c, stop = run()
	defer stop()
	testenv.Eventually(t, 30*time.Second, allFailing(c))
	for _, name := range taken {
		if err := stream.DeleteConsumer(t.Context(), name); err != nil {
			t.Fatal(err)
		}
	}
	report(2)
	testenv.Eventually(t, 30*time.Second, allFollowed(2))
	testenv.Eventually(t, 30*time.Second, func() error {
		if st := c.Stats(); st.Failing != 0 || st.Restarts != partitions || st.Errors < partitions {
			return fmt.Errorf("stats %+v: want no follower failing, %d working again after at least one failure each", st, partitions)
		}
		return nil
	})
}

// waitStops fails the test unless c.Wait returns within stopWithin.
func waitStops(t *testing.T, c *Consumers) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopWithin):
		var dump strings.Builder
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Errorf("consumers did not stop within %v; goroutines:\n%s", stopWithin, dump.String())
	}
}

// everyone owns every partition.
type everyone struct{}

func (everyone) Owns(int) bool { return true }

// An owner acknowledges what it applied only once the hub says it is
// stored (the samples in InfluxDB): stopped before that, it leaves the
// messages to the next owner, which applies them again.
func TestOwnerAcknowledgesOnlyWhatIsStored(t *testing.T) {
	srv, open := agentsStream(t)
	js := testenv.JetStream(t, srv.URL())
	stream := open(js)
	const p = 5
	agent := agentsIn(p, 1)[0]
	var last uint64
	for n := 1; n <= 5; n++ {
		ack, err := js.Publish(t.Context(), natsPrefix+agent+".health", []byte(strconv.Itoa(n)))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	var applied atomic.Int64
	ackFloor := func() uint64 {
		c, err := stream.Consumer(t.Context(), "part-"+strconv.Itoa(p))
		if err != nil {
			return 0
		}
		return c.CachedInfo().AckFloor.Stream
	}
	run := func(stored func(context.Context) error) (*Consumers, context.CancelFunc) {
		c, err := NewConsumers(ConsumersConfig{Stream: stream, Owner: everyone{}, Log: slog.New(slog.DiscardHandler), Stored: stored,
			Handle: func(context.Context, Message) { applied.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		c.Own(ctx, []int{p})
		return c, cancel
	}

	// The store never answers: all five applied, none acknowledged, and
	// the hub still stops.
	c, stop := run(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := applied.Load(); n != 5 {
			return fmt.Errorf("%d of 5 applied", n)
		}
		return nil
	})
	time.Sleep(2 * fetchWait) // the batch's pull has ended: it would have been acknowledged
	if f := ackFloor(); f != 0 {
		t.Fatalf("acknowledged up to %d with nothing stored", f)
	}
	stop()
	waitStops(t, c)
	if f := ackFloor(); f != 0 {
		t.Fatalf("acknowledged up to %d with nothing stored, on stopping", f)
	}

	// The next owner applies them again, and acknowledges them once stored.
	applied.Store(0)
	c, stop = run(func(context.Context) error { return nil })
	defer func() { stop(); waitStops(t, c) }()
	testenv.Eventually(t, 20*time.Second, func() error {
		if n, f := applied.Load(), ackFloor(); n != 5 || f != last {
			return fmt.Errorf("%d of 5 applied again, acknowledged up to %d of %d", n, f, last)
		}
		return nil
	})
}

// onlyOne owns partition p while it is told to.
type onlyOne struct {
	p    int
	owns atomic.Bool
}

func (o *onlyOne) Owns(p int) bool { return p == o.p && o.owns.Load() }

// An owner acknowledges what it applied only once the records of what it
// changed are in the view stream, without waiting for the publisher's
// flush: a hub that loses the partition just after leaves the next owner
// nothing acknowledged that the view lacks. One that loses it before
// sending them acknowledges nothing, and the next owner applies it all
// again — starting from the view's last record of each agent, even one
// its follower had not read.
func TestOwnerAcknowledgesOnlyWhatIsInTheView(t *testing.T) {
	srv, open := agentsStream(t)
	js := testenv.JetStream(t, srv.URL())
	stream := open(js)
	view, err := js.Stream(t.Context(), ViewStreamName)
	if err != nil {
		t.Fatal(err)
	}
	const p = 6
	agent := agentsIn(p, 1)[0]
	report := func(n int) uint64 {
		ack, err := js.Publish(t.Context(), natsPrefix+agent+".health", []byte(strconv.Itoa(n)))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	ackFloor := func() uint64 {
		c, err := stream.Consumer(t.Context(), "part-"+strconv.Itoa(p))
		if err != nil {
			return 0
		}
		return c.CachedInfo().AckFloor.Stream
	}
	inView := func() string {
		m, err := view.GetLastMsgForSubject(t.Context(), viewSubject(p, agent, viewRecord))
		if err != nil {
			return ""
		}
		return string(m.Data)
	}
	// A hub whose publisher never flushes by itself: its record of the
	// agent is the last report it applied; h also hears what it applied.
	run := func(owner Owner, h func(Message)) (*Consumers, context.CancelFunc) {
		var last atomic.Value
		pub := newRecordPublisher(js, owner, partitions, slog.New(slog.DiscardHandler), func(string) ([]byte, bool) {
			s, ok := last.Load().(string)
			return []byte(s), ok
		}, func() []string { return nil })
		c, err := NewConsumers(ConsumersConfig{Stream: stream, Owner: owner, Log: slog.New(slog.DiscardHandler),
			Follow: partitions, View: view, Publisher: pub,
			Handle: func(_ context.Context, m Message) {
				if m.Partition != p {
					return
				}
				if m.Channel == wire.ChannelHealth {
					last.Store("report " + string(m.Payload))
					pub.Changed(m.Agent)
				}
				h(m)
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		c.Own(ctx, []int{p})
		return c, cancel
	}

	// Owned throughout: once report 3 is acknowledged, the view has it.
	for n := 1; n < 3; n++ {
		report(n)
	}
	last := report(3)
	c, stop := run(owning(p), func(Message) {})
	testenv.Eventually(t, 20*time.Second, func() error {
		if f := ackFloor(); f != last {
			return fmt.Errorf("acknowledged up to %d of %d", f, last)
		}
		return nil
	})
	if got := inView(); got != "report 3" {
		t.Fatalf("report 3 acknowledged; the view's record is %q", got)
	}
	stop()
	waitStops(t, c)

	// Lost after applying report 4, before its record went out: nothing
	// acknowledged, nothing in the view.
	last = report(4)
	lost := owning(p)
	var got4 atomic.Bool
	c, stop = run(lost, func(m Message) {
		if string(m.Payload) == "4" {
			lost.owns.Store(false)
			got4.Store(true)
		}
	})
	testenv.Eventually(t, 20*time.Second, func() error {
		if !got4.Load() {
			return errors.New("report 4 not applied")
		}
		return nil
	})
	time.Sleep(2 * fetchWait) // the batch's pull has ended: it would have been acknowledged
	if f, v := ackFloor(), inView(); f == last || v != "report 3" {
		t.Fatalf("lost the partition before sending report 4's record: acknowledged up to %d (4 is %d), the view has %q", f, last, v)
	}
	stop()
	waitStops(t, c)

	// The next owner starts from the view's record (it followed nothing),
	// then applies report 4 again.
	var mu sync.Mutex
	var seen []string
	c, stop = run(owning(p), func(m Message) {
		mu.Lock()
		defer mu.Unlock()
		if m.Record {
			seen = append(seen, "record "+string(m.Payload))
		} else if m.Channel == wire.ChannelHealth {
			seen = append(seen, "health "+string(m.Payload))
		}
	})
	defer func() { stop(); waitStops(t, c) }()
	testenv.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"record report 3", "health 4"}; !slices.Equal(seen, want) || ackFloor() != last || inView() != "report 4" {
			return fmt.Errorf("the next owner applied %q (want %q), acknowledged up to %d of %d; view %q", seen, want, ackFloor(), last, inView())
		}
		return nil
	})
}

func owning(p int) *onlyOne {
	o := &onlyOne{p: p}
	o.owns.Store(true)
	return o
}
