// Package broker runs an embedded MQTT broker (mochi-mqtt) so that the demo
// and small sites need no separate broker process. It supports what the
// citywatch protocol relies on — retained messages, QoS 1 and Last Will —
// and lets every client in: it has no authentication or ACLs. Production
// deployments use Mosquitto or EMQX with per-agent credentials and ACLs
// that confine each agent to its own topics.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/citywatch/citywatch/wire"
)

// DefaultAddr is the standard MQTT port on loopback: agents on the same
// machine reach it, nothing else does.
const DefaultAddr = "127.0.0.1:1883"

// Config says where the broker listens.
type Config struct {
	Addr string // host:port; "" means DefaultAddr
	// FallbackToFreePort listens on a free port of the same host when Addr
	// is taken (by a broker already running, typically), and logs which.
	FallbackToFreePort bool
}

// Broker is an embedded MQTT broker. Call Listen to bind and learn the
// address, then Run to serve.
type Broker struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener
}

// New validates cfg; it binds nothing.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("broker: addr: %w", err)
	}
	return &Broker{cfg: cfg, log: log.With("component", "broker")}, nil
}

// Listen binds the listening socket, so that Addr and URL are known before
// clients are started. Run serves it and closes it.
func (b *Broker) Listen() error {
	ln, err := net.Listen("tcp", b.cfg.Addr)
	if err != nil && b.cfg.FallbackToFreePort && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(b.cfg.Addr)
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err == nil {
			b.log.Warn("MQTT address taken; listening on a free port instead",
				"wanted", b.cfg.Addr, "addr", ln.Addr().String())
		}
	}
	if err != nil {
		return fmt.Errorf("broker: listen: %w", err)
	}
	b.ln = ln
	return nil
}

// Addr is the address listened on, host:port; valid after Listen.
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// URL is the broker URL for MQTT clients, tcp://host:port; valid after
// Listen.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Run serves until ctx ends, then disconnects every client and closes the
// listener. It calls Listen first if the caller has not.
func (b *Broker) Run(ctx context.Context) error {
	if b.ln == nil {
		if err := b.Listen(); err != nil {
			return err
		}
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities: capabilities(),
		// mochi logs every start, stop and client at info; only its
		// warnings and errors are worth an operator's attention.
		Logger: slog.New(minLevel{b.log.Handler(), slog.LevelWarn}),
	})
	err := errors.Join(
		srv.AddHook(new(auth.AllowHook), nil),
		srv.AddListener(listeners.NewNet("tcp", b.ln)),
	)
	if err == nil {
		err = srv.Serve()
	}
	if err != nil {
		b.ln.Close()
		return fmt.Errorf("broker: start: %w", err)
	}
	b.log.Info("embedded MQTT broker serving (no authentication: for the demo and small sites)", "url", b.URL())
	<-ctx.Done()
	return srv.Close()
}

func capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	// Above the largest valid payload plus topic and headers: an oversized
	// message then reaches the hub, which counts it as too_large, instead
	// of the broker silently disconnecting the agent.
	c.MaximumPacketSize = wire.MaxPayload + 64<<10
	// QoS 1 messages awaiting PUBACK per client. The hub's one session
	// receives every agent's traffic; the inflight store is a map, so the
	// protocol's maximum costs nothing until used.
	c.MaximumInflight = math.MaxUint16
	// Outbound queue per client, allocated up front at 8 bytes a slot
	// (64 KiB × 1,000 agents). It must hold the burst a (re)subscribing hub
	// receives: the retained birth and inventory of 1,000 agents.
	c.MaximumClientWritesPending = 8192
	return c
}

// minLevel passes records at or above min to the wrapped handler.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

// Handle drops mochi's message-less warnings: it logs every client
// connection that ends without DISCONNECT that way, which for agents behind
// flaky uplinks is routine and already visible to the hub as a Last Will.
func (h minLevel) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" && r.Level < slog.LevelError {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
