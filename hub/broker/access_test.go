package broker_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/wire"
)

// MQTT 3.1.1 CONNACK return codes.
const (
	codeIdentifierRejected = 2
	codeServerUnavailable  = 3
	codeNotAuthorized      = 5
)

func TestConnectRefused(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-a", "agent-b")
	willOn := func(topic string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) { o.SetWill(topic, "offline", 1, true) }
	}
	for _, tt := range []struct {
		name   string
		login  login
		reason string
		code   byte
	}{
		{"anonymous", login{id: "agent-a"}, "anonymous", codeNotAuthorized},
		{"wrong secret", login{id: "agent-a", user: "agent-a", pass: "guess"}, "bad_credentials", codeNotAuthorized},
		{"no password", login{id: "agent-a", user: "agent-a"}, "bad_credentials", codeNotAuthorized},
		{"another agent's secret", login{id: "agent-a", user: "agent-a", pass: secretOf("agent-b")}, "bad_credentials", codeNotAuthorized},
		{"unknown agent", login{id: "agent-x", user: "agent-x", pass: secretOf("agent-x")}, "bad_credentials", codeNotAuthorized},
		{"username not an id", login{id: "a/b", user: "a/b", pass: "x"}, "bad_credentials", codeNotAuthorized},
		{"client id of another agent", login{id: "agent-b", user: "agent-a", pass: secretOf("agent-a")}, "client_id_mismatch", codeIdentifierRejected},
		{"client id left to the broker", login{user: "agent-a", pass: secretOf("agent-a")}, "client_id_mismatch", codeIdentifierRejected},
		{"will on another agent's state", login{id: "agent-a", user: "agent-a", pass: secretOf("agent-a"),
			configure: willOn(wire.Topic("agent-b", wire.ChannelState))}, "bad_will", codeNotAuthorized},
		{"will on own health", login{id: "agent-a", user: "agent-a", pass: secretOf("agent-a"),
			configure: willOn(wire.Topic("agent-a", wire.ChannelHealth))}, "bad_will", codeNotAuthorized},
		{"hub with wrong password", login{id: "hub@test/1", user: hubUser, pass: "guess"}, "bad_credentials", codeNotAuthorized},
		{"hub with an agent's client id", login{id: "agent-a", user: hubUser, pass: hubPass}, "client_id_mismatch", codeIdentifierRejected},
		{"hub will outside the agents' topics", login{id: "hub@test/1", user: hubUser, pass: hubPass,
			configure: willOn("elsewhere/state")}, "bad_will", codeNotAuthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := tb.Stats().Refused[tt.reason]
			tt.login.url = tb.URL()
			refused(t, tt.login, tt.code)
			if got := tb.Stats().Refused[tt.reason]; got != before+1 {
				t.Errorf("refused[%s] = %d, want %d", tt.reason, got, before+1)
			}
		})
	}
	if strings.Contains(tb.logs.String(), hubPass) || strings.Contains(tb.logs.String(), secretOf("agent-a")) {
		t.Errorf("a secret reached the log:\n%s", tb.logs)
	}
	if !strings.Contains(tb.logs.String(), "MQTT connection refused") {
		t.Errorf("refusals were not logged:\n%s", tb.logs)
	}
	var exposed strings.Builder
	tb.metrics.WriteText(&exposed)
	for _, line := range []string{
		`citywatch_broker_refused_total{reason="anonymous"} 1`,
		`citywatch_broker_refused_total{reason="bad_credentials"} 6`,
		`citywatch_broker_denied_total{kind="publish"} 0`,
		`citywatch_broker_kicks_total{reason="requested"} 0`,
	} {
		if !strings.Contains(exposed.String(), line) {
			t.Errorf("/metrics lacks %s:\n%s", line, exposed.String())
		}
	}

	// The right credentials, with a will on the agent's own state, pass.
	l := tb.agentLogin("agent-a")
	l.configure = willOn(wire.Topic("agent-a", wire.ChannelState))
	connect(t, l)
	tb.hub(t, "hub@test/1")
	if got := tb.Stats().Clients; got != 2 {
		t.Errorf("Stats().Clients = %d, want 2", got)
	}
}

