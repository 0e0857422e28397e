package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/citywatch/citywatch/wire"
)

// ViewStreamName is the JetStream stream through which each hub shares
// the agents it owns with the others' read views: per agent, the last
// inventory it applied and its last record of the agent (what the agent
// and its devices show), under "cwv.<partition>.<agent>.<kind>", one
// message kept per subject. A follower applies these rather than the
// agents' every message: a hub does its own share of the decoding and
// judging, not the whole city's.
const ViewStreamName = "CITYWATCH_VIEW"

// The kinds of the view's messages.
const (
	viewInventory = "inventory" // the agent's own inventory message, as the owner applied it
	viewRecord    = "record"    // the owner's record of the agent (fleet.Record)
)

func viewSubject(p int, agent, kind string) string {
	return "cwv." + strconv.Itoa(p) + "." + agent + "." + kind
}

// EnsureViewStream creates or updates the view stream.
func EnsureViewStream(ctx context.Context, js jetstream.JetStream, replicas int, maxAge time.Duration) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, viewStreamConfig(replicas, maxAge))
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", ViewStreamName, err)
	}
	return s, nil
}

func viewStreamConfig(replicas int, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: ViewStreamName, Subjects: []string{"cwv.>"}, MaxMsgsPerSubject: 1,
		Storage: jetstream.FileStorage, Replicas: replicas, MaxAge: maxAge}
}

// parseViewSubject splits "cwv.<p>.<agent>.<kind>".
func parseViewSubject(s string) (agent, kind string, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != "cwv" || wire.ValidID(parts[2]) != nil ||
		parts[3] != viewInventory && parts[3] != viewRecord {
		return "", "", false
	}
	return parts[2], parts[3], true
}

// How often the publisher sends records: those of agents that changed at
// most flushEvery after the change, every owned agent's every
// refreshEvery, which carries what changes without a Change (last seen,
// metrics). A refresh costs about what applying one health report of the
// agent does, on the owner and on each follower: every 10 s it took a
// fifth of what the followers had saved (BenchmarkClusterScaling), so
// followers show last seen and metrics up to a minute old, statuses
// within a flush.
const (
	flushEvery   = 200 * time.Millisecond
	refreshEvery = time.Minute
)

// Publisher sends the records of the agents this hub owns to the view
// stream: an agent's when it changes (Changed), every agent's now and
// then. A partition's consumer also sends its changed agents' records
// before it acknowledges what it applied (Consumers.publish), so that
// what a hub acknowledged is in the view however soon it loses the
// partition: the next owner starts after the acknowledged messages, from
// the view's records of them.
type Publisher struct {
	js         jetstream.JetStream
	owner      Owner
	partitions int
	log        *slog.Logger
	record     func(agent string) ([]byte, bool)
	agents     func() []string
	// sending holds a partition's records while they are made and sent:
	// one made later is never stored before one made earlier.
	sending []sync.Mutex

	mu     sync.Mutex
	dirty  map[int]map[string]bool // partition → agents whose record is to be sent
	stats  PublishStats
	logged time.Time // when a failure was last logged
}

func newRecordPublisher(js jetstream.JetStream, owner Owner, partitions int, log *slog.Logger,
	record func(string) ([]byte, bool), agents func() []string) *Publisher {
	return &Publisher{js: js, owner: owner, partitions: partitions, log: log, record: record, agents: agents,
		sending: make([]sync.Mutex, partitions), dirty: map[int]map[string]bool{}}
}

// PublishStats count what the publisher sent.
type PublishStats struct {
	Records     uint64 `json:"records"`     // records stored in the view stream
	Inventories uint64 `json:"inventories"` // inventories stored
	Failed      uint64 `json:"failed"`      // records not stored (sent again at the next flush)
	Unencodable uint64 `json:"unencodable"` // records that could not be made
	LastFailed  string `json:"last_failed,omitempty"`
}

// Changed marks an agent whose record is to be sent at the next flush.
func (p *Publisher) Changed(agent string) {
	p.mu.Lock()
	p.mark(Partition(agent, p.partitions), agent)
	p.mu.Unlock()
}

