// Package ingest is the hub's MQTT subscriber: it receives every agent
// message from the broker (Mosquitto, EMQX or the embedded one) over a
// persistent QoS 1 session, validates it with wire.Decode, hands it to the
// fleet and passes the resulting samples on to the metric store. paho's
// handler only enqueues, so a slow consumer never stalls the MQTT client:
// messages go to a bounded queue per worker shard chosen by the agent id in
// the topic, which keeps each agent's messages in order while agents are
// processed in parallel. A full shard rejects with reason "overload". Every
// reject is counted by reason and logged, clipped, at most 10 times per
// reason a minute, then summarised. Messages on the commands channel (ours or
// another hub's) are counted as received and otherwise ignored. Accepted
// live video signalling goes on to the LiveHandler.
//
// The hub's own commands to agents (SendCommand) leave through the same
// MQTT client, from a bounded queue, so a caller never waits for the
// broker; so do the empty retained messages that clear a revoked agent's
// birth and inventory from the broker (ClearRetained). An empty payload on
// the state or inventory channel is such a clearing, not a bad message.
// Messages from an agent whose credential was revoked are refused with
// reason "revoked": a broker that cannot cut a client off at once (an
// external Mosquitto with a password file) keeps delivering until the
// agent reconnects.
//
// Delivery is at most once past the handler: paho acknowledges a message
// when the handler returns, i.e. once it is queued, so messages still queued
// when the process dies are lost. On Run's normal return the queues are
// drained first.
package ingest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// Config is what ingest needs to reach the broker.
type Config struct {
	BrokerURL string // tcp://, mqtt://, ssl://, tls://, mqtts://, ws:// or wss://
	// ClientID must be stable across restarts: the broker keeps the
	// persistent session, and the messages published meanwhile, under it.
	ClientID string
	Username string
	Password string
	Workers  int // shards; 0 = 2×GOMAXPROCS
	QueueLen int // messages per shard before "overload" rejects; 0 = 1024
	// TLS is used with ssl://, tls:// and mqtts:// URLs: the CA to trust
	// and the hub's client certificate. Nil: the system's roots.
	TLS *tls.Config
	// FromStream: the agents' messages come from the cluster's stream,
	// through Apply, and the MQTT connection (to NATS's MQTT listener)
	// only sends commands: a subscription would see every agent of the
	// city, most of them another hub's.
	FromStream bool
}

