package broker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// start runs a broker on cfg until the test ends and returns it with its log.
func start(t *testing.T, cfg broker.Config) (*broker.Broker, *testenv.LogBuffer) {
	t.Helper()
	logs := new(testenv.LogBuffer)
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
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
	})
	return b, logs
}

func connect(t *testing.T, b *broker.Broker, id string, configure func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if configure != nil {
		configure(opts)
	}
	c := paho.NewClient(opts)
	wait(t, "connect "+id, c.Connect())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
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
	got := make(chan paho.Message, 10)
	wait(t, "subscribe "+topic, c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m }))
	return got
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
	b, logs := start(t, broker.Config{Addr: "127.0.0.1:0"})

	// A retained birth message reaches a subscriber that arrives later.
	agent := connect(t, b, "agent", nil)
	wait(t, "publish birth", agent.Publish("cw/agent-1/state", 1, true, "online"))
	hub := connect(t, b, "hub", nil)
	if m := receive(t, subscribe(t, hub, "cw/+/state"), "retained birth"); string(m.Payload()) != "online" || !m.Retained() {
		t.Errorf("got %q retained=%v, want retained \"online\"", m.Payload(), m.Retained())
	}

	// The largest payload the hub accepts passes the broker.
	big := bytes.Repeat([]byte("x"), wire.MaxPayload)
	health := subscribe(t, hub, "cw/+/health")
	wait(t, "publish large health", agent.Publish("cw/agent-1/health", 1, false, big))
	if m := receive(t, health, "large health"); len(m.Payload()) != len(big) {
		t.Errorf("large payload arrived with %d bytes, want %d", len(m.Payload()), len(big))
	}

	// An agent whose connection dies without DISCONNECT leaves its will.
	wills := subscribe(t, hub, "cw/+/will")
	var conn net.Conn
	connect(t, b, "dying-agent", func(o *paho.ClientOptions) {
		o.SetWill("cw/agent-2/will", "offline", 1, false)
		o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			var err error
			conn, err = net.Dial("tcp", u.Host)
			return conn, err
		})
	})
	conn.Close()
	if m := receive(t, wills, "last will"); string(m.Payload()) != "offline" || m.Topic() != "cw/agent-2/will" {
		t.Errorf("will: got %q on %s", m.Payload(), m.Topic())
	}

	if strings.Contains(logs.String(), "mochi mqtt") {
		t.Errorf("mochi's info logs were not silenced:\n%s", logs)
	}
}

func TestBrokerPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	t.Run("fallback", func(t *testing.T) {
		b, logs := start(t, broker.Config{Addr: taken.Addr().String(), FallbackToFreePort: true})
		if b.Addr() == taken.Addr().String() || !strings.HasPrefix(b.Addr(), "127.0.0.1:") {
			t.Errorf("Addr() = %s, want another port on 127.0.0.1 than the taken %s", b.Addr(), taken.Addr())
		}
		if !strings.Contains(logs.String(), "address taken") || !strings.Contains(logs.String(), b.Addr()) {
			t.Errorf("no log line saying the address was taken and which one is used:\n%s", logs)
		}
		connect(t, b, "client", nil)
	})
	t.Run("no fallback", func(t *testing.T) {
		b, err := broker.New(broker.Config{Addr: taken.Addr().String()}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Listen(); err == nil {
			t.Error("Listen succeeded on a taken port without fallback")
		}
	})
}

func TestNewRejectsBadAddr(t *testing.T) {
	if _, err := broker.New(broker.Config{Addr: "1883"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("New accepted an address without host:port")
	}
}
