// Package uplink is the agent's MQTT client. It announces the agent with a
// retained birth message and leaves a Last Will that overwrites it when the
// connection dies; publishes the retained device inventory on every
// connect; and streams health reports, events and live video signalling
// with a per-agent sequence number. Callers never wait for the network:
// messages go into a bounded queue that one sender drains without waiting
// for each acknowledgement in turn, and every message that cannot be kept
// is counted. Commands from the hub arrive on the agent's command topic and
// are handed to registered handlers one at a time. Over TLS the client
// verifies the broker against the configured roots and may present a
// client certificate; a broker that refuses the agent's credentials is
// logged as such (the agent needs enrolling), not retried in silence.
package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

// Defaults for the zero values of Config.
const (
	DefaultQueueSize       = 4096
	DefaultHealthQueue     = 4
	DefaultShutdownTimeout = 5 * time.Second
	// maxInFlight bounds the publishes handed to paho but not yet
	// acknowledged; beyond it the sender stops and the queue absorbs.
	maxInFlight      = 256
	commandQueueSize = 16
)

// CommandHandler carries out one command. It runs on the uplink's command
// goroutine, so commands are handled one at a time, in order.
type CommandHandler func(ctx context.Context, cmd wire.Command)

// Config is what the uplink needs to know.
type Config struct {
	BrokerURL string
	Username  string
	Password  secret.String
	ClientID  string
	// TLS is used for ssl://, tls:// and mqtts:// URLs: roots, client
	// certificate, server name. nil means the system roots and the URL's
	// host; a plain URL must leave it nil. The client keeps a copy and
	// raises MinVersion to TLS 1.2.
	TLS *tls.Config

	Agent    string
	Site     string
	Version  string
	Interval time.Duration // health interval, announced in the birth message
	Boot     time.Time     // process start; identifies this run to the hub

	QueueSize       int           // queued messages; default DefaultQueueSize
	HealthQueue     int           // queued health reports; default DefaultHealthQueue
	ShutdownTimeout time.Duration // for the clean offline state; default DefaultShutdownTimeout

	// Commands maps command types to handlers; other types are counted
	// and logged as unsupported.
	Commands map[string]CommandHandler
	Logger   *slog.Logger
}

// Stats are the uplink's counters.
type Stats struct {
	Published     uint64 // messages the broker acknowledged
	Failed        uint64 // write errors; QoS 1 messages among them are resent after a reconnect
	DroppedHealth uint64 // health reports dropped from a full queue
	DroppedEvents uint64 // events and live messages dropped from a full queue
	Queued        int    // messages waiting to be sent
	Connected     bool
	Conn          uint32 // connections made so far
	Seq           uint64 // last sequence number used
	Commands      uint64 // commands carried out
	BadCommands   uint64 // invalid, unsupported or overflowing commands
	ConnectFailed uint64 // connection attempts that failed, refused ones included
	Refused       uint64 // attempts the broker refused for the agent's credentials
}

// Client is one agent's connection to the broker.
type Client struct {
	cfg    Config
	log    *slog.Logger
	tls    *tls.Config // nil for a plain broker URL
	mqtt   paho.Client
	queue  *queue
	topics topics
	store  *resumeStore

	seq       atomic.Uint64
	published atomic.Uint64
	failed    atomic.Uint64
	commands  atomic.Uint64
	badCmds   atomic.Uint64
	connFails atomic.Uint64
	refused   atomic.Uint64
	cmdQueue  chan wire.Command
	badLog    every // rate-limits logs of bad commands
	failLog   every // rate-limits logs of failed publishes and drops
	connLog   every // rate-limits logs of failed connection attempts
	authLog   every // rate-limits logs of refused credentials
	// publishing is held by the sender from its readiness check to the
	// end of paho's Publish, which can block until a new connection picks
	// the message up; see onReconnecting.
	publishing sync.Mutex

	mu        sync.Mutex // guards the fields below
	conns     uint32     // connections made so far
	needBirth bool       // the current connection has no birth message yet
	ready     bool       // birth sent on the current connection
	inventory *wire.Inventory
	invDirty  bool
	netConn   *dropConn // the current connection, for DropConnection
	// Birth messages wait until paho has resumed the stored messages:
	// for the first connection until the Connect token completes, for
	// later ones until the store was listed after listingsBefore and the
	// resent messages are acknowledged (see resumeStore).
	connectTok     paho.Token
	listingsBefore uint64
}

type topics struct{ state, inventory, health, events, commands, live, snapshot string }

