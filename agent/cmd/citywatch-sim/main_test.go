package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/internal/certs"
)

func TestLoadCredentials(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    map[string]string
		wantErr []string
	}{
		{name: "one secret per agent", file: "agent-riverside-01: cwa_one\nagent-riverside-02: \"cwa_two\"\n",
			want: map[string]string{"agent-riverside-01": "cwa_one", "agent-riverside-02": "cwa_two"}},
		{name: "bad id and empty secret", file: "agent riverside: cwa_hidden\nagent-02: \"\"\n",
			wantErr: []string{`"agent riverside"`, "agent agent-02: empty secret"}},
		{name: "not a map", file: "- agent-01\n- cwa_hidden\n", wantErr: []string{"want a YAML map of agent id: secret"}},
		{name: "empty", file: "", wantErr: []string{"no agents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "credentials.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadCredentials(path)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				for id, s := range tt.want {
					if got[id] != s {
						t.Errorf("%s: got %q, want %q", id, got[id], s)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %v", got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "cwa_hidden") {
				t.Errorf("the error quotes a secret: %v", err)
			}
		})
	}
}

// TestClientTLSPerAgent: {agent} in -cert and -key gives every agent its
// own certificate; without it all share one.
func TestClientTLSPerAgent(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"agent-a", "agent-b"} {
		p, err := ca.Client(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Write(filepath.Join(dir, id+".pem"), filepath.Join(dir, id+".key")); err != nil {
			t.Fatal(err)
		}
	}

	cfg, perAgent, err := clientTLS(caFile, filepath.Join(dir, "{agent}.pem"), filepath.Join(dir, "{agent}.key"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 0 || perAgent == nil {
		t.Fatalf("config %+v, per agent %v", cfg, perAgent != nil)
	}
	for _, id := range []string{"agent-a", "agent-b"} {
		c, err := perAgent(id)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil || leaf.Subject.CommonName != id {
			t.Errorf("certificate of %s: %v, %v", id, leaf.Subject, err)
		}
	}
	if _, err := perAgent("agent-c"); err == nil || !strings.Contains(err.Error(), "agent-c.pem") {
		t.Errorf("missing certificate: %v", err)
	}

	shared, none, err := clientTLS("", filepath.Join(dir, "agent-a.pem"), filepath.Join(dir, "agent-a.key"))
	if err != nil || none != nil || len(shared.Certificates) != 1 || shared.RootCAs != nil {
		t.Errorf("shared certificate: %+v, per agent %v, %v", shared, none != nil, err)
	}
	if _, _, err := clientTLS(filepath.Join(dir, "missing.pem"), "", ""); err == nil || !strings.Contains(err.Error(), "TLS (-ca, -cert, -key): ca_file: open ") {
		t.Errorf("missing CA: %v", err)
	}
}
