package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/metrics"
)

type discardAudit struct{}

func (discardAudit) Append(_ context.Context, r audit.Record) (audit.Record, error) { return r, nil }

// quietService is a service for fuzzing and benchmarks: no Run, a fixed
// clock, an audit trail that keeps nothing.
func quietService(tb testing.TB) *Service {
	tb.Helper()
	store, err := Open(filepath.Join(tb.TempDir(), "identity.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	svc, err := New(testConfig(), Deps{
		Store: store, Log: slog.New(slog.DiscardHandler), Metrics: metrics.NewRegistry(), Audit: discardAudit{},
		Now: func() time.Time { return start },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// FuzzLoginBody feeds the login endpoint arbitrary bodies: each is
// refused or answered with a JSON error body, never a crash or a 500, and
// what the decoder accepts is one object that encodes back to itself.
func FuzzLoginBody(f *testing.F) {
	for _, seed := range []string{
		`{"username":"olga","password":"Initial-Pass-99"}`,
		`{"username":"olga","password":"x","totp":"123456"}`,
		`{"username":"olga","password":"x","recovery_code":"aaaa-bbbb-cccc-dddd"}`,
		`{"username":"olga","password":"x"} {"username":"b"}`,
		`{"username":"olga","password":"x","role":"admin"}`,
		`{"username":["a"]}`, `[]`, `null`, `"s"`, ``, `{`, "{\"username\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	svc := quietService(f)
	if _, _, err := svc.AddAccount(context.Background(), cli, AccountSpec{
		Name: "olga", Role: auth.Operator, Scope: north, Password: "Initial-Pass-99",
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req loginRequest
		if err := decodeJSON(body, &req); err == nil {
			if b := bytes.TrimSpace(body); b[0] != '{' {
				t.Fatalf("accepted %q, which is not an object", body)
			}
			enc, _ := json.Marshal(req)
			var again loginRequest
			if err := decodeJSON(enc, &again); err != nil || again != req {
				t.Fatalf("%q decoded to %+v, which does not round-trip: %+v, %v", body, req, again, err)
			}
		} else if !isRefusal(err, "bad_request") {
			t.Fatalf("decode %q: %v is not a bad_request refusal", body, err)
		}

		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/api/auth/login", bytes.NewReader(body))
		svc.handleLogin(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
			http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("body %q: status %d %s", body, w.Code, w.Body)
		}
		var eb auth.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || (w.Code != http.StatusOK && eb.Code == "") {
			t.Fatalf("body %q: answer %d %q is not a JSON error body", body, w.Code, w.Body)
		}
	})
}

// BenchmarkAuthenticate measures the gate's check of a session cookie and
// of a bearer token, which runs on every API request.
func BenchmarkAuthenticate(b *testing.B) {
	svc := quietService(b)
	ctx := context.Background()
	if _, _, err := svc.AddAccount(ctx, cli, AccountSpec{Name: "olga", Role: auth.Operator, Scope: north, Password: "Initial-Pass-99"}); err != nil {
		b.Fatal(err)
	}
	svc.writeMu.Lock()
	rec := svc.st.accounts["olga"].AccountRecord
	cookie, err := svc.startSession(ctx, rec, "127.0.0.1", "bench", start, nil)
	svc.writeMu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	_, secret, err := svc.AddToken(ctx, cli, TokenSpec{Name: "erp", Role: auth.Analyst, Scope: auth.Everything, ExpiresAt: start.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		setup func(*http.Request)
		via   auth.Via
	}{
		{"session", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "citywatch_session", Value: cookie}) }, auth.ViaSession},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }, auth.ViaToken},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/api/devices", nil)
			bc.setup(r)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := svc.Authenticate(r, false)
					if err != nil || p.Via != bc.via {
						b.Errorf("Authenticate: %+v, %v", p, err)
						return
					}
				}
			})
		})
	}
}
