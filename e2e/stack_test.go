package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
)

// stack is a hub and a simulated city around one real broker.
type stack struct {
	broker *testenv.Broker
	hub    *app.App
	sim    *sim.Sim
}

type stackOptions struct {
	city     sim.CityOptions
	influx   *testenv.Influx      // nil: no history store
	interval time.Duration        // agents' report and probe interval
	live     bool                 // relay live video on loopback
	hubCfg   func(*config.Config) // adjusts the hub's configuration
}

// testLogger writes to the test log only when -v or on failure, keeping CI
// output readable.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startHub(t testing.TB, ctx context.Context, brokerURL string, influx *testenv.Influx, adjust func(*config.Config)) *app.App {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.MQTT.URL = brokerURL
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

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{broker: testenv.Mosquitto(t)}
	adjust := o.hubCfg
	if o.live {
		adjust = func(c *config.Config) {
			c.Live.LoopbackOnly = true
			if o.hubCfg != nil {
				o.hubCfg(c)
			}
		}
	}
	s.hub = startHub(t, ctx, s.broker.URL(), o.influx, adjust)
	if o.interval == 0 {
		o.interval = time.Second
	}
	var err error
	s.sim, err = sim.New(sim.Options{BrokerURL: s.broker.URL(), City: o.city, Interval: o.interval, LiveLoopbackOnly: o.live, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- s.sim.Run(ctx) }()
	// Cleanups run last-in first-out: stop everything, then the hub's
	// cleanup (registered earlier) waits for it.
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
func (s *stack) waitAllOnline(t *testing.T) {
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

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	res, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, res.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

// events is a console websocket client collecting changes.
type events struct {
	conn    *websocket.Conn
	changes chan fleet.Change
	hello   uint64
}

func dialEvents(t testing.TB, hub *app.App) *events {
	t.Helper()
	return dialEventsURL(t, "ws"+strings.TrimPrefix(hub.ConsoleURL(), "http")+"api/events")
}

func dialEventsURL(t testing.TB, url string) *events {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
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

// metricValue reads one series from the hub's /metrics.
func metricValue(t testing.TB, hub *app.App, series string) float64 {
	t.Helper()
	res, err := httpClient.Get(hub.ConsoleURL() + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
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