func TestAnonymousOptIn(t *testing.T) {
	tb := start(t, broker.Config{AllowAnonymous: true}, "agent-a")
	anon := connect(t, login{url: tb.URL(), id: "anything"})
	// Logged before the broker serves its first client.
	if !strings.Contains(tb.logs.String(), "ANONYMOUS MQTT CLIENTS ALLOWED") {
		t.Errorf("allowing anonymous clients was not logged loudly:\n%s", tb.logs)
	}
	got := subscribe(t, anon, wire.Prefix+"#")
	agent := tb.agent(t, "agent-a")
	wait(t, "publish", agent.Publish(wire.Topic("agent-a", wire.ChannelHealth), 1, false, "h"))
	if m := receive(t, got, "agent's health"); m.Topic() != wire.Topic("agent-a", wire.ChannelHealth) {
		t.Errorf("anonymous subscriber got %s", m.Topic())
	}
	// Credentials are still checked when given.
	refused(t, login{url: tb.URL(), id: "agent-a", user: "agent-a", pass: "guess"}, codeNotAuthorized)
}

// TestAgentPublishesOnlyOnItsOwnTopics: agent A's messages on B's topics
// reach nobody and are not retained; A's own arrive.
func TestAgentPublishesOnlyOnItsOwnTopics(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-a", "agent-b")
	hub := tb.hub(t, "hub@test/1")
	seen := subscribe(t, hub, wire.HubSubscription)
	a := tb.agent(t, "agent-a")

	forged := []string{
		wire.Topic("agent-b", wire.ChannelState),
		wire.Topic("agent-b", wire.ChannelInventory),
		wire.Topic("agent-b", wire.ChannelHealth),
		wire.Topic("agent-b", wire.ChannelEvents),
		wire.Topic("agent-b", wire.ChannelLive),
		wire.Topic("agent-a", wire.ChannelCommands), // commands come from the hub only
		wire.Prefix + "agent-a/state/more",
		wire.Prefix + "agent-a",
		"elsewhere/agent-a/state",
	}
	for _, topic := range forged {
		for _, qos := range []byte{0, 1, 2} {
			// An MQTT 3 client's refused publish is acknowledged as usual
			// and the connection stays up.
			wait(t, "forged publish on "+topic, a.Publish(topic, qos, true, "forged"))
		}
	}
	if !a.IsConnectionOpen() {
		t.Fatal("the broker disconnected the agent for publishing where it may not")
	}
	// A's messages are handled in order: its own comes after every
	// forgery, so whatever arrives before it is a forgery that passed.
	own := wire.Topic("agent-a", wire.ChannelState)
	wait(t, "own publish", a.Publish(own, 1, true, "online"))
	if m := receive(t, seen, "A's own state"); m.Topic() != own || string(m.Payload()) != "online" {
		t.Fatalf("the hub received %q on %s first, want A's own state", m.Payload(), m.Topic())
	}
	if got, want := tb.Stats().Denied["publish"], uint64(3*len(forged)); got != want {
		t.Errorf("denied[publish] = %d, want %d", got, want)
	}

	// Nothing forged was retained: a later subscriber gets A's birth only.
	// Its own marker, published after it subscribed, ends the retained burst.
	late := tb.hub(t, "hub@test/2")
	all := subscribe(t, late, wire.Prefix+"#")
	marker := wire.Prefix + "marker/x"
	wait(t, "marker", late.Publish(marker, 1, false, "end"))
	for {
		m := receive(t, all, "retained messages and marker")
		if m.Topic() == marker {
			break
		}
		if m.Topic() != own {
			t.Errorf("retained %q on %s, want only A's own state", m.Payload(), m.Topic())
		}
	}
}

