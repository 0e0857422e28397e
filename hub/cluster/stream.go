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
	subjects := make([]string, len(agentChannels))
	for i, ch := range agentChannels {
		subjects[i] = natsPrefix + "*." + string(ch)
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     StreamName,
		Subjects: subjects,
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      natsPrefix + "*.*",
			Destination: fmt.Sprintf("cw.{{partition(%d,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", partitions),
		},
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
		MaxAge:   maxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", StreamName, err)
	}
	return s, nil
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
	// Follow marks a message of a partition another hub owns, which this
	// hub applies for its read view of the city only: the owner writes
	// the metrics and history, raises the alarms and talks to the agent.
	Follow bool
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
	// the partitions it does not own (its read view); 0 when it does not.
	follow int

	mu      sync.Mutex
	running map[int]*partitionRun
	wg      sync.WaitGroup
	stats   ConsumerStats
}

// ConsumerStats counts what the consumers did.
type ConsumerStats struct {
	Applied    uint64 `json:"applied"`     // messages of owned partitions handed to the Handler
	Followed   uint64 `json:"followed"`    // messages of other hubs' partitions handed to it (read view)
	StoodDown  uint64 `json:"stood_down"`  // partitions left because the lease ran out mid-batch
	BadSubject uint64 `json:"bad_subject"` // messages whose subject is outside the contract (dropped, acknowledged)
	Errors     uint64 `json:"errors"`      // consumer requests that failed
}

