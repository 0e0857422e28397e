// Package config is the edge agent's configuration: which broker to talk
// to and how reports wait while it is unreachable, which site the agent
// serves and the cameras and sensors installed there. A configuration is built as defaults, then the YAML file, then
// environment overrides (so containers can inject the broker and its
// credentials without editing the file), then Validate, which reports every
// problem at once with its YAML path so a field engineer fixes the file in
// one go. Passwords and camera URLs are secret types that redact themselves
// when a configuration is logged. TLS files are read and checked by
// Validate too, so a wrong CA bundle or a key that does not match its
// certificate is reported at start, not as a failing connection.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

// Config is the whole agent configuration.
type Config struct {
	Broker   Broker        `yaml:"broker"`
	ID       string        `yaml:"id"`
	Site     Site          `yaml:"site"`
	Interval time.Duration `yaml:"interval"` // health report interval
	Probe    Probe         `yaml:"probe"`
	Live     Live          `yaml:"live"`
	Uplink   Uplink        `yaml:"uplink"`
	// Topology is the site infrastructure devices hang off (switches, PoE
	// ports, the uplink, power supplies), so the hub can raise one alarm
	// for a dead switch instead of one per camera behind it.
	Topology []Node   `yaml:"topology"`
	Cameras  []Camera `yaml:"cameras"`
	Sensors  []Sensor `yaml:"sensors"`
}

// Broker is the MQTT broker the agent publishes to.
type Broker struct {
	URL      string        `yaml:"url"` // tcp://, mqtt://, ssl://, tls:// or mqtts://
	Username string        `yaml:"username"`
	Password secret.String `yaml:"password"`
	// ClientID defaults to the agent id, which lets a broker ACL pattern
	// (%c) confine the agent to its own topics. It must be stable across
	// restarts: the broker keeps the command subscription under it.
	ClientID string `yaml:"client_id"`
	// TLSFiles apply to ssl://, tls:// and mqtts:// URLs only.
	TLSFiles `yaml:",inline"`
}

// Site is where the agent's devices are installed.
type Site struct {
	ID       string        `yaml:"id"`
	Name     string        `yaml:"name"`
	District string        `yaml:"district"`
	Location wire.Location `yaml:"location"`
	// PowerFeed is the id of the mains feed the site hangs off, the same
	// on every site of that feed, so a district power cut is one alarm.
	PowerFeed string `yaml:"power_feed"`
	// Names and DistrictNames are the site's and its district's names in
	// other languages by language tag ({zh-CN: 新华路地铁站 B 口}), for
	// consoles in those languages; Name and District stay canonical.
	Names         wire.Names `yaml:"names"`
	DistrictNames wire.Names `yaml:"district_names"`
}

// Node is one topology node; Parent is another node's id, empty for a root.
type Node struct {
	ID     string        `yaml:"id"`
	Kind   wire.NodeKind `yaml:"kind"`
	Name   string        `yaml:"name"`
	Parent string        `yaml:"parent"`
}

// Probe sets how cameras are probed; the values apply to every camera.
type Probe struct {
	Interval time.Duration `yaml:"interval"` // OPTIONS+DESCRIBE cycle
	Timeout  time.Duration `yaml:"timeout"`  // per network step
	// StreamEvery is how often a probe also plays the stream to measure
	// frame rate and bitrate; 0 disables stream samples.
	StreamEvery  time.Duration `yaml:"stream_every"`
	StreamSample time.Duration `yaml:"stream_sample"` // how long a stream sample plays
	// FailuresBeforeOffline debounces short drops: a camera is reported
	// offline only after this many consecutive failed probes.
	FailuresBeforeOffline int `yaml:"failures_before_offline"`
	// MinFPS is the frame rate below which a playing stream is degraded;
	// cameras may override it.
	MinFPS float64 `yaml:"min_fps"`
}

// Live sets how cameras are streamed to the hub over WebRTC on demand.
type Live struct {
	// MaxSessions bounds concurrent streams: each pulls a camera's full
	// stream over the site's uplink.
	MaxSessions int `yaml:"max_sessions"`
	// UDPPorts is the range ICE may use, e.g. "50000-50100", for site
	// firewalls; empty means ephemeral ports.
	UDPPorts string `yaml:"udp_ports"`
	// LoopbackOnly offers only loopback ICE candidates, for a hub on the
	// same host.
	LoopbackOnly bool `yaml:"loopback_only"`
}

// Ports parses UDPPorts; 0, 0 when it is empty.
func (l Live) Ports() (lo, hi uint16, err error) {
	if l.UDPPorts == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(l.UDPPorts, "-")
	x, errA := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, errB := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	switch {
	case !ok || errA != nil || errB != nil:
		return 0, 0, fmt.Errorf("%q is not a port range like 50000-50100", l.UDPPorts)
	case x < 1024 || x > y:
		return 0, 0, fmt.Errorf("%q: want 1024 <= first <= last", l.UDPPorts)
	}
	return uint16(x), uint16(y), nil
}

