package sim

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/internal/mqtttest"
	"github.com/citywatch/citywatch/internal/certs"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// TestCredentialsAndTLS runs a small city against a broker that, like the
// hub's, wants MQTT over TLS, a client certificate and each agent's own
// login: every agent connects as itself, an agent with a wrong secret is
// refused (and says so), and a disconnect fault still works through the
// relay with TLS end to end.
func TestCredentialsAndTLS(t *testing.T) {
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// For the name only: the agents dial their relays at 127.0.0.1, so
	// they must check the certificate for the broker's host instead.
	srv, err := ca.Server([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	cityOpts := CityOptions{Seed: 7, Districts: 1, Sites: 3, Devices: 6}
	city, err := GenerateCity(cityOpts)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := []string{city.Agents[0].ID, city.Agents[1].ID}, city.Agents[2].ID
	secrets := map[string]string{}
	for _, a := range city.Agents {
		secrets[a.ID] = "cwa_secret-of-" + a.ID
	}
	broker := mqtttest.Start(t, mqtttest.Options{
		TLS: &tls.Config{
			Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		},
		Logins: secrets,
	})
	var logs testenv.LogBuffer
	s, err := New(Options{
		BrokerURL: strings.Replace(broker.URL(), "127.0.0.1", "localhost", 1),
		Credentials: func(id string) (string, string) {
			if id == bad {
				return id, "cwa_not-the-secret"
			}
			return id, secrets[id]
		},
		TLS: &tls.Config{RootCAs: ca.Pool()},
		ClientCertificate: func(id string) (tls.Certificate, error) {
			p, err := ca.Client(id, time.Hour)
			if err != nil {
				return tls.Certificate{}, err
			}
			return p.TLS()
		},
		City:             cityOpts,
		InProcessCameras: true,
		Interval:         time.Second,
		Logger:           slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)

	for _, id := range good {
		waitFor(t, "birth of "+id, func() bool { return broker.Published(wire.Topic(id, wire.ChannelState)) > 0 })
	}
	refused := func() bool {
		for _, c := range broker.Connects() {
			if c.Username == bad && !c.Accepted {
				return true
			}
		}
		return false
	}
	waitFor(t, "the broker refusing "+bad, refused)
	for _, c := range broker.Connects() {
		if c.ClientID != c.Username || c.CommonName != c.Username || c.Accepted == (c.Username == bad) {
			t.Errorf("CONNECT %+v: want client id, username and certificate of one agent, refused only for %s", c, bad)
		}
	}
	if n := broker.Published(wire.Topic(bad, wire.ChannelState)); n != 0 {
		t.Errorf("the refused agent published %d state messages", n)
	}
	waitFor(t, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "broker refused the agent's credentials — enrol it with `citywatch-hub agents enroll "+bad+"`")
	})
	for _, a := range s.Agents() {
		if !strings.HasPrefix(a.Broker.URL, "tls://127.0.0.1:") || a.Broker.Username != a.ID || a.Broker.ClientID != a.ID {
			t.Errorf("agent %s connects to %s as %q, client id %q", a.ID, a.Broker.URL, a.Broker.Username, a.Broker.ClientID)
		}
	}
	if out := logs.String(); strings.Contains(out, "cwa_") {
		t.Errorf("a secret appears in the log:\n%s", out)
	}

	// The relay cut drops the TLS session; the agent handshakes again.
	accepted := func(id string) int {
		n := 0
		for _, c := range broker.Connects() {
			if c.Username == id && c.Accepted {
				n++
			}
		}
		return n
	}
	if err := s.Fault(Fault{Agent: good[0], Fault: FaultDisconnect}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, good[0]+" back over TLS", func() bool { return accepted(good[0]) == 2 })
}

func TestNewRejectsAccess(t *testing.T) {
	failing := func(string) (tls.Certificate, error) { return tls.Certificate{}, errors.New("no such file") }
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"TLS with tcp://", Options{BrokerURL: "tcp://b:1883", TLS: &tls.Config{}}, "TLS settings for a tcp:// broker URL"},
		{"client certificate with mqtt://", Options{BrokerURL: "mqtt://b", ClientCertificate: failing}, "TLS settings for a mqtt:// broker URL"},
		{"websocket", Options{BrokerURL: "ws://b:80"}, `scheme "ws"`},
		{"credentials in the URL", Options{BrokerURL: "tcp://u:hunter2@b:1883"}, "without credentials"},
		{"agent without credentials", Options{BrokerURL: "tcp://b:1883",
			Credentials: func(string) (string, string) { return "", "" }}, "no credentials for agent agent-"},
		{"client certificate failing", Options{BrokerURL: "tls://b", ClientCertificate: failing},
			"client certificate of agent agent-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = testLogger(t)
			tt.opts.City = CityOptions{Sites: 1, Devices: 1}
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error quotes a password: %v", err)
			}
		})
	}
}
