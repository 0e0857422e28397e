// Package config is the hub's configuration: defaults, then a YAML file,
// then environment variables, then Validate, which lists every problem at
// once so an operator fixes a config in one pass rather than one error per
// restart. Each component receives only the section it needs.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Secret is a password or token. It never prints itself.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// LogValue redacts the secret in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts the secret when a config is dumped.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Config is the whole hub configuration.
type Config struct {
	Listen string `yaml:"listen"` // console and API
	MQTT   MQTT   `yaml:"mqtt"`
	Broker Broker `yaml:"broker"`
	Influx Influx `yaml:"influx"`
	Fleet  Fleet  `yaml:"fleet"`
	Memory Memory `yaml:"memory"`
	Live   Live   `yaml:"live"`
	Alarms Alarms `yaml:"alarms"`
	Log    Log    `yaml:"log"`
}

// MQTT is how the hub reaches the broker.
type MQTT struct {
	URL      string `yaml:"url"`
	ClientID string `yaml:"client_id"` // stable, so the broker keeps the session
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	Workers  int    `yaml:"workers"` // ingest shards; 0 = 2×CPUs
	Queue    int    `yaml:"queue"`   // messages per shard before "overload" rejects
}

// Broker is the embedded MQTT broker, for the demo and small sites.
// Production uses Mosquitto or EMQX with authentication and ACLs.
type Broker struct {
	Enabled bool   `yaml:"enabled"`
	Addr    string `yaml:"addr"`
	// FallbackToFreePort lets the demo run where 1883 is taken.
	FallbackToFreePort bool `yaml:"fallback_to_free_port"`
}