// LogValue keeps the password and any credentials in the URL out of logs.
func (c Config) LogValue() slog.Value {
	pw := ""
	if c.Password != "" {
		pw = "***"
	}
	return slog.GroupValue(
		slog.String("broker_url", redactURL(c.BrokerURL)),
		slog.String("client_id", c.ClientID),
		slog.String("username", c.Username),
		slog.String("password", pw),
		slog.Int("workers", c.Workers),
		slog.Int("queue_len", c.QueueLen),
	)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Applier judges and applies a decoded message; *fleet.Registry is one.
type Applier interface {
	Apply(m wire.Message, retained bool) ([]fleet.Sample, error)
}

// RecordApplier applies another hub's record of an agent it owns
// (fleet.Registry.ApplyRecord).
type RecordApplier interface {
	ApplyRecord(rec *fleet.Record) error
}

// SampleWriter takes accepted health samples; it must not block.
type SampleWriter interface {
	WriteSamples([]fleet.Sample)
}

// LiveHandler takes the agents' live video signalling once the fleet has
// accepted it (hub/live's relay is one). HandleLive runs on an ingest
// worker and must not block.
type LiveHandler interface {
	HandleLive(wire.Live)
}

// SnapshotHandler takes the cameras' pictures agents send on request
// (hub/workorder's Manager).
type SnapshotHandler interface {
	HandleSnapshot(agent string, s wire.Snapshot)
}

// Deps are the components ingest talks to.
type Deps struct {
	Log   *slog.Logger // nil: discard
	Fleet Applier      // required
	// Records applies the other hubs' records; required with FromStream.
	Records RecordApplier
	Samples SampleWriter      // required
	Metrics *metrics.Registry // required
	Live    LiveHandler       // nil: live signalling is accepted and dropped
	// Snapshots takes cameras' pictures; nil: they are accepted and dropped.
	Snapshots SnapshotHandler
	Now       func() time.Time // nil: time.Now
	// Revoked reports whether an agent's credential was revoked; nil: none
	// is. Called for every message, so it must be cheap.
	Revoked func(agent string) bool
}

// Commands waiting to be published; beyond this SendCommand fails. Live
// video sends a few per stream, so this is a burst of a hundred streams.
const commandQueueLen = 256

// commandTimeout bounds the wait for the broker's acknowledgement of one
// command.
const commandTimeout = 10 * time.Second

// Ingest receives agent messages from the broker.
type Ingest struct {
	cfg     Config
	log     *slog.Logger
	fleet   Applier
	records RecordApplier
	samples SampleWriter
	live    LiveHandler
	snaps   SnapshotHandler
	now     func() time.Time
	revoked func(string) bool

	seed   maphash.Seed
	shards []chan delivery
	// overloadWait is how long handle waits for room in a full shard
	// (the constant; tests shorten it).
	overloadWait time.Duration
	backpressure *metrics.Counter

	received  map[string]*metrics.Counter // by channel label; read-only after New
	rejects   map[wire.RejectReason]*metrics.Counter
	connected *metrics.Gauge
	up        atomic.Bool
	rejectLog *rejectLog
	running   atomic.Bool

	connectFailures atomic.Int64 // in a row, for log rate limiting
	// stopping is closed when Run's context ends, so waits on paho's
	// goroutines (the subscribe retry) end with it.
	stopping chan struct{}

	commands chan command
	cleared  *metrics.Counter
	// asked is when each agent was last asked for each kind of thing, so
	// a chatty agent the hub does not know is asked once per askEvery.
	askedMu      sync.Mutex
	asked        map[string]time.Time
	asks         *metrics.Vec[metrics.Counter]
	parkMu       sync.Mutex
	parked       map[string]*parked
	parkedBytes  int // payload held in parked; parkMu
	parkLimit    int // parkBytes (tests lower it)
	parkedN      *metrics.Counter
	commandsSent *metrics.Counter
	commandsLost *metrics.Counter
}

// command is one encoded command on its way to the broker.
type command struct {
	topic   string
	payload []byte
	retain  bool
}

// delivery is one message as paho handed it over. paho allocates every
// payload afresh and never reuses it, so it is kept without a copy.
type delivery struct {
	topic    string
	payload  []byte
	retained bool
	replayed bool // taken out of the parking: refused for good if it fails again
	// follow: an agent another hub of the cluster follows (Apply): this
	// hub keeps its state for its read view and does nothing else.
	follow bool
	// signal: live signalling a hub of a cluster took from the broker,
	// for its own viewers' sessions; the agent's owner applies the copy
	// in the stream to the fleet.
	signal bool
}

// channelOther labels received messages whose topic is outside the
// contract, so attacker-chosen topics cannot create metric series.
const channelOther = "other"

// channelRecord labels the other hubs' records of their agents, which a
// hub of a cluster follows in place of the agents' messages.
const channelRecord = "record"

var channels = []wire.Channel{wire.ChannelState, wire.ChannelInventory, wire.ChannelHealth, wire.ChannelEvents, wire.ChannelCommands, wire.ChannelLive, wire.ChannelSnapshot}

// New validates cfg and deps and registers the metrics; it starts nothing.
func New(cfg Config, deps Deps) (*Ingest, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(cfg.BrokerURL); err != nil || u.Host == "" {
		bad("broker URL %q is not like tcp://host:1883", redactURL(cfg.BrokerURL))
	} else if !slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme) {
		bad("broker URL scheme %q is not tcp, mqtt, ssl, tls, mqtts, ws or wss", u.Scheme)
	}
	if cfg.ClientID == "" {
		bad("client id is empty; a stable one keeps the broker session across restarts")
	}
	if cfg.Workers < 0 {
		bad("workers %d is negative", cfg.Workers)
	}
	if cfg.QueueLen < 0 {
		bad("queue length %d is negative", cfg.QueueLen)
	}
	if deps.Fleet == nil {
		bad("no fleet")
	}
	if cfg.FromStream && deps.Records == nil {
		bad("a hub of a cluster needs to apply the other hubs' records")
	}
	if deps.Samples == nil {
		bad("no sample writer")
	}
	if deps.Metrics == nil {
		bad("no metrics registry")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 1024
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	log := deps.Log.With("component", "ingest")
	in := &Ingest{
		stopping:     make(chan struct{}),
		cfg:          cfg,
		log:          log,
		fleet:        deps.Fleet,
		records:      deps.Records,
		samples:      deps.Samples,
		live:         deps.Live,
		snaps:        deps.Snapshots,
		now:          deps.Now,
		revoked:      deps.Revoked,
		seed:         maphash.MakeSeed(),
		overloadWait: overloadWait,
		parkLimit:    parkBytes,
		shards:       make([]chan delivery, cfg.Workers),
		received:     make(map[string]*metrics.Counter),
		rejects:      make(map[wire.RejectReason]*metrics.Counter),
		rejectLog:    newRejectLog(log),
		commands:     make(chan command, commandQueueLen),
		asked:        map[string]time.Time{},
		parked:       map[string]*parked{},
	}
	in.backpressure = deps.Metrics.Counter("citywatch_ingest_backpressure_total",
		"Messages that found their ingest shard full and waited for room (up to "+overloadWait.String()+", holding the broker back) instead of being refused at once.")
	in.parkedN = deps.Metrics.Counter("citywatch_ingest_parked_total",
		"Messages kept until their agent's inventory arrived (after a hub restart reports can outrun it); those never applied are counted as unknown_device rejects.")
	in.asks = deps.Metrics.CounterVec("citywatch_ingest_agent_requests_total",
		"Commands asking an agent for its usual messages: inventory (the hub heard from it without knowing its devices), report (a health report now, after the hub knew it only from its retained birth).", "command")
	for i := range in.shards {
		in.shards[i] = make(chan delivery, cfg.QueueLen)
	}

	m := deps.Metrics
	received := m.CounterVec("citywatch_mqtt_messages_total",
		"MQTT messages received from the broker by channel, before validation.", "channel")
	for _, ch := range channels {
		in.received[string(ch)] = received.With(string(ch))
	}
	in.received[channelOther] = received.With(channelOther)
	in.received[channelRecord] = received.With(channelRecord)
	rejects := m.CounterVec("citywatch_mqtt_rejects_total",
		"MQTT messages refused by reason; a rejected message changes nothing.", "reason")
	for _, r := range wire.RejectReasons {
		in.rejects[r] = rejects.With(string(r))
	}
	m.GaugeFunc("citywatch_ingest_queue_depth",
		"Messages waiting in the ingest shards.", func() float64 { return float64(in.queued()) })
	in.connected = m.Gauge("citywatch_mqtt_connected",
		"1 while the hub is connected and subscribed to the broker.")
	cmds := m.CounterVec("citywatch_mqtt_commands_total",
		"Commands the hub published to agents: sent (acknowledged by the broker) or failed.", "result")
	in.commandsSent, in.commandsLost = cmds.With("sent"), cmds.With("failed")
	in.cleared = m.Counter("citywatch_mqtt_retained_cleared_total",
		"Empty messages on agents' state or inventory topics: retained messages cleared (a revoked agent's).")
	return in, nil
}

// Connected reports whether the hub is connected to the broker and
// subscribed, i.e. whether silence from an agent means anything.
func (in *Ingest) Connected() bool { return in.up.Load() }

func (in *Ingest) setConnected(up bool) {
	in.up.Store(up)
	if up {
		in.connected.Set(1)
	} else {
		in.connected.Set(0)
	}
}

func (in *Ingest) queued() int {
	n := 0
	for _, q := range in.shards {
		n += len(q)
	}
	return n
}

// Run connects to the broker, retrying until it succeeds, and processes
// messages until ctx ends; then it disconnects and drains the queues. It
// may be called once.
func (in *Ingest) Run(ctx context.Context) error {
	if !in.running.CompareAndSwap(false, true) {
		return errors.New("ingest: Run called twice")
	}
	// Workers outlive ctx: they drain after the client has disconnected.
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, q := range in.shards {
		wg.Go(func() { in.work(q, done) })
	}
	wg.Go(func() { in.rejectLog.run(done) })

	client := mqtt.NewClient(in.clientOptions())
	// Commands queued until ctx ends still go out: a live_stop sent while
	// the hub shuts down must reach the agent.
	stopSending := make(chan struct{})
	var sender sync.WaitGroup
	sender.Go(func() { in.sendCommands(client, stopSending) })
	in.log.Info("connecting", "config", in.cfg)
	tok := client.Connect() // with ConnectRetry it completes once connected
	var err error
	select {
	case <-tok.Done():
		if err = tok.Error(); err == nil {
			<-ctx.Done()
		}
	case <-ctx.Done():
	}
	close(in.stopping)
	close(stopSending)
	sender.Wait()
	client.Disconnect(250)
	in.setConnected(false)
	close(done)
	wg.Wait()
	in.rejectLog.flush() // the drain may have rejected more
	if err != nil {
		return fmt.Errorf("ingest: connect to %s: %w", redactURL(in.cfg.BrokerURL), err)
	}
	return nil
}

func (in *Ingest) clientOptions() *mqtt.ClientOptions {
	opts := in.baseOptions()
	if in.cfg.TLS != nil {
		opts.SetTLSConfig(in.cfg.TLS)
	}
	return opts
}

func (in *Ingest) baseOptions() *mqtt.ClientOptions {
	return mqtt.NewClientOptions().
		AddBroker(in.cfg.BrokerURL).
		SetClientID(in.cfg.ClientID).
		SetUsername(in.cfg.Username).
		SetPassword(in.cfg.Password).
		SetProtocolVersion(4). // MQTT 3.1.1: Mosquitto and EMQX speak it; no 3.1 fallback
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetKeepAlive(30 * time.Second).
		// Messages the broker kept for our session arrive before the
		// subscription is renewed, when paho has no route yet: the default
		// handler takes them, and all others, since we subscribe with none.
		SetDefaultPublishHandler(in.handle).
		SetOnConnectHandler(in.subscribe).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			in.setConnected(false)
			in.log.Warn("connection to the broker lost; reconnecting", "err", err)
		}).
		// Without this a wrong password or an unreachable broker retries
		// in silence.
		SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
			if f, ok := n.(mqtt.ConnectionNotificationFailed); ok {
				// Attempts 1, 2, 4, 8…: loud at first, quiet in a long outage.
				if k := in.connectFailures.Add(1); k&(k-1) == 0 {
					in.log.Warn("cannot connect to the broker; retrying", "broker", redactURL(in.cfg.BrokerURL), "attempts", k, "err", f.Reason)
				}
			}
		})
}

