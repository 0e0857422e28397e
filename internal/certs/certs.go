// Package certs makes X.509 certificates for TLS: a private certificate
// authority and server and client certificates it signs. The hub uses it
// for its self-signed option (HTTPS and MQTT over TLS for trials); tests
// use it to run every TLS path with real certificates. Keys are ECDSA
// P-256.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Pair is a certificate and its private key, PEM-encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

// TLS returns the pair as a tls.Certificate.
func (p *Pair) TLS() (tls.Certificate, error) { return tls.X509KeyPair(p.CertPEM, p.KeyPEM) }

// Fingerprint is the SHA-256 of the certificate, hex, as browsers show it.
func (p *Pair) Fingerprint() string {
	sum := sha256.Sum256(p.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool returns a pool holding this certificate, for trusting a CA.
func (p *Pair) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// Write stores the pair as certFile and keyFile (the key readable only by
// its owner).
func (p *Pair) Write(certFile, keyFile string) error {
	if err := os.WriteFile(certFile, p.CertPEM, 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.WriteFile(keyFile, p.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// NewCA makes a self-signed certificate authority valid for the given time.
func NewCA(name string, valid time.Duration) (*Pair, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"citywatch"}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return issue(tmpl, nil, valid)
}

// Server makes a server certificate signed by ca for the given host names
// and IP addresses.
func (ca *Pair) Server(hosts []string, valid time.Duration) (*Pair, error) {
	if len(hosts) == 0 {
		return nil, errors.New("certs: a server certificate needs at least one host")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"citywatch"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issue(tmpl, ca, valid)
}

// Client makes a client certificate signed by ca whose common name is
// name (an agent id, for MQTT over TLS with client certificates).
func (ca *Pair) Client(name string, valid time.Duration) (*Pair, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"citywatch"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(tmpl, ca, valid)
}

// SelfSigned makes a self-signed server certificate for hosts: for trying
// HTTPS without a CA. Browsers warn about it; operators compare the
// fingerprint the hub logs.
func SelfSigned(hosts []string, valid time.Duration) (*Pair, error) {
	ca, err := NewCA("citywatch self-signed", valid)
	if err != nil {
		return nil, err
	}
	return ca.Server(hosts, valid)
}

// Load reads a PEM certificate and key written by Write (or any PEM pair).
func Load(certFile, keyFile string) (*Pair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", filepath.Base(certFile), err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", filepath.Base(certFile), err)
	}
	p := &Pair{CertPEM: certPEM, KeyPEM: keyPEM, cert: leaf}
	if k, ok := pair.PrivateKey.(*ecdsa.PrivateKey); ok {
		p.key = k
	}
	return p, nil
}

// NotAfter is when the certificate expires.
func (p *Pair) NotAfter() time.Time { return p.cert.NotAfter }

func issue(tmpl *x509.Certificate, ca *Pair, valid time.Duration) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour) // tolerate clocks a little behind
	tmpl.NotAfter = now.Add(valid)
	parent, signer := tmpl, key
	if ca != nil {
		if ca.key == nil {
			return nil, errors.New("certs: the CA's key is not an ECDSA key this package can sign with")
		}
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("certs: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: key: %w", err)
	}
	return &Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		cert:    cert,
		key:     key,
	}, nil
}