// TestAgentReadsOnlyItsOwnCommands: agent A subscribing to B's commands,
// B's live signalling or every agent's topics gets refused and receives
// nothing; the hub's commands reach only their agent.
func TestAgentReadsOnlyItsOwnCommands(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-a", "agent-b")
	hub := tb.hub(t, "hub@test/1")
	hubSeen := subscribe(t, hub, wire.HubSubscription)
	a, b := tb.agent(t, "agent-a"), tb.agent(t, "agent-b")

	aGot := make(chan paho.Message, 100)
	for _, filter := range []string{
		wire.Topic("agent-b", wire.ChannelCommands),
		wire.Topic("agent-b", wire.ChannelLive),
		wire.Prefix + "#",
		wire.HubSubscription,
		wire.Prefix + "+/commands",
		wire.Prefix + "agent-a/#",
		"#",
	} {
		if code := subscribeCode(t, a, filter, aGot); code != 0x80 {
			t.Errorf("subscribing to %s: SUBACK %#x, want 0x80 (refused)", filter, code)
		}
	}
	if got := tb.Stats().Denied["subscribe"]; got != 7 {
		t.Errorf("denied[subscribe] = %d, want 7", got)
	}
	if code := subscribeCode(t, a, wire.Topic("agent-a", wire.ChannelCommands), aGot); code != 1 {
		t.Fatalf("subscribing to its own commands: SUBACK %#x, want QoS 1", code)
	}
	bGot := subscribe(t, b, wire.Topic("agent-b", wire.ChannelCommands))

	// B's live signalling reaches the hub, not A.
	wait(t, "B live", b.Publish(wire.Topic("agent-b", wire.ChannelLive), 1, false, "answer"))
	if m := receive(t, hubSeen, "B's live"); m.Topic() != wire.Topic("agent-b", wire.ChannelLive) {
		t.Fatalf("hub got %s, want B's live", m.Topic())
	}
	// The hub's command to B reaches B only; the one to A, sent after it,
	// is the first thing A receives.
	wait(t, "command to B", hub.Publish(wire.Topic("agent-b", wire.ChannelCommands), 1, false, "for B"))
	wait(t, "command to A", hub.Publish(wire.Topic("agent-a", wire.ChannelCommands), 1, false, "for A"))
	if m := receive(t, bGot, "B's command"); string(m.Payload()) != "for B" {
		t.Errorf("B got %q", m.Payload())
	}
	if m := receive(t, aGot, "A's command"); string(m.Payload()) != "for A" {
		t.Errorf("A first got %q on %s, want its own command", m.Payload(), m.Topic())
	}

	// The hub may clear an agent's retained state.
	wait(t, "clear retained", hub.Publish(wire.Topic("agent-b", wire.ChannelState), 1, true, ""))
	if tb.Stats().Denied["publish"] != 0 {
		t.Errorf("the hub's publishes were denied: %v", tb.Stats().Denied)
	}
}

