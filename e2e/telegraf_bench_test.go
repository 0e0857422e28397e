package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// The Telegraf release the hub is compared with, and the plugins it is
// built with (scripts/deps.sh telegraf builds it).
const (
	telegrafModule  = "github.com/influxdata/telegraf"
	telegrafVersion = "v1.37.2"
	telegrafTags    = "custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2"
)

// BenchmarkTelegrafComparison runs the hub and Telegraf v1.37.2
// (mqtt_consumer with json_v2 → influxdb_v2) in turn on the same MQTT feed
// into the same InfluxDB, a database each, at 10,000, 20,000 and 40,000
// device samples per second, alternating which goes first, and prints for
// each: CPU microseconds per sample (utime+stime of the process from
// /proc), peak RSS (VmHWM), points landed in InfluxDB against samples sent,
// InfluxDB's own CPU per point, and the hub's figures against Telegraf's.
//
// The feed is what agents send: each agent (100 devices: 90 cameras, 10
// sensors) publishes its retained birth and inventory, then a health
// report every 2 s at QoS 1, stamped when sent; the agents' reports are
// spread evenly over the interval. A rate needs rate×2/100 agents (800, 80,000
// devices, at 40,000/s): agents report every 10 s in a city, but InfluxDB
// 1.8 refuses more than 100,000 values of one tag in a database by
// default (max-values-per-tag), so the devices are fewer and report more
// often. Each run gets new agent ids, a new consumer process and a new
// database. Telegraf is set up as the hub is: batches of 5,000 points,
// flushed every second, a 200,000-point buffer, no compression; its
// json_v2 turns a report into the same device_health measurement (tags
// agent and device, the status and the metrics as fields; it cannot add
// the district and kind, which only the inventory says).
//
// Size it with CITYWATCH_TGBENCH_RATES (10000,20000,40000),
// CITYWATCH_TGBENCH_SECONDS (30: the measured window of each run, after
// 15 s of warm-up, which takes in the burst of every device's first
// transition at the hub) and CITYWATCH_TGBENCH_INTERVAL (2s). The Telegraf
// binary is $CITYWATCH_TELEGRAF, or $(go env GOPATH)/bin/telegraf, built by
// `bash scripts/deps.sh telegraf` if missing. Run with -benchtime 1x.
func BenchmarkTelegrafComparison(b *testing.B) {
	rates := envInts(b, "CITYWATCH_TGBENCH_RATES", []int{10_000, 20_000, 40_000})
	window := time.Duration(envInt(b, "CITYWATCH_TGBENCH_SECONDS", 30)) * time.Second
	interval := 2 * time.Second
	if v := os.Getenv("CITYWATCH_TGBENCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			b.Fatalf("CITYWATCH_TGBENCH_INTERVAL=%q: want a duration of 1s or more", v)
		}
		interval = d
	}
	telegraf := telegrafBinary(b)
	raiseNoFileLimit(b)
	broker := testenv.Mosquitto(b)
	influx := testenv.InfluxDB(b)
	influxd := childPID(b, "influxd")

	results := map[string]map[int]consumerRun{"hub": {}, "telegraf": {}}
	b.ResetTimer()
	for i, rate := range rates {
		order := []string{"hub", "telegraf"}
		if i%2 == 1 {
			order = []string{"telegraf", "hub"}
		}
		for _, who := range order {
			run := benchRun{b: b, who: who, rate: rate, interval: interval, window: window, seq: fmt.Sprintf("r%d%s", i, who[:1]),
				broker: broker, influx: influx, influxd: influxd, telegraf: telegraf}
			results[who][rate] = run.run()
			r := results[who][rate]
			b.Logf("%s at %d/s: %.2f µs/sample, %.0f MiB peak, %d/%d landed, influxd %.2f µs/point",
				who, rate, r.cpuPerSample, r.peakMiB, r.landed, r.sent, r.influxdPerPoint)
		}
	}
	b.StopTimer()

	fmt.Printf("\n== citywatch hub vs Telegraf %s (mqtt_consumer json_v2 → influxdb_v2), same MQTT feed, same InfluxDB; agents report every %s; %s measured per run ==\n",
		telegrafVersion, interval, window)
	fmt.Printf("%-9s %-9s %12s %10s %10s %10s %9s %16s\n", "rate/s", "who", "CPU µs/smp", "peak MiB", "sent", "landed", "landed%", "influxd µs/point")
	for _, rate := range rates {
		for _, who := range []string{"hub", "telegraf"} {
			r := results[who][rate]
			fmt.Printf("%-9d %-9s %12.2f %10.0f %10d %10d %8.3f%% %16.2f\n", rate, who, r.cpuPerSample, r.peakMiB, r.sent, r.landed,
				100*float64(r.landed)/float64(max(r.sent, 1)), r.influxdPerPoint)
		}
	}
	fmt.Printf("\n%-9s %22s %18s %28s\n", "rate/s", "hub÷Telegraf CPU/smp", "hub÷Telegraf RSS", "landed: hub / Telegraf")
	allMet := true
	for _, rate := range rates {
		h, t := results["hub"][rate], results["telegraf"][rate]
		cpu, rss := h.cpuPerSample/t.cpuPerSample, h.peakMiB/t.peakMiB
		fullT, fullH := t.landed == t.sent, h.landed == h.sent
		landedOK := fullH || !fullT
		allMet = allMet && cpu <= 0.6 && rss <= 1.5 && landedOK
		fmt.Printf("%-9d %14.3f (%-7s) %10.3f (%-7s) %13.3f%% / %.3f%% (%s)\n", rate,
			cpu, verdict(cpu <= 0.6), rss, verdict(rss <= 1.5),
			100*float64(h.landed)/float64(max(h.sent, 1)), 100*float64(t.landed)/float64(max(t.sent, 1)), verdict(landedOK))
		b.ReportMetric(cpu, fmt.Sprintf("cpu-ratio@%d", rate))
		b.ReportMetric(rss, fmt.Sprintf("rss-ratio@%d", rate))
	}
	fmt.Printf("targets: hub CPU/sample ≤ 0.6× Telegraf's, RSS ≤ 1.5× Telegraf's, 100%% landed wherever Telegraf lands 100%%: %s\n", verdict(allMet))
}

