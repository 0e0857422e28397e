package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/citywatch/citywatch/wire"
)

// StreamName is the JetStream stream that captures what agents publish.
const StreamName = "CITYWATCH_AGENTS"

// agentChannels are the channels agents publish on: the stream keeps
// them. Commands go the other way and stay out of it.
var agentChannels = []wire.Channel{wire.ChannelState, wire.ChannelInventory, wire.ChannelHealth,
	wire.ChannelEvents, wire.ChannelLive, wire.ChannelSnapshot}

// natsPrefix is wire.Prefix as a NATS subject: NATS's MQTT listener turns
// the topic's '/' into '.'.
var natsPrefix = strings.ReplaceAll(wire.Prefix, "/", ".")

// partitionSubject is where the stream keeps partition p's messages:
// "cw.<p>.<agent>.<channel>".
func partitionSubject(p int) string { return "cw." + strconv.Itoa(p) + ".>" }

// EnsureStream creates or updates the agents' stream: every channel an
// agent publishes on, stored under its partition by the server's own
// subject transform (partition(N, agent) is FNV-1a of the agent id
// modulo N, as Partition computes), for maxAge.
func EnsureStream(ctx context.Context, js jetstream.JetStream, partitions, replicas int, maxAge time.Duration) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, streamConfig(partitions, replicas, maxAge))
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", StreamName, err)
	}
	return s, nil
}

// streamConfig is the agents' stream's configuration.
func streamConfig(partitions, replicas int, maxAge time.Duration) jetstream.StreamConfig {
	subjects := make([]string, len(agentChannels))
	for i, ch := range agentChannels {
		subjects[i] = natsPrefix + "*." + string(ch)
	}
	return jetstream.StreamConfig{
		Name:     StreamName,
		Subjects: subjects,
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      natsPrefix + "*.*",
			Destination: fmt.Sprintf("cw.{{partition(%d,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", partitions),
		},
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
		MaxAge:   maxAge,
	}
}

// Message is one message of an agent, as its partition's owner applies it.
type Message struct {
	Partition int
	Agent     string
	Channel   wire.Channel
	Payload   []byte
	Seq       uint64 // the stream's sequence
	// Retained marks an agent's last state or inventory, replayed when
	// this hub takes the partition over (they were applied by the hub
	// before it, long ago) or starts following it, as a broker's retained
	// copy would be.
	Retained bool
	// Follow marks a message of a partition another hub owns, from the
	// view stream, which this hub applies for its read view of the city
	// only: the owner writes the metrics and history, raises the alarms
	// and talks to the agent. It is the agent's inventory (as Retained:
	// the last one) or, with Record, the owner's record of the agent.
	Follow bool
	Record bool
}

// Handler applies a message. It is called from one goroutine per
// partition, in the stream's order, which is each agent's order.
type Handler func(ctx context.Context, m Message)

// Owner tells whether this hub may act on a partition now (Leases.Owns).
type Owner interface{ Owns(p int) bool }

// Consumers consume the partitions this hub owns, one goroutine each.
// Taking a partition over, a hub replaces its consumer with one that
// starts just after the last message the previous owner acknowledged, so
// nothing is skipped and nothing arrives out of order; what the previous
// owner applied but had not acknowledged comes again, and the hub's
// replay window (each agent's seq) drops it.
type Consumers struct {
	stream jetstream.Stream
	owner  Owner
	handle Handler
	log    *slog.Logger
	batch  int
	// follow is how many partitions the stream has when this hub follows
	// the partitions it does not own in the view stream (its read view);
	// 0 when it does not.
	follow int
	view   jetstream.Stream
	pub    *Publisher // stores the owned agents' inventories for the others' view; nil when none follow
	stored func(context.Context) error

	mu      sync.Mutex
	running map[int]*partitionRun
	wg      sync.WaitGroup
	stats   ConsumerStats
}

