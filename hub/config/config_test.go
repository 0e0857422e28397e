package config

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Parse(nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.MQTT.URL != "tcp://127.0.0.1:1883" || cfg.Influx.Enabled() {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
}

func TestYAMLThenEnv(t *testing.T) {
	yml := []byte(`
listen: 0.0.0.0:9000
mqtt: {url: "tcp://broker:1883", client_id: hub-a, queue: 100}
influx: {url: "http://influx:8086", org: city, bucket: "citywatch/autogen", flush_interval: 2s}
fleet: {missed_heartbeats: 5}
`)
	cfg, err := Parse(yml, envOf(map[string]string{
		"CITYWATCH_MQTT_PASSWORD": "s3cret",
		"INFLUX_TOKEN":            "user:pass",
		"CITYWATCH_LISTEN":        "127.0.0.1:9100",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9100" {
		t.Errorf("env did not override listen: %q", cfg.Listen)
	}
	if cfg.MQTT.ClientID != "hub-a" || cfg.MQTT.Queue != 100 || cfg.Fleet.MissedHeartbeats != 5 {
		t.Errorf("yaml not applied: %+v", cfg)
	}
	if cfg.Influx.FlushInterval != 2*time.Second || cfg.Influx.BatchSize != 5000 || cfg.Influx.SpillBytes != 1<<30 {
		t.Errorf("influx = %+v (want the 1 GiB spill by default)", cfg.Influx)
	}
	if cfg.MQTT.Password != "s3cret" || cfg.Influx.Token != "user:pass" {
		t.Errorf("secrets not read from env")
	}

	cfg, err = Parse([]byte("live: {udp_port: 8189, public_ips: [192.0.2.1]}\n"), envOf(map[string]string{
		"CITYWATCH_LIVE_UDP_PORT": "9000", "CITYWATCH_LIVE_PUBLIC_IPS": "198.51.100.7, 198.51.100.8",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Live.UDPPort != 9000 || !reflect.DeepEqual(cfg.Live.PublicIPs, []string{"198.51.100.7", "198.51.100.8"}) {
		t.Errorf("live env = %+v", cfg.Live)
	}
}

func TestEveryProblemListedAtOnce(t *testing.T) {
	yml := []byte(`
listen: nonsense
mqtt: {url: "ftp://x", client_id: "", queue: 0}
influx: {url: "http://influx:8086", batch_size: 0, spill_bytes: -1}
fleet: {missed_heartbeats: 0, default_interval: 1ms}
live: {linger: 1ms, max_upstreams_per_agent: 0, udp_port: 70000, public_ips: [example.org], upstream_timeout: 1h,
  keyframe_interval: 0s, stall_timeout: 0s, allow_origins: [example.org]}
log: {level: loud, format: xml}
`)
	_, err := Parse(yml, noEnv)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"listen:", "mqtt.url:", "mqtt.client_id:", "mqtt.queue:", "influx.bucket:", "influx.org:",
		"influx.batch_size:", "influx.spill_bytes:", "fleet.missed_heartbeats:", "fleet.default_interval:", "log.level:", "log.format:",
		"live.linger:", "live.max_upstreams_per_agent:", "live.udp_port:", "live.public_ips:", "live.upstream_timeout:",
		"live.keyframe_interval:", "live.stall_timeout:", "live.allow_origins:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not mention %s:\n%v", field, err)
		}
	}
}

func TestUnknownKeyAndBadEnv(t *testing.T) {
	if _, err := Parse([]byte("mqtt: {urll: x}\n"), noEnv); err == nil || !strings.Contains(err.Error(), "urll") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := Parse(nil, envOf(map[string]string{"CITYWATCH_BROKER_ENABLED": "sure"})); err == nil ||
		!strings.Contains(err.Error(), "CITYWATCH_BROKER_ENABLED") {
		t.Errorf("bad env bool: %v", err)
	}
}

func TestSecretsRedact(t *testing.T) {
	cfg := Default()
	cfg.MQTT.Password = "hunter2"
	cfg.Influx.Token = "tok-123"
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "mqtt", cfg.MQTT, "influx", cfg.Influx, "pw", cfg.MQTT.Password)
	out := b.String() + fmt.Sprintf("%v %+v", cfg, cfg)
	if strings.Contains(out, "hunter2") || strings.Contains(out, "tok-123") {
		t.Errorf("secret leaked: %s", out)
	}
}

// TestExampleConfig keeps configs/hub.example.yaml loadable and equal to the
// defaults it claims to show.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../configs/hub.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	// "[]" in the file is the default's nil list.
	for _, l := range []*[]string{&cfg.Live.PublicIPs, &cfg.Live.AllowOrigins} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("example differs from the defaults:\n%+v\n%+v", cfg, Default())
	}
}