// consumerRun is what one run of the hub or Telegraf measured.
type consumerRun struct {
	cpuPerSample    float64 // µs of the consumer's CPU per sample sent in the window
	peakMiB         float64
	sent, landed    int64
	influxdPerPoint float64 // µs of influxd's CPU per point landed in the window
}

// benchRun is one consumer at one rate.
type benchRun struct {
	b                 *testing.B
	who               string // "hub" or "telegraf"
	rate              int
	interval, window  time.Duration
	seq               string // distinguishes this run's agents and database
	broker            *testenv.Broker
	influx            *testenv.Influx
	influxd           int
	telegraf          string
	database, field   string
	proc              int // the consumer's pid
	stopConsumer      func()
	drain             func() // waits for what the consumer still holds to be written
	consumerRSSMiB    func() float64
	waitConsumerReady func(devices int)
	feed              *healthFeed
}

func (r *benchRun) run() consumerRun {
	b := r.b
	agents := r.rate * int(r.interval/time.Second) / feedDevices
	if agents == 0 {
		b.Fatalf("rate %d/s is below one agent of %d devices every %s", r.rate, feedDevices, r.interval)
	}
	r.database = fmt.Sprintf("%s_%d_%s", r.who, r.rate, r.seq)
	createDatabase(b, r.influx, r.database)
	bucket := r.database + "/autogen"
	if r.who == "hub" {
		r.startHub(bucket)
	} else {
		r.startTelegraf(bucket)
	}
	defer r.stopConsumer()

	r.feed = newHealthFeed(b, r.broker.URL(), r.seq, agents, r.interval)
	defer r.feed.close()
	r.feed.announce()
	r.waitConsumerReady(agents * feedDevices)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.feed.run(ctx) }()

	// Warm-up: the consumer has its steady load and points land.
	time.Sleep(15 * time.Second)
	eventually(b, 60*time.Second, func() error {
		if !r.anyPoint() {
			return fmt.Errorf("no point from the %s in %s yet", r.who, r.database)
		}
		return nil
	})
	// The window's ends are whole milliseconds: the hub writes points to
	// the millisecond, so a report stamped 0.4 ms after an end that is not
	// one would land before it, counted in the window's points but not its
	// samples ("100.033 %").
	t0 := time.Now().Truncate(time.Millisecond)
	cpu0, icpu0 := procCPU(b, r.proc), procCPU(b, r.influxd)
	time.Sleep(r.window)
	t1 := time.Now().Truncate(time.Millisecond)
	cpu1, icpu1 := procCPU(b, r.proc), procCPU(b, r.influxd)
	rss := r.consumerRSSMiB()
	cancel()
	<-done
	if r.drain != nil {
		r.drain()
	}

	sent := settle(func() int64 { return r.feed.sentIn(t0, t1) })
	landed := settle(func() int64 { return r.count(t0, t1) })
	return consumerRun{
		cpuPerSample:    (cpu1 - cpu0).Seconds() * 1e6 / float64(max(sent, 1)),
		peakMiB:         rss,
		sent:            sent,
		landed:          landed,
		influxdPerPoint: (icpu1 - icpu0).Seconds() * 1e6 / float64(max(landed, 1)),
	}
}