// Uplink sets how reports wait while the broker or the hub is
// unreachable: in a spool on disk, sent after the reconnect.
type Uplink struct {
	// SpoolDir holds the spool; each agent works in SpoolDir/<id>, each
	// run in a subdirectory of its own. The spool lives only as long as
	// the process, so a temporary directory will do; on a tmpfs it takes
	// memory, though.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolBytes is the spool's quota; 0 disables it (reports then wait
	// in a small memory queue only).
	SpoolBytes int64 `yaml:"spool_bytes"`
	// ResendRate bounds the backlog sent after a reconnect, in messages
	// per second, so a fleet reconnecting at once does not bury the hub.
	ResendRate float64 `yaml:"resend_rate"`
}

// Camera is one RTSP camera.
type Camera struct {
	ID    string     `yaml:"id"`
	Name  string     `yaml:"name"`
	Names wire.Names `yaml:"names"` // Name in other languages, by language tag
	RTSP  secret.URL `yaml:"rtsp"`
	// RTSPSub is a sub-stream live view falls back to when the main
	// stream's codec cannot be carried (H.265); optional.
	RTSPSub  secret.URL `yaml:"rtsp_sub"`
	Snapshot secret.URL `yaml:"snapshot"`
	// ONVIF is the camera's ONVIF device service, optional: who the
	// camera is (its asset fields) and how its clock runs.
	ONVIF    ONVIF         `yaml:"onvif"`
	Location wire.Location `yaml:"location"` // defaults to the site's
	Heading  float64       `yaml:"heading"`  // degrees clockwise from north
	FOV      float64       `yaml:"fov"`      // horizontal field of view, degrees
	RangeM   float64       `yaml:"range_m"`  // useful viewing distance, metres
	District string        `yaml:"district"` // defaults to the site's
	// Criticality runs from 1 (low) to 5 (life safety); 0 means the default 3.
	Criticality int `yaml:"criticality"`
	// MinFPS overrides probe.min_fps for this camera; 0 keeps it.
	MinFPS float64 `yaml:"min_fps"`
	Parent string  `yaml:"parent"` // the topology node it hangs off
	Vendor string  `yaml:"vendor"` // the maker, for reports; optional
	Asset  `yaml:",inline"`
}

// ONVIF is a camera's ONVIF device service.
type ONVIF struct {
	URL      string        `yaml:"url"` // http(s)://host/onvif/device_service, no credentials
	Username string        `yaml:"username"`
	Password secret.String `yaml:"password"`
}

// Sensor is one alarm sensor, read through a driver.
type Sensor struct {
	ID       string          `yaml:"id"`
	Name     string          `yaml:"name"`
	Names    wire.Names      `yaml:"names"` // Name in other languages, by language tag
	Kind     wire.SensorKind `yaml:"kind"`
	Location wire.Location   `yaml:"location"` // defaults to the site's
	District string          `yaml:"district"` // defaults to the site's
	Driver   string          `yaml:"driver"`   // e.g. "sim"
	// Supervision is the check-in window: a sensor silent for longer is
	// offline with reason supervision_lost, as on an alarm panel.
	Supervision time.Duration     `yaml:"supervision"`
	Criticality int               `yaml:"criticality"` // as for cameras
	Params      map[string]string `yaml:"params"`      // driver-specific
	Parent      string            `yaml:"parent"`      // the topology node it hangs off
	Vendor      string            `yaml:"vendor"`      // the maker, for reports; optional
	Asset       `yaml:",inline"`
}

// Asset identifies a unit, all optional: the hub records a changed serial
// or firmware in the device's history (replaced, upgraded).
type Asset struct {
	Model     string `yaml:"model"`
	Firmware  string `yaml:"firmware"`
	Serial    string `yaml:"serial"`
	Installed string `yaml:"installed"` // YYYY-MM-DD
}

// Defaults used where the file says nothing.
const (
	DefaultBrokerURL             = "tcp://127.0.0.1:1883"
	DefaultInterval              = 10 * time.Second
	DefaultProbeInterval         = 10 * time.Second
	DefaultProbeTimeout          = 3 * time.Second
	DefaultStreamEvery           = 5 * time.Minute
	DefaultStreamSample          = 2 * time.Second
	DefaultFailuresBeforeOffline = 2
	// DefaultMinFPS: surveillance streams run at 12–25 fps; below 5 fps
	// motion is no longer followable, so the video does not count as intact.
	DefaultMinFPS = 5
	// DefaultSupervision is three missed check-ins of the simulated
	// driver, the same "three missed keepalives" rule as GB/T 28181.
	DefaultSupervision = 30 * time.Second
	DefaultCriticality = 3
	// DefaultLiveMaxSessions: a few operators watching one site at once;
	// four 2–4 Mbit/s camera streams already fill a modest 4G uplink.
	DefaultLiveMaxSessions = 4
	// DefaultSpoolBytes holds about an hour of a large site's reports
	// and several of a small one's; ample for a broker restart.
	DefaultSpoolBytes = 64 << 20
	// DefaultResendRate drains an hour's backlog of a 2,000-device agent
	// in seconds, while a hundred agents reconnecting at once stay within
	// what one hub ingests.
	DefaultResendRate = 100
)