// ConsumerStats counts what the consumers did, and says how many are
// failing now.
type ConsumerStats struct {
	Applied    uint64 `json:"applied"`     // messages of owned partitions handed to the Handler
	Followed   uint64 `json:"followed"`    // other hubs' inventories and records handed to it (read view)
	StoodDown  uint64 `json:"stood_down"`  // partitions left because the lease ran out mid-batch
	BadSubject uint64 `json:"bad_subject"` // messages whose subject is outside the contract (dropped, acknowledged)
	Errors     uint64 `json:"errors"`      // attempts at a partition's consumer that failed
	Restarts   uint64 `json:"restarts"`    // partitions' consumers working again after failures
	Failing    int    `json:"failing"`     // partitions whose consumer is failing now (being tried again)
	Gaps       uint64 `json:"gaps"`        // deliveries that went missing on the way, read again
	// Unstored counts acknowledgements sent although what was applied
	// was not yet stored after storeWait (the metric store failing): a
	// hub killed then loses those samples.
	Unstored uint64 `json:"acked_unstored"`
}

// ConsumersConfig is what Consumers work with. View and Publisher make a
// hub that shares the agents it owns and follows the others' (Follow: the
// stream's partition count); without them it only owns.
type ConsumersConfig struct {
	Stream    jetstream.Stream
	Owner     Owner
	Handle    Handler
	Log       *slog.Logger
	Follow    int
	View      jetstream.Stream
	Publisher *Publisher
	// Stored (optional) waits until what Handle applied is stored (the
	// samples in InfluxDB or its spill): a batch is acknowledged only
	// then, so a hub killed leaves its successor nothing acknowledged and
	// not stored.
	Stored func(context.Context) error
}

// NewConsumers validates cfg; Own starts and stops partitions.
func NewConsumers(cfg ConsumersConfig) (*Consumers, error) {
	if cfg.Stream == nil || cfg.Owner == nil || cfg.Handle == nil || cfg.Log == nil || cfg.Follow < 0 {
		return nil, errors.New("cluster: NewConsumers needs a stream, an owner, a handler and a log")
	}
	if cfg.Follow > 0 && (cfg.View == nil || cfg.Publisher == nil) {
		return nil, errors.New("cluster: a hub that follows needs the view stream and a publisher")
	}
	return &Consumers{stream: cfg.Stream, owner: cfg.Owner, handle: cfg.Handle, log: cfg.Log, batch: 256, follow: cfg.Follow,
		view: cfg.View, pub: cfg.Publisher, stored: cfg.Stored, running: map[int]*partitionRun{}}, nil
}

// Own makes the running consumers those of owned (Leases' OnOwned), and
// followers those of the other partitions when the hub follows them. It
// returns once the consumers of partitions whose part changed have
// stopped, so that nothing of theirs is applied after it in the old part.
func (c *Consumers) Own(ctx context.Context, owned []int) {
	want := map[int]bool{} // partition → owned
	for p := range c.follow {
		want[p] = false
	}
	for _, p := range owned {
		want[p] = true
	}
	c.mu.Lock()
	var stopping []*partitionRun
	for p, r := range c.running {
		if own, ok := want[p]; !ok || own != r.owned {
			r.cancel()
			stopping = append(stopping, r)
			delete(c.running, p)
		}
	}
	c.mu.Unlock()
	for _, r := range stopping {
		<-r.done
	}
	if ctx.Err() != nil {
		return // the hub stops: Wait stops the rest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, own := range want {
		if _, ok := c.running[p]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		r := &partitionRun{owned: own, cancel: cancel, done: make(chan struct{})}
		c.running[p] = r
		c.wg.Go(func() {
			defer close(r.done)
			if own {
				c.consume(pctx, p)
			} else {
				c.followPartition(pctx, p)
			}
		})
	}
}

// partitionRun is one partition's consumer goroutine.
type partitionRun struct {
	owned  bool // consumed as its owner, or followed
	cancel context.CancelFunc
	done   chan struct{}
}

