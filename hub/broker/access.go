package broker

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// Why a connection was refused: the reason label of
// citywatch_broker_refused_total.
const (
	refusedAnonymous   = "anonymous"          // no username, and anonymous clients are not allowed
	refusedCredentials = "bad_credentials"    // unknown user or wrong password
	refusedClientID    = "client_id_mismatch" // an agent's client id is not its username; the hub's is a possible agent id
	refusedWill        = "bad_will"           // a Last Will on a topic the client may not publish on
	refusedCert        = "cert_mismatch"      // a client certificate names someone else than the username
	refusedFull        = "too_many_clients"   // MaxClients reached
	refusedPending     = "too_many_pending"   // MaxPending connections are still to send CONNECT
	refusedNoConnect   = "no_connect"         // closed before a valid CONNECT: timeout, failed TLS handshake, garbage
)

// The CONNACK code each refusal answers with, in MQTT 5 terms.
var refusalCodes = map[string]packets.Code{
	refusedAnonymous:   packets.ErrNotAuthorized,
	refusedCredentials: packets.ErrBadUsernameOrPassword,
	refusedClientID:    packets.ErrClientIdentifierNotValid,
	refusedWill:        packets.ErrNotAuthorized,
	refusedCert:        packets.ErrNotAuthorized,
	refusedFull:        packets.ErrServerBusy,
}

// What was denied: the kind label of citywatch_broker_denied_total.
const (
	kindPublish   = "publish"
	kindSubscribe = "subscribe" // also a delivery refused to a subscriber
)

// Why a session was closed: the reason label of citywatch_broker_kicks_total.
const (
	kickRequested = "requested" // Broker.Kick
	kickDenials   = "denials"   // maxDenials refused publishes and subscriptions
)

// logEvery spaces repeated log lines about one client or one refusal
// reason; the counters count every event.
const logEvery = time.Minute

// access is the mochi hook that authenticates clients and applies the ACL.
//
// Agents connect with client id = username = agent id and may publish only
// on their own state, inventory, health, events and live topics and
// subscribe only to their own commands topic, exactly. The hub user may
// subscribe to and publish on anything under wire.Prefix (it clears
// retained messages by publishing empty ones there).
type access struct {
	mqtt.HookBase
	srv *mqtt.Server // set by Run before the server starts

	hub        Credential
	hubDigest  [32]byte
	anonymous  bool
	maxClients int64
	clients    Clients
	log        *slog.Logger
	lines      *lineLimiter

	refused map[string]*metrics.Counter // by reason; read-only after newAccess
	denied  map[string]*metrics.Counter // by kind
	kicks   map[string]*metrics.Counter // by reason

	// admitted holds the clients OnConnect accepted until mochi asks
	// OnConnectAuthenticate, which runs right after it: only a client that
	// passed every check is authenticated.
	admitted sync.Map // *mqtt.Client → struct{}

	mu        sync.Mutex
	offenders map[*mqtt.Client]int // denials per open connection
}

func newAccess(cfg Config, clients Clients, log *slog.Logger, now func() time.Time, reg *metrics.Registry) *access {
	a := &access{
		hub:        cfg.Hub,
		hubDigest:  secretDigest(cfg.Hub.Password),
		anonymous:  cfg.AllowAnonymous,
		maxClients: int64(cfg.MaxClients),
		clients:    clients,
		log:        log,
		lines:      &lineLimiter{now: now, every: logEvery, last: make(map[string]lineState)},
		offenders:  make(map[*mqtt.Client]int),
	}
	a.refused = counters(reg.CounterVec("citywatch_broker_refused_total",
		"MQTT connections the embedded broker refused, by reason.", "reason"),
		refusedAnonymous, refusedCredentials, refusedClientID, refusedWill, refusedCert,
		refusedFull, refusedPending, refusedNoConnect)
	a.denied = counters(reg.CounterVec("citywatch_broker_denied_total",
		"Publishes and subscriptions the embedded broker's ACL refused, by kind.", "kind"),
		kindPublish, kindSubscribe)
	a.kicks = counters(reg.CounterVec("citywatch_broker_kicks_total",
		"MQTT sessions the embedded broker closed, by reason.", "reason"),
		kickRequested, kickDenials)
	return a
}

// counters creates every series up front, so /metrics shows zeros rather
// than nothing before the first event.
func counters(v *metrics.Vec[metrics.Counter], labels ...string) map[string]*metrics.Counter {
	m := make(map[string]*metrics.Counter, len(labels))
	for _, l := range labels {
		m[l] = v.With(l)
	}
	return m
}

func (a *access) ID() string { return "citywatch-access" }

func (a *access) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnDisconnect,
	}, []byte{b})
}