// DefaultSpoolDir is the spool's directory unless configured: under the
// system's temporary directory, since the spool does not outlive the
// process.
func DefaultSpoolDir() string { return filepath.Join(os.TempDir(), "citywatch-agent-spool") }

// Environment variables that override the file.
const (
	EnvBrokerURL      = "CITYWATCH_AGENT_BROKER_URL"
	EnvBrokerUsername = "CITYWATCH_AGENT_BROKER_USERNAME"
	EnvBrokerPassword = "CITYWATCH_AGENT_BROKER_PASSWORD"
	EnvID             = "CITYWATCH_AGENT_ID"
	// The TLS files, so a container can mount them anywhere.
	EnvBrokerCAFile     = "CITYWATCH_AGENT_BROKER_CA_FILE"
	EnvBrokerCertFile   = "CITYWATCH_AGENT_BROKER_CERT_FILE"
	EnvBrokerKeyFile    = "CITYWATCH_AGENT_BROKER_KEY_FILE"
	EnvBrokerServerName = "CITYWATCH_AGENT_BROKER_SERVER_NAME"
	// EnvSpoolDir lets a container put the spool on a volume.
	EnvSpoolDir = "CITYWATCH_AGENT_SPOOL_DIR"
)

// Default returns the configuration an empty file yields (before device
// defaults, which depend on the site).
func Default() Config {
	return Config{
		Broker:   Broker{URL: DefaultBrokerURL},
		Interval: DefaultInterval,
		Probe: Probe{
			Interval:              DefaultProbeInterval,
			Timeout:               DefaultProbeTimeout,
			StreamEvery:           DefaultStreamEvery,
			StreamSample:          DefaultStreamSample,
			FailuresBeforeOffline: DefaultFailuresBeforeOffline,
			MinFPS:                DefaultMinFPS,
		},
		Live:   Live{MaxSessions: DefaultLiveMaxSessions},
		Uplink: Uplink{SpoolDir: DefaultSpoolDir(), SpoolBytes: DefaultSpoolBytes, ResendRate: DefaultResendRate},
	}
}

// Load reads and parses the file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse builds a configuration from YAML and the process environment and
// validates it.
func Parse(data []byte) (Config, error) {
	return parse(data, os.LookupEnv)
}

func parse(data []byte, lookupEnv func(string) (string, bool)) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// A misspelt key is a silent misconfiguration otherwise.
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("yaml: %w", err)
	}
	cfg.applyEnv(lookupEnv)
	cfg.fillDeviceDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) applyEnv(lookupEnv func(string) (string, bool)) {
	for _, o := range []struct {
		env string
		dst *string
	}{
		{EnvBrokerURL, &c.Broker.URL},
		{EnvBrokerUsername, &c.Broker.Username},
		{EnvBrokerCAFile, &c.Broker.CAFile},
		{EnvBrokerCertFile, &c.Broker.CertFile},
		{EnvBrokerKeyFile, &c.Broker.KeyFile},
		{EnvBrokerServerName, &c.Broker.ServerName},
		{EnvID, &c.ID},
		{EnvSpoolDir, &c.Uplink.SpoolDir},
	} {
		if v, ok := lookupEnv(o.env); ok {
			*o.dst = v
		}
	}
	if v, ok := lookupEnv(EnvBrokerPassword); ok {
		c.Broker.Password = secret.String(v)
	}
}

// fillDeviceDefaults gives devices the site's district and location and the
// default criticality. A location of exactly 0,0 counts as unset: it lies in
// the Gulf of Guinea, far from any city this runs in.
func (c *Config) fillDeviceDefaults() {
	if c.Broker.ClientID == "" && c.ID != "" {
		c.Broker.ClientID = c.ID
	}
	for i := range c.Cameras {
		d := &c.Cameras[i]
		c.fillCommon(&d.District, &d.Location, &d.Criticality)
		if d.MinFPS == 0 {
			d.MinFPS = c.Probe.MinFPS
		}
	}
	for i := range c.Sensors {
		d := &c.Sensors[i]
		c.fillCommon(&d.District, &d.Location, &d.Criticality)
		if d.Supervision == 0 {
			d.Supervision = DefaultSupervision
		}
	}
}

func (c *Config) fillCommon(district *string, loc *wire.Location, crit *int) {
	if *district == "" {
		*district = c.Site.District
	}
	if *loc == (wire.Location{}) {
		*loc = c.Site.Location
	}
	if *crit == 0 {
		*crit = DefaultCriticality
	}
}