// New checks cfg and prepares the client; it connects nothing.
func New(cfg Config) (*Client, error) {
	if err := wire.ValidID(cfg.Agent); err != nil {
		return nil, fmt.Errorf("uplink: agent: %w", err)
	}
	if cfg.BrokerURL == "" || cfg.ClientID == "" {
		return nil, errors.New("uplink: broker URL and client id are required")
	}
	if cfg.Interval <= 0 {
		return nil, errors.New("uplink: health interval must be positive")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.HealthQueue <= 0 {
		cfg.HealthQueue = DefaultHealthQueue
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "uplink"),
		queue: newQueue(cfg.QueueSize, cfg.HealthQueue),
		topics: topics{
			state:     wire.Topic(cfg.Agent, wire.ChannelState),
			inventory: wire.Topic(cfg.Agent, wire.ChannelInventory),
			health:    wire.Topic(cfg.Agent, wire.ChannelHealth),
			events:    wire.Topic(cfg.Agent, wire.ChannelEvents),
			commands:  wire.Topic(cfg.Agent, wire.ChannelCommands),
			live:      wire.Topic(cfg.Agent, wire.ChannelLive),
			snapshot:  wire.Topic(cfg.Agent, wire.ChannelSnapshot),
		},
		cmdQueue: make(chan wire.Command, commandQueueSize),
		store:    newResumeStore(),
		badLog:   every{period: 10 * time.Second},
		failLog:  every{period: 10 * time.Second},
		// Reconnects back off to 30 s; a line a minute keeps a broker that
		// refuses the agent visible without flooding the log.
		connLog: every{period: time.Minute},
		authLog: every{period: time.Minute},
	}
	c.store.changed = c.queue.signal
	u, err := url.Parse(cfg.BrokerURL)
	if err != nil {
		return nil, errors.New("uplink: broker URL is not valid") // the error would quote credentials
	}
	if c.tls, err = clientTLS(u, cfg.TLS); err != nil {
		return nil, err
	}
	opts, err := c.options(u)
	if err != nil {
		return nil, err
	}
	c.mqtt = paho.NewClient(opts)
	return c, nil
}

// PublishHealth queues a health report of devices. It never blocks. A
// report too large for one message goes out as several consecutive ones.
func (c *Client) PublishHealth(devices []wire.DeviceHealth) {
	c.enqueue(item{ts: time.Now(), health: splitHealth(devices)})
}

// PublishEvent queues an event. It never blocks.
func (c *Client) PublishEvent(e wire.Event) {
	c.enqueue(item{ts: time.Now(), event: &e})
}

// PublishLive queues a live video signalling message for the live
// channel; the header is filled in at send time. It never blocks.
func (c *Client) PublishLive(l wire.Live) {
	c.enqueue(item{ts: time.Now(), live: &l})
}

// PublishSnapshot queues a camera's picture (or why there is none) for the
// snapshot channel; the header is filled in at send time. It never blocks.
func (c *Client) PublishSnapshot(s wire.Snapshot) {
	c.enqueue(item{ts: time.Now(), snapshot: &s})
}

func (c *Client) enqueue(it item) {
	d := c.queue.push(it)
	if d == nil {
		return
	}
	kind := "health report"
	switch {
	case d.event != nil:
		kind = "event"
	case d.live != nil:
		kind = "live message"
	case d.snapshot != nil:
		kind = "snapshot"
	}
	if ok, n := c.failLog.allow(); ok {
		c.log.Warn("uplink queue full: dropped the oldest "+kind, "suppressed", n)
	}
}

// SetInventory replaces the inventory (its header is the client's to
// fill); it is published (retained) at once if connected and after the
// birth message on every connect.
func (c *Client) SetInventory(inv wire.Inventory) {
	c.mu.Lock()
	c.inventory = &inv
	c.invDirty = true
	c.mu.Unlock()
	c.queue.signal()
}

// DropConnection closes the network connection abruptly, without an MQTT
// DISCONNECT, so the broker publishes the Last Will; the client then
// reconnects. The simulator uses it to fake a dead uplink.
func (c *Client) DropConnection() {
	c.mu.Lock()
	conn := c.netConn
	c.mu.Unlock()
	if conn != nil {
		conn.drop()
	}
}

// Stats returns the current counters.
func (c *Client) Stats() Stats {
	queued, dh, de := c.queue.counts()
	c.mu.Lock()
	conns := c.conns
	c.mu.Unlock()
	return Stats{
		Published:     c.published.Load(),
		Failed:        c.failed.Load(),
		DroppedHealth: dh,
		DroppedEvents: de,
		Queued:        queued,
		Connected:     c.mqtt.IsConnectionOpen(),
		Conn:          conns,
		Seq:           c.seq.Load(),
		Commands:      c.commands.Load(),
		BadCommands:   c.badCmds.Load(),
		ConnectFailed: c.connFails.Load(),
		Refused:       c.refused.Load(),
	}
}

// healthBudget is what the device lines of one health message may take:
// the hub's payload limit less room for the header and JSON framing.
const healthBudget = wire.MaxPayload - 1024

// splitHealth cuts a report into parts that each fit one message, by the
// encoded size of each device's line. 1,000 cameras with full metrics
// already come close to the limit.
func splitHealth(devices []wire.DeviceHealth) [][]wire.DeviceHealth {
	var parts [][]wire.DeviceHealth
	start, size := 0, 0
	for i := range devices {
		// An unencodable line is caught when the part is published.
		b, _ := json.Marshal(&devices[i])
		n := len(b) + 1 // and a comma
		if size+n > healthBudget && i > start {
			parts = append(parts, devices[start:i])
			start, size = i, 0
		}
		size += n
	}
	return append(parts, devices[start:])
}

// every lets one log line through per period and counts the others, so a
// flood of bad input cannot flood the log.
type every struct {
	period time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed
// since the last one.
func (e *every) allow() (bool, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if now.Before(e.next) {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.next, e.suppressed = now.Add(e.period), 0
	return true, n
}
