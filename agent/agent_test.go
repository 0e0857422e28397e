package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent"
	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/internal/mqtttest"
	"github.com/citywatch/citywatch/agent/internal/wiretest"
	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/agent/sensor"
	"github.com/citywatch/citywatch/internal/certs"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// testConfig is a site with one camera probed only on demand (the
// interval is an hour) and one simulated sensor, spooling in a directory
// of the test's.
func testConfig(t *testing.T, brokerURL string) config.Config {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, `
broker: {url: %q}
uplink: {spool_dir: %q}
id: agent-t1
site: {id: site-t1, name: Test site, district: Xinhua, location: {lat: 30.6, lon: 114.3}}
interval: 1s
probe: {interval: 1h, timeout: 1s, stream_every: 0s}
cameras:
  - {id: cam-1, name: Gate, rtsp: "rtsp://admin:pw@10.0.0.2/ch1", heading: 90, fov: 70, range_m: 40, criticality: 4}
sensors:
  - {id: pir-1, name: Hall, kind: intrusion, driver: sim, supervision: 2s}
`, brokerURL, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runAgent runs an agent of cfg until the test ends, watching its topics
// on brokerURL from before it starts; it returns once the inventory is out.
func runAgent(t *testing.T, brokerURL string, cfg config.Config) (*agent.Agent, *wiretest.Watcher) {
	t.Helper()
	w := wiretest.Watch(t, brokerURL, cfg.ID)
	a, err := agent.New(cfg, agent.Options{Cameras: &prober{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	w.Next(wire.ChannelInventory, nil)
	return a, w
}

// prober answers every probe with success and records the cameras probed.
type prober struct {
	mu     sync.Mutex
	probed []string
}

func (p *prober) Probe(_ context.Context, t probe.Target) probe.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probed = append(p.probed, t.ID)
	return probe.Result{At: time.Now(), TCP: time.Millisecond, RTSP: 3 * time.Millisecond}
}

func (p *prober) Sample(ctx context.Context, t probe.Target, _ time.Duration) probe.Result {
	return p.Probe(ctx, t)
}

func (p *prober) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.probed...)
}

func TestAgent(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-t1")
	sim := sensor.NewSim(200 * time.Millisecond)
	cams := &prober{}
	first := testConfig(t, broker.URL())
	a, err := agent.New(first, agent.Options{
		Sensors: map[string]sensor.Driver{"sim": sim}, Cameras: cams, Version: "1.2.3",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	birth := w.State(wire.AgentOnline)
	if birth.Version != "1.2.3" || birth.Site != "site-t1" || birth.Interval != 1 {
		t.Errorf("birth %+v", birth)
	}
	inv := w.Next(wire.ChannelInventory, nil).Inventory
	if len(inv.Devices) != 2 || inv.Devices[0].Camera == nil || inv.Devices[0].Criticality != 4 ||
		inv.Devices[1].SensorKind != wire.SensorIntrusion || inv.Devices[1].District != "Xinhua" {
		t.Errorf("inventory %+v", inv)
	}
	if s := fmt.Sprintf("%+v", inv); strings.Contains(s, "rtsp") || strings.Contains(s, "pw") {
		t.Errorf("inventory leaks the camera URL: %s", s)
	}

	// The sensor checks in at once.
	ev := w.Next(wire.ChannelEvents, nil).Event
	if ev.Device != "pir-1" || ev.From != wire.StatusUnknown || ev.To != wire.StatusOnline {
		t.Errorf("first event %+v", ev)
	}

	// Health every interval, each with both devices and a larger seq.
	var last uint64
	for range 3 {
		h := w.Next(wire.ChannelHealth, nil).Health
		if len(h.Devices) != 2 || h.Interval != 1 || h.Seq <= last {
			t.Fatalf("health %+v after seq %d", h, last)
		}
		last = h.Seq
	}

	sim.Trigger("pir-1", true)
	if ev := w.Next(wire.ChannelEvents, nil).Event; ev.Type != wire.EventTriggered || ev.Device != "pir-1" {
		t.Errorf("trigger event %+v", ev)
	}

	// A probe command probes the camera now and answers with a report.
	w.Publish(wire.Topic("agent-t1", wire.ChannelCommands),
		`{"v":1,"id":"cmd-1","ts":"`+time.Now().UTC().Format(time.RFC3339)+`","type":"probe","devices":["cam-1"]}`)
	ev = w.Next(wire.ChannelEvents, func(m wire.Message) bool { return m.Event.Device == "cam-1" }).Event
	if ev.To != wire.StatusOnline {
		t.Errorf("camera event after probe command %+v", ev)
	}
	h := w.Next(wire.ChannelHealth, nil).Health
	if h.Devices[0].ID != "cam-1" || h.Devices[0].Status != wire.StatusOnline || h.Devices[0].Metrics[wire.MetricRTSPMillis] != 3 {
		t.Errorf("health after probe command %+v", h.Devices[0])
	}
	if got := cams.calls(); len(got) != 1 || got[0] != "cam-1" {
		t.Errorf("probed %v, want cam-1 once", got)
	}

	// A reload adds a camera and republishes the inventory.
	cfg := first
	cfg.Cameras = append(cfg.Cameras, cfg.Cameras[0])
	cfg.Cameras[1].ID = "cam-2"
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	inv = w.Next(wire.ChannelInventory, nil).Inventory
	if len(inv.Devices) != 3 || inv.Devices[1].ID != "cam-2" {
		t.Errorf("inventory after reload %+v", inv.Devices)
	}
	w.Next(wire.ChannelHealth, func(m wire.Message) bool { return len(m.Health.Devices) == 3 })

	// Silence the sensor: supervision loss after its 2 s window.
	sim.SetSupervision("pir-1", false)
	ev = w.Next(wire.ChannelEvents, func(m wire.Message) bool { return m.Event.Device == "pir-1" }).Event
	if ev.To != wire.StatusOffline || ev.Reason != wire.ReasonSupervisionLost {
		t.Errorf("supervision event %+v", ev)
	}

	a.DropConnection()
	if will := w.State(wire.AgentOffline); !will.Will || will.Conn != 1 {
		t.Errorf("will %+v", will)
	}
	w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 })

	cancel()
	<-done
	if runErr != nil {
		t.Errorf("Run: %v", runErr)
	}
	if st := w.State(wire.AgentOffline); st.Will || st.Conn != 2 {
		t.Errorf("clean offline state %+v", st)
	}
	// A report in flight when the connection was cut fails; it must have
	// been kept and sent again.
	if s := a.Stats(); s.Published < 10 || s.DroppedEvents != 0 || s.Failed > s.Resent || s.Seq < s.Published {
		t.Errorf("stats %+v", s)
	}
}

// TestAgentSpool: with the broker down, the agent's events and health
// reports wait in the configured spool directory, and follow after the
// reconnect with the seqs they were made with; the run's directory goes
// when the agent stops.
func TestAgentSpool(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-t1")
	sim := sensor.NewSim(200 * time.Millisecond)
	cfg := testConfig(t, broker.URL())
	a, err := agent.New(cfg, agent.Options{Sensors: map[string]sensor.Driver{"sim": sim}, Cameras: &prober{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	w.Next(wire.ChannelInventory, nil)
	runs := filepath.Join(cfg.Uplink.SpoolDir, cfg.ID, "run-*")
	if dirs, _ := filepath.Glob(runs); len(dirs) != 1 {
		t.Fatalf("run directories %v, want one", dirs)
	}

	broker.Stop()
	wiretest.Eventually(t, "disconnected", func() bool { return !a.Stats().Connected })
	before := a.Stats()
	sim.Trigger("pir-1", true)
	wiretest.Eventually(t, "the trigger and a health report spooled", func() bool {
		s := a.Stats()
		return s.Spooled >= before.Spooled+2 && s.SpoolQueued >= 2
	})

	broker.Restart()
	birth := w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 }).State
	ev := w.Next(wire.ChannelEvents, func(m wire.Message) bool { return m.Event.Type == wire.EventTriggered }).Event
	if ev.Device != "pir-1" || ev.Seq >= birth.Seq {
		t.Errorf("trigger %+v; want pir-1, made before the birth (seq %d)", ev, birth.Seq)
	}
	wiretest.Eventually(t, "backlog sent", func() bool { s := a.Stats(); return s.Resent >= 2 && s.SpoolQueued == 0 })
	if s := a.Stats(); s.DroppedHealth+s.DroppedEvents != 0 || s.SpoolErrors != 0 {
		t.Errorf("stats %+v", s)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil // for the cleanup
	if dirs, _ := filepath.Glob(runs); len(dirs) != 0 {
		t.Errorf("run directories left after the stop: %v", dirs)
	}
}

// TestBrokerTLSFromConfig: the broker section's CA bundle and client
// certificate reach the uplink; the broker sees the agent's certificate.
func TestBrokerTLSFromConfig(t *testing.T) {
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("agent-t1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := config.TLSFiles{
		CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "agent.pem"), KeyFile: filepath.Join(dir, "agent.key"),
	}
	if err := os.WriteFile(files.CAFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := client.Write(files.CertFile, files.KeyFile); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.Start(t, mqtttest.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	}})
	cfg := testConfig(t, broker.URL())
	cfg.Broker.TLSFiles = files
	a, err := agent.New(cfg, agent.Options{Cameras: &prober{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	wiretest.Eventually(t, "the birth over TLS", func() bool {
		return broker.Published(wire.Topic("agent-t1", wire.ChannelState)) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	got := broker.Connects()
	if len(got) != 1 || got[0].CommonName != "agent-t1" || got[0].ClientID != "agent-t1" {
		t.Errorf("broker saw %+v, want agent-t1 with its certificate", got)
	}
}

func TestNewRejects(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1")
	cfg.Sensors[0].Driver = "modbus"
	cfg.Cameras[0].FOV = 0
	_, err := agent.New(cfg, agent.Options{})
	if err == nil || !strings.Contains(err.Error(), `sensors[0].driver: unknown driver "modbus"`) ||
		!strings.Contains(err.Error(), "cameras[0].fov") {
		t.Fatalf("New: err = %v, want the unknown driver and the bad fov", err)
	}
}

// TestInventoryTooLarge: the retained inventory cannot be split, so a
// site whose inventory the hub would refuse is refused at start.
func TestInventoryTooLarge(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1")
	cam := cfg.Cameras[0]
	// JSON escapes '<' as \u003c: six bytes for each byte of the name.
	cam.Name = strings.Repeat("<", 120)
	cfg.Cameras = nil
	for i := range wire.MaxDevices - len(cfg.Sensors) {
		cam.ID = fmt.Sprintf("cam-%d", i)
		cfg.Cameras = append(cfg.Cameras, cam)
	}
	_, err := agent.New(cfg, agent.Options{})
	if err == nil || !strings.Contains(err.Error(), "over the hub's limit") {
		t.Fatalf("New: err = %v", err)
	}
}

func TestReloadRejectsIdentityChange(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1")
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*config.Config)
	}{
		{"id", func(c *config.Config) { c.ID = "agent-t2" }},
		{"broker", func(c *config.Config) { c.Broker.URL = "tcp://127.0.0.1:2" }},
		{"site", func(c *config.Config) { c.Site.ID = "site-t2" }},
		{"interval", func(c *config.Config) { c.Interval = 5 * time.Second }},
		{"live", func(c *config.Config) { c.Live.MaxSessions = 8 }},
		{"uplink", func(c *config.Config) { c.Uplink.SpoolBytes = 1 << 30 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := cfg
			tt.mutate(&next)
			if err := a.Reload(next); err == nil {
				t.Error("reload accepted a change of identity")
			}
		})
	}
	next := cfg
	next.Site.Name = "Renamed"
	if err := a.Reload(next); err != nil {
		t.Errorf("reload of a site name: %v", err)
	}
}

// TestLiveCommands sends live commands over the broker: they reach the
// live manager, and its answers come back on the live channel in a shape
// the hub accepts. The media path is tested in agent/live.
func TestLiveCommands(t *testing.T) {
	broker := testenv.Mosquitto(t)
	a, w := runAgent(t, broker.URL(), testConfig(t, broker.URL()))

	commands := wire.Topic("agent-t1", wire.ChannelCommands)
	ts := time.Now().UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		session, device string
		want            wire.Reason
	}{
		{"ls-1", "cam-9", wire.ReasonLiveNoCamera},
		{"ls-2", "cam-1", wire.ReasonLiveNegotiate}, // the offer has no H.264
	} {
		w.Publish(commands, `{"v":1,"id":"cmd-`+tc.session+`","ts":"`+ts+`","type":"live_start","devices":["`+tc.device+`"],"session":"`+tc.session+
			`","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n"}`)
		l := w.Next(wire.ChannelLive, nil).Live
		if l.Session != tc.session || l.Device != tc.device || l.Type != wire.LiveStopped || l.Reason != tc.want {
			t.Errorf("live %+v; want stopped with %s", l, tc.want)
		}
	}
	w.Publish(commands, `{"v":1,"id":"cmd-3","ts":"`+ts+`","type":"live_stop","session":"ls-1","reason":"viewer_left"}`)
	wiretest.Eventually(t, "the late stop is ignored", func() bool { return a.LiveStats().Ignored == 1 })
}

// A snapshot command is answered with the camera's JPEG from its snapshot
// URL (credentials as basic authentication), or with why there is none.
func TestSnapshotCommand(t *testing.T) {
	pic := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte{7}, 1000)...)
	cam := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(pic)
	}))
	t.Cleanup(cam.Close)
	broker := testenv.Mosquitto(t)
	cfg := testConfig(t, broker.URL())
	cfg.Cameras[0].Snapshot = secret.URL(strings.Replace(cam.URL, "http://", "http://admin:pw@", 1) + "/snap.jpg")
	cfg.Cameras = append(cfg.Cameras, cfg.Cameras[0])
	cfg.Cameras[1].ID, cfg.Cameras[1].Snapshot = "cam-2", ""
	_, w := runAgent(t, broker.URL(), cfg)
	commands := wire.Topic("agent-t1", wire.ChannelCommands)
	ts := time.Now().UTC().Format(time.RFC3339)
	w.Publish(commands, `{"v":1,"id":"cmd-s1","ts":"`+ts+`","type":"snapshot","devices":["cam-1"]}`)
	s := w.Next(wire.ChannelSnapshot, nil).Snapshot
	if s.Request != "cmd-s1" || s.Device != "cam-1" || !bytes.Equal(s.JPEG, pic) || s.Error != "" {
		t.Errorf("snapshot of cam-1: %q %q %d bytes %q", s.Request, s.Device, len(s.JPEG), s.Error)
	}
	w.Publish(commands, `{"v":1,"id":"cmd-s2","ts":"`+ts+`","type":"snapshot","devices":["cam-2"]}`)
	if s := w.Next(wire.ChannelSnapshot, nil).Snapshot; s.Request != "cmd-s2" || len(s.JPEG) != 0 || !strings.Contains(s.Error, "no snapshot URL") {
		t.Errorf("snapshot of cam-2: %+v", s)
	}
}
