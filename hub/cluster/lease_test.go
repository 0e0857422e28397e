package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citywatch/citywatch/internal/testenv"
)

const (
	testTTL      = 1500 * time.Millisecond
	testInterval = 250 * time.Millisecond
	partitions   = 12
)

// hub is one hub's leases on its own NATS connection, as separate
// processes would have.
type hub struct {
	l      *Leases
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func newLeases(t *testing.T, url, id string) (*Leases, *nats.Conn) {
	t.Helper()
	js := testenv.JetStream(t, url)
	l, err := New(Config{Hub: id, Partitions: partitions, TTL: testTTL, Interval: testInterval},
		Deps{JetStream: js, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l, js.Conn()
}

func startHub(t *testing.T, url, id string) *hub {
	t.Helper()
	l, nc := newLeases(t, url, id)
	ctx, cancel := context.WithCancel(t.Context())
	h := &hub{l: l, nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		if err := l.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

// watch samples every hub's Owns for every partition until stop, and
// fails the test if two hubs ever own one partition at the same time.
func watch(t *testing.T, hubs func() []*hub) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for p := range partitions {
				var owners []string
				for _, h := range hubs() {
					if h.l.Owns(p) {
						owners = append(owners, h.l.cfg.Hub)
					}
				}
				if len(owners) > 1 {
					t.Errorf("partition %d owned by %v at once", p, owners)
					return
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// await waits until every partition is owned by exactly one of hubs, each
// holding its fair share, and returns who owns what.
func await(t *testing.T, within time.Duration, hubs ...*hub) map[string][]int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		owned, err := balanced(hubs)
		if err == nil {
			return owned
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func balanced(hubs []*hub) (map[string][]int, error) {
	owned := map[string][]int{}
	count := make([]int, partitions)
	share := (partitions + len(hubs) - 1) / len(hubs)
	for _, h := range hubs {
		ps := h.l.Owned()
		owned[h.l.cfg.Hub] = ps
		if len(ps) > share || len(ps) < partitions/len(hubs) {
			return owned, fmt.Errorf("%s owns %d partitions, want about %d: %v", h.l.cfg.Hub, len(ps), share, owned)
		}
		for _, p := range ps {
			count[p]++
		}
	}
	for p, n := range count {
		if n != 1 {
			return owned, fmt.Errorf("partition %d owned by %d hubs: %v", p, n, owned)
		}
	}
	return owned, nil
}

// Hubs share the partitions evenly and exclusively; one that stops gives
// its partitions up at once, one that dies (its connection cut, nothing
// released) loses them after the TTL, and the survivors take them over.
func TestLeasesShareAndFailOver(t *testing.T) {
	url := testenv.NATS(t).URL()
	var mu sync.Mutex
	var hubs []*hub
	all := func() []*hub { mu.Lock(); defer mu.Unlock(); return slices.Clone(hubs) }
	stop := watch(t, all)
	defer stop()

	a := startHub(t, url, "hub-a")
	mu.Lock()
	hubs = append(hubs, a)
	mu.Unlock()
	await(t, 5*time.Second, a)
	b, c := startHub(t, url, "hub-b"), startHub(t, url, "hub-c")
	mu.Lock()
	hubs = append(hubs, b, c)
	mu.Unlock()
	await(t, 10*time.Second, a, b, c)

	// A clean stop releases at once: the others need not wait a TTL.
	c.cancel()
	<-c.done
	if got := c.l.Owned(); len(got) != 0 {
		t.Fatalf("a stopped hub still owns %v", got)
	}
	start := time.Now()
	await(t, 10*time.Second, a, b)
	t.Logf("after a clean stop, partitions owned again in %v", time.Since(start))

	// A crash: the connection goes, nothing is released.
	b.nc.Close()
	start = time.Now()
	await(t, 10*time.Second, a)
	if took := time.Since(start); took < testTTL-testInterval {
		t.Errorf("partitions of a dead hub taken after %v, before its leases (%v) could expire", took, testTTL)
	}
	if st := a.l.Stats(); st.Claimed < partitions {
		t.Errorf("stats %+v: hub-a claimed fewer than the %d partitions it ended with", st, partitions)
	}
}

// A hub paused past its lease stops acting on its own clock before anyone
// tells it, and when it resumes it finds the lease taken and stands down
// instead of writing.
func TestPausedHubStandsDown(t *testing.T) {
	url := testenv.NATS(t).URL()
	a, _ := newLeases(t, url, "hub-a")
	ctx := t.Context()
	leases, err := a.bucket(ctx, a.cfg.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	members, err := a.bucket(ctx, a.cfg.Bucket+"-hubs")
	if err != nil {
		t.Fatal(err)
	}
	a.round(ctx, leases, members)
	if got := a.Owned(); len(got) != partitions {
		t.Fatalf("alone, hub-a owns %v", got)
	}

	// Stop the world for hub-a: no rounds for two TTLs.
	b := startHub(t, url, "hub-b")
	time.Sleep(testTTL - a.margin)
	for p := range partitions {
		if a.Owns(p) {
			t.Fatalf("paused hub-a still acts on partition %d after its lease ran out", p)
		}
	}
	await(t, 10*time.Second, b)

	// Resumed: its renewals are refused, it holds nothing, B keeps all.
	a.round(ctx, leases, members)
	if st := a.Stats(); st.Lost != partitions {
		t.Errorf("resumed hub-a lost %d leases, want %d", st.Lost, partitions)
	}
	for p := range partitions {
		if a.Owns(p) && b.l.Owns(p) {
			t.Fatalf("partition %d owned by both after the resume", p)
		}
	}
	if got := b.l.Owned(); len(got) != partitions {
		t.Errorf("hub-b owns %v after hub-a resumed, want all until it hands some over", got)
	}
}

func TestConfigRejects(t *testing.T) {
	for name, c := range map[string]Config{
		"no hub":             {Partitions: 4},
		"hub with a dot":     {Hub: "hub.a", Partitions: 4},
		"no partitions":      {Hub: "a"},
		"too many":           {Hub: "a", Partitions: 1025},
		"interval too long":  {Hub: "a", Partitions: 4, TTL: 3 * time.Second, Interval: 2 * time.Second},
		"ttl below a second": {Hub: "a", Partitions: 4, TTL: 500 * time.Millisecond, Interval: 100 * time.Millisecond},
		"replicas 7":         {Hub: "a", Partitions: 4, Replicas: 7},
	} {
		_, err := New(c, Deps{Log: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), "cluster:") {
			t.Errorf("%s: New = %v, want a cluster error", name, err)
		}
	}
}

// Every hub computes the same partition for an agent, spread over all.
func TestPartition(t *testing.T) {
	seen := make([]int, 16)
	for i := range 1600 {
		p := Partition(fmt.Sprintf("agent-%04d", i), 16)
		if p != Partition(fmt.Sprintf("agent-%04d", i), 16) {
			t.Fatal("partition not deterministic")
		}
		seen[p]++
	}
	for p, n := range seen {
		if n < 60 || n > 140 {
			t.Errorf("partition %d got %d of 1600 agents, want about 100", p, n)
		}
	}
}
