package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

func noEnv(string) (string, bool) { return "", false }

func TestDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(data, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	site := wire.Location{Lat: 30.6, Lon: 114.3}
	tests := []struct {
		name      string
		got, want any
	}{
		{"broker.url", cfg.Broker.URL, DefaultBrokerURL},
		{"broker.client_id", cfg.Broker.ClientID, "agent-001"},
		{"interval", cfg.Interval, DefaultInterval},
		{"probe.interval", cfg.Probe.Interval, DefaultProbeInterval},
		{"probe.timeout", cfg.Probe.Timeout, DefaultProbeTimeout},
		{"probe.stream_every", cfg.Probe.StreamEvery, DefaultStreamEvery},
		{"probe.stream_sample", cfg.Probe.StreamSample, DefaultStreamSample},
		{"probe.failures_before_offline", cfg.Probe.FailuresBeforeOffline, DefaultFailuresBeforeOffline},
		{"live.max_sessions", cfg.Live.MaxSessions, DefaultLiveMaxSessions},
		{"live.udp_ports", cfg.Live.UDPPorts, ""},
		{"live.loopback_only", cfg.Live.LoopbackOnly, false},
		{"uplink.spool_dir", cfg.Uplink.SpoolDir, filepath.Join(os.TempDir(), "citywatch-agent-spool")},
		{"uplink.spool_bytes", cfg.Uplink.SpoolBytes, int64(64 << 20)},
		{"uplink.resend_rate", cfg.Uplink.ResendRate, float64(DefaultResendRate)},
		{"cameras[0].district", cfg.Cameras[0].District, "Xinhua"},
		{"cameras[0].location", cfg.Cameras[0].Location, site},
		{"cameras[0].criticality", cfg.Cameras[0].Criticality, DefaultCriticality},
		{"cameras[0].min_fps", cfg.Cameras[0].MinFPS, float64(DefaultMinFPS)},
		{"sensors[0].district", cfg.Sensors[0].District, "Xinhua"},
		{"sensors[0].location", cfg.Sensors[0].Location, site},
		{"sensors[0].criticality", cfg.Sensors[0].Criticality, DefaultCriticality},
		{"sensors[0].supervision", cfg.Sensors[0].Supervision, DefaultSupervision},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestFileOverridesDefaults(t *testing.T) {
	cfg, err := parse([]byte(`
id: a1
broker: {url: "ssl://broker.example:8883", client_id: edge-7}
site: {id: s1, district: D, location: {lat: 1, lon: 2}}
interval: 30s
probe: {interval: 20s, timeout: 5s, stream_every: 0s, failures_before_offline: 3, min_fps: 2}
live: {max_sessions: 2, udp_ports: "50000-50010", loopback_only: true}
uplink: {spool_dir: /var/lib/citywatch-agent/spool, spool_bytes: 0, resend_rate: 20}
cameras:
  - {id: c1, rtsp: "rtsp://cam/x", fov: 90, district: Other, location: {lat: 3, lon: 4}, criticality: 5, min_fps: 1}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cameras[0]
	if cfg.Broker.URL != "ssl://broker.example:8883" || cfg.Broker.ClientID != "edge-7" ||
		cfg.Interval != 30*time.Second || cfg.Probe.Interval != 20*time.Second || cfg.Probe.StreamEvery != 0 ||
		cfg.Probe.FailuresBeforeOffline != 3 || c.District != "Other" || c.Location != (wire.Location{Lat: 3, Lon: 4}) ||
		c.Criticality != 5 || c.MinFPS != 1 ||
		cfg.Live != (Live{MaxSessions: 2, UDPPorts: "50000-50010", LoopbackOnly: true}) ||
		cfg.Uplink != (Uplink{SpoolDir: "/var/lib/citywatch-agent/spool", SpoolBytes: 0, ResendRate: 20}) {
		t.Errorf("file values not kept: %+v", cfg)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		EnvBrokerURL:      "tcp://10.1.1.1:1883",
		EnvBrokerUsername: "edge",
		EnvBrokerPassword: "s3cret",
		EnvID:             "agent-env",
		EnvSpoolDir:       "/data/spool",
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
	if cfg.Broker.URL != env[EnvBrokerURL] || cfg.Broker.Username != "edge" ||
		cfg.Broker.Password.Reveal() != "s3cret" || cfg.ID != "agent-env" || cfg.Uplink.SpoolDir != "/data/spool" {
		t.Errorf("env not applied: %+v", cfg)
	}
	// The client id follows the overridden agent id.
	if cfg.Broker.ClientID != "agent-env" {
		t.Errorf("client_id = %q", cfg.Broker.ClientID)
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load("testdata/minimal.yaml"); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

// TestExample keeps the documented example valid.
func TestExample(t *testing.T) {
	cfg, err := Load("../../configs/agent.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Cameras) != 4 || len(cfg.Sensors) != 3 {
		t.Errorf("example has %d cameras and %d sensors, want 4 and 3", len(cfg.Cameras), len(cfg.Sensors))
	}
	if cfg.Site.Names["zh-CN"] == "" || cfg.Site.DistrictNames["zh-CN"] == "" || cfg.Cameras[0].Names["zh-CN"] == "" {
		t.Errorf("example shows no localised names: site %v, district %v, camera %v", cfg.Site.Names, cfg.Site.DistrictNames, cfg.Cameras[0].Names)
	}
}

func TestUnknownFieldRejected(t *testing.T) {
	_, err := parse([]byte("id: a\nintreval: 5s\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "intreval") {
		t.Errorf("misspelt key: err = %v", err)
	}
}

// TestValidateAllProblems checks that one pass reports every problem, each
// with its YAML path.
func TestValidateAllProblems(t *testing.T) {
	_, err := parse([]byte(`
broker: {url: "http://broker", password: pw}
id: "bad id"
site: {id: s1, location: {lat: 91, lon: 0}}
interval: 0s
probe: {timeout: 20s, failures_before_offline: 0}
uplink: {spool_dir: spool, spool_bytes: 1000, resend_rate: 0}
cameras:
  - {id: cam-1, rtsp: "rtsp://admin:hunter2@cam/x", fov: 0, heading: 360, criticality: 6, district: D, location: {lat: 1, lon: 1}}
  - {id: cam-1, rtsp: "http://admin:hunter2@cam/x", rtsp_sub: "http://admin:hunter2@cam/sub", fov: 70, snapshot: "ftp://cam/s.jpg", district: D, location: {lat: 1, lon: 1}}
  - {id: cam-3, fov: 70, district: D, range_m: -1, location: {lat: 1, lon: 1}, onvif: {username: admin}}
  - {id: cam-4, rtsp: "rtsp://cam/x", fov: 70, district: D, location: {lat: 1, lon: 1}, onvif: {url: "http://admin:hunter2@cam/onvif/device_service"}}
sensors:
  - {id: cam-3, kind: laser, district: D, supervision: 1ms, location: {lat: 1, lon: 200}}
`), noEnv)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	want := []string{
		"broker.url: scheme \"http\"",
		"broker.password: set without a username",
		"id: id \"bad id\"",
		"site.district: missing",
		"site.location: 91,0",
		"interval: 0s out of range",
		"probe.timeout: 20s must be shorter than probe.interval",
		"probe.failures_before_offline: 0 out of range",
		"uplink.spool_bytes: 1000 out of range",
		"uplink.spool_dir: \"spool\" is not an absolute path",
		"uplink.resend_rate: 0 out of range",
		"cameras[0].heading: 360",
		"cameras[0].fov: 0",
		"cameras[0].criticality: 6",
		"cameras[1].id: id \"cam-1\" already used by cameras[0].id",
		"cameras[1].rtsp: scheme \"http\"",
		"cameras[1].rtsp_sub: scheme \"http\"",
		"cameras[1].snapshot: scheme \"ftp\"",
		"cameras[2].rtsp: missing",
		"cameras[2].range_m: -1",
		"cameras[2].onvif.url: missing (username or password given)",
		"cameras[3].onvif.url: holds credentials",
		"sensors[0].id: id \"cam-3\" already used by cameras[2].id",
		"sensors[0].kind: \"laser\"",
		"sensors[0].location: 1,200",
		"sensors[0].driver: missing",
		"sensors[0].supervision: 1ms out of range",
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing problem %q", w)
		}
	}
	if len(list) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(list), len(want), msg)
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("validation error leaks a password:\n%s", msg)
	}
}

func TestValidateLimits(t *testing.T) {
	base := func() Config {
		cfg := Default()
		cfg.ID, cfg.Broker.ClientID = "a", "c"
		cfg.Site = Site{ID: "s", District: "D", Location: wire.Location{Lat: 30, Lon: 114}}
		return cfg
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"ok", func(*Config) {}, ""},
		{"too many devices", func(c *Config) {
			for i := range wire.MaxDevices + 1 {
				c.Sensors = append(c.Sensors, Sensor{ID: fmt.Sprintf("s%d", i), Kind: wire.SensorDoor, District: "D",
					Driver: "sim", Supervision: time.Minute, Criticality: 3})
			}
		}, "devices exceed the limit"},
		{"credentials in broker URL", func(c *Config) { c.Broker.URL = "tcp://u:hunter2@broker:1883" }, "broker.url: must not carry credentials"},
		{"brokers of a cluster", func(c *Config) { c.Broker.URL = "tcp://nats-1:1883, tcp://nats-2:1883,tcp://nats-3:1883" }, ""},
		{"brokers with and without TLS", func(c *Config) { c.Broker.URL = "tls://nats-1:8883,tcp://nats-2:1883" }, "broker.url: brokers of one agent must all use TLS or none"},
		{"a broker without a host", func(c *Config) { c.Broker.URL = "tcp://nats-1:1883,tcp://" }, "broker.url: no host"},
		{"site without location", func(c *Config) { c.Site.Location = wire.Location{} }, "site.location: missing"},
		{"long name", func(c *Config) { c.Site.Name = strings.Repeat("x", wire.MaxNameLen+1) }, "site.name: longer"},
		{"localised names", func(c *Config) {
			c.Site.Names, c.Site.DistrictNames = wire.Names{"zh-CN": "新华路地铁站 B 口", "en": "Xinhua Rd Metro"}, wire.Names{"zh-CN": "新华片区"}
			c.Cameras = []Camera{{ID: "c", Names: wire.Names{"zh-CN": "1 号摄像机"}, RTSP: "rtsp://h/x", FOV: 60, District: "D", Criticality: 1}}
		}, ""},
		{"site names bad tag", func(c *Config) { c.Site.Names = wire.Names{"chinese": "新华"} }, `site.names: "chinese" is not a language tag`},
		{"district names empty", func(c *Config) { c.Site.DistrictNames = wire.Names{"zh-CN": ""} }, "site.district_names: the zh-CN name is empty"},
		{"camera names control character", func(c *Config) {
			c.Cameras = []Camera{{ID: "c", Names: wire.Names{"zh-CN": "1 号\t摄像机"}, RTSP: "rtsp://h/x", FOV: 60, District: "D", Criticality: 1}}
		}, "cameras[0].names: the zh-CN name holds a control character"},
		{"sensor names too long", func(c *Config) {
			c.Sensors = []Sensor{{ID: "s1", Names: wire.Names{"zh-CN": strings.Repeat("门", 50)}, Kind: wire.SensorDoor, District: "D", Driver: "sim", Supervision: time.Minute, Criticality: 3}}
		}, "sensors[0].names: the zh-CN name is longer than 128 bytes"},
		{"NaN heading", func(c *Config) {
			c.Cameras = []Camera{{ID: "c", RTSP: "rtsp://h/x", FOV: 60, Heading: nan(), District: "D", Criticality: 1}}
		}, "cameras[0].heading"},
		{"stream sample needed when sampling", func(c *Config) { c.Probe.StreamSample = 0 }, "probe.stream_sample"},
		{"sampling disabled", func(c *Config) { c.Probe.StreamEvery, c.Probe.StreamSample = 0, 0 }, ""},
		{"live port range", func(c *Config) { c.Live.UDPPorts = "50000-50100" }, ""},
		{"no live sessions", func(c *Config) { c.Live.MaxSessions = 0 }, "live.max_sessions: 0 out of range"},
		{"live ports not a range", func(c *Config) { c.Live.UDPPorts = "50000" }, "live.udp_ports: \"50000\" is not a port range"},
		{"live ports reversed", func(c *Config) { c.Live.UDPPorts = "50100-50000" }, "live.udp_ports: \"50100-50000\": want 1024 <= first <= last"},
		{"live ports privileged", func(c *Config) { c.Live.UDPPorts = "500-600" }, "live.udp_ports"},
		{"live ports too few", func(c *Config) { c.Live.UDPPorts = "50000-50001" }, "live.udp_ports: 2 ports are fewer than live.max_sessions 4"},
		{"topology", func(c *Config) {
			c.Site.PowerFeed = "feed-1"
			c.Topology = []Node{{ID: "up", Kind: wire.NodeUplink}, {ID: "sw", Kind: wire.NodeSwitch, Parent: "up"}}
			c.Cameras = []Camera{{ID: "c", RTSP: "rtsp://h/x", FOV: 60, District: "D", Criticality: 1, Parent: "sw"}}
		}, ""},
		{"bad power feed", func(c *Config) { c.Site.PowerFeed = "feed 1" }, "site.power_feed"},
		{"spool disabled", func(c *Config) { c.Uplink.SpoolDir, c.Uplink.SpoolBytes = "", 0 }, ""},
		{"spool without a directory", func(c *Config) { c.Uplink.SpoolDir = "" }, "uplink.spool_dir: missing"},
		{"spool quota negative", func(c *Config) { c.Uplink.SpoolBytes = -1 }, "uplink.spool_bytes: -1 out of range"},
		{"spool quota in the wrong unit", func(c *Config) { c.Uplink.SpoolBytes = 64 }, "uplink.spool_bytes: 64 out of range"},
		{"resend rate NaN", func(c *Config) { c.Uplink.ResendRate = nan() }, "uplink.resend_rate"},
		{"node kind unknown", func(c *Config) { c.Topology = []Node{{ID: "r", Kind: "router"}} }, "topology[0].kind: \"router\""},
		{"node parent unknown", func(c *Config) {
			c.Topology = []Node{{ID: "sw", Kind: wire.NodeSwitch, Parent: "up"}}
		}, "topology[0].parent: \"up\" is not a topology node"},
		{"topology cycle", func(c *Config) {
			c.Topology = []Node{{ID: "a", Kind: wire.NodeSwitch, Parent: "b"}, {ID: "b", Kind: wire.NodeSwitch, Parent: "a"}}
		}, "topology[1].parent: node \"b\" is its own ancestor"},
		{"node id of a device", func(c *Config) {
			c.Topology = []Node{{ID: "c", Kind: wire.NodeSwitch}}
			c.Cameras = []Camera{{ID: "c", RTSP: "rtsp://h/x", FOV: 60, District: "D", Criticality: 1}}
		}, "cameras[0].id: id \"c\" already used by topology[0].id"},
		{"device parent unknown", func(c *Config) {
			c.Sensors = []Sensor{{ID: "s1", Kind: wire.SensorDoor, District: "D", Driver: "sim", Supervision: time.Minute, Criticality: 3, Parent: "sw"}}
		}, "sensors[0].parent: \"sw\" is not a topology node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

// TestLoggingRedacts logs a whole configuration the ways an operator might
// and checks no password appears.
func TestLoggingRedacts(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == EnvBrokerPassword {
			return "brokerpw", true
		}
		if k == EnvBrokerUsername {
			return "edge", true
		}
		return "", false
	}
	cfg, err := parse([]byte(`
id: a1
site: {id: s1, district: D, location: {lat: 1, lon: 2}}
cameras:
  - {id: c1, rtsp: "rtsp://admin:campw@10.0.0.2/ch1", snapshot: "http://admin:snappw@10.0.0.2/snap.jpg", fov: 60}
`), env)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", cfg)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String() + string(js) + fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)
	for _, pw := range []string{"brokerpw", "campw", "snappw"} {
		if strings.Contains(out, pw) {
			t.Errorf("password %q appears in logged config", pw)
		}
	}
	if !strings.Contains(out, "rtsp://admin:***@10.0.0.2/ch1") {
		t.Errorf("camera URL not shown redacted:\n%s", out)
	}
}