// Wait stops every consumer and waits for them.
func (c *Consumers) Wait() {
	c.mu.Lock()
	for p, r := range c.running {
		r.cancel()
		delete(c.running, p)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// Stats returns the counters.
func (c *Consumers) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Consumers) count(f func(*ConsumerStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// consume applies partition p's messages until ctx ends (Own stops
// it), acknowledging each batch once applied. While the lease has run out
// (a pause, the bucket unreachable) it applies nothing and waits; when it
// holds the lease again it takes the partition over afresh. A consumer
// that cannot be made or fails (a NATS node lost, JetStream electing a
// leader) is made again, with backoff, for as long as the hub owns p.
func (c *Consumers) consume(ctx context.Context, p int) {
	c.retrying(ctx, p, "owner", func(f *failures) error {
		if !c.owner.Owns(p) {
			sleep(ctx, 200*time.Millisecond)
			return nil
		}
		cons, replayed, err := c.takeOver(ctx, p)
		if err == nil {
			err = c.drain(ctx, p, cons, replayed, f)
		}
		return err
	})
}

// retrying makes attempts at partition p's part in its role until ctx
// ends: after a delivery that went missing or a failure (counted, logged
// sparingly) it waits, with backoff, and tries again.
func (c *Consumers) retrying(ctx context.Context, p int, role string, attempt func(*failures) error) {
	f := &failures{c: c, p: p, role: role}
	defer f.end()
	var b backoff
	for ctx.Err() == nil {
		b.attempt()
		switch err := attempt(f); {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, errGap):
			c.missed(p, role, err)
			b.wait(ctx)
		default:
			f.failed(err)
			b.wait(ctx)
		}
	}
}

// missed counts and logs a delivery that went missing, which is read
// again: not a failure.
func (c *Consumers) missed(p int, role string, err error) {
	c.count(func(s *ConsumerStats) { s.Gaps++ })
	c.log.Debug("a delivery went missing; reading on from before it", "partition", p, "role", role, "err", err)
}

// failures tracks the failures in a row of one partition's consumer: it
// counts them, logs the first and then one every failureLogEvery (a
// consumer failing for minutes would otherwise log at every attempt),
// and counts and logs the consumer's return.
type failures struct {
	c       *Consumers
	p       int
	role    string // "owner" or "follower"
	n       int    // failures since the consumer last worked
	since   int    // of them, not logged
	logged  time.Time
	failing bool // counted in ConsumerStats.Failing
}

func (f *failures) failed(err error) {
	f.n++
	f.since++
	first := !f.failing
	f.failing = true
	f.c.count(func(s *ConsumerStats) {
		s.Errors++
		if first {
			s.Failing++
		}
	})
	if first || time.Since(f.logged) >= failureLogEvery {
		f.c.log.Warn("partition consumer failed; trying again", "partition", f.p, "role", f.role,
			"failures", f.n, "not logged", f.since-1, "err", err)
		f.logged, f.since = time.Now(), 0
	}
}

// worked is called when the consumer delivers (or has nothing to).
func (f *failures) worked() {
	if !f.failing {
		return
	}
	f.c.count(func(s *ConsumerStats) {
		s.Restarts++
		s.Failing--
	})
	f.c.log.Info("partition consumer working again", "partition", f.p, "role", f.role, "failures", f.n)
	f.n, f.since, f.failing = 0, 0, false
}

// end is called when the partition's goroutine returns.
func (f *failures) end() {
	if f.failing {
		f.c.count(func(s *ConsumerStats) { s.Failing-- })
	}
}

// takeOver replays the last state and inventory of every agent of
// partition p, then replaces p's consumer with one that starts after its
// acknowledged floor. It returns the consumer and the stream sequence of
// each replayed message by subject.
func (c *Consumers) takeOver(ctx context.Context, p int) (jetstream.Consumer, map[string]uint64, error) {
	name := "part-" + strconv.Itoa(p)
	cfg := jetstream.ConsumerConfig{
		Durable: name, FilterSubject: partitionSubject(p), AckPolicy: jetstream.AckAllPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 4 * c.batch, DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	old, err := bounded(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return c.stream.Consumer(ctx, name) })
	switch {
	case err == nil:
		// Consumer has just fetched its info.
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, old.CachedInfo().AckFloor.Stream+1
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	replayed, err := c.replay(ctx, p, cfg.OptStartSeq)
	if err != nil {
		return nil, nil, fmt.Errorf("replay: %w", err)
	}
	if err := c.catchUp(ctx, p); err != nil {
		return nil, nil, fmt.Errorf("view's records: %w", err)
	}
	if _, err := bounded(ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, c.stream.DeleteConsumer(ctx, name)
	}); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil, fmt.Errorf("delete consumer %s: %w", name, err)
	}
	cons, err := bounded(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return c.stream.CreateConsumer(ctx, cfg) })
	if err != nil {
		return nil, nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	return cons, replayed, nil
}

// ephemeral makes a consumer of partition p's channels that starts at
// stream sequence from, or with the last message of each agent on each
// when from is 0, and acknowledges nothing. It lives in memory on one
// node, under a new name each time: after a failure a new one replaces
// it (one of the same name could be bound to the node that died,
// "offline" for as long as that node is down). The ordered consumers of
// nats.go do the same, but their Fetch makes the consumer again, for
// ever, whatever the caller's context, so a partition's goroutine could
// neither go on nor stop.
func (c *Consumers) ephemeral(ctx context.Context, stream jetstream.Stream, from uint64, subjects ...string) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, AckPolicy: jetstream.AckNonePolicy,
		// A consumer left behind (the hub stopped or died) goes after this.
		InactiveThreshold: time.Minute, Replicas: 1, MemoryStorage: true, FilterSubjects: subjects}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := bounded(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return stream.CreateConsumer(ctx, cfg) })
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	return cons, nil
}

