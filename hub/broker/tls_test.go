package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/internal/certs"
)

// pki is a CA with a server certificate for 127.0.0.1.
type pki struct {
	ca     *certs.Pair
	server tls.Certificate
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca, err := certs.NewCA("citywatch test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return pki{ca: ca, server: cert}
}

// clientCert is a certificate for name signed by ca.
func clientCert(t *testing.T, ca *certs.Pair, name string) tls.Certificate {
	t.Helper()
	p, err := ca.Client(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// overTLS makes a login use TLS, trusting roots and presenting certs.
func overTLS(l login, roots *x509.CertPool, certs ...tls.Certificate) login {
	l.configure = func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12})
	}
	return l
}

func TestTLSListener(t *testing.T) {
	p := newPKI(t)
	tb := start(t, broker.Config{TLSAddr: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.ca.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}}, "agent-a", "agent-b")
	if tb.URL() != "" || !strings.HasPrefix(tb.TLSURL(), "ssl://127.0.0.1:") {
		t.Fatalf("URL() = %q, TLSURL() = %q; want no plain listener and ssl://127.0.0.1:PORT", tb.URL(), tb.TLSURL())
	}
	agentA, agentB := tb.agentLogin("agent-a"), tb.agentLogin("agent-b")
	agentA.url, agentB.url = tb.TLSURL(), tb.TLSURL()

	// A client speaking plain MQTT to the TLS port gets nowhere.
	plain := agentA
	plain.url = "tcp://" + tb.TLSAddr()
	if _, tok := dial(t, plain); tok.Error() == nil {
		t.Fatal("a plain MQTT client connected to the TLS listener")
	}
	// A client that does not trust the broker's CA refuses it.
	if _, tok := dial(t, overTLS(agentA, x509.NewCertPool())); tok.Error() == nil {
		t.Fatal("a client connected without trusting the server certificate")
	}
	// A client trusting the CA connects with its password; a certificate,
	// when given, must name the agent.
	connect(t, overTLS(agentA, p.ca.Pool()))
	connect(t, overTLS(agentB, p.ca.Pool(), clientCert(t, p.ca, "agent-b")))
	refused(t, overTLS(agentA, p.ca.Pool(), clientCert(t, p.ca, "agent-b")), codeNotAuthorized)

	st := tb.Stats()
	if st.Refused["no_connect"] < 2 || st.Refused["cert_mismatch"] != 1 {
		t.Errorf("refused %v; want two connections without a CONNECT and one cert_mismatch", st.Refused)
	}
}

func TestTLSRequiredClientCertificate(t *testing.T) {
	p := newPKI(t)
	other, err := certs.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tb := start(t, broker.Config{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}}, "agent-a")
	agentA := tb.agentLogin("agent-a")
	agentA.url = tb.TLSURL()

	for _, tt := range []struct {
		name  string
		login login
	}{
		{"no certificate", overTLS(agentA, p.ca.Pool())},
		{"certificate from another CA", overTLS(agentA, p.ca.Pool(), clientCert(t, other, "agent-a"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, tok := dial(t, tt.login)
			if tok.Error() == nil || c.IsConnected() {
				t.Fatal("connected")
			}
		})
	}
	t.Run("certificate naming another agent", func(t *testing.T) {
		refused(t, overTLS(agentA, p.ca.Pool(), clientCert(t, p.ca, "agent-b")), codeNotAuthorized)
	})
	t.Run("own certificate and password", func(t *testing.T) {
		connect(t, overTLS(agentA, p.ca.Pool(), clientCert(t, p.ca, "agent-a")))
	})
	t.Run("own certificate, wrong password", func(t *testing.T) {
		l := overTLS(agentA, p.ca.Pool(), clientCert(t, p.ca, "agent-a"))
		l.pass = "guess"
		refused(t, l, codeNotAuthorized)
	})
	// The hub's loopback client keeps the plain listener.
	tb.hub(t, "hub@test/1")
}
