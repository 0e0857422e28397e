package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NodeConfig is a hub's place in the cluster.
type NodeConfig struct {
	NATSURL string // nats://host:4222[,nats://…]: the NATS servers
	Leases  Config // Hub, Partitions, TTL…
	// Retention is how long the stream keeps agents' messages: long
	// enough for any hub to take a partition over (default 24 h).
	Retention time.Duration
}

// Node runs this hub's part of the cluster: the connection to NATS, the
// agents' stream, the partition leases, the consumers of the owned
// partitions, which hand each agent's message to Apply, and the view
// stream: the records of the agents it owns, which it publishes, and
// those of the others', which its followers hand to Apply (the read
// view).
type Node struct {
	cfg  NodeConfig
	log  *slog.Logger
	deps NodeDeps

	// Set by Run once connected, for Status.
	leases    atomic.Pointer[Leases]
	consumers atomic.Pointer[Consumers]
	publisher atomic.Pointer[Publisher]
}

// Status is what /healthz shows of the cluster.
type Status struct {
	Hub       string        `json:"hub"`
	Ready     bool          `json:"ready"` // connected, stream made
	Owned     []int         `json:"owned"` // partitions this hub consumes
	Leases    Stats         `json:"leases"`
	Consumers ConsumerStats `json:"consumers"`
	View      PublishStats  `json:"view"`
}

// Status reports this hub's part.
func (n *Node) Status() Status {
	st := Status{Hub: n.cfg.Leases.Hub, Owned: []int{}}
	l, c, p := n.leases.Load(), n.consumers.Load(), n.publisher.Load()
	if l == nil || c == nil || p == nil {
		return st
	}
	st.Ready, st.Owned, st.Leases, st.Consumers, st.View = true, l.Owned(), l.Stats(), c.Stats(), p.Stats()
	return st
}

// Owns reports whether this hub holds partition p's lease now, by its own
// clock (Leases.Owns); false before Run has connected.
func (n *Node) Owns(p int) bool {
	l := n.leases.Load()
	return l != nil && l.Owns(p)
}

// Changed tells the node that an agent it may own changed: its record
// goes to the other hubs at the next flush. Before Run has connected it
// does nothing (the first refresh sends every record).
func (n *Node) Changed(agent string) {
	if p := n.publisher.Load(); p != nil {
		p.Changed(agent)
	}
}

// NodeDeps are what a Node hands its work to. Apply applies each
// message of an owned partition, and each inventory and record of the
// others' (Message.Follow); Record is an agent's record as this hub holds
// it (fleet.Record, encoded), false when it has none; Agents lists the
// agents this hub knows; OnOwned (optional) hears the partitions this hub
// consumes whenever they change, once the consumers of those it gave up
// have stopped; Stored (optional) is ConsumersConfig.Stored.
type NodeDeps struct {
	Log     *slog.Logger
	Apply   Handler
	Record  func(agent string) ([]byte, bool)
	Agents  func() []string
	OnOwned func(owned []int)
	Stored  func(context.Context) error
}

// NewNode validates cfg; Run connects.
func NewNode(cfg NodeConfig, deps NodeDeps) (*Node, error) {
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	var errs []error
	for u := range strings.SplitSeq(cfg.NATSURL, ",") {
		if p, err := url.Parse(u); err != nil || p.Host == "" || (p.Scheme != "nats" && p.Scheme != "tls") {
			errs = append(errs, fmt.Errorf("cluster: nats_url %q is not like nats://host:4222", u))
		}
	}
	if cfg.NATSURL == "" {
		errs = append(errs, errors.New("cluster: nats_url is required"))
	}
	if _, err := cfg.Leases.withDefaults(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Retention < time.Minute {
		errs = append(errs, fmt.Errorf("cluster: retention %v is below a minute", cfg.Retention))
	}
	if deps.Log == nil || deps.Apply == nil || deps.Record == nil || deps.Agents == nil {
		errs = append(errs, errors.New("cluster: NewNode needs a log, a handler, records and agents"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, log: deps.Log.With("component", "cluster"), deps: deps}, nil
}

// Run connects to NATS (reconnecting for as long as ctx lasts), makes
// sure of the stream, and keeps leases and consumers until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	nc, err := nats.Connect(n.cfg.NATSURL, nats.Name("citywatch-hub "+n.cfg.Leases.Hub),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.log.Warn("NATS connection lost; reconnecting", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("NATS reconnected", "server", c.ConnectedUrlRedacted()) }))
	if err != nil {
		return fmt.Errorf("cluster: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	var stream, view jetstream.Stream
	var b backoff
	for {
		b.attempt()
		stream, err = bounded(ctx, func(ctx context.Context) (jetstream.Stream, error) {
			return EnsureStream(ctx, js, n.cfg.Leases.Partitions, n.cfg.Leases.Replicas, n.cfg.Retention)
		})
		if err == nil {
			view, err = bounded(ctx, func(ctx context.Context) (jetstream.Stream, error) {
				return EnsureViewStream(ctx, js, n.cfg.Leases.Replicas, n.cfg.Retention)
			})
		}
		if err == nil {
			break
		}
		n.log.Warn("agents' or view stream not ready; trying again", "err", err)
		if !b.wait(ctx) {
			return nil
		}
	}
	var cons *Consumers
	leases, err := New(n.cfg.Leases, Deps{JetStream: js, Log: n.log, OnOwned: func(owned []int) {
		cons.Own(ctx, owned)
		if n.deps.OnOwned != nil {
			n.deps.OnOwned(owned)
		}
	}})
	if err != nil {
		return err
	}
	pub := newRecordPublisher(js, leases, n.cfg.Leases.Partitions, n.log, n.deps.Record, n.deps.Agents)
	if cons, err = NewConsumers(ConsumersConfig{Stream: stream, Owner: leases, Handle: n.deps.Apply, Log: n.log,
		Follow: n.cfg.Leases.Partitions, View: view, Publisher: pub, Stored: n.deps.Stored}); err != nil {
		return err
	}
	n.leases.Store(leases)
	n.consumers.Store(cons)
	n.publisher.Store(pub)
	defer cons.Wait()
	pctx, stop := context.WithCancel(ctx)
	var flushing sync.WaitGroup
	flushing.Go(func() { pub.Run(pctx) })
	defer flushing.Wait()
	defer stop()
	return leases.Run(ctx)
}