func TestCredentialsNotInBrokerURL(t *testing.T) {
	_, err := Parse([]byte("mqtt: {url: \"tcp://hub:hunter2@broker:1883\"}\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "mqtt.username") {
		t.Fatalf("credentials in the URL accepted: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// TestEnvFromStruct sets settings of every type through variables named
// after their YAML paths, and reports every bad value at once.
func TestEnvFromStruct(t *testing.T) {
	cfg, err := Parse(nil, envOf(map[string]string{
		"CITYWATCH_AUTH_SESSION_IDLE_TIMEOUT": "15m",
		"CITYWATCH_AUTH_TOTP_ROLES":           "admin, auditor",
		"CITYWATCH_BROKER_ENABLED":            "true",
		"CITYWATCH_BROKER_MAX_CLIENTS":        "50",
		"CITYWATCH_INFLUX_BATCH_SIZE":         "100",
		"CITYWATCH_INFLUX_SPILL_BYTES":        "0",
		"INFLUX_URL":                          "http://influx:8086",
		"INFLUX_ORG":                          "city",
		"INFLUX_BUCKET":                       "citywatch/autogen",
		"CITYWATCH_DATA_DIR":                  "/srv/citywatch",
		"CITYWATCH_HTTP_ALLOWED_HOSTS":        "citywatch.example.org",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.Session.IdleTimeout != 15*time.Minute || !reflect.DeepEqual(cfg.Auth.TOTPRoles, []string{"admin", "auditor"}) ||
		!cfg.Broker.Enabled || cfg.Broker.MaxClients != 50 || cfg.Influx.BatchSize != 100 || cfg.Influx.SpillBytes != 0 || cfg.Influx.URL != "http://influx:8086" ||
		cfg.DataDir != "/srv/citywatch" || !reflect.DeepEqual(cfg.HTTP.AllowedHosts, []string{"citywatch.example.org"}) {
		t.Errorf("env not applied: %+v", cfg)
	}
	_, err = Parse(nil, envOf(map[string]string{
		"CITYWATCH_BROKER_ENABLED":      "yes please",
		"CITYWATCH_LIVE_UDP_PORT":       "eighty",
		"CITYWATCH_AUTH_LOCKOUT_WINDOW": "soon",
	}))
	for _, want := range []string{"CITYWATCH_BROKER_ENABLED", "CITYWATCH_LIVE_UDP_PORT", "CITYWATCH_AUTH_LOCKOUT_WINDOW"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	names := map[string]bool{}
	for _, v := range EnvVars() {
		if names[v.Name] {
			t.Errorf("%s names two settings", v.Name)
		}
		names[v.Name] = true
	}
	for _, want := range []string{"CITYWATCH_LISTEN", "CITYWATCH_MQTT_PASSWORD", "INFLUX_TOKEN", "CITYWATCH_LIVE_PUBLIC_IPS", "CITYWATCH_AUDIT_RETENTION"} {
		if !names[want] {
			t.Errorf("EnvVars lacks %s", want)
		}
	}
	if names["CITYWATCH_ALARMS_WEBHOOKS"] {
		t.Error("a list of sections has a variable")
	}
}

// TestSecurityPolicyValidated lists every problem of the identity, TLS
// and broker settings at once.
func TestSecurityPolicyValidated(t *testing.T) {
	_, err := Parse([]byte(`
data_dir: ""
http: {tls: {cert: /no/such.pem, self_signed: true}, allowed_hosts: ["a/b"], read_timeout: 0s, max_websockets: 0, trusted_proxies: [nginx]}
auth:
  password: {min_length: 4, min_classes: 9, history: -1}
  lockout: {threshold: 0, window: 1s}
  session: {idle_timeout: 2h, lifetime: 1h}
  totp_roles: [wizard]
  max_token_lifetime: 1m
audit: {retention: 24h}
broker: {enabled: true, require_client_cert: true, tls: {self_signed: true}}
alarms: {max_shelve: 8760h}
`), noEnv)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"data_dir", "http.tls", "allowed_hosts", "read_timeout", "max_websockets", "trusted_proxies",
		"password.min_length", "password.min_classes", "password.history", "lockout.threshold", "lockout",
		"session", "totp_roles", "max_token_lifetime", "audit.retention", "broker.tls_addr", "require_client_cert", "max_shelve"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s", want)
		}
	}
}

func TestMapAndReportsValidated(t *testing.T) {
	_, err := Parse([]byte(`
map: {districts: /no/such.geojson, basemap: /no/such.pmtiles, cell_size_m: 1}
reports: {timezone: Mars/Olympus}
`), noEnv)
	for _, want := range []string{"map.districts", "map.basemap", "map.cell_size_m", "reports.timezone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	cfg, err := Parse([]byte("reports: {timezone: Asia/Shanghai}\nmap: {cell_size_m: 10}\n"), noEnv)
	if err != nil || cfg.Reports.Timezone != "Asia/Shanghai" || cfg.Map.CellSize != 10 {
		t.Errorf("good map and reports settings: %+v %v", cfg.Map, err)
	}
}

func TestTrustedProxies(t *testing.T) {
	cfg, err := Parse([]byte("http: {trusted_proxies: [10.0.0.0/8, 192.0.2.7, '::1']}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.HTTP.Proxies()
	if len(got) != 3 || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.0.2.7/32" || got[2].String() != "::1/128" {
		t.Errorf("proxies %v", got)
	}
}

func TestClusterValidated(t *testing.T) {
	_, err := Parse([]byte("cluster: {nats_url: nats://127.0.0.1:4222}\nbroker: {enabled: true}\n"), noEnv)
	for _, want := range []string{"cluster.hub_id", "disable broker.enabled"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %s", err, want)
		}
	}
	cfg, err := Parse([]byte("cluster: {nats_url: nats://127.0.0.1:4222, hub_id: hub-1}\n"), noEnv)
	if err != nil || !cfg.Cluster.Enabled() || cfg.Cluster.Partitions != 64 {
		t.Errorf("a good cluster section: %+v %v", cfg.Cluster, err)
	}
	_, err = Parse([]byte("cluster: {nats_url: nats://127.0.0.1:4222, hub_id: hub-1, postgres_url: 'mysql://x'}\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "cluster.postgres_url") {
		t.Errorf("a postgres_url that is not one: %v", err)
	}
	env := func(k string) (string, bool) {
		return "postgres://cw:s3cret@db:5432/citywatch", k == "CITYWATCH_CLUSTER_POSTGRES_URL"
	}
	cfg, err = Parse([]byte("cluster: {nats_url: nats://127.0.0.1:4222, hub_id: hub-1}\n"), env)
	if err != nil || string(cfg.Cluster.PostgresURL) != "postgres://cw:s3cret@db:5432/citywatch" || strings.Contains(fmt.Sprint(cfg.Cluster), "s3cret") {
		t.Errorf("postgres_url from the environment: %v, %v", cfg.Cluster, err)
	}
}

// TestClusterExamples keeps the cluster layout of docs/operations.md
// working: the hub's file loads and is a clustered hub's, and the NATS
// node's file is one nats-server accepts, with JetStream, a cluster and
// the MQTT listener the agents need.
func TestClusterExamples(t *testing.T) {
	cfg, err := Load("../../configs/cluster/hub-a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Cluster.Enabled() || cfg.Broker.Enabled || cfg.Cluster.Replicas != 3 || strings.Count(cfg.Cluster.NATSURL, ",") != 2 {
		t.Errorf("hub-a.yaml is not a clustered hub on three NATS nodes: %+v", cfg.Cluster)
	}
	opts, err := server.ProcessConfigFile("../../configs/cluster/nats-1.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream || opts.Cluster.Name != "citywatch" || len(opts.Routes) != 3 || opts.MQTT.Port != 1883 || opts.ServerName == "" {
		t.Errorf("nats-1.conf: jetstream %v, cluster %q, routes %d, mqtt port %d, server name %q",
			opts.JetStream, opts.Cluster.Name, len(opts.Routes), opts.MQTT.Port, opts.ServerName)
	}
}