// OnConnect decides whether the client may connect. It runs before
// OnConnectAuthenticate because only here can a refusal carry its own
// CONNACK code (mochi answers a failed OnConnectAuthenticate with "bad
// username or password" whatever the cause).
func (a *access) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if gc := gated(cl.Net.Conn); gc != nil {
		defer gc.settle()
	}
	reason := a.admit(cl, pk)
	if reason == "" {
		a.admitted.Store(cl, struct{}{})
		return nil
	}
	a.refuse(reason, cl.ID, string(pk.Connect.Username), cl.Net.Remote)
	code := connackCode(cl.Properties.ProtocolVersion, refusalCodes[reason])
	_ = a.srv.SendConnack(cl, code, false, nil) // the connection closes either way
	return code
}

// admit returns why cl may not connect, or "".
func (a *access) admit(cl *mqtt.Client, pk packets.Packet) string {
	user := string(pk.Connect.Username)
	isHub := user == a.hub.Username
	if !isHub && a.full(cl.ID) {
		return refusedFull
	}
	if cert := peerCert(cl.Net.Conn); cert != nil && cert.Subject.CommonName != user {
		return refusedCert
	}
	switch {
	case user == "":
		if !a.anonymous {
			return refusedAnonymous
		}
		return ""
	case isHub:
		if d := secretDigest(string(pk.Connect.Password)); subtle.ConstantTimeCompare(d[:], a.hubDigest[:]) != 1 {
			return refusedCredentials
		}
		// A session is found by client id: an agent could otherwise take
		// over the hub's session, or the hub an agent's.
		if wire.ValidID(cl.ID) == nil {
			return refusedClientID
		}
		if pk.Connect.WillFlag && !hubTopic(pk.Connect.WillTopic) {
			return refusedWill
		}
		return ""
	}
	if wire.ValidID(user) != nil {
		return refusedCredentials // no agent has that name: spare the hash
	}
	if cl.ID != user {
		return refusedClientID
	}
	// The will is published by the broker on the agent's behalf, without
	// an ACL check: only the agent's own state may be its topic.
	if pk.Connect.WillFlag && pk.Connect.WillTopic != wire.Topic(user, wire.ChannelState) {
		return refusedWill
	}
	if id, ok := a.clients.CheckAgent(user, string(pk.Connect.Password)); !ok || id != user {
		return refusedCredentials
	}
	return ""
}

// full reports whether a client other than the hub must be refused for
// want of room. A reconnection replaces its old session rather than adding
// one, so it is let through to authenticate.
func (a *access) full(clientID string) bool {
	if atomic.LoadInt64(&a.srv.Info.ClientsConnected) < a.maxClients {
		return false
	}
	old, ok := a.srv.Clients.Get(clientID)
	return !ok || old.Closed()
}

// connackCode is code as an MQTT 3 client can read it: mochi translates
// a few MQTT 5 codes and would send the others as they are, which MQTT 3
// does not define.
func connackCode(version byte, code packets.Code) packets.Code {
	if version >= 5 {
		return code
	}
	switch code {
	case packets.ErrNotAuthorized:
		return packets.ErrBadUsernameOrPassword // sent as 5, "not authorised"
	case packets.ErrServerBusy:
		return packets.ErrServerUnavailable // sent as 3
	}
	return code
}

func (a *access) refuse(reason, client, user, remote string) {
	a.refused[reason].Inc()
	if ok, notLogged := a.lines.allow("refused " + reason); ok {
		a.log.Warn("MQTT connection refused", "reason", reason,
			"client", clip(client), "user", clip(user), "remote", remote, "not_logged", notLogged)
	}
}

// refuseBeforeConnect counts a connection closed before its CONNECT.
func (a *access) refuseBeforeConnect(reason, remote string) { a.refuse(reason, "", "", remote) }

// OnConnectAuthenticate admits exactly the clients OnConnect accepted.
func (a *access) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := a.admitted.LoadAndDelete(cl)
	return ok
}

// OnACLCheck is asked for each subscription filter, for each message
// delivered to a subscriber and, before OnPublish, for each publish.
//
// A publish refused here is dropped silently at QoS 0 and answered with
// reason code 0x87 at QoS 1 and 2 under MQTT 5 — but mochi disconnects an
// MQTT 3 client at its first refused QoS 1 or 2 publish, so for MQTT 3
// clients OnPublish decides instead.
func (a *access) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write {
		return a.check(cl, topic, kindSubscribe)
	}
	if cl.Properties.ProtocolVersion < 5 {
		return true
	}
	return a.check(cl, topic, kindPublish)
}

