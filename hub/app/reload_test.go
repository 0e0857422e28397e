package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/certs"
)

// TestReloadIsAllOrNothing: a reload with one bad part (a broken rules
// file, a bad webhook) changes nothing; a good one serves the renewed
// certificate to new connections while a connection made before keeps
// working.
func TestReloadIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *certs.Pair {
		p, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Write(filepath.Join(dir, "http.pem"), filepath.Join(dir, "http-key.pem")); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := issue()
	cfg := testConfig(t)
	cfg.HTTP.TLS = config.TLS{Cert: filepath.Join(dir, "http.pem"), Key: filepath.Join(dir, "http-key.pem")}
	hub := run(t, cfg)
	u, err := url.Parse(hub.ConsoleURL())
	if err != nil {
		t.Fatal(err)
	}
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	served := func(c *tls.Conn) []byte { return c.ConnectionState().PeerCertificates[0].Raw }
	der := func(p *certs.Pair) []byte { b, _ := pem.Decode(p.CertPEM); return b.Bytes }
	healthy := func(c *tls.Conn) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hub.ConsoleURL()+"healthz", nil)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatalf("a connection made before the reload: %v", err)
		}
		res.Body.Close()
	}
	old := dial()
	if !bytes.Equal(served(old), der(first)) {
		t.Fatal("not serving the configured certificate")
	}

	second := issue() // the renewed certificate, in the same files
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - source: no_such_source\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Alarms.Rules = rules
	if err := hub.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "no_such_source") {
		t.Fatalf("a broken rules file: err = %v", err)
	}
	bad = cfg
	bad.Alarms.Webhooks = []config.Webhook{{Name: "pager", URL: "ftp://pager.example"}}
	if err := hub.Reload(context.Background(), bad); err == nil {
		t.Fatal("a bad webhook was accepted")
	}
	if c := dial(); !bytes.Equal(served(c), der(first)) {
		t.Fatal("a refused reload replaced the certificate")
	}

	if err := os.WriteFile(rules, []byte("rules:\n  - source: device_offline\n    severity: critical\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := cfg
	good.Alarms.Rules = rules
	if err := hub.Reload(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if c := dial(); !bytes.Equal(served(c), der(second)) {
		t.Fatal("new connections after the reload do not get the renewed certificate")
	}
	healthy(old)
}