// count is the device_health points in this run's database stamped in
// [t0, t1). InfluxQL: Flux is several times slower at counting, and
// InfluxDB is busy.
func (r *benchRun) count(t0, t1 time.Time) int64 {
	var res struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	r.influxQL(fmt.Sprintf(`SELECT count(%q) FROM "device_health" WHERE time >= %d AND time < %d`, r.field, t0.UnixNano(), t1.UnixNano()), &res)
	if len(res.Results) == 0 || len(res.Results[0].Series) == 0 || len(res.Results[0].Series[0].Values) == 0 {
		return 0
	}
	n, _ := res.Results[0].Series[0].Values[0][1].(json.Number).Int64()
	return n
}

// anyPoint says whether the consumer has written a point yet.
func (r *benchRun) anyPoint() bool {
	var res struct {
		Results []struct {
			Series []json.RawMessage `json:"series"`
		} `json:"results"`
	}
	r.influxQL(fmt.Sprintf(`SELECT %q FROM "device_health" LIMIT 1`, r.field), &res)
	return len(res.Results) > 0 && len(res.Results[0].Series) > 0
}

var influxQLClient = &http.Client{Timeout: 5 * time.Minute}

// influxQL runs one query on the run's database and decodes the answer.
func (r *benchRun) influxQL(q string, v any) {
	res, err := influxQLClient.PostForm(r.influx.URL()+"/query", url.Values{"db": {r.database}, "q": {q}})
	if err != nil {
		r.b.Fatalf("%s: %v", q, err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	dec.UseNumber()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		r.b.Fatalf("%s: %s %s", q, res.Status, body)
	}
	if err := dec.Decode(v); err != nil {
		r.b.Fatalf("%s: %v", q, err)
	}
}

func (r *benchRun) startHub(bucket string) {
	b := r.b
	hub := startHubProcess(b, hubProcessOptions{brokerURL: r.broker.URL(), env: []string{
		"INFLUX_URL=" + r.influx.URL(), "INFLUX_ORG=" + r.influx.Org(), "INFLUX_BUCKET=" + bucket, "INFLUX_TOKEN=" + r.influx.Token(),
		"CITYWATCH_MQTT_CLIENT_ID=bench-hub-" + r.seq,
	}})
	r.field, r.proc = "status_code", hub.cmd.Process.Pid
	r.consumerRSSMiB = func() float64 { return float64(hub.peakRSS(b)) / (1 << 20) }
	r.waitConsumerReady = func(devices int) {
		eventually(b, 5*time.Minute, func() error {
			var s fleet.Summary
			if err := hub.get("api/summary", &s); err != nil {
				return err
			}
			if s.Devices < devices {
				return fmt.Errorf("the hub knows %d of %d devices", s.Devices, devices)
			}
			return nil
		})
	}
	// The hub keeps what InfluxDB could not take yet in its spill: landed
	// counts it once replayed (it is not lost), for at most 5 minutes.
	r.drain = func() {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) && hub.metric(b, "citywatch_influx_spill_points")+hub.metric(b, "citywatch_influx_queue_depth") > 0 {
			time.Sleep(time.Second)
		}
	}
	r.stopConsumer = func() {
		// What became of the points, and InfluxDB's health as the hub saw it.
		var h healthz
		_ = hub.get("healthz", &h)
		var counts []string
		for _, family := range []string{"written", "spilled", "replayed", "failed", "dropped"} {
			counts = append(counts, fmt.Sprintf("%s %.0f", family, hub.metric(b, "citywatch_influx_points_"+family+"_total")))
		}
		b.Logf("hub at %d/s: points %s; spill %.0f points; write errors %.0f; history %s %s", r.rate, strings.Join(counts, ", "),
			hub.metric(b, "citywatch_influx_spill_points"), hub.metric(b, "citywatch_influx_write_errors_total"),
			h.Components["history"].Status, h.Components["history"].Reason)
		hub.cmd.Process.Signal(os.Interrupt)
		hub.cmd.Wait()
	}
}

