package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
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
// partitions and the followers of the others (the read view), which hand
// each message to Apply.
type Node struct {
	cfg  NodeConfig
	log  *slog.Logger
	deps NodeDeps

	// Set by Run once connected, for Status.
	leases    atomic.Pointer[Leases]
	consumers atomic.Pointer[Consumers]
}

// Status is what /healthz shows of the cluster.
type Status struct {
	Hub       string        `json:"hub"`
	Ready     bool          `json:"ready"` // connected, stream made
	Owned     []int         `json:"owned"` // partitions this hub consumes
	Leases    Stats         `json:"leases"`
	Consumers ConsumerStats `json:"consumers"`
}

// Status reports this hub's part.
func (n *Node) Status() Status {
	st := Status{Hub: n.cfg.Leases.Hub, Owned: []int{}}
	l, c := n.leases.Load(), n.consumers.Load()
	if l == nil || c == nil {
		return st
	}
	st.Ready, st.Owned, st.Leases, st.Consumers = true, l.Owned(), l.Stats(), c.Stats()
	return st
}

// NodeDeps are what a Node hands its work to. Apply applies each
// message of an owned partition; OnOwned (optional) hears the partitions
// this hub consumes whenever they change, once the consumers of those it
// gave up have stopped.
type NodeDeps struct {
	Log     *slog.Logger
	Apply   Handler
	OnOwned func(owned []int)
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
	if deps.Log == nil || deps.Apply == nil {
		errs = append(errs, errors.New("cluster: NewNode needs a log and a handler"))
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
	var stream jetstream.Stream
	var b backoff
	for {
		b.attempt()
		stream, err = bounded(ctx, func(ctx context.Context) (jetstream.Stream, error) {
			return EnsureStream(ctx, js, n.cfg.Leases.Partitions, n.cfg.Leases.Replicas, n.cfg.Retention)
		})
		if err == nil {
			break
		}
		n.log.Warn("agents' stream not ready; trying again", "err", err)
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
	if cons, err = NewConsumers(stream, leases, n.deps.Apply, n.log, n.cfg.Leases.Partitions); err != nil {
		return err
	}
	n.leases.Store(leases)
	n.consumers.Store(cons)
	defer cons.Wait()
	return leases.Run(ctx)
}
