// Package mqtttest runs a small MQTT broker (mochi-mqtt) inside a test,
// optionally over TLS and checking logins, and records every CONNECT it
// sees and every message it accepts. Agent tests use it to prove TLS,
// client certificates and per-agent credentials against a broker that
// behaves like the hub's, which agent code may not import.
package mqtttest

import (
	"crypto/tls"
	"log/slog"
	"maps"
	"net"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configures a Broker.
type Options struct {
	// TLS makes the listener speak TLS (the URL is then tls://); set
	// ClientCAs and ClientAuth to check client certificates.
	TLS *tls.Config
	// Logins are the accepted username → password pairs; nil accepts
	// every client. A refused client gets CONNACK "not authorized".
	Logins map[string]string
}

// Connect is one CONNECT the broker received.
type Connect struct {
	ClientID string
	Username string
	// CommonName is that of the client certificate; empty without one.
	CommonName string
	Accepted   bool
}

// Broker is a running test broker.
type Broker struct {
	url string
	rec *recorder
}

// Start runs a broker on a free 127.0.0.1 port until the test ends.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mqtttest: listen: %v", err)
	}
	scheme := "tcp"
	if opts.TLS != nil {
		ln, scheme = tls.NewListener(ln, opts.TLS), "tls"
	}
	rec := &recorder{logins: maps.Clone(opts.Logins), published: make(map[string]int)}
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(rec, nil); err != nil {
		t.Fatalf("mqtttest: %v", err)
	}
	if err := srv.AddListener(listeners.NewNet("test", ln)); err != nil {
		t.Fatalf("mqtttest: %v", err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatalf("mqtttest: serve: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &Broker{url: scheme + "://" + ln.Addr().String(), rec: rec}
}

// URL is the broker's address for clients: tcp:// or tls://127.0.0.1:PORT.
func (b *Broker) URL() string { return b.url }

// Connects returns every CONNECT received so far, in order.
func (b *Broker) Connects() []Connect {
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	return append([]Connect(nil), b.rec.connects...)
}

// Enrol accepts username with password from now on, as enrolling an
// agent on the hub does.
func (b *Broker) Enrol(username, password string) {
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	if b.rec.logins == nil {
		b.rec.logins = make(map[string]string)
	}
	b.rec.logins[username] = password
}

// Published returns how many messages the broker accepted on topic.
func (b *Broker) Published(topic string) int {
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	return b.rec.published[topic]
}

// recorder is the broker's hook: it checks logins and keeps the record.
type recorder struct {
	mqtt.HookBase

	mu        sync.Mutex
	logins    map[string]string // nil accepts everyone
	connects  []Connect
	published map[string]int // topic → messages
}

func (r *recorder) ID() string { return "mqtttest" }

func (r *recorder) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublished
}

func (r *recorder) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := Connect{ClientID: pk.Connect.ClientIdentifier, Username: string(pk.Connect.Username)}
	// The handshake is complete: the CONNECT was read through it.
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			c.CommonName = peers[0].Subject.CommonName
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want, known := r.logins[c.Username]
	c.Accepted = r.logins == nil || known && want == string(pk.Connect.Password)
	r.connects = append(r.connects, c)
	return c.Accepted
}

func (r *recorder) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func (r *recorder) OnPublished(_ *mqtt.Client, pk packets.Packet) {
	r.mu.Lock()
	r.published[pk.TopicName]++
	r.mu.Unlock()
}
