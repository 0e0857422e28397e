package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSFiles are the settings of a TLS connection to the broker. File paths
// are relative to the working directory. The paths are not secret; the
// files' contents never appear in a message.
type TLSFiles struct {
	// CAFile is a PEM bundle of the certificate authorities to trust
	// instead of the system roots, e.g. the hub's own CA.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the agent's client certificate and its
	// private key (PEM), both or neither, for a broker that asks for one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked in the broker's certificate when it
	// is not the URL's host, e.g. a broker reached by IP address.
	ServerName string `yaml:"server_name"`
}

// tlsSchemes are the broker URL schemes that connect over TLS.
var tlsSchemes = map[string]bool{"ssl": true, "tls": true, "mqtts": true}

// TLS returns the settings of a TLS broker connection: nil for a tcp:// or
// mqtt:// broker, and for a TLS broker without a CA bundle a configuration
// whose nil RootCAs means the system roots.
func (b Broker) TLS() (*tls.Config, error) {
	if u, err := url.Parse(b.URL); err != nil || !tlsSchemes[u.Scheme] {
		return nil, nil
	}
	var p problems
	cfg := b.TLSFiles.load(&p, "broker.")
	if err := errors.Join(p...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Load reads the files into a client TLS configuration (TLS 1.2 at least):
// the CA bundle as its roots (none means the system roots), the client
// certificate and the server name. The error lists every problem, each
// prefixed with the setting's YAML key (ca_file, cert_file, key_file,
// server_name).
func (f TLSFiles) Load() (*tls.Config, error) {
	var p problems
	cfg := f.load(&p, "")
	if err := errors.Join(p...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validateTLS checks the broker's TLS settings: they belong to a TLS URL,
// and their files exist, parse and match.
func (b Broker) validateTLS(p *problems) {
	if b.TLSFiles == (TLSFiles{}) {
		return
	}
	first, _, _ := strings.Cut(b.URL, ",") // the brokers of a list all use TLS or none
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil || !brokerSchemes[u.Scheme] {
		return // broker.url reports it; the files are checked once it is right
	}
	if !tlsSchemes[u.Scheme] {
		for _, s := range []struct{ key, value string }{
			{"ca_file", b.CAFile}, {"cert_file", b.CertFile}, {"key_file", b.KeyFile}, {"server_name", b.ServerName},
		} {
			if s.value != "" {
				p.add("broker."+s.key, "a TLS setting, but broker.url %s:// connects without TLS; use ssl://, tls:// or mqtts://", u.Scheme)
			}
		}
		return
	}
	b.TLSFiles.load(p, "broker.")
}

// load builds the TLS configuration, adding every problem to p with its
// key after prefix; it returns nil if there was any.
func (f TLSFiles) load(p *problems, prefix string) *tls.Config {
	before := len(*p)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		cfg.RootCAs = loadCAs(p, prefix+"ca_file", f.CAFile)
	}
	switch {
	case f.CertFile != "" && f.KeyFile == "":
		p.add(prefix+"key_file", "missing (%scert_file is set)", prefix)
	case f.KeyFile != "" && f.CertFile == "":
		p.add(prefix+"cert_file", "missing (%skey_file is set)", prefix)
	case f.CertFile != "":
		if cert, ok := loadKeyPair(p, prefix, f.CertFile, f.KeyFile); ok {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	if f.ServerName != "" && !validServerName(f.ServerName) {
		p.add(prefix+"server_name", "%q is not a host name or IP address", f.ServerName)
	}
	if len(*p) > before {
		return nil
	}
	return cfg
}

func loadCAs(p *problems, key, file string) *x509.CertPool {
	data, err := os.ReadFile(file)
	if err != nil {
		p.add(key, "%v", err)
		return nil
	}
	certs, others, err := readCerts(data)
	switch {
	case err != nil:
		p.add(key, "%s: %v", file, err)
		return nil
	case len(others) > 0:
		// Most likely a private key pasted into the bundle, which must
		// not be shipped to every agent.
		p.add(key, "%s holds PEM blocks of type %s; a CA bundle holds only certificates", file, strings.Join(others, ", "))
		return nil
	case len(certs) == 0:
		p.add(key, "%s holds no PEM certificate", file)
		return nil
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

func loadKeyPair(p *problems, prefix, certFile, keyFile string) (tls.Certificate, bool) {
	certPEM, certErr := os.ReadFile(certFile)
	if certErr != nil {
		p.add(prefix+"cert_file", "%v", certErr)
	}
	keyPEM, keyErr := os.ReadFile(keyFile)
	if keyErr != nil {
		p.add(prefix+"key_file", "%v", keyErr)
	}
	if certErr != nil || keyErr != nil {
		return tls.Certificate{}, false
	}
	// Other blocks are allowed: a file holding certificate and key serves
	// as both settings.
	chain, _, err := readCerts(certPEM)
	switch {
	case err != nil:
		p.add(prefix+"cert_file", "%s: %v", certFile, err)
		return tls.Certificate{}, false
	case len(chain) == 0:
		p.add(prefix+"cert_file", "%s holds no PEM certificate", certFile)
		return tls.Certificate{}, false
	}
	now := time.Now()
	switch leaf := chain[0]; {
	case now.After(leaf.NotAfter):
		p.add(prefix+"cert_file", "%s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		p.add(prefix+"cert_file", "%s is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	// The certificate parsed, so what fails here is the key: missing,
	// unreadable, or not the certificate's. crypto/tls never quotes it.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.add(prefix+"key_file", "%s: %v (it must be the private key of %scert_file)", keyFile, err, prefix)
		return tls.Certificate{}, false
	}
	return cert, true
}

// readCerts parses every CERTIFICATE block of data and names the types of
// the other blocks.
func readCerts(data []byte) (certs []*x509.Certificate, others []string, err error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, others, nil
		}
		if block.Type != "CERTIFICATE" {
			others = append(others, fmt.Sprintf("%q", block.Type))
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
}

// validServerName accepts an IP address or a DNS name; it catches a URL or
// host:port pasted in by mistake.
func validServerName(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}