// mark needs p.mu.
func (p *Publisher) mark(part int, agent string) {
	m := p.dirty[part]
	if m == nil {
		m = map[string]bool{}
		p.dirty[part] = m
	}
	m[agent] = true
}

// Stats returns the counters.
func (p *Publisher) Stats() PublishStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// inventory stores an agent's inventory message, which its partition's
// owner just applied, before the owner acknowledges it: a failure makes
// the owner take the partition up again from before it.
func (p *Publisher) inventory(ctx context.Context, part int, agent string, payload []byte) error {
	if _, err := bounded(ctx, func(ctx context.Context) (*jetstream.PubAck, error) {
		return p.js.Publish(ctx, viewSubject(part, agent, viewInventory), payload)
	}); err != nil {
		return fmt.Errorf("view: inventory of %s: %w", agent, err)
	}
	p.mu.Lock()
	p.stats.Inventories++
	p.mark(part, agent) // and its record after it
	p.mu.Unlock()
	return nil
}

// Run flushes until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	flush, refresh := time.NewTicker(flushEvery), time.NewTicker(refreshEvery)
	defer flush.Stop()
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			for _, a := range p.agents() {
				p.Changed(a)
			}
		case <-flush.C:
			p.mu.Lock()
			parts := slices.Collect(maps.Keys(p.dirty))
			p.mu.Unlock()
			for _, part := range parts {
				if p.send(ctx, part) != nil && ctx.Err() != nil {
					return
				}
			}
		}
	}
}

// errNotOwned: the records of a partition this hub no longer owns are
// its new owner's to send.
var errNotOwned = errors.New("the partition is not this hub's")

// errNoAck is a record the view stream did not acknowledge in time.
var errNoAck = errors.New("no acknowledgement in time")

// send sends the records of partition part's changed agents while this
// hub owns it, and waits for them to be stored; those that were not are
// sent again next time, and the error says so. Not owning part, it drops
// them (errNotOwned).
func (p *Publisher) send(ctx context.Context, part int) error {
	p.sending[part].Lock()
	defer p.sending[part].Unlock()
	p.mu.Lock()
	agents := slices.Collect(maps.Keys(p.dirty[part]))
	delete(p.dirty, part)
	p.mu.Unlock()
	if len(agents) == 0 {
		return nil
	}
	if !p.owner.Owns(part) {
		return errNotOwned
	}
	type sent struct {
		agent string
		ack   jetstream.PubAckFuture
	}
	var pending []sent
	var failed []string
	var lastErr error
	unencodable := 0
	for _, a := range agents {
		b, ok := p.record(a)
		if !ok {
			unencodable++
			continue
		}
		ack, err := p.js.PublishAsync(viewSubject(part, a, viewRecord), b)
		if err != nil {
			failed, lastErr = append(failed, a), err
			continue
		}
		pending = append(pending, sent{a, ack})
	}
	wctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	stored := 0
	for _, s := range pending {
		select {
		case <-s.ack.Ok():
			stored++
		case err := <-s.ack.Err():
			failed, lastErr = append(failed, s.agent), err
		case <-wctx.Done():
			failed, lastErr = append(failed, s.agent), errNoAck
		}
	}
	p.mu.Lock()
	p.stats.Records += uint64(stored)
	p.stats.Unencodable += uint64(unencodable)
	p.stats.Failed += uint64(len(failed))
	for _, a := range failed {
		p.mark(part, a)
	}
	if lastErr != nil {
		p.stats.LastFailed = lastErr.Error()
	}
	log := len(failed) > 0 && time.Since(p.logged) >= failureLogEvery
	if log {
		p.logged = time.Now()
	}
	p.mu.Unlock()
	if len(failed) == 0 {
		return nil
	}
	if log {
		p.log.Warn("records for the other hubs' view not stored; sending them again at every flush (logged again in "+
			failureLogEvery.String()+" if it goes on)", "partition", part, "agents", len(failed), "err", lastErr)
	}
	return fmt.Errorf("view: %d records of partition %d not stored: %w", len(failed), part, lastErr)
}