func (r *benchRun) startTelegraf(bucket string) {
	b := r.b
	dir := b.TempDir()
	conf := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(conf, []byte(telegrafConfig(r.broker.URL(), r.influx, bucket, "bench-telegraf-"+r.seq)), 0o600); err != nil {
		b.Fatal(err)
	}
	logPath := filepath.Join(dir, "telegraf.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(r.telegraf, "--config", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r.field, r.proc = "status", cmd.Process.Pid
	r.consumerRSSMiB = func() float64 { return float64(procHWM(b, cmd.Process.Pid)) / (1 << 20) }
	r.waitConsumerReady = func(int) {
		// Telegraf says when its MQTT client is connected; it subscribes
		// right after.
		eventually(b, 60*time.Second, func() error {
			out, _ := os.ReadFile(logPath)
			if strings.Contains(string(out), "Connected [") || strings.Contains(string(out), "Connected to [") {
				return nil
			}
			if cmd.ProcessState != nil {
				return fmt.Errorf("telegraf exited:\n%s", out)
			}
			return fmt.Errorf("telegraf not connected yet:\n%s", tail(strings.Split(string(out), "\n"), 10))
		})
	}
	r.stopConsumer = func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		logf.Close()
		if b.Failed() {
			out, _ := os.ReadFile(logPath)
			b.Logf("telegraf log:\n%s", tail(strings.Split(string(out), "\n"), 40))
		}
	}
}

// telegrafConfig turns health reports into device_health points: one per
// device line, tagged with the agent and device, its status and metrics as
// fields, at the report's time.
func telegrafConfig(brokerURL string, influx *testenv.Influx, bucket, clientID string) string {
	return fmt.Sprintf(`[agent]
  omit_hostname = true
  flush_interval = "1s"
  flush_jitter = "0s"
  metric_batch_size = 5000
  metric_buffer_limit = 200000
  debug = false
  quiet = false

[[outputs.influxdb_v2]]
  urls = [%[1]q]
  token = %[2]q
  organization = %[3]q
  bucket = %[4]q
  timeout = "10s"
  content_encoding = "identity"

[[inputs.mqtt_consumer]]
  servers = [%[5]q]
  topics = [%[6]q]
  qos = 1
  client_id = %[7]q
  persistent_session = false
  ## Enough reports in flight for several flush intervals at 40,000/s.
  max_undelivered_messages = 4000
  topic_tag = ""
  data_format = "json_v2"
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "device_health"
    timestamp_path = "ts"
    timestamp_format = "2006-01-02T15:04:05.999999999Z07:00"
    [[inputs.mqtt_consumer.json_v2.tag]]
      path = "agent"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "devices"
      tags = ["id"]
      excluded_keys = ["since", "probed", "reason", "detail", "triggered"]
      disable_prepend_keys = true
      [inputs.mqtt_consumer.json_v2.object.renames]
        id = "device"
`, influx.URL(), influx.Token(), influx.Org(), bucket, brokerURL, wire.Prefix+"+/"+string(wire.ChannelHealth), clientID)
}

