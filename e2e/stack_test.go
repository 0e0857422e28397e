package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/cli"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/internal/testenv"
)

// stack is a hub and a simulated city around one broker: a real Mosquitto
// that lets anyone in, or the hub's embedded broker, which admits only
// agents enrolled with the hub.
type stack struct {
	broker *testenv.Broker // nil with the embedded broker
	hub    *app.App
	sim    *sim.Sim
	api    *apiClient // an administrator's API token over the whole city
	// secrets holds each agent's credential (embedded broker only).
	secrets map[string]string
}

type stackOptions struct {
	city sim.CityOptions
	// mosquitto is a broker the test started (with a password file, an
	// ACL); nil starts an anonymous one, unless embedded.
	mosquitto *testenv.Broker
	influx    *testenv.Influx      // nil: no history store
	interval  time.Duration        // agents' report and probe interval
	live      bool                 // relay live video on loopback
	hubCfg    func(*config.Config) // adjusts the hub's configuration
	// embedded runs the agents against the hub's own broker, each with a
	// credential enrolled for it, instead of an anonymous Mosquitto.
	embedded bool
	// agents adjusts the agents' options once the hub is ready (its broker
	// addresses known).
	agents func(*sim.Options, *app.App)
}

// cliActor is who the tests are when they administer the hub directly, as
// its command line does.
var cliActor = identity.Actor{Name: "cli:e2e", Remote: "local"}

// testLogger writes to the test log only when -v or on failure, keeping CI
// output readable.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startHub runs a hub until ctx ends. Its data (accounts, tokens, agent
// credentials, the audit trail) is in a new temporary directory unless
// adjust names one; with brokerURL "" it runs its embedded broker.
func startHub(t testing.TB, ctx context.Context, brokerURL string, influx *testenv.Influx, adjust func(*config.Config)) *app.App {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.MQTT.URL = brokerURL
	if brokerURL == "" {
		cfg.MQTT.URL = "tcp://127.0.0.1:1" // ignored: the embedded broker is the hub's broker
		cfg.Broker = config.Broker{Enabled: true, Addr: "127.0.0.1:0", MaxClients: 1000}
	}
	cfg.MQTT.ClientID = "hub-" + strings.ReplaceAll(t.Name(), "/", "-")
	if len(cfg.MQTT.ClientID) > 64 {
		cfg.MQTT.ClientID = cfg.MQTT.ClientID[:64]
	}
	if influx != nil {
		cfg.Influx.URL, cfg.Influx.Org, cfg.Influx.Bucket = influx.URL(), influx.Org(), influx.Bucket()
		cfg.Influx.Token = config.Secret(influx.Token())
		cfg.Influx.FlushInterval = 200 * time.Millisecond
	}
	if adjust != nil {
		adjust(&cfg)
	}
	hub, err := app.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("hub: %v", err)
		}
	})
	select {
	case <-hub.Ready():
	case err := <-done:
		t.Fatalf("hub stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("hub not ready after 30s")
	}
	return hub
}

func startStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	// The agents stop first, so that they can still say goodbye to the
	// embedded broker.
	hubCtx, stopHub := context.WithCancel(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{}
	brokerURL := ""
	if !o.embedded {
		s.broker = o.mosquitto
		if s.broker == nil {
			s.broker = testenv.Mosquitto(t)
		}
		brokerURL = s.broker.URL()
	}
	adjust := o.hubCfg
	if o.live {
		adjust = func(c *config.Config) {
			c.Live.LoopbackOnly = true
			if o.hubCfg != nil {
				o.hubCfg(c)
			}
		}
	}
	s.hub = startHub(t, hubCtx, brokerURL, o.influx, adjust)
	t.Cleanup(stopHub) // before startHub's cleanup, which waits for the hub
	s.api = newToken(t, s.hub, "e2e", auth.Admin, auth.Everything)
	if o.interval == 0 {
		o.interval = time.Second
	}
	opts := sim.Options{BrokerURL: s.hub.BrokerURL(), City: o.city, Interval: o.interval, LiveLoopbackOnly: o.live, Logger: testLogger(t)}
	if o.embedded {
		s.secrets = map[string]string{}
		opts.Credentials = enrolAgents(t, s.hub, s.secrets)
	}
	if o.agents != nil {
		o.agents(&opts, s.hub)
	}
	var err error
	s.sim, err = sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- s.sim.Run(ctx) }()
	// Cleanups run last-in first-out: the agents stop before the hub.
	t.Cleanup(func() {
		cancel()
		if err := <-simDone; err != nil {
			t.Errorf("sim: %v", err)
		}
	})
	select {
	case <-s.sim.Ready():
	case err := <-simDone:
		t.Fatalf("sim stopped before it was ready: %v", err)
	}
	return s
}

