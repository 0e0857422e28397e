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
// then.
type Publisher struct {
	js         jetstream.JetStream
	owner      Owner
	partitions int
	log        *slog.Logger
	record     func(agent string) ([]byte, bool)
	agents     func() []string

	mu     sync.Mutex
	dirty  map[string]bool
	stats  PublishStats
	logged time.Time // when a failure was last logged
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
	p.dirty[agent] = true
	p.mu.Unlock()
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
	p.dirty[agent] = true // and its record after it
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
			p.flush(ctx)
		}
	}
}

// flush sends the records of the changed agents this hub owns, and waits
// for them to be stored; those that were not are sent again next time.
func (p *Publisher) flush(ctx context.Context) {
	p.mu.Lock()
	agents := make([]string, 0, len(p.dirty))
	for a := range p.dirty {
		agents = append(agents, a)
	}
	clear(p.dirty)
	p.mu.Unlock()
	type sent struct {
		agent string
		ack   jetstream.PubAckFuture
	}
	var pending []sent
	var failed []string
	var lastErr error
	for _, a := range agents {
		part := Partition(a, p.partitions)
		if !p.owner.Owns(part) {
			continue // its owner sends it
		}
		b, ok := p.record(a)
		if !ok {
			p.mu.Lock()
			p.stats.Unencodable++
			p.mu.Unlock()
			continue
		}
		ack, err := p.js.PublishAsync(viewSubject(part, a, viewRecord), b)
		if err != nil {
			failed, lastErr = append(failed, a), err
			continue
		}
		pending = append(pending, sent{a, ack})
	}
	stored := 0
	if len(pending) > 0 {
		select {
		case <-p.js.PublishAsyncComplete():
		case <-ctx.Done():
			return
		case <-time.After(requestTimeout):
		}
		for _, s := range pending {
			select {
			case <-s.ack.Ok():
				stored++
			case err := <-s.ack.Err():
				failed, lastErr = append(failed, s.agent), err
			default:
				failed, lastErr = append(failed, s.agent), errors.New("no acknowledgement in time")
			}
		}
	}
	p.mu.Lock()
	p.stats.Records += uint64(stored)
	p.stats.Failed += uint64(len(failed))
	for _, a := range failed {
		p.dirty[a] = true
	}
	if lastErr != nil {
		p.stats.LastFailed = lastErr.Error()
	}
	p.mu.Unlock()
	if len(failed) > 0 && time.Since(p.logged) >= failureLogEvery {
		p.logged = time.Now()
		p.log.Warn("records for the other hubs' view not stored; sending them again at every flush (logged again in "+
			failureLogEvery.String()+" if it goes on)", "agents", len(failed), "err", lastErr)
	}
}