// forget deletes an ephemeral consumer this hub is done with. One that
// failed is left to its inactivity threshold: its node may be gone, and
// a request to it would hold the partition up for requestTimeout; so is
// one of a partition stopping, so that the hub stops at once.
func (c *Consumers) forget(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer, err error) {
	if ctx.Err() != nil || err != nil && !errors.Is(err, errGap) {
		return
	}
	name := cons.CachedInfo().Name
	if _, err := bounded(ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, stream.DeleteConsumer(ctx, name)
	}); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
		c.log.Debug("ephemeral consumer not deleted (its inactivity deletes it)", "consumer", name, "err", err)
	}
}

// errGap is a message missing from what a consumer delivered: one sent
// as a pull ended may arrive after it, and is dropped. An ephemeral
// consumer, which acknowledges nothing, counts it as delivered; a
// durable one's acknowledgement of the next would cover it. The consumer
// sequence of the next shows it.
var errGap = errors.New("a message is missing from the consumer's delivery")

// inOrder checks that m is the message after *delivered in its consumer's
// delivery, keeping *delivered, and returns its metadata.
func inOrder(m jetstream.Msg, delivered *uint64) (*jetstream.MsgMetadata, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	if meta.Sequence.Consumer != *delivered+1 {
		return nil, fmt.Errorf("%w: consumer sequence %d after %d", errGap, meta.Sequence.Consumer, *delivered)
	}
	*delivered = meta.Sequence.Consumer
	return meta, nil
}

// fetch pulls up to a batch of cons's messages, waiting up to fetchWait
// for them, and hands each to apply as it arrives. It returns how many
// arrived, and the first error of apply or of the pull (none when the
// pull just ran out of messages or time). It returns as soon as ctx ends;
// the pull it leaves ends by itself a second after fetchWait. (The
// client waits that second longer than the server holds the pull, so
// that a message sent at the last moment still arrives: FetchContext
// would leave a tenth of the wait.)
func (c *Consumers) fetch(ctx context.Context, cons jetstream.Consumer, apply func(jetstream.Msg) error) (int, error) {
	batch, err := cons.Fetch(c.batch, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case m, ok := <-batch.Messages():
			if !ok {
				if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
					return n, fmt.Errorf("fetch: %w", err)
				}
				return n, nil
			}
			if err := apply(m); err != nil {
				return n + 1, err
			}
		}
	}
}

// replay hands the handler the last state and inventory message of every
// agent of partition p that the stream holds from before start (what
// comes from start on, the consumer delivers).
func (c *Consumers) replay(ctx context.Context, p int, start uint64) (map[string]uint64, error) {
	replayed := map[string]uint64{}
	if start <= 1 {
		return replayed, nil // a partition consumed from its beginning
	}
	prefix := "cw." + strconv.Itoa(p) + ".*."
	err := c.readLast(ctx, c.stream, func(m jetstream.Msg, seq uint64) (bool, error) {
		if seq >= start {
			return true, nil
		}
		if agent, ch, ok := parseSubject(m.Subject()); ok {
			replayed[m.Subject()] = seq
			c.handle(ctx, Message{Partition: p, Agent: agent, Channel: ch, Payload: m.Data(), Seq: seq, Retained: true})
			return false, c.share(ctx, p, agent, ch, m.Data())
		}
		return false, nil
	}, prefix+string(wire.ChannelState), prefix+string(wire.ChannelInventory))
	if err != nil {
		return nil, err
	}
	return replayed, nil
}

