package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// stopWithin is how long a Node's Run may take to return after its
// context ends before a test calls it stuck: generous, as the machine may
// be busy; Run itself needs about one lease interval.
const stopWithin = 10 * time.Second

// runningNode is a hub's Node running in the test.
type runningNode struct {
	id     string
	n      *Node
	log    *testenv.LogBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// runNode runs a hub's Node on urls until stop (or the test's end), its
// agents' reports and the other hubs' records kept in seen.
func runNode(t *testing.T, urls, id string, replicas int, seen *lastSeen) *runningNode {
	t.Helper()
	r := &runningNode{id: id, log: &testenv.LogBuffer{}, done: make(chan error, 1)}
	var err error
	r.n, err = NewNode(NodeConfig{NATSURL: urls, Leases: Config{Hub: id, Partitions: partitions, Replicas: replicas,
		TTL: 3 * time.Second, Interval: 500 * time.Millisecond}},
		NodeDeps{Log: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Apply: func(_ context.Context, m Message) {
				if seen.take(id, m) && !m.Follow {
					r.n.Changed(m.Agent)
				}
			},
			Record: func(agent string) ([]byte, bool) { return seen.record(id, agent) },
			Agents: func() []string { return seen.agents(id) }})
	if err != nil {
		t.Fatal(err)
	}
	// Not the test's context: stop decides when Run's ends.
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.n.Run(ctx) }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("%s's log:\n%s", id, r.log)
		}
	})
	return r
}

// stop ends the Node's context and fails the test if Run does not return
// within stopWithin, with the goroutines that were still running.
func (r *runningNode) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("%s: Run: %v", r.id, err)
			}
		case <-time.After(stopWithin):
			var dump strings.Builder
			pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Errorf("%s: Run did not return within %v of its context's end; goroutines:\n%s", r.id, stopWithin, dump.String())
		}
	})
}

// lastSeen records, by hub and agent, the last health report applied, as
// the agent's owner, or the last record, as a follower: a record is the
// number of the last report its owner applied.
type lastSeen struct {
	mu   sync.Mutex
	last map[string]int
}

// take keeps m's number; false if m carries none.
func (s *lastSeen) take(hub string, m Message) bool {
	if m.Channel != wire.ChannelHealth && !m.Record {
		return false
	}
	n, _ := strconv.Atoi(string(m.Payload))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[hub+"/"+m.Agent] = max(s.last[hub+"/"+m.Agent], n)
	return true
}

func (s *lastSeen) record(hub, agent string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.last[hub+"/"+agent]
	return []byte(strconv.Itoa(n)), ok
}

func (s *lastSeen) agents(hub string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.last {
		if h, agent, _ := strings.Cut(k, "/"); h == hub {
			out = append(out, agent)
		}
	}
	return out
}

// missing lists the (hub, agent) pairs whose last applied report is not
// want.
func (s *lastSeen) missing(hubs []string, agents int, want int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, h := range hubs {
		for i := range agents {
			k := fmt.Sprintf("%s/agent-%02d", h, i)
			if s.last[k] != want {
				out = append(out, fmt.Sprintf("%s at %d", k, s.last[k]))
			}
		}
	}
	return out
}

// publisher publishes agents' reports into the stream as NATS's MQTT
// listener would, each with a message id so that a publish tried again
// after a lost acknowledgement is stored once.
type publisher struct {
	js jetstream.JetStream
}

func newPublisher(t *testing.T, urls string) *publisher {
	t.Helper()
	return &publisher{js: testenv.JetStream(t, urls, nats.MaxReconnects(-1))}
}

