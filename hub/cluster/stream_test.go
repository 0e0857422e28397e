package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	admin, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ajs, _ := jetstream.New(admin)
	if _, err := EnsureStream(t.Context(), ajs, partitions, 1, time.Hour); err != nil {
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

// clusterHub is a hub's leases and consumers on its own connection.
func clusterHub(t *testing.T, url, id string, stream func(js jetstream.JetStream) jetstream.Stream, h Handler, follow int) (*nats.Conn, *Consumers) {
	t.Helper()
	l, nc := newLeases(t, url, id)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := NewConsumers(stream(js), l, h, slog.New(slog.DiscardHandler), follow)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	l.onOwned = func(owned []int) { cons.Own(ctx, owned) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cons.Wait() })
	return nc, cons
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
	_, consA := clusterHub(t, srv.URL(), "hub-a", stream, got.handler("hub-a"), 0)
	ncB, consB := clusterHub(t, srv.URL(), "hub-b", stream, got.handler("hub-b"), 0)

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
// each agent's last state and inventory (replayed, as retained), then
// everything it sends, marked Follow; the owner's own messages are not.
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
		// Before any hub runs: only a replay can tell them of it.
		if tok := c.Publish(wire.Topic(fmt.Sprintf("agent-%02d", i), wire.ChannelInventory), 1, true, "devices"); !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("inventory not published")
		}
		pubs = append(pubs, c)
	}

	type seen struct {
		inventory, replayed bool
		last                int
		followed, owned     int
	}
	var mu sync.Mutex
	views := map[string]map[string]*seen{"hub-a": {}, "hub-b": {}}
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
			switch m.Channel {
			case wire.ChannelInventory:
				v.inventory, v.replayed = true, v.replayed || m.Retained
			case wire.ChannelHealth:
				n, _ := strconv.Atoi(string(m.Payload))
				v.last = max(v.last, n)
			}
		}
	}
	clusterHub(t, srv.URL(), "hub-a", stream, handler("hub-a"), partitions)
	clusterHub(t, srv.URL(), "hub-b", stream, handler("hub-b"), partitions)
	time.Sleep(2 * testInterval) // both hubs hold their shares
	for n := 1; n <= reports; n++ {
		for i, c := range pubs {
			c.Publish(wire.Topic(fmt.Sprintf("agent-%02d", i), wire.ChannelHealth), 1, false, strconv.Itoa(n)).WaitTimeout(10 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := 0
		for _, view := range views {
			for _, v := range view {
				if v.inventory && v.last == reports {
					done++
				}
			}
		}
		mu.Unlock()
		if done == 2*agents {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s %d of %d (hub, agent) pairs complete", done, 2*agents)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	followedSome := false
	for hub, view := range views {
		for agent, v := range view {
			if !v.replayed && v.followed > 0 && v.owned == 0 {
				t.Errorf("%s follows %s but its inventory was not replayed as retained", hub, agent)
			}
			followedSome = followedSome || v.followed > 0
		}
	}
	if !followedSome {
		t.Error("no hub followed any agent: the read view was not exercised")
	}
}

// A follower that fails follows on from the message after the last it
// applied, not from each agent's last message: nothing in between is
// skipped.
func TestFollowerFollowsOn(t *testing.T) {
	srv, open := agentsStream(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream := open(js)
	const agent = "agent-07"
	p := Partition(agent, partitions)
	var seqs []uint64
	for n := 1; n <= 10; n++ {
		ack, err := js.Publish(t.Context(), natsPrefix+agent+".health", []byte(strconv.Itoa(n)))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	var got []string
	var mu sync.Mutex
	c, err := NewConsumers(stream, nobody{}, func(_ context.Context, m Message) {
		mu.Lock()
		defer mu.Unlock()
		if !m.Follow || m.Agent != agent || m.Partition != p {
			t.Errorf("followed %+v", m)
		}
		got = append(got, string(m.Payload))
	}, slog.New(slog.DiscardHandler), partitions)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	next := seqs[5] // as after a failure: the sixth report is the next to apply
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
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := streamConfig(partitions, 1, time.Hour)
	cfg.MaxConsumers = partitions
	stream, err := js.CreateStream(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// An agent in each partition.
	agentOf := map[int]string{}
	for i := 0; len(agentOf) < partitions; i++ {
		if agent := fmt.Sprintf("agent-%03d", i); agentOf[Partition(agent, partitions)] == "" {
			agentOf[Partition(agent, partitions)] = agent
		}
	}
	report := func(n int) {
		t.Helper()
		for _, agent := range agentOf {
			if _, err := js.Publish(t.Context(), natsPrefix+agent+".health", []byte(strconv.Itoa(n))); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	followed := map[int]int{} // partition → last report followed
	run := func() (*Consumers, func()) {
		c, err := NewConsumers(stream, nobody{}, func(_ context.Context, m Message) {
			mu.Lock()
			defer mu.Unlock()
			if n, err := strconv.Atoi(string(m.Payload)); err == nil && m.Follow && m.Agent == agentOf[m.Partition] {
				followed[m.Partition] = max(followed[m.Partition], n)
			}
		}, slog.New(slog.DiscardHandler), partitions)
		if err != nil {
			t.Fatal(err)
		}
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
					return fmt.Errorf("partition %d followed up to report %d of %d", p, followed[p], n)
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
