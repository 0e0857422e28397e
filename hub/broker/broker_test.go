package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

const (
	hubUser = "hub@test"
	hubPass = "hub-password-for-tests"
)

// fakeClients stands in for hub/identity.
type fakeClients struct {
	checkAgent func(username, password string) (string, bool)
}

func (f fakeClients) CheckAgent(username, password string) (string, bool) {
	return f.checkAgent(username, password)
}

// agentTable holds the agents' secrets; tests revoke them.
type agentTable struct {
	mu      sync.Mutex
	secrets map[string]string
}

func secretOf(id string) string { return "secret-of-" + id }

func (a *agentTable) check(username, password string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.secrets[username]
	return username, ok && s == password
}

func (a *agentTable) revoke(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.secrets, id)
}

// clock is the broker's time for pacing log lines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testBroker struct {
	*broker.Broker
	logs    *testenv.LogBuffer
	agents  *agentTable
	clock   *clock
	metrics *metrics.Registry
}

// start runs a broker on cfg until the test ends. Unset, the plain
// listener is on a free loopback port and the hub is hubUser; agents lists
// the agents that may connect, each with secretOf(id).
func start(t *testing.T, cfg broker.Config, agents ...string) *testBroker {
	t.Helper()
	if cfg.Addr == "" && cfg.TLSAddr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Hub == (broker.Credential{}) {
		cfg.Hub = broker.Credential{Username: hubUser, Password: hubPass}
	}
	tb := &testBroker{
		logs:    new(testenv.LogBuffer),
		agents:  &agentTable{secrets: make(map[string]string)},
		clock:   &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		metrics: metrics.NewRegistry(),
	}
	for _, id := range agents {
		tb.agents.secrets[id] = secretOf(id)
	}
	b, err := broker.New(cfg, broker.Deps{
		Log:     slog.New(slog.NewTextHandler(tb.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: tb.metrics,
		Clients: fakeClients{checkAgent: tb.agents.check},
		Now:     tb.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tb.Broker = b
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", tb.logs)
		}
	})
	return tb
}

// login is how a test client connects.
type login struct {
	url, id, user, pass string
	configure           func(*paho.ClientOptions) // may be nil
}

// dial connects and returns the client with its completed token; the
// caller checks the outcome.
func dial(t *testing.T, l login) (paho.Client, *paho.ConnectToken) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(l.url).SetClientID(l.id).
		SetUsername(l.user).SetPassword(l.pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetProtocolVersion(4) // else paho retries a refused CONNECT as MQTT 3.1
	if l.configure != nil {
		l.configure(opts)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("connect %s: timed out", l.id)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, tok.(*paho.ConnectToken)
}

func connect(t *testing.T, l login) paho.Client {
	t.Helper()
	c, tok := dial(t, l)
	if err := tok.Error(); err != nil {
		t.Fatalf("connect %s as %q: %v", l.id, l.user, err)
	}
	return c
}

// refused connects and expects the CONNACK return code want (MQTT 3).
func refused(t *testing.T, l login, want byte) {
	t.Helper()
	c, tok := dial(t, l)
	if tok.Error() == nil || c.IsConnected() {
		t.Fatalf("connect %s as %q succeeded, want it refused", l.id, l.user)
	}
	if got := tok.ReturnCode(); got != want {
		t.Fatalf("connect %s as %q: return code %d (%v), want %d", l.id, l.user, got, tok.Error(), want)
	}
}

// agentLogin is agent id's own login on the plain listener.
func (tb *testBroker) agentLogin(id string) login {
	return login{url: tb.URL(), id: id, user: id, pass: secretOf(id)}
}

func (tb *testBroker) agent(t *testing.T, id string) paho.Client {
	t.Helper()
	return connect(t, tb.agentLogin(id))
}

func (tb *testBroker) hub(t *testing.T, clientID string) paho.Client {
	t.Helper()
	return connect(t, login{url: tb.URL(), id: clientID, user: hubUser, pass: hubPass})
}

func wait(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func subscribe(t *testing.T, c paho.Client, topic string) <-chan paho.Message {
	t.Helper()
	got := make(chan paho.Message, 100)
	wait(t, "subscribe "+topic, c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m }))
	return got
}

// subscribeCode subscribes and returns the SUBACK return code: the QoS
// granted, or 0x80 for a refusal.
func subscribeCode(t *testing.T, c paho.Client, topic string, got chan<- paho.Message) byte {
	t.Helper()
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m })
	wait(t, "subscribe "+topic, tok)
	return tok.(*paho.SubscribeToken).Result()[topic]
}

