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
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
	// DataDir holds what the hub keeps on disk besides alarms: accounts,
	// sessions, tokens and agent credentials (identity.db), the audit
	// trail (audit.db) and its chain key (audit.key), and a self-signed
	// certificate when asked for one (tls/).
	DataDir string `yaml:"data_dir"`
	HTTP    HTTP   `yaml:"http"`
	Auth    Auth   `yaml:"auth"`
	Audit   Audit  `yaml:"audit"`
	MQTT    MQTT   `yaml:"mqtt"`
	Broker  Broker `yaml:"broker"`
	Influx  Influx `yaml:"influx"`
	Fleet   Fleet  `yaml:"fleet"`
	Memory  Memory `yaml:"memory"`
	Live    Live   `yaml:"live"`
	Alarms  Alarms `yaml:"alarms"`
	Map     Map    `yaml:"map"`
	Reports Report `yaml:"reports"`
	// WorkOrders: how faults become work and when work closes itself.
	WorkOrders WorkOrders `yaml:"workorders"`
	Log        Log        `yaml:"log"`
	// Cluster, when NATSURL is set, makes this hub one of several: the
	// agents' messages come from a NATS JetStream stream, partitioned by
	// agent, of which this hub consumes the partitions it holds a lease
	// on; mqtt.url is then NATS's MQTT listener, used for commands only.
	Cluster Cluster `yaml:"cluster"`
}

// Cluster is this hub's place among several (docs/operations.md).
type Cluster struct {
	NATSURL string `yaml:"nats_url"` // nats://host:4222, comma-separated for several servers
	// HubID names this hub among the others: stable, unique, 1–64
	// letters, digits, '-' or '_'.
	HubID string `yaml:"hub_id"`
	// Partitions of the agents' stream (default 64). Every hub of a
	// cluster must say the same; it cannot change while the stream exists.
	Partitions int `yaml:"partitions"`
	// LeaseTTL is how long a dead hub's partitions wait for another
	// (default 6s); Replicas of the stream and buckets (default 1; 3 on a
	// three-node NATS cluster); Retention of the agents' messages in the
	// stream (default 24h).
	LeaseTTL  time.Duration `yaml:"lease_ttl"`
	Replicas  int           `yaml:"replicas"`
	Retention time.Duration `yaml:"retention"`
	// PostgresURL is the database the hubs share
	// (postgres://user:pass@host/db): alarms and their trails, which
	// outlive any hub (a hub taking a dead one's partitions over carries
	// its open alarms on), and accounts, sessions, API tokens, viewing
	// links and agent credentials, so that an operator signs in on any
	// hub. Without it each hub keeps them in its data_dir, and the
	// alarms of a dead hub are taken over only as it last announced them.
	PostgresURL Secret `yaml:"postgres_url"`
}

// SharedDB is where a store the hubs of a cluster share lives (accounts,
// work orders): the cluster's PostgreSQL database, or file in data_dir.
func (c *Config) SharedDB(file string) string {
	if u := string(c.Cluster.PostgresURL); u != "" {
		return u
	}
	return filepath.Join(c.DataDir, file)
}

// Enabled reports whether the hub runs as part of a cluster.
func (c Cluster) Enabled() bool { return c.NATSURL != "" }

// Map is what the city map and the coverage computation are drawn on.
type Map struct {
	// Districts is a GeoJSON FeatureCollection of district polygons, each
	// with the property name = the district name agents report.
	Districts string `yaml:"districts"`
	// Areas is a GeoJSON FeatureCollection of areas of interest (schools,
	// stations, squares): properties name, kind, weight (importance).
	Areas string `yaml:"areas"`
	// Buildings is a GeoJSON FeatureCollection of building footprints,
	// which block cameras' views.
	Buildings string `yaml:"buildings"`
	// Basemap is a PMTiles file the hub serves to the console's map.
	Basemap string `yaml:"basemap"`
	// CellSize is the side of a coverage cell, metres.
	CellSize float64 `yaml:"cell_size_m"`
}