// report publishes report n of every agent, trying each until the stream
// has it.
func (p *publisher) report(t *testing.T, agents, n int) {
	t.Helper()
	for i := range agents {
		agent := fmt.Sprintf("agent-%02d", i)
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			_, err := p.js.Publish(ctx, natsPrefix+agent+"."+string(wire.ChannelHealth), []byte(strconv.Itoa(n)),
				jetstream.WithMsgID(agent+"/"+strconv.Itoa(n)))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: report %d not stored within 60s: %v", agent, n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// ownedOnce reports an error unless every partition is owned by exactly
// one of the nodes and each node's consumers are ready.
func ownedOnce(nodes ...*runningNode) error {
	count := make([]int, partitions)
	for _, r := range nodes {
		st := r.n.Status()
		if !st.Ready {
			return fmt.Errorf("%s not ready", r.id)
		}
		for _, p := range st.Owned {
			count[p]++
		}
	}
	for p, n := range count {
		if n != 1 {
			return fmt.Errorf("partition %d owned by %d hubs", p, n)
		}
	}
	return nil
}

// A hub whose NATS server goes away for good counts every partition's
// consumer failing, and still stops when told: no partition goroutine
// waits on NATS past its context.
func TestNodeStopsWithNATSGone(t *testing.T) {
	srv := testenv.NATS(t)
	const agents = 8
	seen := &lastSeen{last: map[string]int{}}
	a := runNode(t, srv.URL(), "hub-a", 1, seen)
	b := runNode(t, srv.URL(), "hub-b", 1, seen)
	pub := newPublisher(t, srv.URL())
	testenv.Eventually(t, 30*time.Second, func() error { return ownedOnce(a, b) })
	pub.report(t, agents, 1)
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := seen.missing([]string{"hub-a", "hub-b"}, agents, 1); len(m) > 0 {
			return fmt.Errorf("not applied: %v", m)
		}
		return nil
	})

	srv.Stop()
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, r := range []*runningNode{a, b} {
			if st := r.n.Status(); st.Consumers.Failing != partitions {
				return fmt.Errorf("%s: %d of %d partitions' consumers failing: %+v", r.id, st.Consumers.Failing, partitions, st.Consumers)
			}
		}
		return nil
	})
	a.stop(t)
	b.stop(t)
}

// A NATS node of three dies under two hubs that own some partitions and
// follow the others: the stream's leader goes with it, and agents report
// on through the elections. Every partition's consumers carry on, on
// both hubs, the partitions stay owned by exactly one hub each, and both
// hubs stop when told. (Health reports sent while the partitions change
// hands may be applied by the old owner alone: a new owner takes over
// from what the old one acknowledged, with each agent's last state and
// inventory. So the test checks the report sent once all is settled.)
func TestNodesResumeAfterNATSNodeFails(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	const agents, during = 16, 10
	hubs := []string{"hub-a", "hub-b"}
	seen := &lastSeen{last: map[string]int{}}
	a := runNode(t, c.URLs(), "hub-a", 3, seen)
	b := runNode(t, c.URLs(), "hub-b", 3, seen)
	pub := newPublisher(t, c.URLs())
	applied := func(n int) func() error {
		return func() error {
			if m := seen.missing(hubs, agents, n); len(m) > 0 {
				return fmt.Errorf("report %d not applied: %v; hub-a %+v; hub-b %+v", n, m, a.n.Status(), b.n.Status())
			}
			return nil
		}
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if len(a.n.Status().Owned) == 0 || len(b.n.Status().Owned) == 0 {
			return fmt.Errorf("hub-a owns %v, hub-b %v", a.n.Status().Owned, b.n.Status().Owned)
		}
		return ownedOnce(a, b)
	})
	pub.report(t, agents, 1)
	testenv.Eventually(t, 60*time.Second, applied(1))

	// The node that leads the agents' stream dies.
	victim := 0
	if info, err := pub.js.Stream(t.Context(), StreamName); err == nil && info.CachedInfo().Cluster != nil {
		if i, err := strconv.Atoi(strings.TrimPrefix(info.CachedInfo().Cluster.Leader, "node-")); err == nil && i >= 1 && i <= len(c.Nodes) {
			victim = i - 1
		}
	}
	c.Nodes[victim].Stop()
	for n := 2; n <= 1+during; n++ {
		pub.report(t, agents, n)
		time.Sleep(100 * time.Millisecond)
	}
	testenv.Eventually(t, 90*time.Second, func() error {
		if err := ownedOnce(a, b); err != nil {
			return err
		}
		for _, r := range []*runningNode{a, b} {
			if st := r.n.Status(); st.Consumers.Failing > 0 {
				return fmt.Errorf("%s: %d partitions' consumers failing", r.id, st.Consumers.Failing)
			}
		}
		return nil
	})
	last := 2 + during
	pub.report(t, agents, last)
	testenv.Eventually(t, 60*time.Second, applied(last))
	t.Logf("node-%d died; hub-a %+v; hub-b %+v", victim+1, a.n.Status(), b.n.Status())
	a.stop(t)
	b.stop(t)
}