// catchUp hands the handler the view's last record of every agent of
// partition p, which this hub takes over: what it followed may lag the
// records its previous owner sent of what it acknowledged, and the
// partition's consumer starts after that.
func (c *Consumers) catchUp(ctx context.Context, p int) error {
	if c.view == nil {
		return nil
	}
	return c.readLast(ctx, c.view, func(m jetstream.Msg, seq uint64) (bool, error) {
		if agent, kind, ok := parseViewSubject(m.Subject()); ok && kind == viewRecord {
			c.handle(ctx, Message{Partition: p, Agent: agent, Payload: m.Data(), Seq: seq, Follow: true, Record: true})
		}
		return false, nil
	}, viewSubject(p, "*", viewRecord))
}

// readLast hands each the last message of every subject of stream that
// matches subjects, in the stream's order, until each says it is past
// what it wants (true) or none is pending.
func (c *Consumers) readLast(ctx context.Context, stream jetstream.Stream, each func(m jetstream.Msg, seq uint64) (bool, error), subjects ...string) (err error) {
	cons, err := c.ephemeral(ctx, stream, 0, subjects...)
	if err != nil {
		return err
	}
	defer func() { c.forget(ctx, stream, cons, err) }()
	// The last messages come in the stream's order, then what is newer.
	pending, delivered, past := cons.CachedInfo().NumPending, uint64(0), false
	for pending > 0 && !past {
		n, err := c.fetch(ctx, cons, func(m jetstream.Msg) error {
			meta, err := inOrder(m, &delivered)
			if err != nil {
				return err
			}
			pending = meta.NumPending
			past, err = each(m, meta.Sequence.Stream)
			return err
		})
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case n == 0:
			return fmt.Errorf("no message in %v while %d are pending", fetchWait, pending)
		}
	}
	return nil
}

// followPartition applies what the view stream holds of partition p,
// which another hub owns, for this hub's read view: each agent's last
// inventory and record, then those its owner sends, until ctx ends (Own
// stops it when this hub takes the partition over). Nothing is
// acknowledged; after a failure (a NATS node lost) it follows on from the
// message after the last it applied, so nothing in between is skipped.
func (c *Consumers) followPartition(ctx context.Context, p int) {
	var next uint64
	c.retrying(ctx, p, "follower", func(f *failures) error {
		if err := c.followFrom(ctx, p, &next, f); err != nil {
			return fmt.Errorf("following on from %d: %w", next, err)
		}
		return nil
	})
}

// followFrom follows partition p in the view stream from its sequence
// *next (0: from each agent's last messages), keeping *next after each
// message applied, until ctx ends or the consumer fails.
func (c *Consumers) followFrom(ctx context.Context, p int, next *uint64, f *failures) (err error) {
	cons, err := c.ephemeral(ctx, c.view, *next, "cwv."+strconv.Itoa(p)+".>")
	if err != nil {
		return err
	}
	defer func() { c.forget(ctx, c.view, cons, err) }()
	var delivered uint64
	for ctx.Err() == nil {
		_, err := c.fetch(ctx, cons, func(m jetstream.Msg) error {
			meta, err := inOrder(m, &delivered)
			if err != nil {
				return err
			}
			seq := meta.Sequence.Stream
			*next = seq + 1
			agent, kind, ok := parseViewSubject(m.Subject())
			if !ok {
				c.count(func(s *ConsumerStats) { s.BadSubject++ })
				c.log.Warn("message outside the view's contract dropped", "subject", m.Subject())
				return nil
			}
			msg := Message{Partition: p, Agent: agent, Payload: m.Data(), Seq: seq, Follow: true, Record: kind == viewRecord}
			if !msg.Record {
				msg.Channel, msg.Retained = wire.ChannelInventory, true
			}
			c.handle(ctx, msg)
			c.count(func(s *ConsumerStats) { s.Followed++ })
			return nil
		})
		if err != nil {
			return err
		}
		f.worked()
	}
	return nil
}

// share stores an inventory this hub applied as an agent's owner in the
// view stream, for the other hubs, before it is acknowledged.
func (c *Consumers) share(ctx context.Context, p int, agent string, ch wire.Channel, payload []byte) error {
	if c.pub == nil || ch != wire.ChannelInventory {
		return nil
	}
	return c.pub.inventory(ctx, p, agent, payload)
}

