package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
)

// clock is the injected time: tests move it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// auditLog is the trail, in memory.
type auditLog struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *auditLog) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r.Seq = uint64(len(a.recs) + 1)
	a.recs = append(a.recs, r)
	return r, nil
}

// find returns the records of action with outcome.
func (a *auditLog) find(action string, outcome audit.Outcome) []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Record
	for _, r := range a.recs {
		if r.Action == action && r.Outcome == outcome {
			out = append(out, r)
		}
	}
	return out
}

// cameras places each camera in a district.
type cameras map[string]string

func (c cameras) Camera(id string) (string, string, bool) {
	d, ok := c[id]
	return d, "site-" + d, ok
}

var testCameras = cameras{"cam-1": "north", "cam-2": "north", "cam-9": "south"}

// start is 09:00 UTC on a working day, so lockout times read well.
var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// testConfig is the default policy with argon2 cheap enough for tests.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Argon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1}
	cfg.PollInterval = 10 * time.Millisecond
	// Most tests log in often from one address; TestLoginRateLimit
	// tests the limit.
	cfg.LoginBurst = 1000
	// Tests sweep by calling sweep, when the clock says so.
	cfg.SweepInterval = time.Hour
	return cfg
}

// env is a service on its own SQLite file, served through a real
// auth.Router with its routes and three of a domain's: one needing
// status.read, one needing alarm.clear and a WHEP-like one that takes
// viewing links.
type env struct {
	t       *testing.T
	path    string // the store's (Open)
	clock   *clock
	audit   *auditLog
	svc     *Service
	store   *DBStore
	srv     *httptest.Server
	ended   chan []string
	revoked chan string
	logs    *testenv.LogBuffer
}

func newEnv(t *testing.T, configure ...func(*Config)) *env {
	t.Helper()
	return newEnvOn(t, filepath.Join(t.TempDir(), "identity.db"), configure...)
}