// Report configures availability reports.
type Report struct {
	// Timezone is an IANA name: where days begin for daily figures.
	Timezone string `yaml:"timezone"`
}

// WorkOrders configures work orders (hub/workorder, docs/maintenance.md).
type WorkOrders struct {
	// Grace is how long a fault alarm must stay active before it opens a
	// work order (default 10m).
	Grace time.Duration `yaml:"grace"`
	// Hold is how long every device of an order must stay healthy before
	// the order closes itself (default 10m).
	Hold time.Duration `yaml:"hold"`
	// RepeatWindow: a device failing again this soon after its order
	// closed reopens it as a repeat (default 24h).
	RepeatWindow time.Duration `yaml:"repeat_window"`
	// SLA per priority (p1 … p4): response and fix deadlines from
	// detection. Left out: P1 30m/4h, P2 1h/8h, P3 4h/24h, P4 8h/72h.
	SLA map[string]SLA `yaml:"sla"`
	// Crews are named groups of maintainer accounts with the districts
	// they cover; orders are given to a crew or a person.
	Crews []Crew `yaml:"crews"`
	// BusinessHours, when Days is set, are the hours the deadlines count.
	BusinessHours BusinessHours `yaml:"business_hours"`
}

// BusinessHours are working hours: days "mon,tue,wed,thu,fri", hours
// "08:30-17:30", an IANA time zone.
type BusinessHours struct {
	Days     string `yaml:"days"`
	Hours    string `yaml:"hours"`
	Timezone string `yaml:"timezone"`
}

// Crew is one maintenance crew.
type Crew struct {
	Name      string   `yaml:"name"`
	Members   []string `yaml:"members"`
	Districts []string `yaml:"districts"`
}

// SLA is one priority's deadlines.
type SLA struct {
	Respond time.Duration `yaml:"respond"`
	Fix     time.Duration `yaml:"fix"`
}