// subscribe renews the subscription on every connect, in case the broker
// lost the session. paho runs it on its own goroutine, so it may wait; it
// retries while the connection stays open, because a hub connected but not
// subscribed hears nothing and keeps the heartbeat backstop suspended.
//
// A hub of a cluster (FromStream) subscribes only to the agents' live
// video signalling and snapshots: any hub may start a camera's stream for
// its viewers, or ask for a picture for a crew, and the agent's answer
// must reach that hub, whichever owns the agent.
func (in *Ingest) subscribe(c mqtt.Client) {
	filters := []string{wire.HubSubscription}
	if in.cfg.FromStream {
		filters = clusterSubscriptions
	}
	for wait := time.Second; c.IsConnectionOpen(); wait = min(2*wait, 30*time.Second) {
		err := trySubscribe(c, filters)
		if err == nil {
			in.connectFailures.Store(0)
			in.setConnected(true)
			in.log.Info("connected and subscribed", "filters", filters, "from the cluster's stream", in.cfg.FromStream)
			return
		}
		in.log.Error("subscribe failed; retrying", "filters", filters, "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-in.stopping:
			return
		}
	}
}

// clusterSubscriptions are what a hub of a cluster takes from the broker:
// every agent's live signalling and snapshots.
var clusterSubscriptions = []string{wire.Prefix + "+/" + string(wire.ChannelLive), wire.Prefix + "+/" + string(wire.ChannelSnapshot)}