// newEnvOn is newEnv on the store at dsn (Open's argument).
func newEnvOn(t *testing.T, dsn string, configure ...func(*Config)) *env {
	t.Helper()
	e := &env{
		t: t, path: dsn, clock: &clock{t: start}, audit: &auditLog{},
		ended: make(chan []string, 100), revoked: make(chan string, 100), logs: new(testenv.LogBuffer),
	}
	cfg := testConfig()
	for _, c := range configure {
		c(&cfg)
	}
	e.svc, e.store = e.open(cfg, e.ended, e.revoked)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("service log:\n%s", e.logs.String())
		}
	})

	reg := metrics.NewRegistry()
	rt, err := auth.NewRouter(auth.Config{}, auth.Deps{Log: slog.New(slog.NewTextHandler(e.logs, nil)), Metrics: reg, Authenticator: e.svc})
	if err != nil {
		t.Fatal(err)
	}
	rt.Handle(e.svc.Routes()...)
	showPrincipal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(auth.From(r.Context()))
	})
	rt.Handle(
		auth.Route{Method: http.MethodGet, Path: "/api/test/status", Perm: auth.StatusRead, Handler: showPrincipal},
		auth.Route{Method: http.MethodPost, Path: "/api/test/clear", Perm: auth.AlarmClear, Handler: showPrincipal},
		auth.Route{Method: http.MethodGet, Path: "/api/cameras/{id}/whep", Perm: auth.LiveView, Handler: showPrincipal, QueryToken: true},
	)
	h := rt.Handler()
	// X-Test-Remote stands for the client's address, so that one test can
	// speak from several.
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("X-Test-Remote"); a != "" {
			r.RemoteAddr = a + ":40000"
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// open opens another service on the env's file, as another process would.
func (e *env) open(cfg Config, ended chan []string, revoked chan string) (*Service, *DBStore) {
	e.t.Helper()
	store, err := Open(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { store.Close() })
	deps := Deps{
		Store: store, Log: slog.New(slog.NewTextHandler(e.logs, nil)), Metrics: metrics.NewRegistry(), Audit: e.audit,
		Cameras: testCameras, Now: e.clock.Now,
	}
	if ended != nil {
		deps.OnSessionsEnded = func(ids []string) { ended <- ids }
	}
	if revoked != nil {
		deps.OnAgentRevoked = func(id string) { revoked <- id }
	}
	svc, err := New(cfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	return svc, store
}

var cli = Actor{Name: "cli:root", Remote: "local"}

// add creates an account from the command line and returns its initial
// password.
func (e *env) add(name string, role auth.Role, scope auth.Scope, grants ...auth.Permission) string {
	e.t.Helper()
	_, pw, err := e.svc.AddAccount(context.Background(), cli, AccountSpec{Name: name, Role: role, Scope: scope, Grants: grants})
	if err != nil {
		e.t.Fatalf("add %s: %v", name, err)
	}
	return pw
}

// client is one browser or program talking to the hub.
type client struct {
	e      *env
	hc     *http.Client
	remote string // X-Test-Remote
	csrf   string
	bearer string
	// totpSecret is the account's TOTP key once enrolled.
	totpSecret string
	password   string
}

func (e *env) client(remote string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, hc: &http.Client{Jar: jar}, remote: remote}
}

// reply is an answer: its status and body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) code() string {
	var b struct{ Code string }
	json.Unmarshal(r.body, &b)
	return b.Code
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (c *client) do(method, path string, body any) reply {
	c.e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, rd)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if c.remote != "" {
		req.Header.Set("X-Test-Remote", c.remote)
	}
	if c.csrf != "" {
		req.Header.Set(auth.CSRFHeader, c.csrf)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// want fails the test unless r has status and, if given, code.
func want(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.code() != code) {
		t.Fatalf("%s: got %d %s, want %d %s", what, r.status, r.body, status, code)
	}
}

// login signs in and keeps the CSRF token.
func (c *client) login(name, password string, extra map[string]string) reply {
	c.e.t.Helper()
	body := map[string]string{"username": name, "password": password}
	for k, v := range extra {
		body[k] = v
	}
	r := c.do(http.MethodPost, "/api/auth/login", body)
	if r.status == http.StatusOK {
		var ok struct{ CSRF string }
		r.decode(c.e.t, &ok)
		c.csrf, c.password = ok.CSRF, password
	}
	return r
}

// ready makes an account and a signed-in client of it that has done
// everything a first login asks: a new password and, for the roles that
// need it, TOTP.
func (e *env) ready(name string, role auth.Role, scope auth.Scope, grants ...auth.Permission) *client {
	e.t.Helper()
	c := e.client("127.0.0.2")
	want(e.t, "login "+name, c.login(name, e.add(name, role, scope, grants...), nil), http.StatusOK, "")
	pw := "Fresh-Secret-2026!"
	want(e.t, "password of "+name, c.do(http.MethodPost, "/api/auth/password", map[string]string{"current": c.password, "new": pw}),
		http.StatusNoContent, "")
	c.password = pw
	if slices.Contains(DefaultConfig().TOTPRoles, role) {
		c.enrolTOTP()
	}
	return c
}

// enrolTOTP sets up and confirms TOTP with a real code, and returns the
// recovery codes.
func (c *client) enrolTOTP() []string {
	t := c.e.t
	t.Helper()
	r := c.do(http.MethodPost, "/api/auth/totp/setup", nil)
	want(t, "totp setup", r, http.StatusOK, "")
	var setup TOTPSetup
	r.decode(t, &setup)
	code, err := totp.GenerateCode(setup.Secret, c.e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	r = c.do(http.MethodPost, "/api/auth/totp/confirm", map[string]string{"code": code})
	want(t, "totp confirm", r, http.StatusOK, "")
	var rc struct {
		Codes []string `json:"recovery_codes"`
	}
	r.decode(t, &rc)
	c.totpSecret = setup.Secret
	return rc.Codes
}

// code is the account's TOTP code now.
func (c *client) code() string {
	c.e.t.Helper()
	code, err := totp.GenerateCode(c.totpSecret, c.e.clock.Now())
	if err != nil {
		c.e.t.Fatal(err)
	}
	return code
}

// cookie is the client's session cookie value.
func (c *client) cookie() string {
	for _, ck := range c.hc.Jar.Cookies(mustURL(c.e.srv.URL)) {
		if ck.Name == "citywatch_session" {
			return ck.Value
		}
	}
	return ""
}

// receive waits for what a callback sent; the deadline only bounds a
// broken test.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing after 10 s", what)
	}
	var zero T
	return zero
}

// drain empties a callback channel.
func drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func isRefusal(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
