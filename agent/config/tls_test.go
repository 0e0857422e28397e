package config

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/internal/certs"
	"github.com/citywatch/citywatch/wire"
)

// tlsFiles are PEM files for the TLS tests, good and bad, in a temp dir.
type tlsFiles struct {
	ca, cert, key         string // a CA and a client certificate it signed
	otherKey              string // a key of another certificate
	expired, expiredKey   string
	garbage, keyInBundle  string
	brokenCert, combined  string // combined: certificate and key in one file
	caPair, client, other *certs.Pair
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	must := func(p *certs.Pair, err error) *certs.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(name string, data ...[]byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(asStrings(data), "")), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ca := must(certs.NewCA("test CA", time.Hour))
	client := must(ca.Client("agent-001", time.Hour))
	other := must(ca.Client("agent-002", time.Hour))
	expired := must(ca.Client("agent-001", -time.Minute))
	return tlsFiles{
		ca:          write("ca.pem", ca.CertPEM),
		cert:        write("agent.pem", client.CertPEM),
		key:         write("agent.key", client.KeyPEM),
		otherKey:    write("other.key", other.KeyPEM),
		expired:     write("expired.pem", expired.CertPEM),
		expiredKey:  write("expired.key", expired.KeyPEM),
		garbage:     write("garbage.pem", []byte("not PEM at all\n")),
		keyInBundle: write("bundle.pem", ca.CertPEM, ca.KeyPEM),
		brokenCert:  write("broken.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")),
		combined:    write("combined.pem", client.CertPEM, client.KeyPEM),
		caPair:      ca, client: client, other: other,
	}
}

func asStrings(bs [][]byte) []string {
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = string(b)
	}
	return s
}

// TestValidateTLS checks every TLS setting's problems, each reported with
// its YAML path, and only those.
func TestValidateTLS(t *testing.T) {
	f := writeTLSFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name   string
		url    string
		files  TLSFiles
		want   []string // one substring per problem
		reject []string // what must not appear
	}{
		{name: "CA and client certificate", url: "tls://broker:8883",
			files: TLSFiles{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, ServerName: "broker.example"}},
		{name: "certificate and key in one file", url: "mqtts://broker",
			files: TLSFiles{CertFile: f.combined, KeyFile: f.combined}},
		{name: "TLS URL alone uses the system roots", url: "ssl://broker:8883"},
		{name: "TLS settings with tcp://", url: "tcp://broker:1883",
			files: TLSFiles{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, ServerName: "b"},
			want: []string{
				"broker.ca_file: a TLS setting, but broker.url tcp:// connects without TLS; use ssl://, tls:// or mqtts://",
				"broker.cert_file: a TLS setting, but broker.url tcp://",
				"broker.key_file: a TLS setting, but broker.url tcp://",
				"broker.server_name: a TLS setting, but broker.url tcp://",
			}},
		{name: "TLS settings with mqtt://", url: "mqtt://broker", files: TLSFiles{CAFile: f.ca},
			want: []string{"broker.ca_file: a TLS setting, but broker.url mqtt://"}},
		{name: "CA file missing", url: "tls://b", files: TLSFiles{CAFile: missing},
			want: []string{"broker.ca_file: open " + missing + ": no such file or directory"}},
		{name: "CA file not PEM", url: "tls://b", files: TLSFiles{CAFile: f.garbage},
			want: []string{"broker.ca_file: " + f.garbage + " holds no PEM certificate"}},
		{name: "CA bundle with a private key", url: "tls://b", files: TLSFiles{CAFile: f.keyInBundle},
			want:   []string{`broker.ca_file: ` + f.keyInBundle + ` holds PEM blocks of type "EC PRIVATE KEY"; a CA bundle holds only certificates`},
			reject: []string{string(f.caPair.KeyPEM[40:80])}},
		{name: "CA certificate corrupt", url: "tls://b", files: TLSFiles{CAFile: f.brokenCert},
			want: []string{"broker.ca_file: " + f.brokenCert + ": certificate 1: x509:"}},
		{name: "certificate without key", url: "tls://b", files: TLSFiles{CertFile: f.cert},
			want: []string{"broker.key_file: missing (broker.cert_file is set)"}},
		{name: "key without certificate", url: "tls://b", files: TLSFiles{KeyFile: f.key},
			want: []string{"broker.cert_file: missing (broker.key_file is set)"}},
		{name: "certificate and key missing", url: "tls://b", files: TLSFiles{CertFile: missing, KeyFile: missing},
			want: []string{"broker.cert_file: open " + missing, "broker.key_file: open " + missing}},
		{name: "certificate not PEM", url: "tls://b", files: TLSFiles{CertFile: f.garbage, KeyFile: f.key},
			want: []string{"broker.cert_file: " + f.garbage + " holds no PEM certificate"}},
		{name: "key of another certificate", url: "tls://b", files: TLSFiles{CertFile: f.cert, KeyFile: f.otherKey},
			want:   []string{"broker.key_file: " + f.otherKey + ": tls: private key does not match public key (it must be the private key of broker.cert_file)"},
			reject: []string{string(f.other.KeyPEM[40:80]), string(f.client.KeyPEM[40:80])}},
		{name: "key not PEM", url: "tls://b", files: TLSFiles{CertFile: f.cert, KeyFile: f.garbage},
			want: []string{"broker.key_file: " + f.garbage + ": tls: failed to find any PEM data in key input"}},
		{name: "client certificate expired", url: "tls://b", files: TLSFiles{CertFile: f.expired, KeyFile: f.expiredKey},
			want: []string{"broker.cert_file: " + f.expired + " expired on "}},
		{name: "server name with a port", url: "tls://b", files: TLSFiles{ServerName: "broker.example:8883"},
			want: []string{`broker.server_name: "broker.example:8883" is not a host name or IP address`}},
		{name: "server name a URL", url: "tls://b", files: TLSFiles{ServerName: "tls://broker"},
			want: []string{`broker.server_name: "tls://broker" is not a host name`}},
		{name: "server name an IP address", url: "tls://b", files: TLSFiles{ServerName: "10.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.ID, cfg.Broker.ClientID = "agent-001", "agent-001"
			cfg.Site = Site{ID: "s", District: "D", Location: wire.Location{Lat: 30, Lon: 114}}
			cfg.Broker.URL, cfg.Broker.TLSFiles = tt.url, tt.files
			err := cfg.Validate()
			var list []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			}
			if len(list) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(list), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(list[i].Error(), w) {
					t.Errorf("problem %d = %q, want %q", i, list[i], w)
				}
			}
			if err == nil {
				return
			}
			for _, r := range append(tt.reject, "-----BEGIN", "PRIVATE KEY-----") {
				if strings.Contains(err.Error(), r) {
					t.Errorf("the error quotes file contents (%q): %v", r, err)
				}
			}
		})
	}
}

