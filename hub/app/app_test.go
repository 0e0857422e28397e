package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/identity"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is a hub on free ports with its data in a temporary directory.
func testConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Broker = config.Broker{Enabled: true, Addr: "127.0.0.1:0", MaxClients: 100}
	return cfg
}

// run starts a hub and stops it when the test ends.
func run(t testing.TB, cfg config.Config) *App {
	t.Helper()
	hub, stop := start(t, cfg)
	t.Cleanup(stop)
	return hub
}

// start starts a hub and returns it once ready, with what stops it and
// checks that it stopped cleanly.
func start(t testing.TB, cfg config.Config) (*App, func()) {
	t.Helper()
	hub, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30s after cancel")
		}
	}
	select {
	case <-hub.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("not ready after 30s")
	}
	return hub, stop
}

// session is a signed-in browser: a cookie and the CSRF token.
type session struct {
	hc   *http.Client
	csrf string
}

// signIn makes an account of role seeing the whole city and signs it in.
func signIn(t *testing.T, hub *App, name string, role auth.Role) *session {
	t.Helper()
	ctx := context.Background()
	const pw = "Correct-Horse-42"
	spec := identity.AccountSpec{Name: name, Role: role, Scope: auth.Everything, Password: pw, OwnPassword: true}
	if _, _, err := hub.Identity().AddAccount(ctx, identity.Actor{Name: "cli:test", Remote: "local"}, spec); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	s := &session{hc: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
	res, body := s.do(t, hub, http.MethodPost, "api/auth/login", `{"username":"`+name+`","password":"`+pw+`"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %d %s", name, res.StatusCode, body)
	}
	var ok struct{ CSRF string }
	if err := json.Unmarshal([]byte(body), &ok); err != nil || ok.CSRF == "" {
		t.Fatalf("login answer %s: %v", body, err)
	}
	s.csrf = ok.CSRF
	return s
}

func (s *session) do(t *testing.T, hub *App, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, hub.ConsoleURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.csrf != "" {
		req.Header.Set(auth.CSRFHeader, s.csrf)
	}
	res, err := s.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = "nowhere"
	cfg.MQTT.Queue = 0
	cfg.DataDir = ""
	_, err := New(cfg, quiet())
	for _, want := range []string{"listen", "mqtt.queue", "data_dir"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want it to name %s", err, want)
		}
	}
}

// TestEveryRouteHasAPolicy builds the list of every route from the router
// and checks each against every role: public routes answer anyone; every
// other answers 401 without credentials, 403 to a role without its
// permission and neither to a role with it. A route added without a policy
// cannot even be registered; one whose policy is wrong fails here.
func TestEveryRouteHasAPolicy(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.TOTPRoles = nil // so every role signs in with a password here
	hub := run(t, cfg)
	sessions := map[auth.Role]*session{}
	for _, r := range auth.Roles {
		sessions[r] = signIn(t, hub, "t-"+strings.ReplaceAll(string(r), "_", "-"), r)
	}
	anonymous := &session{hc: &http.Client{Timeout: 20 * time.Second}}
	param := regexp.MustCompile(`\{[a-z]+\}`)
	routes := hub.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, rt := range routes {
		if rt.Method == "" {
			continue // the console's files: any method, public
		}
		// Logging out would end the sessions the rest of the test uses.
		if strings.HasPrefix(rt.Path, "/api/auth/logout") {
			continue
		}
		path := strings.TrimPrefix(param.ReplaceAllString(rt.Path, "x-none"), "/")
		t.Run(rt.Pattern(), func(t *testing.T) {
			res, body := anonymous.do(t, hub, rt.Method, path, "{}")
			switch code := gateCode(res, body); {
			case rt.Perm == auth.Public && code != "":
				t.Errorf("public route refused anonymous: %d %s", res.StatusCode, body)
			case rt.Perm != auth.Public && code != "unauthenticated":
				t.Errorf("anonymous got %d, want 401 unauthenticated: %s", res.StatusCode, body)
			}
			for _, role := range auth.Roles {
				res, body := sessions[role].do(t, hub, rt.Method, path, "{}")
				allowed := rt.Perm == auth.Public || auth.NewSet(role, nil).Has(rt.Perm)
				code := gateCode(res, body)
				if allowed && code != "" || !allowed && code != "forbidden" {
					t.Errorf("%s (allowed %v) got %d: %s", role, allowed, res.StatusCode, body)
				}
			}
		})
	}
	// A refusal of an authenticated caller is in the trail.
	page, err := hub.Audit().Query(context.Background(), audit.Filter{Action: "access.denied", Actor: "t-auditor", Limit: 5})
	if err != nil || len(page.Records) == 0 || page.Records[0].Outcome != audit.Denied {
		t.Errorf("denials not audited: %+v %v", page, err)
	}
}

// gateCode is the code of a refusal by the gate (not by the handler,
// which may refuse a request with made-up parameters for its own
// reasons), or "".
func gateCode(res *http.Response, body string) string {
	var e auth.ErrorBody
	if res.StatusCode != 401 && res.StatusCode != 403 || json.Unmarshal([]byte(body), &e) != nil {
		return ""
	}
	switch e.Code {
	case "unauthenticated", "forbidden", "restricted", "csrf", "origin":
		return e.Code
	}
	return ""
}

// With the embedded broker the hub is self-contained: it listens, connects
// its ingest to its own broker with its own credential, reports healthy,
// and stops cleanly; its data directory holds the trail and the accounts.
func TestEmbeddedBrokerHub(t *testing.T) {
	cfg := testConfig(t)
	hub := run(t, cfg)
	if hub.BrokerURL() == cfg.MQTT.URL || !strings.HasPrefix(hub.BrokerURL(), "tcp://127.0.0.1:") {
		t.Errorf("BrokerURL %q is not the embedded broker's", hub.BrokerURL())
	}
	var health struct {
		Components map[string]struct{ Status string } `json:"components"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(hub.ConsoleURL() + "healthz")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(res.Body).Decode(&health)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if health.Components["mqtt"].Status == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mqtt never healthy: %+v", health)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := health.Components["history"].Status; got != "degraded" {
		t.Errorf("history without InfluxDB is %q, want degraded", got)
	}
	if got := health.Components["audit"].Status; got != "ok" {
		t.Errorf("audit is %q, want ok", got)
	}
	// Live video is wired in: its API answers a supervisor, and an unknown
	// camera is refused before anything is sent to an agent.
	sup := signIn(t, hub, "sup", auth.Supervisor)
	if res, body := sup.do(t, hub, http.MethodGet, "api/live/streams", ""); res.StatusCode != http.StatusOK {
		t.Errorf("streams = %d %s", res.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, hub.ConsoleURL()+"api/cameras/cam-none/whep", strings.NewReader("v=0\r\n"))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set(auth.CSRFHeader, sup.csrf)
	res, err := sup.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("WHEP for an unknown camera = %d, want 404", res.StatusCode)
	}
	// The login is in the trail.
	page, err := hub.Audit().Query(context.Background(), audit.Filter{Action: "auth.login", Actor: "sup"})
	if err != nil || len(page.Records) != 1 || page.Records[0].Outcome != audit.Success {
		t.Errorf("login audit: %+v %v", page, err)
	}
}

func TestMaintenanceConfigProblemsListed(t *testing.T) {
	cfg := testConfig(t)
	cfg.Alarms.Maintenance = []config.Maintenance{
		{Name: "night", Sites: []string{"s1"}, Daily: "22:00-06:00", Timezone: "Asia/Shanghai"},
		{Name: "", Daily: "25:00-06:00", Timezone: "Mars/Olympus"},
	}
	_, err := New(cfg, quiet())
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"maintenance[1].timezone", "name is missing", "covers nothing", "HH:MM"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "maintenance[0]") {
		t.Errorf("the valid window was refused:\n%v", err)
	}
}