// telegrafBinary returns Telegraf telegrafVersion (see peerBinary).
func telegrafBinary(b *testing.B) string {
	return peerBinary(b, "telegraf", "CITYWATCH_TELEGRAF", "Telegraf "+telegrafVersion, checkTelegraf)
}

// peerBinary returns the binary a benchmark compares the hub with: $env,
// or $(go env GOPATH)/bin/name, which `scripts/deps.sh name` builds (a few
// minutes the first time) when it is missing or check refuses it.
func peerBinary(b *testing.B, name, env, what string, check func(string) error) string {
	b.Helper()
	if p := os.Getenv(env); p != "" {
		if err := check(p); err != nil {
			b.Fatalf("$%s: %v", env, err)
		}
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		b.Fatalf("go env GOPATH: %v", err)
	}
	p := filepath.Join(strings.Split(strings.TrimSpace(string(gopath)), string(os.PathListSeparator))[0], "bin", name)
	if check(p) == nil {
		return p
	}
	b.Logf("building %s with scripts/deps.sh %s (a few minutes the first time)", what, name)
	if out, err := exec.Command("bash", "../scripts/deps.sh", name).CombinedOutput(); err != nil {
		b.Fatalf("%s could not be built here, so the comparison cannot run: %v\n%s", what, err, out)
	}
	if err := check(p); err != nil {
		b.Fatal(err)
	}
	return p
}

// checkTelegraf says why the binary at p is not the Telegraf compared with.
func checkTelegraf(p string) error {
	out, err := exec.Command("go", "version", "-m", p).Output()
	if err != nil {
		return fmt.Errorf("%s: not a Go binary with build information: %v", p, err)
	}
	info := string(out)
	if !strings.Contains(info, "\tmod\t"+telegrafModule+"\t"+telegrafVersion+"\t") ||
		!strings.Contains(info, "\tbuild\t-tags="+telegrafTags+"\n") {
		return fmt.Errorf("%s is not Telegraf %s built with -tags %s", p, telegrafVersion, telegrafTags)
	}
	return nil
}

// createDatabase makes a 1.x database (bucket DB/autogen) on influx.
func createDatabase(b *testing.B, influx *testenv.Influx, name string) {
	b.Helper()
	res, err := http.PostForm(influx.URL()+"/query", url.Values{"q": {"CREATE DATABASE " + name}})
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
		b.Fatalf("CREATE DATABASE %s: %s %s", name, res.Status, body)
	}
}

// feedDevices is every simulated agent's device count: 90 cameras and 10
// sensors.
const feedDevices = 100

// healthFeed publishes what a city's agents send: retained births and
// inventories, then health reports at QoS 1, each agent every interval,
// the agents spread evenly over it. It counts the samples the broker
// acknowledged whose report time is in the window.
type healthFeed struct {
	b        *testing.B
	clients  []mqtt.Client
	agents   []feedAgent
	interval time.Duration
	boot     int64

	mu sync.Mutex
	// acked are the reports the broker acknowledged: their stamps and
	// devices, summed for a window afterwards. Deciding at the ack whether
	// a report is in a window still being opened counted one report
	// stamped just after t0 out of it, and it landed "beyond 100 %".
	acked  []ackedReport
	errors atomic.Int64
}

