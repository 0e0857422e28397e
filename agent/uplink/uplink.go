// Package uplink is the agent's MQTT client. It announces the agent with a
// retained birth message and leaves a Last Will that overwrites it when the
// connection dies; publishes the retained device inventory on every
// connect; and streams health reports, events, live video signalling and
// snapshots with a per-agent sequence number. Callers never wait for the
// network, and every message that cannot be kept is counted. Commands from
// the hub arrive on the agent's command topic and are handed to registered
// handlers one at a time. Over TLS the client verifies the broker against
// the configured roots and may present a client certificate; a broker that
// refuses the agent's credentials is logged as such (the agent needs
// enrolling), not retried in silence.
//
// Store and forward. A report is stamped (boot, seq, ts) and encoded when
// it is made, so its header says when it happened whenever it is sent.
// While connected it goes into a bounded memory queue, the fresh lane,
// which one sender drains in order without waiting for each
// acknowledgement in turn. While disconnected, and for what overflows the
// fresh lane, reports go to the backlog: a bounded on-disk spool (see
// spool) that keeps them in seq order and, when its quota is reached,
// drops the oldest health report first and events last, as the queue
// does. After a reconnect the fresh lane goes first, so the hub sees the
// present at once; the backlog follows oldest first whenever the fresh
// lane is empty, at a bounded rate (Config.ResendRate) so that a fleet
// reconnecting after a broker restart does not bury the hub. The hub
// therefore receives late messages, with a seq below the highest it has
// seen and a ts in the past, and accepts them by a window of seen seqs.
// Live video signalling is never spooled: its session dies with the
// connection, so a live message made while disconnected, or left over from
// an earlier connection, is dropped and counted; a snapshot older than a
// minute is too late for whoever asked and is dropped likewise. A
// message whose publish fails while its connection stays up (paho gives
// up on a writer too busy to take it) goes again, in the backlog or at
// the front of the fresh lane, and is dropped after maxFailures tries.
// Every health report says what was dropped since the process started
// (wire.Dropped). The spool does not outlive the process: its messages
// carry their boot, and once the restarted agent has spoken the hub
// treats an older boot as a replay; so each run starts by discarding (and
// counting) what an earlier run left.
package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
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
	// DefaultResendRate paces the backlog after a reconnect: an hour's
	// outage of a 2,000-device agent (720 health messages) drains in
	// seconds, while a hundred agents reconnecting at once add at most
	// 10,000 messages a second, about what one hub ingests.
	DefaultResendRate = 100
	// snapshotMaxAge is how long a snapshot may wait: whoever asked for
	// it has given up by then.
	snapshotMaxAge = time.Minute
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
	// BrokerURL is the broker, or several of one cluster separated by
	// commas (NATS's MQTT listeners): the agent connects to the first
	// that answers and, when that connection is lost, to the next.
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

	// SpoolDir holds the backlog on disk, in SpoolDir/<Agent>; each run
	// works in a subdirectory of its own there and discards what earlier
	// runs left, so agents may share SpoolDir.
	// SpoolBytes is its quota; 0 disables the spool, and messages that
	// cannot be sent wait in the memory queue only.
	SpoolDir   string
	SpoolBytes int64
	// ResendRate bounds the backlog sent after a reconnect, in messages
	// per second; default DefaultResendRate.
	ResendRate float64

	// Commands maps command types to handlers; other types are counted
	// and logged as unsupported.
	Commands map[string]CommandHandler
	Logger   *slog.Logger

	// For tests: the clock, the spool's segment files and their size.
	now           func() time.Time
	createSegment func(path string) (spoolFile, error)
	segmentSize   int64
}

