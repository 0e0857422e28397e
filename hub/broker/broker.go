// Package broker runs an embedded MQTT broker (mochi-mqtt) so that the demo
// and small sites need no separate broker process. It supports what the
// citywatch protocol relies on — retained messages, QoS 1 and Last Will —
// and admits only authenticated clients (anonymous ones only when a demo
// asks for them): each agent with its own credential, checked through
// [Clients], confined by an ACL to publishing on its own topics and reading
// its own commands; and the hub with a credential of its own. It serves
// plain MQTT, MQTT over TLS (optionally with client certificates whose
// common name must be the agent id), or both; bounds connected and
// half-open connections; disconnects clients that keep trying what the ACL
// refuses; and closes an agent's session at once when its credential is
// revoked ([Broker.Kick]). Larger deployments run Mosquitto or EMQX with the
// same "$7$" password hashes ([HashSecret]) and an equivalent ACL file.
package broker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// Limits applied when the Config leaves them zero.
const (
	// DefaultMaxClients is the number of connected clients beyond which
	// agents are refused: a city's agents and the hub's few connections.
	DefaultMaxClients = 20_000 + 16
	// DefaultMaxPending bounds, per listener, connections that have not yet
	// completed their CONNECT (TLS handshake included). Each costs the
	// broker about 70 KiB up front, so unbounded it is a cheap way to
	// exhaust memory; beyond it new connections are closed at once.
	DefaultMaxPending = 1024
	// DefaultConnectTimeout is how long a new connection has to complete
	// its TLS handshake and send CONNECT.
	DefaultConnectTimeout = 10 * time.Second
)

// maxDenials is how many refused publishes and subscriptions one
// connection may make before it is disconnected: a misconfigured agent
// shows up in the logs long before, and a hostile one cannot keep the
// broker busy refusing it.
const maxDenials = 100

// Clients checks agents' credentials; hub/identity implements it.
type Clients interface {
	// CheckAgent reports whether password is the current secret of the
	// agent whose MQTT username is username, and that agent's id.
	CheckAgent(username, password string) (agentID string, ok bool)
}

// Credential is a username and password. It never logs its password.
type Credential struct {
	Username string
	Password string
}

// LogValue shows the username only.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.Username) }

// Config says where the broker listens and whom it admits.
type Config struct {
	// Addr is the plain MQTT listener, host:port; "" means none. The hub's
	// own client needs a listener too: without Addr it connects to TLSAddr,
	// trusting the server certificate's CA and, when client certificates
	// are required, presenting one whose common name is Hub.Username. A
	// plain Addr on 127.0.0.1 beside a public TLSAddr is simpler.
	Addr string
	// TLSAddr is the MQTT-over-TLS listener, host:port; "" means none.
	TLSAddr string
	// TLS configures TLSAddr: a server certificate and, to accept client
	// certificates, ClientCAs with ClientAuth VerifyClientCertIfGiven or
	// RequireAndVerifyClientCert. A client certificate's common name must
	// equal the MQTT username.
	TLS *tls.Config
	// FallbackToFreePort listens on a free port of the same host when an
	// address is taken (by a broker already running, typically), and logs
	// which.
	FallbackToFreePort bool

	// Hub is the hub's own credential: it may subscribe to and publish on
	// every agent topic. The username must not be a possible agent id.
	Hub Credential
	// AllowAnonymous admits clients without a username, with access to
	// every topic: for demos only, never where agents are untrusted.
	AllowAnonymous bool

	MaxClients     int           // 0 = DefaultMaxClients; the hub is admitted beyond it
	MaxPending     int           // 0 = DefaultMaxPending
	ConnectTimeout time.Duration // 0 = DefaultConnectTimeout
}

// Deps are what the broker talks to.
type Deps struct {
	Log     *slog.Logger      // nil: discard
	Metrics *metrics.Registry // required
	Clients Clients           // required: agents' credentials
	Now     func() time.Time  // nil: time.Now; paces repeated log lines
}

// Broker is an embedded MQTT broker. Call Listen to bind and learn the
// addresses, then Run to serve.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	access *access
	ln     net.Listener // plain; nil when Addr is ""
	tlsLn  net.Listener // TLS; nil when TLSAddr is ""
	srv    atomic.Pointer[mqtt.Server]
}

// Stats are the broker's counters, for tests and diagnostics; /metrics
// shows the same.
type Stats struct {
	Refused map[string]uint64 // connections refused, by reason
	Denied  map[string]uint64 // ACL denials: "publish", "subscribe"
	Kicks   map[string]uint64 // sessions closed: "requested" (Kick), "denials"
	Clients int64             // connected now
}