// Influx is where metrics and transitions are stored. Empty URL means no
// history store: the hub keeps a recent window in memory only.
type Influx struct {
	URL           string        `yaml:"url"`
	Token         Secret        `yaml:"token"`
	Org           string        `yaml:"org"`
	Bucket        string        `yaml:"bucket"`
	BatchSize     uint          `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	Timeout       time.Duration `yaml:"timeout"`
	Queue         int           `yaml:"queue"` // points waiting to be written before drops
}

// Enabled reports whether an InfluxDB is configured.
func (i Influx) Enabled() bool { return i.URL != "" }

// Fleet tunes offline detection.
type Fleet struct {
	MissedHeartbeats int           `yaml:"missed_heartbeats"`
	DefaultInterval  time.Duration `yaml:"default_interval"`
}

// Memory sizes the in-memory recent window per device.
type Memory struct {
	Samples     int `yaml:"samples"`
	Transitions int `yaml:"transitions"`
}

// Live is the live video relay: WHEP for viewers, one WebRTC upstream per
// watched camera from its agent.
type Live struct {
	Linger               time.Duration `yaml:"linger"`                  // an upstream without viewers stays this long
	MaxUpstreamsPerAgent int           `yaml:"max_upstreams_per_agent"` // concurrent streams one site uplink carries
	UDPPort              int           `yaml:"udp_port"`                // one UDP port for all ICE; 0 = ephemeral ports
	LoopbackOnly         bool          `yaml:"loopback_only"`           // ICE on 127.0.0.1 only: everything on one host, tests
	PublicIPs            []string      `yaml:"public_ips"`              // addresses announced instead of the host's (1:1 NAT)
	UpstreamTimeout      time.Duration `yaml:"upstream_timeout"`        // agent's answer and first keyframe
	KeyframeInterval     time.Duration `yaml:"keyframe_interval"`       // least time between keyframe requests to an agent
	StallTimeout         time.Duration `yaml:"stall_timeout"`           // a watched stream without packets this long fails
	AllowOrigins         []string      `yaml:"allow_origins"`           // web origins of other WHEP players' pages, or "*"
}

// Alarms configures the alarm engine.
type Alarms struct {
	// Rules is a YAML rules file (docs/alarms.md); empty = the built-in
	// defaults. The hub parses it when it starts and lists every problem.
	Rules string `yaml:"rules"`
	// DB is where alarms and their history are kept across restarts;
	// empty = in memory only.
	DB string `yaml:"db"`
	// Webhooks receive alarm events as JSON (SMS gateways, ticketing).
	Webhooks []Webhook `yaml:"webhooks"`
	// Maintenance windows and expected-offline schedules: alarms inside
	// them are recorded, not raised.
	Maintenance []Maintenance `yaml:"maintenance"`
}

// Maintenance is one window (from–to) or daily schedule; hub/alarm checks it.
type Maintenance struct {
	Name      string    `yaml:"name"`
	Devices   []string  `yaml:"devices"`
	Agents    []string  `yaml:"agents"`
	Sites     []string  `yaml:"sites"`
	Districts []string  `yaml:"districts"`
	From      time.Time `yaml:"from"`
	To        time.Time `yaml:"to"`
	Daily     string    `yaml:"daily"`    // "22:00-06:00"
	Timezone  string    `yaml:"timezone"` // for daily; IANA name, default UTC
}

// Webhook is one outbound alarm notification target; hub/notify checks it.
type Webhook struct {
	Name        string            `yaml:"name"`
	URL         string            `yaml:"url"`
	Headers     map[string]Secret `yaml:"headers"`      // e.g. Authorization; never logged
	MinSeverity string            `yaml:"min_severity"` // critical, major, minor or warning; empty = all
	Kinds       []string          `yaml:"kinds"`        // raise, update, clear, escalate, flap; empty = raise, escalate, clear
	Tiers       []int             `yaml:"tiers"`        // escalation tiers served; empty = [0]
	MaxAttempts int               `yaml:"max_attempts"` // 0 = 8
}

// Log configures the logger built in main.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Listen: "127.0.0.1:8080",
		MQTT:   MQTT{URL: "tcp://127.0.0.1:1883", ClientID: "citywatch-hub", Queue: 4096},
		Broker: Broker{Addr: "127.0.0.1:1883"},
		Influx: Influx{BatchSize: 5000, FlushInterval: time.Second, Timeout: 10 * time.Second, Queue: 200_000},
		Fleet:  Fleet{MissedHeartbeats: 3, DefaultInterval: 10 * time.Second},
		Memory: Memory{Samples: 60, Transitions: 50},
		Live: Live{Linger: 10 * time.Second, MaxUpstreamsPerAgent: 4, UpstreamTimeout: 10 * time.Second,
			KeyframeInterval: time.Second, StallTimeout: 5 * time.Second},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Load reads path (if not empty) over the defaults, applies environment
// overrides and validates.
func Load(path string) (Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	return Parse(data, os.LookupEnv)
}

// Parse is Load without the file system: YAML bytes and an environment
// lookup function, so tests need not touch the process environment.
func Parse(data []byte, env func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true) // a typo in a key is an error, not a silent default
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	if err := cfg.applyEnv(env); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// EnvVars lists the environment variables that override the file, with the
// field each one sets; docs/configuration.md shows the same table.
var EnvVars = []struct{ Name, Field string }{
	{"CITYWATCH_LISTEN", "listen"},
	{"CITYWATCH_MQTT_URL", "mqtt.url"},
	{"CITYWATCH_MQTT_CLIENT_ID", "mqtt.client_id"},
	{"CITYWATCH_MQTT_USERNAME", "mqtt.username"},
	{"CITYWATCH_MQTT_PASSWORD", "mqtt.password"},
	{"CITYWATCH_BROKER_ENABLED", "broker.enabled"},
	{"CITYWATCH_BROKER_ADDR", "broker.addr"},
	{"INFLUX_URL", "influx.url"},
	{"INFLUX_TOKEN", "influx.token"},
	{"INFLUX_ORG", "influx.org"},
	{"INFLUX_BUCKET", "influx.bucket"},
	{"CITYWATCH_LIVE_UDP_PORT", "live.udp_port"},
	{"CITYWATCH_LIVE_PUBLIC_IPS", "live.public_ips"},
	{"CITYWATCH_LOG_LEVEL", "log.level"},
	{"CITYWATCH_LOG_FORMAT", "log.format"},
}

func (c *Config) applyEnv(env func(string) (string, bool)) error {
	var errs []error
	for _, e := range EnvVars {
		v, ok := env(e.Name)
		if !ok {
			continue
		}
		switch e.Field {
		case "listen":
			c.Listen = v
		case "mqtt.url":
			c.MQTT.URL = v
		case "mqtt.client_id":
			c.MQTT.ClientID = v
		case "mqtt.username":
			c.MQTT.Username = v
		case "mqtt.password":
			c.MQTT.Password = Secret(v)
		case "broker.enabled":
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want true or false", e.Name, v))
			}
			c.Broker.Enabled = b
		case "broker.addr":
			c.Broker.Addr = v
		case "influx.url":
			c.Influx.URL = v
		case "influx.token":
			c.Influx.Token = Secret(v)
		case "influx.org":
			c.Influx.Org = v
		case "influx.bucket":
			c.Influx.Bucket = v
		case "live.udp_port":
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a port number", e.Name, v))
			}
			c.Live.UDPPort = n
		case "live.public_ips":
			c.Live.PublicIPs = nil
			for ip := range strings.SplitSeq(v, ",") {
				if ip = strings.TrimSpace(ip); ip != "" {
					c.Live.PublicIPs = append(c.Live.PublicIPs, ip)
				}
			}
		case "log.level":
			c.Log.Level = v
		case "log.format":
			c.Log.Format = v
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: environment: %w", errors.Join(errs...))
	}
	return nil
}

// Validate reports every problem in the configuration, one per line.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if u, err := url.Parse(c.MQTT.URL); err != nil || u.Host == "" {
		bad("mqtt.url", "%q is not a broker URL like tcp://host:1883", redacted(c.MQTT.URL))
	} else if !slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme) {
		bad("mqtt.url", "scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss", u.Scheme)
	} else if u.User != nil {
		// The URL is shown in logs and /healthz; credentials have fields
		// that redact themselves.
		bad("mqtt.url", "credentials do not belong in the URL: use mqtt.username and mqtt.password (or CITYWATCH_MQTT_PASSWORD)")
	}
	if c.MQTT.ClientID == "" || len(c.MQTT.ClientID) > 64 {
		bad("mqtt.client_id", "must be 1–64 characters and stable across restarts (the broker keeps the session by it)")
	}
	if c.MQTT.Workers < 0 || c.MQTT.Workers > 256 {
		bad("mqtt.workers", "%d out of range 0–256 (0 = 2 per CPU)", c.MQTT.Workers)
	}
	if c.MQTT.Queue < 1 {
		bad("mqtt.queue", "must be at least 1")
	}
	if c.Broker.Enabled {
		if _, _, err := net.SplitHostPort(c.Broker.Addr); err != nil {
			bad("broker.addr", "%q is not host:port", c.Broker.Addr)
		}
	}
	if c.Influx.Enabled() {
		if u, err := url.Parse(c.Influx.URL); err != nil || u.Host == "" || !slices.Contains([]string{"http", "https"}, u.Scheme) {
			bad("influx.url", "%q is not an http(s) URL", redacted(c.Influx.URL))
		}
		if c.Influx.Bucket == "" {
			bad("influx.bucket", "required when influx.url is set (for InfluxDB 1.8: database/retention-policy)")
		}
		if c.Influx.Org == "" {
			bad("influx.org", "required when influx.url is set (any name for InfluxDB 1.8)")
		}
	}
	if c.Influx.BatchSize < 1 || c.Influx.BatchSize > 100_000 {
		bad("influx.batch_size", "%d out of range 1–100000", c.Influx.BatchSize)
	}
	if c.Influx.FlushInterval < 10*time.Millisecond {
		bad("influx.flush_interval", "%s is below 10ms", c.Influx.FlushInterval)
	}
	if c.Influx.Timeout <= 0 {
		bad("influx.timeout", "must be positive")
	}
	if c.Influx.Queue < int(c.Influx.BatchSize) {
		bad("influx.queue", "%d is smaller than one batch (%d)", c.Influx.Queue, c.Influx.BatchSize)
	}
	if c.Fleet.MissedHeartbeats < 1 || c.Fleet.MissedHeartbeats > 100 {
		bad("fleet.missed_heartbeats", "%d out of range 1–100", c.Fleet.MissedHeartbeats)
	}
	if c.Fleet.DefaultInterval < time.Second || c.Fleet.DefaultInterval > time.Hour {
		bad("fleet.default_interval", "%s out of range 1s–1h", c.Fleet.DefaultInterval)
	}
	if c.Memory.Samples < 0 || c.Memory.Samples > 10_000 {
		bad("memory.samples", "%d out of range 0–10000", c.Memory.Samples)
	}
	if c.Memory.Transitions < 0 || c.Memory.Transitions > 10_000 {
		bad("memory.transitions", "%d out of range 0–10000", c.Memory.Transitions)
	}
	errs = append(errs, c.Live.validate()...)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(c.Log.Level)) {
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %d problem(s):\n%w", len(errs), errors.Join(errs...))
	}
	return nil
}

// redacted hides any password in a URL quoted in an error.
func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparseable URL)"
}

func (l Live) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("live.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for _, d := range []struct {
		field     string
		v, lo, hi time.Duration
	}{
		{"linger", l.Linger, 100 * time.Millisecond, time.Hour},
		{"upstream_timeout", l.UpstreamTimeout, time.Second, 2 * time.Minute},
		{"keyframe_interval", l.KeyframeInterval, 100 * time.Millisecond, time.Minute},
		{"stall_timeout", l.StallTimeout, time.Second, time.Minute},
	} {
		if d.v < d.lo || d.v > d.hi {
			bad(d.field, "%s out of range %s–%s", d.v, d.lo, d.hi)
		}
	}
	if l.MaxUpstreamsPerAgent < 1 || l.MaxUpstreamsPerAgent > 64 {
		bad("max_upstreams_per_agent", "%d out of range 1–64", l.MaxUpstreamsPerAgent)
	}
	if l.UDPPort < 0 || l.UDPPort > 65535 {
		bad("udp_port", "%d out of range 0–65535 (0 = ephemeral ports)", l.UDPPort)
	}
	for _, ip := range l.PublicIPs {
		if net.ParseIP(ip).To4() == nil {
			bad("public_ips", "%q is not an IPv4 address", ip)
		}
	}
	for _, o := range l.AllowOrigins {
		if u, err := url.Parse(o); o != "*" && (err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https")) {
			bad("allow_origins", "%q is not scheme://host[:port] or *", o)
		}
	}
	return errs
}