// enrolAgents returns sim.Options.Credentials that enrol each agent with
// the hub as sim.New asks for it (username = agent id, password = its new
// secret), keeping the secrets in secrets.
func enrolAgents(t testing.TB, hub *app.App, secrets map[string]string) func(string) (string, string) {
	return func(agent string) (string, string) {
		secret, err := hub.Identity().EnrollAgent(context.Background(), cliActor, agent)
		if err != nil {
			t.Fatalf("enrolling %s: %v", agent, err)
		}
		secrets[agent] = secret
		return agent, secret
	}
}

// writeHubConfig writes a hub configuration file with data_dir dir and
// extra YAML, for the hub's command line.
func writeHubConfig(t testing.TB, dir, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("data_dir: %q\n", dir)+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hubCLI runs the hub's command line in this process with the
// configuration file conf and returns what it printed on stdout, trimmed:
// the secret of a new credential.
func hubCLI(t testing.TB, conf string, args ...string) string {
	t.Helper()
	var stdout, stderr strings.Builder
	noEnv := func(string) (string, bool) { return "", false }
	code := cli.Main(context.Background(), append(args, "-config", conf), cli.IO{In: strings.NewReader(""), Out: &stdout, Err: &stderr, Env: noEnv})
	if code != 0 {
		t.Fatalf("citywatch-hub %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// devicesOf returns the ids of every device of agent in the generated city.
func (s *stack) devicesOf(agent string) []string {
	for _, a := range s.sim.City().Agents {
		if a.ID != agent {
			continue
		}
		var ids []string
		for _, c := range a.Cameras {
			ids = append(ids, c.ID)
		}
		for _, d := range a.Sensors {
			ids = append(ids, d.ID)
		}
		return ids
	}
	return nil
}

func (s *stack) deviceCount() int {
	cams, sensors := s.sim.City().Devices()
	return cams + sensors
}

// waitAllOnline waits until the hub knows every device of the city online.
func (s *stack) waitAllOnline(t testing.TB) {
	t.Helper()
	want := s.deviceCount()
	eventually(t, 60*time.Second, func() error {
		sum := s.hub.Fleet().Summary()
		if sum.Devices != want || sum.ByStatus["online"] != want {
			return fmt.Errorf("summary %d devices, by status %v; want %d online", sum.Devices, sum.ByStatus, want)
		}
		return nil
	})
}

// eventually is testenv.Eventually, the name every e2e test uses.
func eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	testenv.Eventually(t, within, cond)
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// apiClient calls one hub's API as one caller: an API token (Authorization:
// Bearer) or a console session (its cookie, and the CSRF token on requests
// that change something).
type apiClient struct {
	name  string // who the hub says acts: "token:NAME" or the account name
	base  string // the console's URL, ending in /
	hc    *http.Client
	tls   *tls.Config // roots for https and wss; nil to use the system's
	token string      // the token's secret; "" for a session
	csrf  string      // the session's CSRF token
}

// newToken makes an API token on hub and returns a client using it.
func newToken(t testing.TB, hub *app.App, name string, role auth.Role, scope auth.Scope) *apiClient {
	t.Helper()
	tok, secret, err := hub.Identity().AddToken(context.Background(), cliActor, identity.TokenSpec{
		Name: name, Role: role, Scope: scope, ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("token %s: %v", name, err)
	}
	return &apiClient{name: "token:" + tok.Name, base: hub.ConsoleURL(), hc: httpClient, token: secret}
}

// testPassword is every test account's password; it meets the default
// policy.
const testPassword = "Correct-Horse-42-Battery"

// signIn makes an account from spec with testPassword and signs it in
// through the API as a person would, enrolling a second factor first when
// the account's role needs one.
func signIn(t testing.TB, hub *app.App, spec identity.AccountSpec) *apiClient {
	t.Helper()
	spec.Password, spec.OwnPassword = testPassword, true
	if _, _, err := hub.Identity().AddAccount(context.Background(), cliActor, spec); err != nil {
		t.Fatalf("account %s: %v", spec.Name, err)
	}
	c, err := login(hub.ConsoleURL(), spec.Name, testPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	var me identity.Me
	c.getJSON(t, "api/auth/me", &me)
	switch me.Restricted {
	case "":
	case "totp_enrollment":
		var setup identity.TOTPSetup
		c.postJSON(t, "api/auth/totp/setup", `{}`, &setup)
		code, err := totp.GenerateCodeCustom(setup.Secret, time.Now(),
			totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		c.postJSON(t, "api/auth/totp/confirm", `{"code":"`+code+`"}`, nil)
	default:
		t.Fatalf("%s signed in restricted: %s", spec.Name, me.Restricted)
	}
	return c
}

// login signs name in at base through client (nil: a new one with its own
// cookie jar).
func login(base, name, password string, hc *http.Client) (*apiClient, error) {
	if hc == nil {
		jar, _ := cookiejar.New(nil)
		hc = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	}
	c := &apiClient{name: name, base: base, hc: hc}
	body, _ := json.Marshal(map[string]string{"username": name, "password": password})
	code, answer, err := c.send(http.MethodPost, "api/auth/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("login %s: %d %s", name, code, answer)
	}
	var ok struct{ CSRF string }
	if err := json.Unmarshal([]byte(answer), &ok); err != nil || ok.CSRF == "" {
		return nil, fmt.Errorf("login answer %s: %v", answer, err)
	}
	c.csrf = ok.CSRF
	return c, nil
}

// trusting is the same caller trusting roots for https and wss.
func (c *apiClient) trusting(roots *x509.CertPool) *apiClient {
	cp := *c
	cp.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	cp.hc = &http.Client{Jar: c.hc.Jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cp.tls}}
	return &cp
}

// at is the same caller at another hub (one restarted on the same data).
func (c *apiClient) at(base string) *apiClient {
	cp := *c
	cp.base = base
	return &cp
}

// request builds a request with the caller's credentials.
func (c *apiClient) request(method, path, contentType string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.csrf != "" {
		req.Header.Set(auth.CSRFHeader, c.csrf)
	}
	return req, nil
}

func (c *apiClient) do(method, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := c.request(method, path, contentType, body)
	if err != nil {
		return nil, err
	}
	return c.hc.Do(req)
}

// send makes a request and returns the status and the whole body.
func (c *apiClient) send(method, path, contentType string, body io.Reader) (int, string, error) {
	res, err := c.do(method, path, contentType, body)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// call sends a JSON body (none if "") and returns the status and body.
func (c *apiClient) call(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	ctype := ""
	if body != "" {
		ctype = "application/json"
	}
	code, answer, err := c.send(method, path, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, answer
}

// post is call with POST.
func (c *apiClient) post(t testing.TB, path, body string) (int, string) {
	t.Helper()
	return c.call(t, http.MethodPost, path, body)
}

// postJSON posts body, fails the test unless the answer is 2xx, and
// decodes it into v (if not nil).
func (c *apiClient) postJSON(t testing.TB, path, body string, v any) {
	t.Helper()
	code, answer := c.post(t, path, body)
	if code/100 != 2 {
		t.Fatalf("POST %s as %s: %d %s", path, c.name, code, answer)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(answer), v); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, answer)
		}
	}
}

// fetch GETs path into v, or says why not.
func (c *apiClient) fetch(path string, v any) error {
	code, body, err := c.send(http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s as %s: %d %s", path, c.name, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return fmt.Errorf("GET %s: %v: %s", path, err, body)
	}
	return nil
}

// getJSON GETs path into v, failing the test unless the answer is 200.
func (c *apiClient) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	if err := c.fetch(path, v); err != nil {
		t.Fatal(err)
	}
}

// metrics returns the hub's /metrics.
func (c *apiClient) metrics(t testing.TB) string {
	t.Helper()
	code, body := c.call(t, http.MethodGet, "metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics as %s: %d %s", c.name, code, body)
	}
	return body
}

// metric reads one series from the hub's /metrics.
func (c *apiClient) metric(t testing.TB, series string) float64 {
	t.Helper()
	body := c.metrics(t)
	for line := range strings.SplitSeq(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && name == series {
			var v float64
			if _, err := fmt.Sscan(value, &v); err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not in /metrics:\n%s", series, body)
	return 0
}

// metricSum sums every series of a family in the hub's /metrics.
func (c *apiClient) metricSum(t testing.TB, family string) float64 {
	t.Helper()
	var sum float64
	for line := range strings.SplitSeq(c.metrics(t), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && (name == family || strings.HasPrefix(name, family+"{")) {
			var v float64
			if _, err := fmt.Sscan(value, &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// metricNonZero lists the series of a family in the hub's /metrics whose
// value is not 0, as they appear there ("name{labels} value").
func (c *apiClient) metricNonZero(t testing.TB, family string) []string {
	t.Helper()
	var out []string
	for line := range strings.SplitSeq(c.metrics(t), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && (name == family || strings.HasPrefix(name, family+"{")) && value != "0" {
			out = append(out, line)
		}
	}
	return out
}

// dial opens the event stream (ws, or wss for an https hub) with the
// caller's credentials.
func (c *apiClient) dial(dialer websocket.Dialer) (*websocket.Conn, error) {
	header := http.Header{}
	if c.token != "" {
		header.Set("Authorization", "Bearer "+c.token)
	}
	dialer.Jar = c.hc.Jar
	if c.tls != nil {
		dialer.TLSClientConfig = c.tls
	}
	if dialer.HandshakeTimeout == 0 {
		dialer.HandshakeTimeout = 30 * time.Second
	}
	conn, res, err := dialer.Dial("ws"+strings.TrimPrefix(c.base, "http")+"api/events", header)
	if err != nil && res != nil {
		body, _ := io.ReadAll(res.Body)
		err = fmt.Errorf("%w: %s %s", err, res.Status, body)
	}
	return conn, err
}

// events is a console websocket client collecting changes.
type events struct {
	conn    *websocket.Conn
	changes chan fleet.Change
	hello   uint64
}

// events opens the event stream as c and collects its changes.
func (c *apiClient) events(t testing.TB) *events {
	t.Helper()
	conn, err := c.dial(websocket.Dialer{})
	if err != nil {
		t.Fatalf("event stream as %s: %v", c.name, err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &events{conn: conn, changes: make(chan fleet.Change, 100_000)}
	var hello struct {
		Type string `json:"type"`
		Seq  uint64 `json:"seq"`
	}
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("first websocket message: %+v, %v", hello, err)
	}
	e.hello = hello.Seq
	go e.read()
	return e
}

func (e *events) read() {
	defer close(e.changes)
	for {
		var m struct {
			Type    string         `json:"type"`
			Change  *fleet.Change  `json:"change"`
			Changes []fleet.Change `json:"changes"`
		}
		if err := e.conn.ReadJSON(&m); err != nil {
			return
		}
		if m.Change != nil {
			e.changes <- *m.Change
		}
		for _, c := range m.Changes {
			e.changes <- c
		}
	}
}

var errNoMatch = errors.New("no matching change")

// await returns the first change for which match is true, failing the test
// after within.
func (e *events) await(t testing.TB, within time.Duration, what string, match func(fleet.Change) bool) fleet.Change {
	t.Helper()
	timeout := time.After(within)
	var seen []string
	for {
		select {
		case c, ok := <-e.changes:
			if !ok {
				t.Fatalf("websocket closed while waiting for %s", what)
			}
			if match(c) {
				return c
			}
			seen = append(seen, describe(c))
		case <-timeout:
			t.Fatalf("%v within %s: %s; saw %d other changes: %v", errNoMatch, within, what, len(seen), tail(seen, 10))
		}
	}
}

func describe(c fleet.Change) string {
	switch {
	case c.Device != nil:
		return fmt.Sprintf("%s %s %s→%s", c.Kind, c.Device.ID, c.From, c.To)
	case c.Agent != nil:
		return fmt.Sprintf("%s %s %s→%s (%d affected)", c.Kind, c.Agent.ID, c.From, c.To, len(c.Affected))
	}
	return string(c.Kind)
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// connectMQTT connects a test client to an MQTT broker as an agent would
// (MQTT 3.1.1, no automatic reconnection): with its client id, a login
// (none if user is "") and TLS settings (nil for none). It returns the
// broker's refusal as an error.
func connectMQTT(url, clientID, user, password string, tlsCfg *tls.Config) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).
		SetUsername(user).SetPassword(password)
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s as %q: no answer", url, user)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s as %q: %w", url, user, err)
	}
	return c, nil
}

// mustConnectMQTT is connectMQTT that fails the test on a refusal and
// disconnects when the test ends.
func mustConnectMQTT(t testing.TB, url, clientID, user, password string, tlsCfg *tls.Config) mqtt.Client {
	t.Helper()
	c, err := connectMQTT(url, clientID, user, password, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}
