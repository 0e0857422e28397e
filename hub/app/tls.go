package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/certs"
)

// selfSignedFor is how long a self-signed certificate the hub makes is
// valid; it makes a new one when less than selfSignedRenew is left.
const (
	selfSignedFor   = 825 * 24 * time.Hour
	selfSignedRenew = 30 * 24 * time.Hour
)

// serverTLS returns the TLS configuration to serve with, or nil when t asks
// for none: the configured certificate, or a self-signed one kept in
// dataDir/tls/name.pem (made once, so its fingerprint stays the same across
// restarts and can be checked by hand). The certificate is served through
// a slot a reload can refill (see (*certificate).reload); the slot is nil
// for a self-signed one, which nothing replaces while the hub runs.
func serverTLS(t config.TLS, dataDir, name string, hosts []string, log *slog.Logger) (*tls.Config, *certificate, error) {
	if !t.On() {
		return nil, nil, nil
	}
	var pair *certs.Pair
	var err error
	if t.SelfSigned {
		pair, err = selfSigned(filepath.Join(dataDir, "tls"), name, hosts)
	} else {
		pair, err = certs.Load(t.Cert, t.Key)
	}
	if err != nil {
		return nil, nil, err
	}
	cert, err := pair.TLS()
	if err != nil {
		return nil, nil, err
	}
	log.Info("TLS certificate", "for", name, "self_signed", t.SelfSigned, "sha256", pair.Fingerprint(), "expires", pair.NotAfter())
	slot := &certificate{name: name}
	slot.cur.Store(&cert)
	cfg := &tls.Config{GetCertificate: slot.get, MinVersion: tls.VersionTLS12}
	if t.SelfSigned {
		slot = nil
	}
	return cfg, slot, nil
}

// certificate is a served certificate that a configuration reload may
// replace (a renewed one), without closing a connection.
type certificate struct {
	name string
	cur  atomic.Pointer[tls.Certificate]
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// load reads the certificate t names, to swap in with set once the whole
// reload is known to be good.
func (c *certificate) load(t config.TLS) (*tls.Certificate, *certs.Pair, error) {
	if !t.On() || t.SelfSigned {
		return nil, nil, fmt.Errorf("%s TLS: switching TLS on, off or to self-signed needs a restart", c.name)
	}
	pair, err := certs.Load(t.Cert, t.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s TLS: %w", c.name, err)
	}
	cert, err := pair.TLS()
	if err != nil {
		return nil, nil, fmt.Errorf("%s TLS: %w", c.name, err)
	}
	return &cert, pair, nil
}

func selfSigned(dir, name string, hosts []string) (*certs.Pair, error) {
	cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if p, err := certs.Load(cert, key); err == nil && time.Until(p.NotAfter()) > selfSignedRenew {
		return p, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p, err := certs.SelfSigned(hosts, selfSignedFor)
	if err != nil {
		return nil, err
	}
	return p, p.Write(cert, key)
}

// certHosts are the names a self-signed certificate is made for: loopback,
// the machine's name, the address listened on when it names one, and the
// host names the hub answers to.
func certHosts(listen string, names []string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
			hosts = append(hosts, h)
		}
	}
	hosts = append(hosts, names...)
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// clientCAs makes cfg ask clients for a certificate signed by the CA in
// caFile; require refuses clients without one.
func clientCAs(cfg *tls.Config, caFile string, require bool) error {
	if caFile == "" {
		return nil
	}
	pool, err := pemPool(caFile)
	if err != nil {
		return err
	}
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	if require {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return nil
}

// clientTLS is the hub's TLS as a client of an external broker: the CA to
// trust and its own certificate; nil when none is configured (the system's
// roots then serve an ssl:// URL).
func clientTLS(m config.MQTT) (*tls.Config, error) {
	if m.CAFile == "" && m.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if m.CAFile != "" {
		pool, err := pemPool(m.CAFile)
		if err != nil {
			return nil, fmt.Errorf("config: mqtt.ca_file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if m.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(m.CertFile, m.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("config: mqtt.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func pemPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", filepath.Base(file))
	}
	return pool, nil
}