// New validates cfg and deps and registers the broker's metrics; it binds
// nothing.
func New(cfg Config, deps Deps) (*Broker, error) {
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		cfg.TLS = cfg.TLS.Clone() // the caller keeps its own to change
		if cfg.TLS.MinVersion < tls.VersionTLS12 {
			cfg.TLS.MinVersion = tls.VersionTLS12
		}
	}
	var errs []error
	if deps.Metrics == nil {
		errs = append(errs, errors.New("broker: Deps.Metrics is required"))
	}
	if deps.Clients == nil {
		errs = append(errs, errors.New("broker: Deps.Clients is required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "broker")
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	b := &Broker{cfg: cfg, log: log}
	b.access = newAccess(cfg, deps.Clients, log, now, deps.Metrics)
	deps.Metrics.GaugeFunc("citywatch_broker_clients", "MQTT clients connected to the embedded broker.",
		func() float64 { return float64(b.clients()) })
	return b, nil
}

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("broker: "+format, args...)) }
	if c.Addr == "" && c.TLSAddr == "" {
		bad("no listener: set Addr, TLSAddr or both")
	}
	for _, a := range []struct{ name, addr string }{{"Addr", c.Addr}, {"TLSAddr", c.TLSAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			bad("%s: %v", a.name, err)
		}
	}
	switch {
	case c.TLSAddr != "" && c.TLS == nil:
		bad("TLSAddr is set without a TLS config")
	case c.TLSAddr == "" && c.TLS != nil:
		bad("a TLS config is set without TLSAddr")
	case c.TLS != nil:
		if len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
			bad("TLS: no server certificate")
		}
		switch c.TLS.ClientAuth {
		case tls.NoClientCert:
		case tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
			if c.TLS.ClientCAs == nil {
				bad("TLS: client certificates are verified but ClientCAs is not set")
			}
		default:
			// A certificate that is not verified proves nothing, yet its
			// common name would be taken as the agent's identity.
			bad("TLS: ClientAuth %v accepts client certificates without verifying them", c.TLS.ClientAuth)
		}
	}
	switch u := c.Hub.Username; {
	case u == "":
		bad("Hub.Username is required")
	case wire.ValidID(u) == nil:
		// An agent enrolled under that id would hold the hub's rights.
		bad("Hub.Username %q is a possible agent id; include a character agent ids cannot have, such as '@'", u)
	case strings.ContainsAny(u, ":+#/"):
		// Mosquitto's password file splits on ':', and its ACL patterns
		// refuse usernames with '+', '#' or '/': keep the same credential
		// usable there.
		bad("Hub.Username %q contains one of \":+#/\"", u)
	}
	if len(c.Hub.Password) < 16 {
		bad("Hub.Password must be at least 16 characters")
	}
	if c.MaxClients < 1 {
		bad("MaxClients %d must be positive", c.MaxClients)
	}
	if c.MaxPending < 1 {
		bad("MaxPending %d must be positive", c.MaxPending)
	}
	if c.ConnectTimeout < 0 {
		bad("ConnectTimeout %v must be positive", c.ConnectTimeout)
	}
	return errors.Join(errs...)
}

// Listen binds the listening sockets, so that the addresses and URLs are
// known before clients are started. Run serves them and closes them.
func (b *Broker) Listen() error {
	if b.cfg.Addr != "" {
		ln, err := b.listen(b.cfg.Addr)
		if err != nil {
			return err
		}
		b.ln = ln
	}
	if b.cfg.TLSAddr != "" {
		ln, err := b.listen(b.cfg.TLSAddr)
		if err != nil {
			if b.ln != nil {
				b.ln.Close()
				b.ln = nil
			}
			return err
		}
		b.tlsLn = ln
	}
	return nil
}

func (b *Broker) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil && b.cfg.FallbackToFreePort && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(addr)
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err == nil {
			b.log.Warn("MQTT address taken; listening on a free port instead",
				"wanted", addr, "addr", ln.Addr().String())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("broker: listen: %w", err)
	}
	return ln, nil
}

// Addr is the plain listener's address, host:port; valid after Listen,
// "" without a plain listener.
func (b *Broker) Addr() string { return lnAddr(b.ln) }

// URL is the plain listener's URL for MQTT clients, tcp://host:port; valid
// after Listen, "" without a plain listener.
func (b *Broker) URL() string { return lnURL("tcp://", b.ln) }

// TLSAddr is the TLS listener's address, host:port; valid after Listen,
// "" without a TLS listener.
func (b *Broker) TLSAddr() string { return lnAddr(b.tlsLn) }

// TLSURL is the TLS listener's URL for MQTT clients, ssl://host:port;
// valid after Listen, "" without a TLS listener.
func (b *Broker) TLSURL() string { return lnURL("ssl://", b.tlsLn) }

func lnAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func lnURL(scheme string, ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return scheme + ln.Addr().String()
}

// Run serves until ctx ends, then disconnects every client and closes the
// listeners. It calls Listen first if the caller has not.
func (b *Broker) Run(ctx context.Context) error {
	if b.ln == nil && b.tlsLn == nil {
		if err := b.Listen(); err != nil {
			return err
		}
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities: capabilities(),
		Logger:       slog.New(mochiLog{b.log.Handler()}),
	})
	b.access.srv = srv // before Serve: no hook runs earlier
	errs := []error{srv.AddHook(b.access, nil)}
	if b.ln != nil {
		errs = append(errs, srv.AddListener(b.gate("tcp", b.ln, nil, srv)))
	}
	if b.tlsLn != nil {
		errs = append(errs, srv.AddListener(b.gate("tls", b.tlsLn, b.cfg.TLS, srv)))
	}
	if b.cfg.AllowAnonymous {
		b.log.Warn("ANONYMOUS MQTT CLIENTS ALLOWED: any client without a username may publish as any agent " +
			"and read every agent's commands and live video signalling; use only for a demo")
	}
	err := errors.Join(errs...)
	if err == nil {
		b.srv.Store(srv) // for Kick and Stats, which may run as soon as clients do
		err = srv.Serve()
	}
	if err != nil {
		for _, ln := range []net.Listener{b.ln, b.tlsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		return fmt.Errorf("broker: start: %w", err)
	}
	b.log.Info("embedded MQTT broker serving", "url", b.URL(), "tls_url", b.TLSURL(),
		"hub_user", b.cfg.Hub, "anonymous", b.cfg.AllowAnonymous, "max_clients", b.cfg.MaxClients)
	<-ctx.Done()
	return srv.Close()
}

func (b *Broker) gate(id string, ln net.Listener, tlsCfg *tls.Config, srv *mqtt.Server) *gate {
	return &gate{
		id: id, ln: ln, tls: tlsCfg, timeout: b.cfg.ConnectTimeout, max: int64(b.cfg.MaxPending),
		refused: b.access.refuseBeforeConnect, log: b.log,
		disconnect: func(listener string) {
			for _, cl := range srv.Clients.GetAll() {
				if cl.Net.Listener == listener && !cl.Closed() {
					_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
				}
			}
		},
		done: make(chan struct{}), open: make(map[*gatedConn]struct{}),
	}
}

// Kick closes the live session of the client whose id is agentID, at once,
// and reports whether there was one. Call it after revoking the agent's
// credential: its reconnection is then refused. The broker publishes the
// session's Last Will as for any connection lost, so the agent's retained
// state turns offline and the hub sees it go. (A session kept for a
// client that connected without a clean session stays, as after any
// disconnection, but nobody can resume it without the credential.)
func (b *Broker) Kick(agentID string) bool {
	srv := b.srv.Load()
	if srv == nil {
		return false
	}
	cl, ok := srv.Clients.Get(agentID)
	if !ok || cl.Closed() {
		return false
	}
	closeSession(cl)
	b.access.kicks[kickRequested].Inc()
	b.log.Info("MQTT session closed on request", "client", agentID, "remote", cl.Net.Remote)
	return true
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return Stats{
		Refused: values(b.access.refused),
		Denied:  values(b.access.denied),
		Kicks:   values(b.access.kicks),
		Clients: b.clients(),
	}
}

func values(m map[string]*metrics.Counter) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, c := range m {
		out[k] = c.Value()
	}
	return out
}

func (b *Broker) clients() int64 {
	srv := b.srv.Load()
	if srv == nil {
		return 0
	}
	return atomic.LoadInt64(&srv.Info.ClientsConnected)
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
	// No inbound topic aliases (mochi never offers them, and a client that
	// sends one is disconnected): mochi checks a publish's ACL before it
	// resolves the alias, and each alias would be a topic string the
	// client makes the broker keep.
	c.TopicAliasMaximum = 0
	return c
}

// mochiLog passes mochi's warnings and errors to the broker's log: it logs
// every start, stop and client at info, which is not worth an operator's
// attention.
type mochiLog struct{ slog.Handler }

func (h mochiLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

// Handle drops the packets mochi attaches to its lines: a CONNECT carries
// a password, and any packet a client's payload.
func (h mochiLog) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "pk" && a.Key != "packet" && a.Key != "will" {
			out.AddAttrs(a)
		}
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h mochiLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return mochiLog{h.Handler.WithAttrs(attrs)}
}

func (h mochiLog) WithGroup(name string) slog.Handler {
	return mochiLog{h.Handler.WithGroup(name)}
}

// secretDigest lets passwords of any length be compared in constant time.
func secretDigest(s string) [32]byte { return sha256.Sum256([]byte(s)) }