// Stats are the uplink's counters.
type Stats struct {
	Published uint64 // messages the broker acknowledged
	// Failed counts unencodable messages and failed publishes the client
	// does not send again: those of a lost connection (paho resends them
	// after the reconnect), live messages, and reports' messages given up
	// after maxFailures tries (counted as dropped too).
	Failed uint64
	// Retried counts failed publishes sent again: reports' messages put
	// back after failing on a connection that stayed up, births and
	// inventories.
	Retried       uint64
	DroppedHealth uint64 // health reports dropped: queue or spool full, spool damaged
	// DroppedEvents counts events, live and snapshot messages dropped:
	// queue or spool full, spool damaged, or stale (the two below).
	DroppedEvents    uint64
	DroppedLive      uint64 // among DroppedEvents: live messages of a lost connection
	DroppedSnapshots uint64 // among DroppedEvents: snapshots older than a minute, or dropped for room
	Queued           int    // reports waiting in memory

	// The spool (the backlog on disk).
	Spooled      uint64 // reports written to it
	SpoolQueued  int    // reports waiting in it
	SpoolBytes   int64  // bytes they take
	Resent       uint64 // spooled messages the broker acknowledged
	SpoolCorrupt uint64 // records lost to a bad length or checksum
	SpoolErrors  uint64 // disk errors; the report waited in memory instead
	SpoolStale   uint64 // reports an earlier run left, discarded at start

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

	// lane is held from stamping a report to placing it in the fresh lane
	// or the backlog, so each lane is in seq order; it guards spool.
	lane     sync.Mutex
	spool    *spool // nil while disabled, unavailable or closed
	spoolC   spoolCounters
	spoolLog every // rate-limits logs of spool errors

	// Sender state, used by the Run goroutine only: the fresh item in
	// progress (the rest of a health report, or one the connection
	// dropped under), how far into the backlog's first item the sender
	// got, and the pacing of the backlog.
	pending *item
	partial struct {
		first uint64
		done  int
	}
	resend      bucket
	backlogWait time.Duration

	// epoch counts reconnect attempts: a live message made in an older
	// epoch belongs to a dead session.
	epoch atomic.Uint32

	seq       atomic.Uint64
	published atomic.Uint64
	failed    atomic.Uint64
	retried   atomic.Uint64
	dropH     atomic.Uint64
	dropE     atomic.Uint64
	dropLive  atomic.Uint64
	dropSnap  atomic.Uint64
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
	if cfg.SpoolBytes > 0 && cfg.SpoolDir == "" {
		return nil, errors.New("uplink: a spool needs a directory")
	}
	if cfg.ResendRate <= 0 {
		cfg.ResendRate = DefaultResendRate
	}
	if cfg.now == nil {
		cfg.now = time.Now
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
		connLog:  every{period: time.Minute},
		authLog:  every{period: time.Minute},
		spoolLog: every{period: 10 * time.Second},
		resend:   bucket{rate: cfg.ResendRate},
	}
	c.store.changed = c.queue.signal
	var brokers []*url.URL
	for raw := range strings.SplitSeq(cfg.BrokerURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, errors.New("uplink: broker URL is not valid") // the error would quote credentials
		}
		brokers = append(brokers, u)
	}
	var err error
	if c.tls, err = clientTLS(brokers[0], cfg.TLS); err != nil {
		return nil, err
	}
	opts, err := c.options(brokers)
	if err != nil {
		return nil, err
	}
	c.mqtt = paho.NewClient(opts)
	return c, nil
}

// PublishHealth stamps and queues a health report of devices. It never
// waits for the network (while disconnected it writes to the spool). A
// report too large for one message goes out as several consecutive ones.
func (c *Client) PublishHealth(devices []wire.DeviceHealth) {
	c.lane.Lock()
	defer c.lane.Unlock()
	now := c.cfg.now()
	dropped := c.dropped()
	it := item{kind: kindHealth, made: now}
	for _, devs := range splitHealth(devices) {
		h := wire.Health{Header: c.header(now), Interval: c.cfg.Interval.Seconds(), Devices: devs, Dropped: dropped}
		if data, ok := c.encode(c.topics.health, &h); ok {
			it.parts = append(it.parts, part{seq: h.Seq, data: data})
		}
	}
	c.enqueueLocked(it)
}

// PublishEvent stamps and queues an event. It never waits for the
// network.
func (c *Client) PublishEvent(e wire.Event) {
	c.lane.Lock()
	defer c.lane.Unlock()
	e.Header = c.header(c.cfg.now())
	c.enqueueMessage(kindEvent, e.Header, &e)
}

// PublishLive queues a live video signalling message for the live
// channel. It never waits for the network; a message that cannot go out on the current
// connection is dropped, since its session ends with the connection.
func (c *Client) PublishLive(l wire.Live) {
	c.lane.Lock()
	defer c.lane.Unlock()
	l.Header = c.header(c.cfg.now())
	c.enqueueMessage(kindLive, l.Header, &l)
}

// PublishSnapshot queues a camera's picture (or why there is none) for the
// snapshot channel. It never waits for the network; a snapshot that has waited a minute
// is dropped.
func (c *Client) PublishSnapshot(s wire.Snapshot) {
	c.lane.Lock()
	defer c.lane.Unlock()
	s.Header = c.header(c.cfg.now())
	c.enqueueMessage(kindSnapshot, s.Header, &s)
}

// enqueueMessage encodes a stamped message and queues it; c.lane is held.
func (c *Client) enqueueMessage(k kind, h wire.Header, msg any) {
	data, ok := c.encode(c.topicOf(k), msg)
	if !ok {
		return
	}
	c.enqueueLocked(item{kind: k, made: h.TS, epoch: c.epoch.Load(), parts: []part{{seq: h.Seq, data: data}}})
}

