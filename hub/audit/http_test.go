package audit

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/metrics"
)

// authnFunc is a fake Authenticator: this package's tests need a
// principal in the request, not the accounts package.
type authnFunc func(r *http.Request, queryToken bool) (*auth.Principal, error)

func (f authnFunc) Authenticate(r *http.Request, queryToken bool) (*auth.Principal, error) {
	return f(r, queryToken)
}

func principal(name string, role auth.Role) *auth.Principal {
	return &auth.Principal{
		Name: name, Role: role, Perms: auth.NewSet(role, nil), Scope: auth.Everything,
		Via: auth.ViaToken, Session: "tok-" + name,
	}
}

// serve serves l's routes through the real gate; the X-Test-User header
// names the caller.
func serve(t *testing.T, l *Log) *httptest.Server {
	t.Helper()
	users := map[string]*auth.Principal{
		"alice": principal("alice", auth.Auditor),
		"oscar": principal("oscar", auth.Operator),
	}
	rt, err := auth.NewRouter(auth.Config{}, auth.Deps{
		Log: slog.New(slog.NewTextHandler(t.Output(), nil)), Metrics: metrics.NewRegistry(),
		Authenticator: authnFunc(func(r *http.Request, _ bool) (*auth.Principal, error) {
			p, ok := users[r.Header.Get("X-Test-User")]
			if !ok {
				return nil, auth.ErrNoCredentials
			}
			c := *p
			return &c, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	rt.Handle(l.Routes()...)
	srv := httptest.NewServer(rt.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, user, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHTTPRefuses(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	srv := serve(t, l)
	hash := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name, user, path string
		status           int
		code, msg        string
	}{
		{"unknown parameter", "alice", "/api/audit?user=bob", 400, "bad_request", `unknown parameter "user"`},
		{"repeated parameter", "alice", "/api/audit?actor=a&actor=b", 400, "bad_request", "given 2 times"},
		{"bad time", "alice", "/api/audit?from=yesterday", 400, "bad_request", "RFC 3339"},
		{"limit zero", "alice", "/api/audit?limit=0", 400, "bad_request", "limit"},
		{"limit too large", "alice", "/api/audit?limit=5000", 400, "bad_request", "limit"},
		{"bad format", "alice", "/api/audit?format=xlsx", 400, "bad_request", "format"},
		{"bad outcome", "alice", "/api/audit?outcome=maybe", 400, "bad_request", "outcome"},
		{"every problem at once", "alice", "/api/audit?limit=x&format=y", 400, "bad_request", "format"},
		{"malformed query", "alice", "/api/audit?actor=%zz", 400, "bad_request", "not well-formed"},
		{"verify unknown parameter", "alice", "/api/audit/verify?seq=1", 400, "bad_request", "unknown parameter"},
		{"verify seq without hash", "alice", "/api/audit/verify?head_seq=3", 400, "bad_request", "hash"},
		{"verify bad seq", "alice", "/api/audit/verify?head_seq=x&head_hash=" + hash, 400, "bad_request", "head_seq"},
		{"not an auditor", "oscar", "/api/audit", 403, "forbidden", "audit.read"},
		{"not signed in", "", "/api/audit/verify", 401, "unauthenticated", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.user, tt.path)
			var e auth.ErrorBody
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if resp.StatusCode != tt.status || e.Code != tt.code || !strings.Contains(e.Error, tt.msg) {
				t.Fatalf("%d %+v, want %d %s saying %q", resp.StatusCode, e, tt.status, tt.code, tt.msg)
			}
		})
	}
	if rep := mustVerify(t, l); rep.Records != 0 {
		t.Fatalf("refused requests appended %d records", rep.Records)
	}
}

func TestHTTPPage(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	recs := appendN(t, l, 5)
	srv := serve(t, l)
	resp, body := get(t, srv, "alice", "/api/audit?limit=2&action=alarm.&from=2026-11-28T12:00:00Z")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw) != 2 || raw["records"] == nil || raw["next"] == nil {
		t.Fatalf("body %s: want records and next", body)
	}
	var page Page
	json.Unmarshal([]byte(body), &page)
	if len(page.Records) != 2 || page.Records[0] != recs[4] || page.Records[1] != recs[3] || page.Next != 4 {
		t.Fatalf("page %+v", page)
	}
	resp, body = get(t, srv, "alice", "/api/audit?actor=nobody")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"records":[],"next":0}` {
		t.Fatalf("empty page: %d %s", resp.StatusCode, body)
	}
}

func TestHTTPExport(t *testing.T) {
	e := newEnv(t)
	c := &clock{t: t0}
	l := e.open(t, Options{Now: c.Now}, Deps{})
	recs := appendN(t, l, 6)
	srv := serve(t, l)

	resp, body := get(t, srv, "alice", "/api/audit?format=csv&actor=user1")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="citywatch-audit-20261128-120000.csv"` {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 3 || rows[1][0] != "1" || rows[2][0] != "4" || rows[2][10] != recs[3].Hash {
		t.Fatalf("CSV %q, %v: want the header and records 1 and 4", rows, err)
	}

	page, err := l.Query(context.Background(), Filter{Action: ExportAction})
	if err != nil || len(page.Records) != 1 {
		t.Fatalf("export records %+v, %v", page.Records, err)
	}
	got := page.Records[0]
	want := Record{
		Seq: 7, At: t0, Actor: "alice", Role: "auditor", Session: "tok-alice", Remote: "127.0.0.1",
		Action: ExportAction, Outcome: Success, Detail: "actor=user1&format=csv", Hash: got.Hash,
	}
	if got != want {
		t.Fatalf("export recorded as %+v, want %+v", got, want)
	}

	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/api/audit?format=csv", nil)
	req.Header.Set("X-Test-User", "alice")
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") == "" {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	if seq, _, _ := l.Head(context.Background()); seq != 7 {
		t.Fatalf("HEAD recorded an export (head %d)", seq)
	}

	resp, body = get(t, srv, "alice", "/api/audit?format=jsonl")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" ||
		!strings.HasSuffix(resp.Header.Get("Content-Disposition"), `.jsonl"`) {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	// Every record, the two exports included: each is recorded before
	// it streams.
	if lines := strings.Count(body, "\n"); lines != 8 {
		t.Fatalf("%d JSONL lines, want 8:\n%s", lines, body)
	}
}

func TestHTTPVerify(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, Options{}, Deps{})
	recs := appendN(t, l, 4)
	srv := serve(t, l)
	verify := func(query string) Report {
		t.Helper()
		resp, body := get(t, srv, "alice", "/api/audit/verify"+query)
		var rep Report
		if err := json.Unmarshal([]byte(body), &rep); resp.StatusCode != 200 || err != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return rep
	}
	lastVerify := func() Record {
		t.Helper()
		p, err := l.Query(context.Background(), Filter{Action: VerifyAction, Limit: 1})
		if err != nil || len(p.Records) != 1 {
			t.Fatalf("verify records %+v, %v", p.Records, err)
		}
		return p.Records[0]
	}

	rep := verify("")
	if !rep.OK || rep.Records != 4 || rep.HeadSeq != 4 || rep.KeyFingerprint != l.KeyFingerprint() {
		t.Fatalf("report %+v", rep)
	}
	if r := lastVerify(); r.Actor != "alice" || r.Outcome != Success || !strings.Contains(r.Detail, "chain intact: 4 records") {
		t.Fatalf("verify recorded as %+v", r)
	}

	rep = verify("?head_seq=4&head_hash=" + strings.ToUpper(recs[3].Hash))
	if !rep.OK || rep.Checkpoint != CheckpointMatched {
		t.Fatalf("report with checkpoint %+v", rep)
	}

	exec(t, e.attacker(t), `DROP TRIGGER records_no_update`, `UPDATE records SET actor = 'nobody' WHERE seq = 2`)
	rep = verify("")
	if rep.OK || rep.FirstBroken == nil || rep.FirstBroken.Seq != 2 {
		t.Fatalf("report after tampering %+v", rep)
	}
	if r := lastVerify(); r.Outcome != Failure || !strings.Contains(r.Detail, "chain broken at seq 2: hash mismatch") {
		t.Fatalf("failed verification recorded as %+v", r)
	}
}

// TestHandlerWithoutPrincipal serves a route outside the gate, a wiring
// mistake: the handler answers an internal error rather than trusting
// anything else in the request.
func TestHandlerWithoutPrincipal(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	for _, route := range l.Routes() {
		for _, p := range []*auth.Principal{nil, principal("oscar", auth.Operator)} {
			req := httptest.NewRequest(http.MethodGet, route.Path, nil)
			req.Header.Set("X-Test-User", "alice")
			if p != nil {
				req = req.WithContext(auth.WithPrincipal(req.Context(), p))
			}
			w := httptest.NewRecorder()
			route.Handler.ServeHTTP(w, req)
			if want := map[bool]int{true: 500, false: 403}[p == nil]; w.Code != want {
				t.Errorf("%s with principal %v: %d, want %d", route.Path, p != nil, w.Code, want)
			}
		}
	}
}

// TestFilterValuesRoundTrip checks Values writes what ParseFilter reads.
func TestFilterValuesRoundTrip(t *testing.T) {
	f := Filter{
		From: t0, To: t0.Add(90 * time.Second), Actor: "a b", Object: "alarm/A-1", Outcome: Denied, Remote: "::1",
		Action: "alarm.*", Q: "50% & more", Before: 17, Limit: 30,
	}
	got, format, err := ParseFilter(f.Values())
	if err != nil || format != FormatJSON || !filtersEqual(got, f) {
		t.Fatalf("ParseFilter(Values) = %+v %q %v, want %+v", got, format, err, f)
	}
	if q := (Filter{Before: 3}).Values().Encode(); q != "before=3" {
		t.Fatalf("Values of a sparse filter: %q", q)
	}
}

func filtersEqual(a, b Filter) bool {
	ta, tb := a.From, a.To
	a.From, a.To = b.From, b.To
	return a == b && ta.Equal(b.From) && tb.Equal(b.To)
}