type ackedReport struct {
	ts      time.Time
	devices int
}

type feedAgent struct {
	id      string
	devices []wire.DeviceHealth
	seq     uint64
}

func newHealthFeed(b *testing.B, brokerURL, run string, agents int, interval time.Duration) *healthFeed {
	f := &healthFeed{b: b, interval: interval, boot: time.Now().UnixMilli()}
	for i := range 4 {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("feed-%s-%d", run, i)).
			SetOrderMatters(false).SetAutoReconnect(false).SetWriteTimeout(30 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("feed connect: %v", tok.Error())
		}
		f.clients = append(f.clients, c)
	}
	for a := range agents {
		fa := feedAgent{id: fmt.Sprintf("%s-agent-%04d", run, a)}
		for d := range feedDevices {
			dh := wire.DeviceHealth{Status: wire.StatusOnline}
			if d < 90 {
				dh.ID = fmt.Sprintf("%s-cam-%04d-%02d", run, a, d)
				dh.Metrics = map[string]float64{wire.MetricTCPMillis: 1.2 + float64(d%7)/10, wire.MetricRTSPMillis: 8.5,
					wire.MetricFPS: 25, wire.MetricBitrateKbps: float64(1800 + d)}
			} else {
				dh.ID = fmt.Sprintf("%s-pir-%04d-%02d", run, a, d)
				dh.Metrics = map[string]float64{wire.MetricCheckinAge: 12, wire.MetricBatteryPct: 87}
			}
			fa.devices = append(fa.devices, dh)
		}
		f.agents = append(f.agents, fa)
	}
	return f
}

// announce publishes every agent's retained birth and inventory.
func (f *healthFeed) announce() {
	now := time.Now().UTC()
	var toks []mqtt.Token
	for i := range f.agents {
		a := &f.agents[i]
		district := fmt.Sprintf("District %d", i%8)
		inv := wire.Inventory{Site: wire.Site{ID: "site-" + a.id, District: district, Location: wire.Location{Lat: 39.9, Lon: 116.4}}}
		for d, dh := range a.devices {
			dev := wire.Device{ID: dh.ID, Kind: wire.KindCamera, District: district, Criticality: 3, Location: wire.Location{Lat: 39.9, Lon: 116.4}}
			if d >= 90 {
				dev.Kind, dev.SensorKind = wire.KindSensor, wire.SensorIntrusion
			}
			inv.Devices = append(inv.Devices, dev)
		}
		a.seq++
		birth := wire.State{Header: f.header(a, now), State: wire.AgentOnline, Conn: 1, Interval: f.interval.Seconds(), Site: inv.Site.ID}
		a.seq++
		inv.Header = f.header(a, now)
		c := f.clients[i%len(f.clients)]
		toks = append(toks, c.Publish(wire.Topic(a.id, wire.ChannelState), 1, true, f.encode(wire.Topic(a.id, wire.ChannelState), birth)))
		toks = append(toks, c.Publish(wire.Topic(a.id, wire.ChannelInventory), 1, true, f.encode(wire.Topic(a.id, wire.ChannelInventory), inv)))
	}
	for _, t := range toks {
		if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
			f.b.Fatalf("feed: announcing: %v", t.Error())
		}
	}
}

func (f *healthFeed) header(a *feedAgent, now time.Time) wire.Header {
	return wire.Header{V: 1, Agent: a.id, Boot: f.boot, Seq: a.seq, TS: now}
}

// encode marshals v and checks it is a message the hub accepts.
func (f *healthFeed) encode(topic string, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		f.b.Fatal(err)
	}
	if _, err := wire.Decode(topic, data, time.Now()); err != nil {
		f.b.Fatalf("feed: %s would be rejected: %v", topic, err)
	}
	return data
}