func trySubscribe(c mqtt.Client, filters []string) error {
	qos := make(map[string]byte, len(filters))
	for _, f := range filters {
		qos[f] = 1
	}
	tok := c.SubscribeMultiple(qos, nil)
	if !tok.WaitTimeout(30 * time.Second) {
		return errors.New("timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for _, f := range filters {
			if st.Result()[f] > 2 {
				return fmt.Errorf("the broker refused the subscription to %s", f)
			}
		}
	}
	return nil
}

// handle is paho's message handler. It must not block for long (paho
// delivers in order on one goroutine, and a stalled handler stalls the
// client until its keepalive fails), so it only counts and enqueues. A
// full shard is waited for up to overloadWait: while the handler waits,
// paho reads and acknowledges nothing more, so a burst (every device's
// first status when a city starts, a restarted hub's backlog) waits in
// the broker's queue for the hub's session instead of being refused. Only
// a shard that stays full, a worker stuck rather than busy, refuses.
func (in *Ingest) handle(_ mqtt.Client, m mqtt.Message) {
	topic := m.Topic()
	agent, ch := route(topic)
	in.received[ch].Inc()
	if ch == string(wire.ChannelCommands) {
		return
	}
	q := in.shards[maphash.String(in.seed, agent)%uint64(len(in.shards))]
	d := delivery{topic: topic, payload: m.Payload(), retained: m.Retained(), signal: in.cfg.FromStream}
	select {
	case q <- d:
		return
	default:
	}
	in.backpressure.Inc()
	t := time.NewTimer(in.overloadWait)
	defer t.Stop()
	select {
	case q <- d:
	case <-t.C:
		in.reject(agent, wire.RejectOverload, "ingest queue full for "+in.overloadWait.String())
	}
}