// TestBrokerTLS checks what the agent hands the uplink.
func TestBrokerTLS(t *testing.T) {
	f := writeTLSFiles(t)
	b := Broker{URL: "tls://10.0.0.1:8883", TLSFiles: TLSFiles{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, ServerName: "broker.example"}}
	cfg, err := b.TLS()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "broker.example" || cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 {
		t.Fatalf("TLS config %+v", cfg)
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil || leaf.Subject.CommonName != "agent-001" {
		t.Errorf("client certificate %v, %v", leaf, err)
	}
	// The roots are the CA bundle, not the system's: a certificate the CA
	// signed verifies, one of another CA does not.
	verify := func(ca *certs.Pair) error {
		t.Helper()
		srv, err := ca.Server([]string{"broker.example"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := srv.TLS()
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "broker.example"})
		return err
	}
	if err := verify(f.caPair); err != nil {
		t.Errorf("a server certificate of the CA does not verify: %v", err)
	}
	other, err := certs.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(other); err == nil {
		t.Error("a server certificate of another CA verifies")
	}

	plain, err := Broker{URL: "tcp://broker:1883"}.TLS()
	if plain != nil || err != nil {
		t.Errorf("tcp:// broker: %+v, %v", plain, err)
	}
	sys, err := Broker{URL: "mqtts://broker"}.TLS()
	if err != nil || sys == nil || sys.RootCAs != nil || sys.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS broker without files: %+v, %v (want the system roots)", sys, err)
	}
	// A file removed after validation fails the build, with its path.
	if err := os.Remove(f.key); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TLS(); err == nil || !strings.Contains(err.Error(), "broker.key_file: open "+f.key) {
		t.Errorf("missing key: %v", err)
	}
	// TLSFiles.Load names the keys without the broker prefix.
	if _, err := (TLSFiles{CertFile: f.cert}).Load(); err == nil || err.Error() != "key_file: missing (cert_file is set)" {
		t.Errorf("Load: %v", err)
	}
}

func TestEnvOverridesTLS(t *testing.T) {
	f := writeTLSFiles(t)
	env := map[string]string{
		EnvBrokerURL:        "tls://10.1.1.1:8883",
		EnvBrokerCAFile:     f.ca,
		EnvBrokerCertFile:   f.cert,
		EnvBrokerKeyFile:    f.key,
		EnvBrokerServerName: "broker.example",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	data, err := os.ReadFile("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(data, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := TLSFiles{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, ServerName: "broker.example"}
	if cfg.Broker.TLSFiles != want {
		t.Errorf("TLS settings %+v, want %+v", cfg.Broker.TLSFiles, want)
	}

	// The same keys in YAML, and a bad file set there is caught.
	_, err = parse([]byte(`
id: a1
broker: {url: "tls://b:8883", ca_file: `+f.garbage+`, cert_file: `+f.cert+`}
site: {id: s1, district: D, location: {lat: 1, lon: 2}}
`), noEnv)
	if err == nil || !strings.Contains(err.Error(), "broker.ca_file: ") || !strings.Contains(err.Error(), "broker.key_file: missing") {
		t.Errorf("bad TLS settings in YAML: %v", err)
	}
}
