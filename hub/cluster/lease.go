// Package cluster shares the agents' partitions among the hubs of a
// clustered city (issue 13): each partition of the agents' message stream
// is consumed by exactly one hub at a time, which holds a lease on it in a
// JetStream key-value bucket. A lease is claimed with Create (the key must
// not exist), kept with Update at the revision the hub last wrote (compare
// and swap) and lost when the bucket's TTL expires it: a hub that dies
// stops renewing and the survivors claim its partitions a TTL later. No
// consensus of our own: JetStream's replicated bucket decides who wrote
// first.
//
// A hub stopped past its lease (a stop-the-world pause, a frozen VM) must
// not write when it resumes, even before it learns that another hub took
// over: Owns answers from the hub's own monotonic clock, true only until
// the time the lease was last renewed from plus the TTL less a margin, so
// a paused hub's answer is already false when it wakes.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultTTL      = 6 * time.Second
	DefaultInterval = time.Second
)

// Config says which hub this is and how its leases are kept.
type Config struct {
	Hub        string // this hub's id: a KV key token, unique in the cluster
	Partitions int    // of the agents' stream, 1–1024
	// Bucket names the lease bucket; members are kept in Bucket+"-hubs".
	Bucket string
	// TTL is how long a lease lasts unrenewed; Interval how often leases
	// are renewed and free partitions claimed (at most TTL/3).
	TTL, Interval time.Duration
	// Replicas of the buckets: 3 on a three-node NATS cluster.
	Replicas int
}

func (c Config) withDefaults() (Config, error) {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Bucket == "" {
		c.Bucket = "citywatch-leases"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	var errs []error
	if !validToken(c.Hub) {
		errs = append(errs, fmt.Errorf("cluster: hub id %q must be 1–64 letters, digits, '-' or '_'", c.Hub))
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("cluster: partitions %d out of range 1–1024", c.Partitions))
	}
	if !validToken(c.Bucket) {
		errs = append(errs, fmt.Errorf("cluster: bucket %q must be 1–64 letters, digits, '-' or '_'", c.Bucket))
	}
	if c.TTL < time.Second || c.Interval <= 0 || c.Interval > c.TTL/3 {
		errs = append(errs, fmt.Errorf("cluster: lease ttl %v must be at least 1s and interval %v at most a third of it", c.TTL, c.Interval))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cluster: replicas %d out of range 1–5", c.Replicas))
	}
	return c, errors.Join(errs...)
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Partition is the partition of an agent's messages: FNV-1a of its id,
// modulo n, so that every hub (and the stream's subject mapping) agrees.
func Partition(agent string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(agent))
	return int(h.Sum32() % uint32(n))
}

// Leases keeps this hub's leases: Run renews and claims, Owns answers.
type Leases struct {
	cfg     Config
	js      jetstream.JetStream
	log     *slog.Logger
	onOwned func(owned []int)

	// margin is taken off a lease's TTL when judging it locally: the
	// renewal's round trip and the servers' expiry timer run on other
	// clocks.
	margin time.Duration

	mu    sync.Mutex
	held  map[int]lease // by partition
	stats Stats
}

// lease is one partition this hub holds: the revision it last wrote and
// until when (monotonic) it may act on it.
type lease struct {
	rev   uint64
	until time.Time
}

// Stats counts what happened to this hub's leases.
type Stats struct {
	Claimed  uint64 `json:"claimed"`  // partitions taken (free or expired)
	Released uint64 `json:"released"` // given up so another hub gets its share
	Lost     uint64 `json:"lost"`     // found taken by another hub or expired on renewal
	Errors   uint64 `json:"errors"`   // bucket requests that failed
}

// Deps are the Leases' collaborators. OnOwned (optional) hears the set
// of partitions this hub holds after the first round and whenever it
// changes, from Run's goroutine.
type Deps struct {
	JetStream jetstream.JetStream
	Log       *slog.Logger
	OnOwned   func(owned []int)
}

// New validates cfg and deps; Run does the work.
func New(cfg Config, deps Deps) (*Leases, error) {
	cfg, err := cfg.withDefaults()
	if deps.JetStream == nil {
		err = errors.Join(err, errors.New("cluster: Deps.JetStream is required"))
	}
	if deps.Log == nil {
		err = errors.Join(err, errors.New("cluster: Deps.Log is required"))
	}
	if err != nil {
		return nil, err
	}
	return &Leases{cfg: cfg, js: deps.JetStream, log: deps.Log.With("hub", cfg.Hub), onOwned: deps.OnOwned,
		margin: cfg.Interval, held: map[int]lease{}}, nil
}

// Owns reports whether this hub may act on partition p now: it holds the
// lease and, by its own clock, the lease has not run out.
func (l *Leases) Owns(p int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[p]
	return ok && time.Now().Before(h.until)
}

// Owned lists the partitions this hub holds, ascending.
func (l *Leases) Owned() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ownedLocked()
}