// overloadWait is how long handle waits for room in a full shard: far
// below the keepalive (30 s) and paho's ping timeout (10 s), so a hub
// that is merely behind stays connected, while a burst of any size
// drains at the workers' pace.
const overloadWait = 2 * time.Second

// Apply applies one message of the cluster's stream (Config.FromStream)
// before it returns, so that the stream's acknowledgement, which follows,
// means applied: a hub that dies leaves the rest to the next owner. It is
// called from one goroutine per partition; an agent's messages all come
// from its partition's, in order. retained marks an agent's last state or
// inventory replayed when a hub takes a partition over, as a broker's
// retained copy would be. follow marks an agent another hub owns: its
// state is kept for the read view, but no sample is written and the
// agent is asked nothing.
func (in *Ingest) Apply(topic string, payload []byte, retained, follow bool) {
	_, ch := route(topic)
	in.received[ch].Inc()
	if ch == string(wire.ChannelCommands) {
		return
	}
	in.process(delivery{topic: topic, payload: payload, retained: retained, follow: follow})
}

// ApplyRecord applies another hub's record of an agent it owns, for the
// read view (cluster.Message.Record). One that does not decode, or of an
// agent whose inventory has not come, is refused and counted as an
// agent's message would be.
func (in *Ingest) ApplyRecord(agent string, payload []byte) {
	in.received[channelRecord].Inc()
	rec, err := fleet.DecodeRecord(payload, in.now())
	if err == nil {
		err = in.records.ApplyRecord(rec)
	}
	if err != nil {
		in.reject(agent, wire.ReasonOf(err), err.Error())
	}
}

