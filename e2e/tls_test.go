package e2e

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/certs"
	"github.com/citywatch/citywatch/wire"
)

// testCA is a private certificate authority with a server certificate for
// 127.0.0.1 written to files, as an operator would configure the hub.
type testCA struct {
	ca        *certs.Pair
	file      string // the CA certificate
	cert, key string // the server's
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewCA("citywatch e2e CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{ca: ca, file: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server-key.pem")}
	if err := ca.Write(c.file, filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	if err := server.Write(c.cert, c.key); err != nil {
		t.Fatal(err)
	}
	return c
}

// client issues a client certificate whose common name is name.
func (c *testCA) client(name string) (tls.Certificate, error) {
	p, err := c.ca.Client(name, time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return p.TLS()
}

// TLS both ways: the console and API over HTTPS and the event stream over
// wss with a certificate from a private CA, which a client must trust;
// agents over MQTT with TLS, each with a client certificate naming it, to
// the embedded broker, which refuses a client without one and a client
// whose certificate names another agent.
func TestTLSBothWays(t *testing.T) {
	ca := newTestCA(t)
	s := startStack(t, stackOptions{city: smallCity, embedded: true, hubCfg: func(c *config.Config) {
		c.HTTP.TLS = config.TLS{Cert: ca.cert, Key: ca.key}
		c.Broker.TLSAddr = "127.0.0.1:0"
		c.Broker.TLS = config.TLS{Cert: ca.cert, Key: ca.key}
		c.Broker.ClientCA, c.Broker.RequireClientCert = ca.file, true
	}, agents: func(o *sim.Options, hub *app.App) {
		o.BrokerURL = hub.BrokerTLSURL()
		o.TLS = &tls.Config{RootCAs: ca.ca.Pool()}
		o.ClientCertificate = ca.client
	}})
	if !strings.HasPrefix(s.hub.ConsoleURL(), "https://") || !strings.HasPrefix(s.hub.BrokerTLSURL(), "ssl://") {
		t.Fatalf("console at %s, MQTT over TLS at %q", s.hub.ConsoleURL(), s.hub.BrokerTLSURL())
	}
	// Every agent reached the fleet over TLS with its own certificate.
	s.waitAllOnline(t)

	// A client that does not trust the CA cannot even ask.
	if code, _, err := s.api.send(http.MethodGet, "api/summary", "", nil); err == nil {
		t.Errorf("a client not trusting the hub's CA got %d", code)
	}
	api := s.api.trusting(ca.ca.Pool())
	var sum fleet.Summary
	api.getJSON(t, "api/summary", &sum)
	if sum.Devices != s.deviceCount() {
		t.Errorf("summary over HTTPS: %d devices, want %d", sum.Devices, s.deviceCount())
	}
	ev := api.events(t)
	_, cam := firstCamera(t, s)
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 30*time.Second, cam+" offline over wss", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == cam && c.To == wire.StatusOffline
	})

	secret, err := s.hub.Identity().EnrollAgent(t.Context(), cliActor, intruderID)
	if err != nil {
		t.Fatal(err)
	}
	url := s.hub.BrokerTLSURL()
	roots := &tls.Config{RootCAs: ca.ca.Pool()}
	if c, err := connectMQTT(url, intruderID, intruderID, secret, roots); err == nil {
		c.Disconnect(0)
		t.Error("an agent without a client certificate was admitted")
	}
	other := s.sim.City().Agents[0].ID
	borrowed, err := ca.client(other)
	if err != nil {
		t.Fatal(err)
	}
	mismatch := api.metric(t, `citywatch_broker_refused_total{reason="cert_mismatch"}`)
	withCert := func(c tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.ca.Pool(), Certificates: []tls.Certificate{c}}
	}
	if c, err := connectMQTT(url, intruderID, intruderID, secret, withCert(borrowed)); err == nil {
		c.Disconnect(0)
		t.Errorf("an agent with %s's certificate was admitted", other)
	}
	if got := api.metric(t, `citywatch_broker_refused_total{reason="cert_mismatch"}`) - mismatch; got != 1 {
		t.Errorf("certificate mismatches grew by %v, want 1", got)
	}
	own, err := ca.client(intruderID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := connectMQTT(url, intruderID, intruderID, secret, withCert(own))
	if err != nil {
		t.Fatalf("an enrolled agent with its own certificate was refused: %v", err)
	}
	c.Disconnect(100)
}