// enqueueLocked puts a stamped report in the fresh lane or, while
// disconnected, the backlog (after what the fresh lane still holds, which
// is older); c.lane is held. Without a working spool everything waits in
// memory, as the queue's policy allows.
func (c *Client) enqueueLocked(it item) {
	if len(it.parts) == 0 {
		return
	}
	open := c.mqtt.IsConnectionOpen()
	if it.kind == kindLive && !open {
		c.lost(it.kind, 1, "made while disconnected")
		return
	}
	trySpool := c.spool != nil
	if trySpool && !open {
		if c.spillLocked() && c.spoolLocked(it) {
			return
		}
		trySpool = false // the disk failed just now
	}
	if out, full := c.queue.push(it); full {
		if trySpool && out.kind.spooled() && c.spoolLocked(out) {
			return
		}
		c.lost(out.kind, 1, "queue full")
	}
}

// spoolLocked appends it to the backlog; false (logged) on a disk error.
// c.lane is held.
func (c *Client) spoolLocked(it item) bool {
	if err := c.spool.push(it); err != nil {
		if ok, n := c.spoolLog.allow(); ok {
			c.log.Error("spool write failed; reports wait in memory", "err", err, "suppressed", n)
		}
		return false
	}
	c.queue.signal()
	return true
}

// spillLocked moves the fresh lane into the backlog, oldest first, once
// the connection is gone: what waits there is older than anything made
// from now on. Live messages are dropped instead. It stops at a disk
// error, leaving the rest in memory. c.lane is held.
func (c *Client) spillLocked() bool {
	for {
		it, ok := c.queue.pop()
		if !ok {
			return true
		}
		if !it.kind.spooled() {
			c.lost(it.kind, 1, "its connection was lost")
			continue
		}
		if !c.spoolLocked(it) {
			c.queue.pushFront(it)
			return false
		}
	}
}

// putBack returns a report's message whose publish failed on a live
// connection to the backlog, as spillLocked does with the fresh lane:
// there it waits its turn at the backlog's pace, behind the spool's
// newer records, which are late too. Without a spool (or on a disk
// error) it goes to the front of the fresh lane, ahead of the newer
// items there.
//
// paho keeps its own copy in the store, its message ID claimed, for a
// reconnect. That copy is left there: a reconnect resends it, the hub
// drops the second arrival as a replay, and the acknowledgement frees
// the ID. Deleting it would keep the ID claimed until Disconnect.
func (c *Client) putBack(it item) {
	c.lane.Lock()
	defer c.lane.Unlock()
	if c.spool != nil && c.spoolLocked(it) {
		return
	}
	c.queue.pushFront(it)
	c.queue.signal()
}

// lost counts n reports of kind k that will never be sent, and logs it
// (rate-limited).
func (c *Client) lost(k kind, n uint64, why string) {
	if n == 0 {
		return
	}
	switch k {
	case kindHealth:
		c.dropH.Add(n)
	case kindLive:
		c.dropLive.Add(n)
		c.dropE.Add(n)
	case kindSnapshot:
		c.dropSnap.Add(n)
		c.dropE.Add(n)
	default:
		c.dropE.Add(n)
	}
	if ok, sup := c.failLog.allow(); ok {
		c.log.Warn("dropped a "+k.String(), "count", n, "why", why, "suppressed", sup)
	}
}

// dropped is what a health report says was dropped since the start; nil
// when nothing was.
func (c *Client) dropped() *wire.Dropped {
	h, e := c.dropH.Load(), c.dropE.Load()
	if h == 0 && e == 0 {
		return nil
	}
	return &wire.Dropped{Health: h, Events: e}
}

func (c *Client) topicOf(k kind) string {
	switch k {
	case kindHealth:
		return c.topics.health
	case kindLive:
		return c.topics.live
	case kindSnapshot:
		return c.topics.snapshot
	}
	return c.topics.events
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
	c.mu.Lock()
	conns := c.conns
	c.mu.Unlock()
	var spooled int
	var spoolBytes int64
	c.lane.Lock()
	if c.spool != nil {
		spooled, spoolBytes = c.spool.size()
	}
	c.lane.Unlock()
	return Stats{
		Published:        c.published.Load(),
		Failed:           c.failed.Load(),
		Retried:          c.retried.Load(),
		DroppedHealth:    c.dropH.Load(),
		DroppedEvents:    c.dropE.Load(),
		DroppedLive:      c.dropLive.Load(),
		DroppedSnapshots: c.dropSnap.Load(),
		Queued:           c.queue.len(),
		Spooled:          c.spoolC.spooled.Load(),
		SpoolQueued:      spooled,
		SpoolBytes:       spoolBytes,
		Resent:           c.spoolC.resent.Load(),
		SpoolCorrupt:     c.spoolC.corrupt.Load(),
		SpoolErrors:      c.spoolC.errors.Load(),
		SpoolStale:       c.spoolC.stale.Load(),
		Connected:        c.mqtt.IsConnectionOpen(),
		Conn:             conns,
		Seq:              c.seq.Load(),
		Commands:         c.commands.Load(),
		BadCommands:      c.badCmds.Load(),
		ConnectFailed:    c.connFails.Load(),
		Refused:          c.refused.Load(),
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