// route returns the agent segment of a topic and its channel label, without
// validating either: wire.Decode does that in the worker.
func route(topic string) (agent, channel string) {
	rest, ok := strings.CutPrefix(topic, wire.Prefix)
	if !ok {
		return "", channelOther
	}
	agent, last, _ := strings.Cut(rest, "/")
	for _, ch := range channels {
		if last == string(ch) {
			return agent, last
		}
	}
	return agent, channelOther
}

func (in *Ingest) work(q <-chan delivery, done <-chan struct{}) {
	for {
		select {
		case d := <-q:
			in.process(d)
		case <-done:
			for {
				select {
				case d := <-q:
					in.process(d)
				default:
					return
				}
			}
		}
	}
}

func (in *Ingest) process(d delivery) {
	agent, ch := route(d.topic)
	if in.revoked != nil && in.revoked(agent) {
		in.reject(agent, wire.RejectRevoked, "the agent's credential was revoked")
		return
	}
	if len(d.payload) == 0 && (ch == string(wire.ChannelState) || ch == string(wire.ChannelInventory)) {
		in.cleared.Inc()
		return
	}
	m, err := wire.Decode(d.topic, d.payload, in.now())
	if d.signal {
		switch {
		case err != nil:
			in.reject(agent, wire.ReasonOf(err), err.Error())
		case m.Live != nil && !d.retained && in.live != nil:
			in.live.HandleLive(*m.Live) // the relay matches it to a session of this agent, or ignores it
		case m.Snapshot != nil && !d.retained && in.snaps != nil:
			in.snaps.HandleSnapshot(agent, *m.Snapshot) // taken by the hub that asked
		}
		return
	}
	var samples []fleet.Sample
	if err == nil {
		samples, err = in.fleet.Apply(m, d.retained)
	}
	if err != nil {
		reason := wire.ReasonOf(err)
		if reason == wire.RejectUnknownDevice && !d.retained && !d.replayed {
			// Reports and events can outrun the retained inventory after
			// a hub restart: keep them until it lands rather than lose
			// them, and ask for it in case it never does.
			if !d.follow {
				in.ask(agent, wire.CommandInventory, "it spoke of devices the hub does not know")
			}
			if in.park(agent, d) {
				return
			}
		}
		in.reject(agent, reason, err.Error())
		return
	}
	if m.Inventory != nil {
		for _, p := range in.unpark(agent) {
			p.replayed = true
			in.process(p)
		}
	}
	if d.follow {
		return // the owner writes, asks and answers
	}
	if s := m.State; s != nil && d.retained && !s.Will && s.State == wire.AgentOnline {
		in.ask(agent, wire.CommandReport, "the hub knows it only from its retained birth")
	}
	if len(samples) > 0 {
		in.samples.WriteSamples(samples)
	}
	// Signalling is about a session now; a retained copy can only be stale.
	// A hub of a cluster takes it from the broker (signal), whichever hub
	// owns the agent.
	if m.Live != nil && !d.retained && in.live != nil && !in.cfg.FromStream {
		in.live.HandleLive(*m.Live)
	}
	if m.Snapshot != nil && !d.retained && in.snaps != nil && !in.cfg.FromStream {
		in.snaps.HandleSnapshot(agent, *m.Snapshot)
	}
}