// run publishes health reports until ctx ends: agent i reports at
// i/agents of the interval and every interval after.
func (f *healthFeed) run(ctx context.Context) {
	start := time.Now()
	n := len(f.agents)
	var wg sync.WaitGroup
	for ci, c := range f.clients {
		wg.Go(func() {
			var pending []pendingReport
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			next := make([]time.Time, 0, n/len(f.clients)+1)
			var mine []int
			for i := ci; i < n; i += len(f.clients) {
				mine = append(mine, i)
				next = append(next, start.Add(time.Duration(i)*f.interval/time.Duration(n)))
			}
			for {
				select {
				case <-ctx.Done():
					f.settle(pending, true)
					return
				case now := <-tick.C:
					var err error
					for k, i := range mine {
						if now.Before(next[k]) {
							continue
						}
						next[k] = next[k].Add(f.interval)
						a := &f.agents[i]
						a.seq++
						ts := time.Now().UTC()
						h := wire.Health{Header: f.header(a, ts), Interval: f.interval.Seconds(), Devices: a.devices}
						for d := range h.Devices {
							h.Devices[d].Since, h.Devices[d].Probed = time.UnixMilli(f.boot).UTC(), ts
						}
						var data []byte
						if k == 0 && ci == 0 && a.seq == 3 {
							data = f.encode(wire.Topic(a.id, wire.ChannelHealth), h) // the first report is checked
						} else if data, err = json.Marshal(h); err != nil {
							f.b.Error(err)
							return
						}
						pending = append(pending, pendingReport{c.Publish(wire.Topic(a.id, wire.ChannelHealth), 1, false, data), ts, len(h.Devices)})
					}
					pending = f.settle(pending, false)
				}
			}
		})
	}
	wg.Wait()
}

type pendingReport struct {
	tok     mqtt.Token
	ts      time.Time
	devices int
}

// settle counts the reports the broker acknowledged (waiting for all when
// final) and returns those still pending.
func (f *healthFeed) settle(pending []pendingReport, final bool) []pendingReport {
	keep := pending[:0]
	for _, p := range pending {
		select {
		case <-p.tok.Done():
		default:
			if !final {
				keep = append(keep, p)
				continue
			}
			p.tok.WaitTimeout(30 * time.Second)
		}
		if p.tok.Error() != nil {
			f.errors.Add(1)
			continue
		}
		f.mu.Lock()
		f.acked = append(f.acked, ackedReport{p.ts, p.devices})
		f.mu.Unlock()
	}
	return keep
}

// sentIn is the samples of the reports stamped in [t0, t1) that the
// broker acknowledged.
func (f *healthFeed) sentIn(t0, t1 time.Time) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, a := range f.acked {
		if !a.ts.Before(t0) && a.ts.Before(t1) {
			n += int64(a.devices)
		}
	}
	return n
}

// close clears the agents' retained messages, so the next run's consumer
// does not see them, and disconnects.
func (f *healthFeed) close() {
	var toks []mqtt.Token
	for i := range f.agents {
		c := f.clients[i%len(f.clients)]
		for _, ch := range []wire.Channel{wire.ChannelState, wire.ChannelInventory} {
			toks = append(toks, c.Publish(wire.Topic(f.agents[i].id, ch), 1, true, []byte{}))
		}
	}
	for _, t := range toks {
		t.WaitTimeout(30 * time.Second)
	}
	for _, c := range f.clients {
		c.Disconnect(100)
	}
	if n := f.errors.Load(); n > 0 {
		f.b.Logf("feed: %d reports not acknowledged by the broker (not counted as sent)", n)
	}
}

// childPID finds this process's child named comm (the influxd testenv
// started), to read its CPU time.
func childPID(b *testing.B, comm string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+2:])
		if s[open+1:end] == comm && len(fields) > 1 && fields[1] == strconv.Itoa(self) {
			return pid
		}
	}
	b.Fatalf("no %s child process", comm)
	return 0
}

// envInts reads a comma-separated list of positive integers.
func envInts(b *testing.B, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want positive integers separated by commas", name, v)
		}
		out = append(out, n)
	}
	return out
}