// OnPublish refuses MQTT 3 clients' publishes that the ACL does not allow.
// "Ignore" makes mochi acknowledge the message as usual (MQTT 3 has no
// way to say "refused"; Mosquitto does the same) and neither deliver nor
// retain it.
func (a *access) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Properties.ProtocolVersion >= 5 || a.check(cl, pk.TopicName, kindPublish) {
		return pk, nil
	}
	return pk, packets.CodeSuccessIgnore
}

func (a *access) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	a.mu.Lock()
	delete(a.offenders, cl)
	a.mu.Unlock()
}

func (a *access) check(cl *mqtt.Client, topic, kind string) bool {
	if a.allowed(string(cl.Properties.Username), topic, kind) {
		return true
	}
	a.deny(cl, topic, kind)
	return false
}

// allowed is the ACL. user is the authenticated username: OnConnect
// admitted no other.
func (a *access) allowed(user, topic, kind string) bool {
	switch user {
	case "":
		return a.anonymous
	case a.hub.Username:
		return hubTopic(topic)
	}
	if kind == kindSubscribe {
		// Exactly: a wildcard filter would match other agents' commands.
		return topic == wire.Topic(user, wire.ChannelCommands)
	}
	ch, ok := strings.CutPrefix(topic, wire.Prefix+user+"/")
	if !ok {
		return false
	}
	switch wire.Channel(ch) {
	case wire.ChannelState, wire.ChannelInventory, wire.ChannelHealth, wire.ChannelEvents, wire.ChannelLive, wire.ChannelSnapshot:
		return true
	}
	return false
}

func hubTopic(topic string) bool { return strings.HasPrefix(topic, wire.Prefix) }

// deny counts a refusal, logs it (one line per client a minute) and
// disconnects the client at its maxDenials-th.
func (a *access) deny(cl *mqtt.Client, topic, kind string) {
	a.denied[kind].Inc()
	n := a.countDenial(cl)
	if ok, notLogged := a.lines.allow("denied " + cl.ID); ok {
		a.log.Warn("MQTT access denied", "client", clip(cl.ID), "kind", kind, "topic", clip(topic),
			"denials", n, "not_logged", notLogged)
	}
	if n != maxDenials {
		return
	}
	a.kicks[kickDenials].Inc()
	if ok, notLogged := a.lines.allow("kicked " + cl.ID); ok {
		a.log.Warn("MQTT client disconnected after repeated access denials", "client", clip(cl.ID),
			"remote", cl.Net.Remote, "denials", n, "not_logged", notLogged)
	}
	closeSession(cl)
}

// closeSession tells cl it is not authorised (MQTT 5 clients read 0x87 in
// the DISCONNECT) and closes its connection. mochi then ends the session as
// for a lost connection and publishes its Last Will. mochi's own
// DisconnectClient does not do that reliably: when the client's reader is
// between two packets at that moment, it ends the session as a clean
// disconnect and drops the will.
func closeSession(cl *mqtt.Client) {
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
		ReasonCode:  packets.ErrNotAuthorized.Code,
		Properties:  packets.Properties{ReasonString: packets.ErrNotAuthorized.Reason},
	})
	_ = cl.Net.Conn.Close()
}

// countDenial returns how many refusals cl's connection has had.
func (a *access) countDenial(cl *mqtt.Client) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	// A message refused to a subscriber whose connection is gone (a kept
	// session) is not the connection's doing, and OnDisconnect, which
	// forgets the count, has already run for it.
	if cl.Closed() {
		return 0
	}
	a.offenders[cl]++
	return a.offenders[cl]
}

// peerCert is the verified client certificate of a TLS connection, if any.
func peerCert(conn net.Conn) *x509.Certificate {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		return certs[0]
	}
	return nil
}

// clip shortens client-chosen strings before they reach a log line.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// lineLimiter lets one log line per key through every so often and
// counts the lines it held back.
type lineLimiter struct {
	now   func() time.Time
	every time.Duration

	mu   sync.Mutex
	last map[string]lineState
}

type lineState struct {
	at        time.Time
	notLogged int
}

// Keys are refusal reasons and client ids of authenticated clients, so the
// map stays small; past this size stale keys are swept.
const limiterSweepAt = 4096

// allow reports whether a line for key may be logged now, and how many
// were held back since the last one.
func (l *lineLimiter) allow(key string) (ok bool, notLogged int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s, seen := l.last[key]
	if seen && now.Sub(s.at) < l.every {
		s.notLogged++
		l.last[key] = s
		return false, 0
	}
	if len(l.last) >= limiterSweepAt {
		for k, v := range l.last {
			if now.Sub(v.at) >= l.every {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = lineState{at: now}
	return true, s.notLogged
}