// Parking: messages of an agent whose inventory has not arrived yet wait
// for it, at most maxParked per agent, parkAgents agents and parkBytes of
// payload in all; what does not fit, or waits longer than parkFor, is
// refused as unknown_device. An agent's start is one status event per
// device and a report in parts: maxParked holds that of an agent of a
// thousand devices twice over, so an inventory that is late (lost, or
// behind a congested link) costs nothing once it comes.
const (
	maxParked  = 2048
	parkAgents = 10_000
	parkBytes  = 64 << 20
	parkFor    = 30 * time.Second
)

type parked struct {
	since time.Time
	ds    []delivery
}

// park keeps d for when agent's inventory arrives, or says it cannot.
func (in *Ingest) park(agent string, d delivery) bool {
	now := in.now()
	in.parkMu.Lock()
	defer in.parkMu.Unlock()
	for a, q := range in.parked { // few, and only while inventories are missing
		if now.Sub(q.since) > parkFor {
			in.expire(a, q)
		}
	}
	p := in.parked[agent]
	if p == nil {
		if len(in.parked) >= parkAgents {
			return false
		}
		p = &parked{since: now}
		in.parked[agent] = p
	}
	if len(p.ds) >= maxParked || in.parkedBytes+len(d.payload) > in.parkLimit {
		return false
	}
	p.ds = append(p.ds, d)
	in.parkedBytes += len(d.payload)
	in.parkedN.Inc()
	return true
}

// expire refuses what waited too long; must hold parkMu.
func (in *Ingest) expire(agent string, p *parked) {
	delete(in.parked, agent)
	for _, d := range p.ds {
		in.parkedBytes -= len(d.payload)
		in.reject(agent, wire.RejectUnknownDevice, "no inventory arrived for it within "+parkFor.String())
	}
}

func (in *Ingest) unpark(agent string) []delivery {
	in.parkMu.Lock()
	defer in.parkMu.Unlock()
	p := in.parked[agent]
	if p == nil {
		return nil
	}
	delete(in.parked, agent)
	for _, d := range p.ds {
		in.parkedBytes -= len(d.payload)
	}
	return p.ds
}

// askEvery is how often at most an agent is asked the same thing.
const askEvery = 10 * time.Second

// ask sends agent a command that needs no answer but its usual messages:
// publish its inventory again (the hub heard from it without knowing the
// devices it speaks of, so no agent stays unknown until it happens to
// reconnect), or a health report now (after a hub restart, so devices are
// known at once rather than an interval later). At most every askEvery per
// agent and kind.
func (in *Ingest) ask(agent, kind, why string) {
	now := in.now()
	key := agent + "\x00" + kind
	in.askedMu.Lock()
	last, ok := in.asked[key]
	if ok && now.Sub(last) < askEvery {
		in.askedMu.Unlock()
		return
	}
	in.asked[key] = now
	in.askedMu.Unlock()
	if err := in.SendCommand(agent, wire.Command{Type: kind}); err != nil {
		in.log.Warn("could not send an agent a command", "agent", agent, "command", kind, "err", err)
		return
	}
	in.asks.With(kind).Inc()
	if kind == wire.CommandInventory {
		in.log.Info("asked an agent for its inventory: "+why, "agent", agent)
	}
}

// ErrNotConnected is returned by SendCommand while the hub cannot reach the
// broker.
var ErrNotConnected = errors.New("ingest: not connected to the MQTT broker")