// HTTP is how the console and API are served.
type HTTP struct {
	TLS TLS `yaml:"tls"`
	// AllowedHosts are the host names the hub answers to besides IP
	// addresses and localhost ("citywatch.example.org"); others are
	// refused, which defeats DNS rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowedOrigins are web origins besides the hub's own whose pages may
	// act with a console session and open the event stream.
	AllowedOrigins []string      `yaml:"allowed_origins"`
	ReadTimeout    time.Duration `yaml:"read_timeout"`   // a whole request, body included
	MaxWebsockets  int           `yaml:"max_websockets"` // event streams per account
	// TrustedProxies are reverse proxies in front of the hub (addresses or
	// CIDR ranges): only their X-Forwarded-For and X-Forwarded-Proto are
	// believed, for the client's address (lockouts, the audit trail) and
	// scheme (the origin check).
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Proxies parses TrustedProxies; Validate has checked them.
func (h HTTP) Proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range h.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads a CIDR range or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// TLS is a certificate to serve with: files, or one the hub makes itself
// (self-signed, kept in data_dir/tls, for trials).
type TLS struct {
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	SelfSigned bool   `yaml:"self_signed"`
}

// On reports whether TLS is asked for.
func (t TLS) On() bool { return t.Cert != "" || t.SelfSigned }

// Auth is the policy for people and API tokens.
type Auth struct {
	Password PasswordPolicy `yaml:"password"`
	Lockout  Lockout        `yaml:"lockout"`
	Session  Session        `yaml:"session"`
	// TOTPRoles must use a second factor (TOTP); an account of such a role
	// without one can do nothing but enrol it.
	TOTPRoles []string `yaml:"totp_roles"`
	// MaxTokenLifetime bounds API tokens' expiry.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// MaxAgents caps enrolled agents, so no one can register without end.
	MaxAgents int `yaml:"max_agents"`
}

// PasswordPolicy is what passwords must be.
type PasswordPolicy struct {
	MinLength  int           `yaml:"min_length"`
	MinClasses int           `yaml:"min_classes"` // of lower case, upper case, digits, others
	MaxAge     time.Duration `yaml:"max_age"`     // 0: never expire
	History    int           `yaml:"history"`     // earlier passwords that may not be reused
}

// Lockout is what failed logins lead to.
type Lockout struct {
	Threshold        int           `yaml:"threshold"`         // failures of one account name
	AddressThreshold int           `yaml:"address_threshold"` // failures from one address
	Window           time.Duration `yaml:"window"`
	Duration         time.Duration `yaml:"duration"`
}

// Session is how long a console login lasts.
type Session struct {
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	Lifetime    time.Duration `yaml:"lifetime"`
}

// Audit is the audit trail.
type Audit struct {
	// Retention is how long records are kept; 0 keeps them for ever.
	// Chinese law asks for at least six months of network logs.
	Retention time.Duration `yaml:"retention"`
}

// MQTT is how the hub reaches the broker.
type MQTT struct {
	URL      string `yaml:"url"`
	ClientID string `yaml:"client_id"` // stable, so the broker keeps the session
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	Workers  int    `yaml:"workers"` // ingest shards; 0 = 2×CPUs
	Queue    int    `yaml:"queue"`   // messages per shard before "overload" rejects
	// CAFile, CertFile and KeyFile are for an external broker over TLS
	// (ssl:// or mqtts://): the CA to trust instead of the system's, and
	// the hub's client certificate.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Broker is the embedded MQTT broker, for the demo and small sites. It
// admits only enrolled agents (citywatch-hub agents enroll) and the hub.
type Broker struct {
	Enabled bool   `yaml:"enabled"`
	Addr    string `yaml:"addr"` // plain MQTT; the hub's own client uses it, so keep it on loopback
	// FallbackToFreePort lets the demo run where 1883 is taken.
	FallbackToFreePort bool `yaml:"fallback_to_free_port"`
	// TLSAddr, when set, serves MQTT over TLS for agents there.
	TLSAddr string `yaml:"tls_addr"`
	TLS     TLS    `yaml:"tls"`
	// ClientCA, when set, asks agents for a client certificate signed by
	// it (whose common name must be the agent id); RequireClientCert
	// refuses agents without one.
	ClientCA          string `yaml:"client_ca"`
	RequireClientCert bool   `yaml:"require_client_cert"`
	MaxClients        int    `yaml:"max_clients"`
	// AllowAnonymous lets clients in without credentials. Never in
	// production: any client could then publish as any agent.
	AllowAnonymous bool `yaml:"allow_anonymous"`
}

// Influx is where metrics and transitions are stored. Empty URL means no
// history store: the hub keeps a recent window in memory only.
type Influx struct {
	URL           string        `yaml:"url" env:"INFLUX_URL"`
	Token         Secret        `yaml:"token" env:"INFLUX_TOKEN"`
	Org           string        `yaml:"org" env:"INFLUX_ORG"`
	Bucket        string        `yaml:"bucket" env:"INFLUX_BUCKET"`
	BatchSize     uint          `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	Timeout       time.Duration `yaml:"timeout"`
	Queue         int           `yaml:"queue"`   // points waiting in memory to be written
	Writers       int           `yaml:"writers"` // batches in flight at once; 0 means 4
	// SpillBytes bounds the spill, the queue on disk (data_dir/spill)
	// that keeps what InfluxDB cannot take in time — down, failing or
	// slow — and replays it; 0 turns it off.
	SpillBytes int64 `yaml:"spill_bytes"`
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
	Linger                time.Duration `yaml:"linger"`                   // an upstream without viewers stays this long
	MaxUpstreamsPerAgent  int           `yaml:"max_upstreams_per_agent"`  // concurrent streams one site uplink carries
	UDPPort               int           `yaml:"udp_port"`                 // one UDP port for all ICE; 0 = ephemeral ports
	LoopbackOnly          bool          `yaml:"loopback_only"`            // ICE on 127.0.0.1 only: everything on one host, tests
	PublicIPs             []string      `yaml:"public_ips"`               // addresses announced instead of the host's (1:1 NAT)
	UpstreamTimeout       time.Duration `yaml:"upstream_timeout"`         // agent's answer and first keyframe
	KeyframeInterval      time.Duration `yaml:"keyframe_interval"`        // least time between keyframe requests to an agent
	StallTimeout          time.Duration `yaml:"stall_timeout"`            // a watched stream without packets this long fails
	AllowOrigins          []string      `yaml:"allow_origins"`            // web origins of other WHEP players' pages, or "*"
	MaxSessionsPerAccount int           `yaml:"max_sessions_per_account"` // viewing sessions one account holds at once
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
	// MaxShelve is the longest an operator may shelve (mute) an alarm.
	MaxShelve time.Duration `yaml:"max_shelve"`
}

// Maintenance is one window (from–to) or daily schedule; hub/alarm checks it.
type Maintenance struct {
	Name string `yaml:"name"`
	// ApprovedBy says who set the window (a name, a change ticket); reports
	// show it beside the time the window excluded.
	ApprovedBy string    `yaml:"approved_by"`
	Devices    []string  `yaml:"devices"`
	Agents     []string  `yaml:"agents"`
	Sites      []string  `yaml:"sites"`
	Districts  []string  `yaml:"districts"`
	From       time.Time `yaml:"from"`
	To         time.Time `yaml:"to"`
	Daily      string    `yaml:"daily"`    // "22:00-06:00"
	Timezone   string    `yaml:"timezone"` // for daily; IANA name, default UTC
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
		Listen:  "127.0.0.1:8080",
		DataDir: "/var/lib/citywatch",
		HTTP:    HTTP{ReadTimeout: 30 * time.Second, MaxWebsockets: 16},
		Auth: Auth{
			Password:         PasswordPolicy{MinLength: 12, MinClasses: 3, MaxAge: 90 * 24 * time.Hour, History: 5},
			Lockout:          Lockout{Threshold: 5, AddressThreshold: 20, Window: 15 * time.Minute, Duration: 15 * time.Minute},
			Session:          Session{IdleTimeout: 30 * time.Minute, Lifetime: 12 * time.Hour},
			TOTPRoles:        []string{"admin", "security_admin", "auditor"},
			MaxTokenLifetime: 365 * 24 * time.Hour,
			MaxAgents:        20_000,
		},
		Audit:  Audit{Retention: 400 * 24 * time.Hour},
		MQTT:   MQTT{URL: "tcp://127.0.0.1:1883", ClientID: "citywatch-hub", Queue: 4096},
		Broker: Broker{Addr: "127.0.0.1:1883", MaxClients: 20_001},
		Influx: Influx{BatchSize: 5000, FlushInterval: time.Second, Timeout: 10 * time.Second, Queue: 200_000, SpillBytes: 1 << 30},
		Fleet:  Fleet{MissedHeartbeats: 3, DefaultInterval: 10 * time.Second},
		Memory: Memory{Samples: 60, Transitions: 50},
		Live: Live{Linger: 10 * time.Second, MaxUpstreamsPerAgent: 4, UpstreamTimeout: 10 * time.Second,
			KeyframeInterval: time.Second, StallTimeout: 5 * time.Second, MaxSessionsPerAccount: 25},
		Alarms:  Alarms{MaxShelve: 7 * 24 * time.Hour},
		Map:     Map{CellSize: 25},
		Reports: Report{Timezone: "UTC"},
		Log:     Log{Level: "info", Format: "text"},
		Cluster: Cluster{Partitions: 64},
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
	if err := applyEnv(&cfg, env); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
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
	if c.DataDir == "" {
		bad("data_dir", "required: accounts, sessions and the audit trail are kept there")
	}
	errs = append(errs, c.HTTP.validate()...)
	errs = append(errs, c.Auth.validate()...)
	if c.Audit.Retention != 0 && c.Audit.Retention < 180*24*time.Hour {
		bad("audit.retention", "%s is less than 180 days (4320h), the least network logs must be kept; 0 keeps them for ever", c.Audit.Retention)
	}
	if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
		bad("mqtt.cert_file", "cert_file and key_file go together")
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
		errs = append(errs, c.Broker.validate()...)
	}
	if c.Cluster.Enabled() {
		if c.Broker.Enabled {
			bad("cluster.nats_url", "a clustered hub takes agents' messages from NATS: disable broker.enabled and point mqtt.url at NATS's MQTT listener")
		}
		if c.Cluster.HubID == "" {
			bad("cluster.hub_id", "required in a cluster: a stable name unique among the hubs")
		}
		if u := string(c.Cluster.PostgresURL); u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			bad("cluster.postgres_url", "want postgres://user:password@host:5432/database")
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
	if c.Influx.Writers < 0 || c.Influx.Writers > 64 {
		bad("influx.writers", "%d out of range 0–64 (0: 4)", c.Influx.Writers)
	}
	if c.Influx.SpillBytes < 0 {
		bad("influx.spill_bytes", "%d is negative (0: no spill)", c.Influx.SpillBytes)
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
	if c.Alarms.MaxShelve < time.Minute || c.Alarms.MaxShelve > 90*24*time.Hour {
		bad("alarms.max_shelve", "%s out of range 1m–2160h (90 days)", c.Alarms.MaxShelve)
	}
	for field, f := range map[string]string{"map.districts": c.Map.Districts, "map.areas": c.Map.Areas,
		"map.buildings": c.Map.Buildings, "map.basemap": c.Map.Basemap} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad(field, "%v", err)
		}
	}
	if c.Map.CellSize < 5 || c.Map.CellSize > 200 {
		bad("map.cell_size_m", "%g out of range 5–200", c.Map.CellSize)
	}
	w := c.WorkOrders
	for field, d := range map[string]time.Duration{"workorders.grace": w.Grace, "workorders.hold": w.Hold, "workorders.repeat_window": w.RepeatWindow} {
		if d < 0 || d > 30*24*time.Hour {
			bad(field, "%s out of range 0–720h (0: the default)", d)
		}
	}
	for p, sla := range w.SLA {
		if !slices.Contains([]string{"p1", "p2", "p3", "p4"}, p) {
			bad("workorders.sla", "%q is not a priority: p1, p2, p3 or p4", p)
		}
		if sla.Respond <= 0 || sla.Fix < sla.Respond {
			bad("workorders.sla."+p, "respond must be positive and fix at least respond (%s, %s)", sla.Respond, sla.Fix)
		}
	}
	if _, err := time.LoadLocation(c.Reports.Timezone); err != nil {
		bad("reports.timezone", "%q is not an IANA time zone name (Asia/Shanghai, UTC): %v", c.Reports.Timezone, err)
	}
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
	if l.MaxSessionsPerAccount < 1 || l.MaxSessionsPerAccount > 1000 {
		bad("max_sessions_per_account", "%d out of range 1–1000", l.MaxSessionsPerAccount)
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

func (h HTTP) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("http.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	errs = append(errs, h.TLS.validate("http.tls")...)
	for _, name := range h.AllowedHosts {
		if name == "" || strings.ContainsAny(name, "/:@ ") {
			bad("allowed_hosts", "%q is not a host name", name)
		}
	}
	for _, o := range h.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			bad("allowed_origins", "%q is not scheme://host[:port]", o)
		}
	}
	if h.ReadTimeout < time.Second || h.ReadTimeout > 10*time.Minute {
		bad("read_timeout", "%s out of range 1s–10m", h.ReadTimeout)
	}
	if h.MaxWebsockets < 1 || h.MaxWebsockets > 1000 {
		bad("max_websockets", "%d out of range 1–1000", h.MaxWebsockets)
	}
	for _, p := range h.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad("trusted_proxies", "%q is not an address or a CIDR range", p)
		}
	}
	return errs
}

func (t TLS) validate(field string) []error {
	var errs []error
	switch {
	case t.SelfSigned && (t.Cert != "" || t.Key != ""):
		errs = append(errs, fmt.Errorf("%s: self_signed or cert and key, not both", field))
	case (t.Cert == "") != (t.Key == ""):
		errs = append(errs, fmt.Errorf("%s: cert and key go together", field))
	}
	for _, f := range []string{t.Cert, t.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", field, err))
		}
	}
	return errs
}

func (a Auth) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("auth.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	p := a.Password
	if p.MinLength < 8 || p.MinLength > 128 {
		bad("password.min_length", "%d out of range 8–128", p.MinLength)
	}
	if p.MinClasses < 1 || p.MinClasses > 4 {
		bad("password.min_classes", "%d out of range 1–4", p.MinClasses)
	}
	if p.MaxAge < 0 {
		bad("password.max_age", "negative")
	}
	if p.History < 0 || p.History > 24 {
		bad("password.history", "%d out of range 0–24", p.History)
	}
	l := a.Lockout
	if l.Threshold < 1 || l.Threshold > 100 {
		bad("lockout.threshold", "%d out of range 1–100", l.Threshold)
	}
	if l.AddressThreshold < 1 || l.AddressThreshold > 10_000 {
		bad("lockout.address_threshold", "%d out of range 1–10000", l.AddressThreshold)
	}
	if l.Window < time.Minute || l.Duration < time.Minute {
		bad("lockout", "window and duration must be at least 1m")
	}
	s := a.Session
	if s.IdleTimeout < time.Minute || s.Lifetime < s.IdleTimeout || s.Lifetime > 7*24*time.Hour {
		bad("session", "want 1m ≤ idle_timeout ≤ lifetime ≤ 168h; have %s and %s", s.IdleTimeout, s.Lifetime)
	}
	for _, r := range a.TOTPRoles {
		if !slices.Contains([]string{"operator", "supervisor", "maintainer", "analyst", "auditor", "security_admin", "admin"}, r) {
			bad("totp_roles", "%q is not a role", r)
		}
	}
	if a.MaxTokenLifetime < time.Hour {
		bad("max_token_lifetime", "%s is less than 1h", a.MaxTokenLifetime)
	}
	if a.MaxAgents < 1 {
		bad("max_agents", "must be at least 1")
	}
	return errs
}

func (b Broker) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("broker.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(b.Addr); err != nil {
		bad("addr", "%q is not host:port (the hub's own client needs a plain listener; keep it on loopback)", b.Addr)
	}
	if b.TLSAddr != "" {
		if _, _, err := net.SplitHostPort(b.TLSAddr); err != nil {
			bad("tls_addr", "%q is not host:port", b.TLSAddr)
		}
		if !b.TLS.On() {
			bad("tls", "tls_addr needs a certificate: cert and key, or self_signed")
		}
		errs = append(errs, b.TLS.validate("broker.tls")...)
	} else if b.TLS.On() || b.ClientCA != "" {
		bad("tls_addr", "required with broker.tls or broker.client_ca")
	}
	if b.RequireClientCert && b.ClientCA == "" {
		bad("require_client_cert", "needs client_ca")
	}
	if b.ClientCA != "" {
		if _, err := os.Stat(b.ClientCA); err != nil {
			bad("client_ca", "%v", err)
		}
	}
	if b.MaxClients < 1 {
		bad("max_clients", "must be at least 1")
	}
	return errs
}
