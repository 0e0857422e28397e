package certs

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestServerAndClientHandshake runs a real TLS handshake with mutual
// authentication over loopback using certificates from one CA, and checks
// that a client trusting another CA is refused.
func TestServerAndClientHandshake(t *testing.T) {
	ca, err := NewCA("test ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Client("agent-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := srv.TLS()
	cliCert, _ := cli.TLS()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	names := make(chan string, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err == nil {
				names <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
				io.WriteString(tc, "ok")
			}
			tc.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cliCert}, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(conn)
	conn.Close()
	if string(b) != "ok" {
		t.Fatalf("read %q", b)
	}
	if got := <-names; got != "agent-1" {
		t.Errorf("client name %q, want agent-1", got)
	}

	other, _ := SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: other.Pool(), ServerName: "127.0.0.1"}); err == nil {
		t.Error("a client trusting another CA connected")
	}
	if srv.Fingerprint() == other.Fingerprint() || len(srv.Fingerprint()) != 64 {
		t.Errorf("fingerprints %s %s", srv.Fingerprint(), other.Fingerprint())
	}

	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := srv.Write(cf, kf); err != nil {
		t.Fatal(err)
	}
	back, err := Load(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Fingerprint() != srv.Fingerprint() {
		t.Error("a loaded pair differs from the one written")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
}