// TestRepeatedDenialsDisconnect: a client that keeps publishing where it
// may not is disconnected at the 100th refusal; the log has one line per
// client a minute.
func TestRepeatedDenialsDisconnect(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-a")
	lost := make(chan error, 1)
	l := tb.agentLogin("agent-a")
	l.configure = func(o *paho.ClientOptions) {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	a := connect(t, l)
	forged := wire.Topic("agent-b", wire.ChannelState)
	for range 100 {
		a.Publish(forged, 0, false, "forged")
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not disconnected after 100 denials")
	}
	st := tb.Stats()
	if st.Denied["publish"] != 100 || st.Kicks["denials"] != 1 {
		t.Errorf("denied %v, kicks %v; want 100 publish denials and 1 kick", st.Denied, st.Kicks)
	}
	if n := strings.Count(tb.logs.String(), "MQTT access denied"); n != 1 {
		t.Errorf("%d denial lines for one client within a minute, want 1:\n%s", n, tb.logs)
	}
	if n := strings.Count(tb.logs.String(), "disconnected after repeated access denials"); n != 1 {
		t.Errorf("%d disconnection lines, want 1", n)
	}

	// Reconnected, the count starts again; a minute later the next denial
	// is logged with how many lines were held back.
	a = tb.agent(t, "agent-a")
	wait(t, "denied publish", a.Publish(forged, 1, false, "forged"))
	if n := strings.Count(tb.logs.String(), "MQTT access denied"); n != 1 {
		t.Errorf("%d denial lines within the minute, want 1", n)
	}
	tb.clock.advance(time.Minute)
	wait(t, "denied publish", a.Publish(forged, 1, false, "forged"))
	if n := strings.Count(tb.logs.String(), "MQTT access denied"); n != 2 {
		t.Errorf("%d denial lines after a minute, want 2:\n%s", n, tb.logs)
	}
	if !strings.Contains(tb.logs.String(), "denials=2 not_logged=100") {
		t.Errorf("the second line does not count the held-back ones:\n%s", tb.logs)
	}
	if !a.IsConnectionOpen() {
		t.Error("the reconnected client was disconnected before 100 denials")
	}
}

// TestKick: a kicked agent is gone at once, its Last Will is published, and
// with its credential revoked it cannot come back.
func TestKick(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-a")
	if tb.Kick("agent-a") {
		t.Error("Kick of an agent that is not connected reported true")
	}
	hub := tb.hub(t, "hub@test/1")
	state := subscribe(t, hub, wire.Topic("agent-a", wire.ChannelState))

	lost := make(chan error, 1)
	l := tb.agentLogin("agent-a")
	l.configure = func(o *paho.ClientOptions) {
		o.SetWill(wire.Topic("agent-a", wire.ChannelState), "offline", 1, true)
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	connect(t, l)

	tb.agents.revoke("agent-a")
	if !tb.Kick("agent-a") {
		t.Fatal("Kick reported no session")
	}
	select {
	case <-lost:
	case <-time.After(time.Second):
		t.Fatal("the kicked agent was still connected after 1 s")
	}
	if m := receive(t, state, "last will"); string(m.Payload()) != "offline" {
		t.Errorf("after the kick the hub got %q on the agent's state, want its will", m.Payload())
	}
	refused(t, tb.agentLogin("agent-a"), codeNotAuthorized)
	if got := tb.Stats().Kicks["requested"]; got != 1 {
		t.Errorf("kicks[requested] = %d, want 1", got)
	}
	if tb.Kick("agent-a") {
		t.Error("a second Kick reported a session")
	}
}

func TestMaxClients(t *testing.T) {
	tb := start(t, broker.Config{MaxClients: 2}, "agent-a", "agent-b")
	tb.hub(t, "hub@test/1")
	tb.agent(t, "agent-a")
	refused(t, tb.agentLogin("agent-b"), codeServerUnavailable)
	if got := tb.Stats().Refused["too_many_clients"]; got != 1 {
		t.Errorf("refused[too_many_clients] = %d, want 1", got)
	}
	// The hub is admitted beyond the limit, and an agent's reconnection
	// replaces its session rather than adding one.
	tb.hub(t, "hub@test/2")
	tb.agent(t, "agent-a")
	if got := tb.Stats().Refused["too_many_clients"]; got != 1 {
		t.Errorf("refused[too_many_clients] = %d, want still 1", got)
	}
}

// TestHalfOpenConnections: connections that send no CONNECT are bounded
// in number and closed after ConnectTimeout.
func TestHalfOpenConnections(t *testing.T) {
	tb := start(t, broker.Config{MaxPending: 2, ConnectTimeout: 500 * time.Millisecond}, "agent-a")
	silent := []net.Conn{dialTCP(t, tb.Addr()), dialTCP(t, tb.Addr())}
	// The broker accepts connections one at a time, so by the time the
	// third is closed both silent ones count as pending.
	if err := readEOF(dialTCP(t, tb.Addr())); err != nil {
		t.Fatalf("third connection beyond MaxPending: %v", err)
	}
	if got := tb.Stats().Refused["too_many_pending"]; got != 1 {
		t.Errorf("refused[too_many_pending] = %d, want 1", got)
	}
	for _, c := range silent {
		if err := readEOF(c); err != nil {
			t.Fatalf("silent connection: %v", err)
		}
	}
	if got := tb.Stats().Refused["no_connect"]; got != 2 {
		t.Errorf("refused[no_connect] = %d, want 2", got)
	}
	// Clients that have connected no longer count as pending.
	tb.hub(t, "hub@test/1")
	tb.hub(t, "hub@test/2")
	tb.agent(t, "agent-a")
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readEOF waits for the broker to close c.
func readEOF(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		return errors.New("the broker sent data")
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err):
		return nil
	}
	return err
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "connection reset") }