// SendCommand publishes cmd to agent's commands topic with QoS 1, not
// retained. It fills in V, TS and, when empty, ID, checks the command as an
// agent will (wire.Decode), and queues it without waiting for the broker:
// an error means the command will not be sent; nil means it is on its way,
// and a failure after that is counted and logged.
func (in *Ingest) SendCommand(agent string, cmd wire.Command) error {
	now := in.now()
	cmd.V, cmd.TS = wire.Version, now.UTC()
	if cmd.ID == "" {
		cmd.ID = "cmd-" + rand.Text()[:16]
	}
	topic := wire.Topic(agent, wire.ChannelCommands)
	payload, err := json.Marshal(cmd)
	if err == nil {
		_, err = wire.Decode(topic, payload, now)
	}
	if err != nil {
		return fmt.Errorf("ingest: command %s to %s: %w", clip(cmd.Type), clip(agent), err)
	}
	if !in.Connected() {
		return ErrNotConnected
	}
	select {
	case in.commands <- command{topic: topic, payload: payload}:
		return nil
	default:
		return fmt.Errorf("ingest: command %s to %s: %d commands already waiting for the broker", cmd.Type, agent, commandQueueLen)
	}
}

// sendCommands publishes queued commands in order until stop is closed,
// then publishes what is still queued. It does not wait for each
// acknowledgement before the next command: after a hub restart one goes
// to every agent at once, and a round trip each would hold most of them
// back until the queue overflowed. confirm waits for the
// acknowledgements, in order, and tells which ones failed; at most
// commandQueueLen wait at a time.
func (in *Ingest) sendCommands(client mqtt.Client, stop <-chan struct{}) {
	sent := make(chan published, commandQueueLen)
	var confirmer sync.WaitGroup
	confirmer.Go(func() { in.confirm(sent) })
	defer confirmer.Wait()
	defer close(sent)
	for {
		select {
		case c := <-in.commands:
			sent <- in.publish(client, c)
		case <-stop:
			for {
				select {
				case c := <-in.commands:
					sent <- in.publish(client, c)
				default:
					return
				}
			}
		}
	}
}

// ClearRetained removes agent's retained birth and inventory from the
// broker, so nobody who subscribes later learns of a revoked agent: an
// empty retained message on each topic, queued like a command.
func (in *Ingest) ClearRetained(agent string) error {
	if err := wire.ValidID(agent); err != nil {
		return fmt.Errorf("ingest: clear retained: %w", err)
	}
	if !in.Connected() {
		return ErrNotConnected
	}
	for _, ch := range []wire.Channel{wire.ChannelState, wire.ChannelInventory} {
		select {
		case in.commands <- command{topic: wire.Topic(agent, ch), retain: true}:
		default:
			return fmt.Errorf("ingest: clear retained of %s: %d commands already waiting for the broker", agent, commandQueueLen)
		}
	}
	return nil
}

// published is a command handed to the MQTT client, waiting for the
// broker's acknowledgement until deadline.
type published struct {
	command
	tok      mqtt.Token
	deadline time.Time
}

func (in *Ingest) publish(client mqtt.Client, c command) published {
	return published{command: c, tok: client.Publish(c.topic, 1, c.retain, c.payload), deadline: time.Now().Add(commandTimeout)}
}

// acked waits for the acknowledgement until the deadline; one already
// received counts however late the wait begins.
func (p published) acked() bool {
	select {
	case <-p.tok.Done():
		return true
	default:
		return p.tok.WaitTimeout(time.Until(p.deadline))
	}
}

// confirm counts each published command as sent or failed, logging the
// failures, once the broker acknowledges it or commandTimeout after it
// was published.
func (in *Ingest) confirm(sent <-chan published) {
	for p := range sent {
		err := fmt.Errorf("no acknowledgement within %s", commandTimeout)
		if p.acked() {
			err = p.tok.Error()
		}
		if err != nil {
			in.commandsLost.Inc()
			in.log.Warn("command not delivered to the broker", "topic", p.topic, "err", err)
			continue
		}
		in.commandsSent.Inc()
	}
}

func (in *Ingest) reject(agent string, reason wire.RejectReason, msg string) {
	c, ok := in.rejects[reason]
	if !ok { // an Applier inventing reasons must not create series
		reason, c = wire.RejectInvalid, in.rejects[wire.RejectInvalid]
	}
	c.Inc()
	in.rejectLog.reject(agent, reason, msg)
}