func receive(t *testing.T, got <-chan paho.Message, what string) paho.Message {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing received", what)
		return nil
	}
}

func TestBrokerRetainedWillAndLargePayload(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-1", "agent-2")

	// A retained birth message reaches a subscriber that arrives later.
	agent := tb.agent(t, "agent-1")
	wait(t, "publish birth", agent.Publish(wire.Topic("agent-1", wire.ChannelState), 1, true, "online"))
	hub := tb.hub(t, "hub@test/1")
	if m := receive(t, subscribe(t, hub, wire.Prefix+"+/state"), "retained birth"); string(m.Payload()) != "online" || !m.Retained() {
		t.Errorf("got %q retained=%v, want retained \"online\"", m.Payload(), m.Retained())
	}

	// The largest payload the hub accepts passes the broker.
	big := bytes.Repeat([]byte("x"), wire.MaxPayload)
	health := subscribe(t, hub, wire.Prefix+"+/health")
	wait(t, "publish large health", agent.Publish(wire.Topic("agent-1", wire.ChannelHealth), 1, false, big))
	if m := receive(t, health, "large health"); len(m.Payload()) != len(big) {
		t.Errorf("large payload arrived with %d bytes, want %d", len(m.Payload()), len(big))
	}

	// An agent whose connection dies without DISCONNECT leaves its will.
	wills := subscribe(t, hub, wire.Topic("agent-2", wire.ChannelState))
	var conn net.Conn
	l := tb.agentLogin("agent-2")
	l.configure = func(o *paho.ClientOptions) {
		o.SetWill(wire.Topic("agent-2", wire.ChannelState), "offline", 1, true)
		o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			var err error
			conn, err = net.Dial("tcp", u.Host)
			return conn, err
		})
	}
	connect(t, l)
	conn.Close()
	if m := receive(t, wills, "last will"); string(m.Payload()) != "offline" {
		t.Errorf("will: got %q on %s", m.Payload(), m.Topic())
	}

	if strings.Contains(tb.logs.String(), "mochi mqtt") {
		t.Errorf("mochi's info logs were not silenced:\n%s", tb.logs)
	}
}

func TestBrokerPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	t.Run("fallback", func(t *testing.T) {
		tb := start(t, broker.Config{Addr: taken.Addr().String(), FallbackToFreePort: true})
		if tb.Addr() == taken.Addr().String() || !strings.HasPrefix(tb.Addr(), "127.0.0.1:") {
			t.Errorf("Addr() = %s, want another port on 127.0.0.1 than the taken %s", tb.Addr(), taken.Addr())
		}
		if !strings.Contains(tb.logs.String(), "address taken") || !strings.Contains(tb.logs.String(), tb.Addr()) {
			t.Errorf("no log line saying the address was taken and which one is used:\n%s", tb.logs)
		}
		tb.hub(t, "hub@test/1")
	})
	t.Run("no fallback", func(t *testing.T) {
		cfg := validConfig()
		cfg.Addr = taken.Addr().String()
		b, err := broker.New(cfg, validDeps())
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Listen(); err == nil {
			t.Error("Listen succeeded on a taken port without fallback")
		}
	})
}

func validConfig() broker.Config {
	return broker.Config{Addr: "127.0.0.1:0", Hub: broker.Credential{Username: hubUser, Password: hubPass}}
}

