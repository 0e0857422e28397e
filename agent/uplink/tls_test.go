package uplink

import (
	"crypto/tls"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/internal/mqtttest"
	"github.com/citywatch/citywatch/agent/internal/wiretest"
	"github.com/citywatch/citywatch/internal/certs"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

func tlsCert(t *testing.T, p *certs.Pair) tls.Certificate {
	t.Helper()
	c, err := p.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLS runs the uplink against a TLS broker: it must trust exactly the
// configured roots, check the configured server name and present its
// client certificate.
func TestTLS(t *testing.T) {
	const agent = "agent-tls"
	must := func(p *certs.Pair, err error) *certs.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := must(certs.NewCA("test CA", time.Hour))
	other := must(certs.NewCA("someone else's CA", time.Hour))
	local := must(ca.Server([]string{"127.0.0.1", "localhost"}, time.Hour))
	named := must(ca.Server([]string{"broker.example"}, time.Hour))
	forged := must(other.Server([]string{"127.0.0.1"}, time.Hour))
	client := must(ca.Client(agent, time.Hour))

	tests := []struct {
		name    string
		server  *certs.Pair
		client  *tls.Config // nil: the system roots
		wantCN  string      // the common name the broker sees
		wantErr string      // when the agent must not connect
	}{
		{name: "trusts the configured CA", server: local, client: &tls.Config{RootCAs: ca.Pool()}},
		{name: "presents its client certificate", server: local,
			client: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{tlsCert(t, client)}}, wantCN: agent},
		{name: "checks the configured server name", server: named,
			client: &tls.Config{RootCAs: ca.Pool(), ServerName: "broker.example"}},
		{name: "refuses a broker its CA did not sign", server: forged,
			client: &tls.Config{RootCAs: ca.Pool()}, wantErr: "certificate signed by unknown authority"},
		{name: "refuses a certificate for another name", server: named,
			client: &tls.Config{RootCAs: ca.Pool()}, wantErr: "certificate for 127.0.0.1"},
		{name: "system roots do not include a private CA", server: local,
			wantErr: "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broker := mqtttest.Start(t, mqtttest.Options{TLS: &tls.Config{
				Certificates: []tls.Certificate{tlsCert(t, tt.server)},
				ClientAuth:   tls.VerifyClientCertIfGiven,
				ClientCAs:    ca.Pool(),
			}})
			var logs testenv.LogBuffer
			c, _ := startClient(t, broker.URL(), agent, func(cfg *Config) {
				cfg.TLS = tt.client
				cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			if tt.wantErr != "" {
				// The attempt is counted before it is logged: wait for both.
				wiretest.Eventually(t, "a failed connection attempt, logged", func() bool {
					return c.Stats().ConnectFailed > 0 && strings.Contains(logs.String(), "cannot connect to the broker; retrying")
				})
				if s := c.Stats(); s.Connected || s.Refused != 0 {
					t.Errorf("stats %+v", s)
				}
				if n := len(broker.Connects()); n != 0 {
					t.Errorf("the broker got %d CONNECTs over a connection the agent should have refused", n)
				}
				if out := logs.String(); !strings.Contains(out, "cannot connect to the broker; retrying") || !strings.Contains(out, tt.wantErr) {
					t.Errorf("log does not explain the failure (%q):\n%s", tt.wantErr, out)
				}
				return
			}
			state := wire.Topic(agent, wire.ChannelState)
			wiretest.Eventually(t, "the birth message over TLS", func() bool { return broker.Published(state) > 0 })
			got := broker.Connects()
			if len(got) != 1 || got[0].CommonName != tt.wantCN || got[0].ClientID != "test-"+agent {
				t.Errorf("broker saw %+v, want one CONNECT with certificate CN %q", got, tt.wantCN)
			}
		})
	}
}

func TestClientTLS(t *testing.T) {
	given := &tls.Config{ServerName: "broker.example", MinVersion: tls.VersionTLS13}
	tests := []struct {
		url        string
		given      *tls.Config
		wantNil    bool
		wantName   string
		wantMinVer uint16
		wantErr    string
	}{
		{url: "tcp://b:1883", wantNil: true},
		{url: "mqtt://b", wantNil: true},
		{url: "tcp://b:1883", given: given, wantErr: "connects without TLS"},
		{url: "ssl://b:8883", wantName: "b", wantMinVer: tls.VersionTLS12},
		{url: "mqtts://10.0.0.1", given: &tls.Config{MinVersion: tls.VersionTLS10}, wantName: "10.0.0.1", wantMinVer: tls.VersionTLS12},
		{url: "tls://10.0.0.1:8883", given: given, wantName: "broker.example", wantMinVer: tls.VersionTLS13},
		{url: "ws://b", wantErr: "unsupported broker scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := clientTLS(u, tt.given)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tt.wantNil:
				if got != nil {
					t.Errorf("TLS config %+v for a plain URL", got)
				}
			case got.ServerName != tt.wantName || got.MinVersion != tt.wantMinVer:
				t.Errorf("server name %q, min version %x; want %q, %x", got.ServerName, got.MinVersion, tt.wantName, tt.wantMinVer)
			case got == tt.given:
				t.Error("the caller's config is used, not a copy")
			}
		})
	}
}

// TestRefusedCredentials: a broker refusing the agent's login is logged
// once a minute, naming the cause and the fix, and counted; the agent
// keeps retrying and connects once it is enrolled.
func TestRefusedCredentials(t *testing.T) {
	const agent, secret = "agent-r", "cwa_wrong-secret"
	broker := mqtttest.Start(t, mqtttest.Options{Logins: map[string]string{"someone-else": "x"}})
	var logs testenv.LogBuffer
	c, _ := startClient(t, broker.URL(), agent, func(cfg *Config) {
		cfg.Username, cfg.Password = agent, secret
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	wiretest.Eventually(t, "two refused attempts", func() bool { return c.Stats().Refused >= 2 })

	out := logs.String()
	const want = "broker refused the agent's credentials — enrol it with `citywatch-hub agents enroll agent-r`"
	if n := strings.Count(out, want); n != 1 {
		t.Errorf("%d lines %q (want one, rate-limited):\n%s", n, want, out)
	}
	if !strings.Contains(out, `cause="not Authorized"`) || !strings.Contains(out, "username=agent-r") {
		t.Errorf("the log line does not name the cause and the username:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the log shows the secret:\n%s", out)
	}
	if s := c.Stats(); s.Connected || s.ConnectFailed < s.Refused || s.Published != 0 {
		t.Errorf("stats %+v", s)
	}
	for _, cn := range broker.Connects() {
		if cn.Username != agent || cn.Accepted {
			t.Errorf("CONNECT %+v", cn)
		}
	}

	broker.Enrol(agent, secret)
	state := wire.Topic(agent, wire.ChannelState)
	wiretest.Eventually(t, "the birth once enrolled", func() bool { return broker.Published(state) > 0 })
}