// NewConsumers validates its arguments; Own starts and stops partitions.
// With follow > 0 (the stream's partition count) the hub also follows
// every partition it does not own, for its read view.
func NewConsumers(stream jetstream.Stream, owner Owner, handle Handler, log *slog.Logger, follow int) (*Consumers, error) {
	if stream == nil || owner == nil || handle == nil || log == nil || follow < 0 {
		return nil, errors.New("cluster: NewConsumers needs a stream, an owner, a handler and a log")
	}
	return &Consumers{stream: stream, owner: owner, handle: handle, log: log, batch: 256, follow: follow, running: map[int]*partitionRun{}}, nil
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
// holds the lease again it takes the partition over afresh.
func (c *Consumers) consume(ctx context.Context, p int) {
	for ctx.Err() == nil {
		if !c.owner.Owns(p) {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		cons, replayed, err := c.takeOver(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				c.count(func(s *ConsumerStats) { s.Errors++ })
				c.log.Warn("partition consumer not created; trying again", "partition", p, "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		if err := c.drain(ctx, p, cons, replayed); err != nil && ctx.Err() == nil {
			c.count(func(s *ConsumerStats) { s.Errors++ })
			c.log.Warn("partition consumer failed; taking it over again", "partition", p, "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
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
	old, err := c.stream.Consumer(ctx, name)
	switch {
	case err == nil:
		info, err := old.Info(ctx)
		if err != nil {
			return nil, nil, err
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, nil, err
	}
	replayed, err := c.replay(ctx, p, cfg.OptStartSeq)
	if err != nil {
		return nil, nil, err
	}
	if err := c.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil, err
	}
	cons, err := c.stream.CreateConsumer(ctx, cfg)
	return cons, replayed, err
}

// ordered is an ordered consumer of partition p's channels that starts
// at stream sequence from, or with the last message of each agent on
// each when from is 0, then follows.
func (c *Consumers) ordered(ctx context.Context, p int, from uint64, channels ...wire.Channel) (jetstream.Consumer, error) {
	prefix := "cw." + strconv.Itoa(p) + ".*."
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	for _, ch := range channels {
		cfg.FilterSubjects = append(cfg.FilterSubjects, prefix+string(ch))
	}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	return c.stream.OrderedConsumer(ctx, cfg)
}

// replay hands the handler the last state and inventory message of every
// agent of partition p that the stream holds from before start (what
// comes from start on, the consumer delivers).
func (c *Consumers) replay(ctx context.Context, p int, start uint64) (map[string]uint64, error) {
	replayed := map[string]uint64{}
	if start <= 1 {
		return replayed, nil // a partition consumed from its beginning
	}
	oc, err := c.ordered(ctx, p, 0, wire.ChannelState, wire.ChannelInventory)
	if err != nil {
		return nil, err
	}
	for {
		batch, err := oc.Fetch(c.batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n, pending := 0, uint64(0)
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			pending = meta.NumPending
			if meta.Sequence.Stream >= start {
				continue
			}
			if agent, ch, ok := parseSubject(m.Subject()); ok {
				replayed[m.Subject()] = meta.Sequence.Stream
				c.handle(ctx, Message{Partition: p, Agent: agent, Channel: ch, Payload: m.Data(), Seq: meta.Sequence.Stream, Retained: true})
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		if n == 0 || pending == 0 {
			return replayed, nil
		}
	}
}

// followPartition applies partition p, which another hub owns, for this
// hub's read view: each agent's last state, inventory, health report and
// event, then what they send, until ctx ends (Own stops it when this hub
// takes the partition over). Nothing is acknowledged; after a failure
// (a NATS node lost) it follows on from the message after the last it
// applied, so nothing in between is skipped.
func (c *Consumers) followPartition(ctx context.Context, p int) {
	var next uint64
	for ctx.Err() == nil {
		if err := c.followFrom(ctx, p, &next); err != nil && ctx.Err() == nil {
			c.count(func(s *ConsumerStats) { s.Errors++ })
			c.log.Warn("following a partition failed; following on", "partition", p, "from", next, "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// followFrom follows partition p from stream sequence *next (0: from each
// agent's last messages), keeping *next after each message applied.
func (c *Consumers) followFrom(ctx context.Context, p int, next *uint64) error {
	info, err := c.stream.Info(ctx)
	if err != nil {
		return err
	}
	before := info.State.LastSeq // what is older is a replay of the last messages
	oc, err := c.ordered(ctx, p, *next, wire.ChannelState, wire.ChannelInventory, wire.ChannelHealth, wire.ChannelEvents)
	if err != nil {
		return err
	}
	replay := *next == 0
	for ctx.Err() == nil {
		batch, err := oc.Fetch(c.batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			seq := meta.Sequence.Stream
			*next = seq + 1
			agent, ch, ok := parseSubject(m.Subject())
			if !ok {
				continue // the partition's owner counts and logs it (drain)
			}
			c.handle(ctx, Message{Partition: p, Agent: agent, Channel: ch, Payload: m.Data(), Seq: seq, Follow: true,
				Retained: replay && seq <= before && (ch == wire.ChannelState || ch == wire.ChannelInventory)})
			c.count(func(s *ConsumerStats) { s.Followed++ })
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// drain fetches and applies batches while this hub owns p.
func (c *Consumers) drain(ctx context.Context, p int, cons jetstream.Consumer, replayed map[string]uint64) error {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(c.batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		var last jetstream.Msg
		for m := range batch.Messages() {
			if !c.owner.Owns(p) {
				// The lease ran out (a pause, a lost bucket): apply
				// nothing more; what was applied is acknowledged below,
				// the rest goes to the next owner.
				c.count(func(s *ConsumerStats) { s.StoodDown++ })
				c.log.Warn("partition lease ran out: standing down", "partition", p)
				return c.ack(last)
			}
			last = m
			agent, ch, ok := parseSubject(m.Subject())
			if !ok {
				c.count(func(s *ConsumerStats) { s.BadSubject++ })
				c.log.Warn("message outside the contract dropped", "subject", m.Subject())
				continue
			}
			meta, err := m.Metadata()
			var seq uint64
			if err == nil {
				seq = meta.Sequence.Stream
			}
			if seq > 0 && seq <= replayed[m.Subject()] {
				continue // an older state or inventory than the one replayed
			}
			c.handle(ctx, Message{Partition: p, Agent: agent, Channel: ch, Payload: m.Data(), Seq: seq})
			c.count(func(s *ConsumerStats) { s.Applied++ })
		}
		if err := c.ack(last); err != nil {
			return err
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if !c.owner.Owns(p) {
			return nil
		}
	}
	return nil
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