func (l *Leases) ownedLocked() []int {
	out := make([]int, 0, len(l.held))
	now := time.Now()
	for p, h := range l.held {
		if now.Before(h.until) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Stats returns the counters.
func (l *Leases) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Run creates the buckets if they do not exist (trying again until it
// can: JetStream may be electing a leader), then keeps the leases every
// Interval until ctx ends, when it releases them so that the other hubs
// need not wait a TTL. A hub that dies without Run returning leaves its
// leases to expire.
func (l *Leases) Run(ctx context.Context) error {
	var leases, members jetstream.KeyValue
	var b backoff
	for {
		var err error
		b.attempt()
		if leases, err = l.bucket(ctx, l.cfg.Bucket); err == nil {
			members, err = l.bucket(ctx, l.cfg.Bucket+"-hubs")
		}
		if err == nil {
			break
		}
		l.failed("lease buckets not ready; trying again", err)
		if !b.wait(ctx) {
			return nil
		}
	}
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	var last []int
	for first := true; ; first = false {
		l.round(ctx, leases, members)
		if owned := l.Owned(); first || !slices.Equal(owned, last) {
			l.log.Info("partitions owned", "count", len(owned), "partitions", owned)
			last = owned
			if l.onOwned != nil {
				l.onOwned(owned)
			}
		}
		select {
		case <-ctx.Done():
			l.releaseAll(leases, members)
			if l.onOwned != nil && len(last) > 0 {
				l.onOwned(nil)
			}
			return nil
		case <-t.C:
		}
	}
}

func (l *Leases) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	kv, err := bounded(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, TTL: l.cfg.TTL, History: 1, Storage: jetstream.FileStorage, Replicas: l.cfg.Replicas,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %s: %w", name, err)
	}
	return kv, nil
}

// round renews this hub's membership and leases, then claims free
// partitions up to its fair share or releases what exceeds it.
func (l *Leases) round(ctx context.Context, leases, members jetstream.KeyValue) {
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Interval)
	defer cancel()
	if _, err := members.PutString(rctx, l.cfg.Hub, strconv.FormatInt(time.Now().UnixMilli(), 10)); err != nil {
		l.failed("membership not renewed", err)
	}
	l.renew(rctx, leases)
	hubs, err := members.Keys(rctx)
	if err != nil || len(hubs) == 0 {
		hubs = []string{l.cfg.Hub} // alone, or the bucket did not answer
	}
	share := (l.cfg.Partitions + len(hubs) - 1) / len(hubs)
	owned := len(l.Owned())
	switch {
	case owned < share:
		l.claim(rctx, leases, share-owned)
	case owned > share:
		l.release(rctx, leases, owned-share)
	}
}

// renew writes every held lease at the revision this hub last wrote. A
// lease whose renewal is refused is lost; one whose request failed is
// kept until its time runs out (the bucket may only be slow).
func (l *Leases) renew(ctx context.Context, kv jetstream.KeyValue) {
	l.mu.Lock()
	held := maps.Clone(l.held)
	l.mu.Unlock()
	for p, h := range held {
		start := time.Now()
		rev, err := kv.Update(ctx, key(p), []byte(l.cfg.Hub), h.rev)
		l.mu.Lock()
		switch {
		case err == nil:
			l.held[p] = lease{rev: rev, until: start.Add(l.cfg.TTL - l.margin)}
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			// ErrKeyExists is how a revision mismatch comes back.
			delete(l.held, p)
			l.stats.Lost++
			l.log.Warn("partition lease lost: another hub holds it or it expired", "partition", p, "err", err)
		default:
			l.stats.Errors++
			if !time.Now().Before(h.until) {
				delete(l.held, p)
				l.stats.Lost++
				l.log.Warn("partition lease ran out while the bucket did not answer", "partition", p, "err", err)
			}
		}
		l.mu.Unlock()
	}
}

// claim takes up to n free partitions, starting from one that depends on
// the hub's id so that hubs starting together do not all race for 0.
func (l *Leases) claim(ctx context.Context, kv jetstream.KeyValue, n int) {
	first := Partition(l.cfg.Hub, l.cfg.Partitions)
	for i := 0; i < l.cfg.Partitions && n > 0; i++ {
		p := (first + i) % l.cfg.Partitions
		if l.Owns(p) {
			continue
		}
		start := time.Now()
		rev, err := kv.Create(ctx, key(p), []byte(l.cfg.Hub))
		switch {
		case err == nil:
			l.mu.Lock()
			l.held[p] = lease{rev: rev, until: start.Add(l.cfg.TTL - l.margin)}
			l.stats.Claimed++
			l.mu.Unlock()
			n--
		case errors.Is(err, jetstream.ErrKeyExists):
			// Held by a hub: not free.
		default:
			l.failed("partition not claimed", err)
			return
		}
	}
}

// release gives up the n highest partitions this hub holds, deleting
// each at its revision so a lease another hub took meanwhile stays.
func (l *Leases) release(ctx context.Context, kv jetstream.KeyValue, n int) {
	owned := l.Owned()
	for _, p := range owned[len(owned)-n:] {
		l.mu.Lock()
		h := l.held[p]
		delete(l.held, p) // stop acting on it before it is free
		l.stats.Released++
		l.mu.Unlock()
		if err := kv.Delete(ctx, key(p), jetstream.LastRevision(h.rev)); err != nil {
			l.failed("released partition not freed (it expires)", err)
		}
	}
}

// releaseAll frees every lease and the membership as the hub stops.
func (l *Leases) releaseAll(leases, members jetstream.KeyValue) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Interval)
	defer cancel()
	l.release(ctx, leases, len(l.Owned()))
	if err := members.Delete(ctx, l.cfg.Hub); err != nil {
		l.failed("membership not withdrawn (it expires)", err)
	}
}

func (l *Leases) failed(msg string, err error) {
	l.mu.Lock()
	l.stats.Errors++
	l.mu.Unlock()
	l.log.Warn(msg, "err", err)
}

func key(p int) string { return "p" + strconv.Itoa(p) }