// errStoodDown ends a batch when the lease runs out.
var errStoodDown = errors.New("the partition's lease ran out")

// drain fetches and applies batches while this hub owns p, and
// acknowledges each (all up to its last message). A delivery that went
// missing (sent as a pull ended, it came too late) would be acknowledged
// with the next: drain stops before it instead, with errGap, and the
// partition is taken over again from what was acknowledged.
func (c *Consumers) drain(ctx context.Context, p int, cons jetstream.Consumer, replayed map[string]uint64, f *failures) error {
	var delivered uint64
	for ctx.Err() == nil {
		var last jetstream.Msg
		_, err := c.fetch(ctx, cons, func(m jetstream.Msg) error {
			prev := last
			if !c.owner.Owns(p) {
				// The lease ran out (a pause, a lost bucket): apply
				// nothing more; what was applied is acknowledged below,
				// the rest goes to the next owner.
				return errStoodDown
			}
			meta, err := inOrder(m, &delivered)
			if err != nil {
				return err
			}
			last = m
			agent, ch, ok := parseSubject(m.Subject())
			if !ok {
				c.count(func(s *ConsumerStats) { s.BadSubject++ })
				c.log.Warn("message outside the contract dropped", "subject", m.Subject())
				return nil
			}
			if seq := meta.Sequence.Stream; seq <= replayed[m.Subject()] {
				return nil // an older state or inventory than the one replayed
			}
			c.handle(ctx, Message{Partition: p, Agent: agent, Channel: ch, Payload: m.Data(), Seq: meta.Sequence.Stream})
			c.count(func(s *ConsumerStats) { s.Applied++ })
			if err := c.share(ctx, p, agent, ch, m.Data()); err != nil {
				last = prev // applied again by whoever takes it up
				return err
			}
			return nil
		})
		if !c.store(ctx, last) {
			return nil // stopping: what was not acknowledged is applied again by the next owner
		}
		if last != nil {
			switch perr := c.publish(ctx, p); {
			case errors.Is(perr, errNotOwned):
				// Too late to share what it applied: the next owner
				// applies it again, after what was acknowledged.
				c.count(func(s *ConsumerStats) { s.StoodDown++ })
				c.log.Warn("partition lease ran out before its records were sent: standing down", "partition", p)
				return nil
			case perr != nil:
				return perr
			}
		}
		if aerr := c.ack(last); aerr != nil {
			return fmt.Errorf("ack: %w", aerr)
		}
		switch {
		case errors.Is(err, errStoodDown):
			c.count(func(s *ConsumerStats) { s.StoodDown++ })
			c.log.Warn("partition lease ran out: standing down", "partition", p)
			return nil
		case err != nil:
			return err
		}
		f.worked()
		if !c.owner.Owns(p) {
			return nil
		}
	}
	return nil
}

// publish sends the records of partition p's agents that changed, for
// the other hubs' view, before what changed them is acknowledged.
func (c *Consumers) publish(ctx context.Context, p int) error {
	if c.pub == nil {
		return nil
	}
	return c.pub.send(ctx, p)
}

// storeWait bounds the wait for the metric store before an
// acknowledgement: while it fails, the partition is applied on,
// acknowledged unstored and counted.
const storeWait = 30 * time.Second

// store waits until what was applied up to last is stored, if the hub
// says how; false when ctx ended first.
func (c *Consumers) store(ctx context.Context, last jetstream.Msg) bool {
	if c.stored == nil || last == nil {
		return true
	}
	sctx, cancel := context.WithTimeout(ctx, storeWait)
	defer cancel()
	err := c.stored(sctx)
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		return false
	}
	c.count(func(s *ConsumerStats) { s.Unstored++ })
	c.log.Warn("metric store did not take the samples in time; acknowledging them unstored", "wait", storeWait, "err", err)
	return true
}

func (c *Consumers) ack(last jetstream.Msg) error {
	if last == nil {
		return nil
	}
	return last.Ack() // AckAll: everything up to it
}

// parseSubject splits "cw.<p>.<agent>.<channel>" into agent and channel.
func parseSubject(s string) (agent string, ch wire.Channel, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != "cw" {
		return "", "", false
	}
	agent, ch, err := wire.ParseTopic(wire.Topic(parts[2], wire.Channel(parts[3])))
	return agent, ch, err == nil
}