func validDeps() broker.Deps {
	return broker.Deps{
		Metrics: metrics.NewRegistry(),
		Clients: fakeClients{checkAgent: func(string, string) (string, bool) { return "", false }},
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*broker.Config, *broker.Deps)
		want   []string
	}{
		{"no listener", func(c *broker.Config, _ *broker.Deps) { c.Addr = "" }, []string{"no listener"}},
		{"addr without port", func(c *broker.Config, _ *broker.Deps) { c.Addr = "1883" }, []string{"Addr"}},
		{"tls addr without config", func(c *broker.Config, _ *broker.Deps) { c.TLSAddr = "127.0.0.1:0" }, []string{"without a TLS config"}},
		{"tls config without addr", func(c *broker.Config, _ *broker.Deps) { c.TLS = &tls.Config{} }, []string{"without TLSAddr"}},
		{"tls without certificate", func(c *broker.Config, _ *broker.Deps) {
			c.TLSAddr, c.TLS = "127.0.0.1:0", &tls.Config{}
		}, []string{"no server certificate"}},
		{"client certificates not verified", func(c *broker.Config, _ *broker.Deps) {
			c.TLSAddr, c.TLS = "127.0.0.1:0", &tls.Config{Certificates: make([]tls.Certificate, 1), ClientAuth: tls.RequireAnyClientCert}
		}, []string{"without verifying"}},
		{"client certificates without CA", func(c *broker.Config, _ *broker.Deps) {
			c.TLSAddr, c.TLS = "127.0.0.1:0", &tls.Config{Certificates: make([]tls.Certificate, 1), ClientAuth: tls.VerifyClientCertIfGiven}
		}, []string{"ClientCAs"}},
		{"no hub user", func(c *broker.Config, _ *broker.Deps) { c.Hub.Username = "" }, []string{"Hub.Username is required"}},
		{"hub user could be an agent", func(c *broker.Config, _ *broker.Deps) { c.Hub.Username = "citywatch-hub" }, []string{"possible agent id"}},
		{"hub user unfit for mosquitto", func(c *broker.Config, _ *broker.Deps) { c.Hub.Username = "hub:citywatch" }, []string{`":+#/"`}},
		{"short hub password", func(c *broker.Config, _ *broker.Deps) { c.Hub.Password = "short" }, []string{"at least 16"}},
		{"no clients", func(_ *broker.Config, d *broker.Deps) { d.Clients = nil }, []string{"Deps.Clients"}},
		{"no metrics", func(_ *broker.Config, d *broker.Deps) { d.Metrics = nil }, []string{"Deps.Metrics"}},
		{"every problem at once", func(c *broker.Config, _ *broker.Deps) {
			c.Addr, c.Hub.Password, c.MaxClients = "", "", -1
		}, []string{"no listener", "at least 16", "MaxClients"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, deps := validConfig(), validDeps()
			tt.change(&cfg, &deps)
			_, err := broker.New(cfg, deps)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), hubPass) {
				t.Errorf("error %q shows the hub password", err)
			}
		})
	}
}

// TestShutdown: Run returns promptly however clients are caught: connected,
// silent before their CONNECT, or connecting and leaving as it stops.
func TestShutdown(t *testing.T) {
	cfg := validConfig()
	cfg.ConnectTimeout = time.Hour
	deps := validDeps()
	deps.Clients = fakeClients{checkAgent: func(u, p string) (string, bool) { return u, p == secretOf(u) }}
	b, err := broker.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	connect(t, login{url: b.URL(), id: "agent-a", user: "agent-a", pass: secretOf("agent-a")})
	silent := dialTCP(t, b.Addr())
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		for ctx.Err() == nil {
			c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("agent-b").
				SetUsername("agent-b").SetPassword(secretOf("agent-b")).SetAutoReconnect(false))
			if tok := c.Connect(); tok.WaitTimeout(time.Second) && tok.Error() == nil {
				c.Disconnect(0)
			}
		}
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err := readEOF(silent); err != nil {
		t.Errorf("a connection still waiting for its CONNECT was left open: %v", err)
	}
	<-churnDone
}
