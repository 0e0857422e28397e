package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkSpine drives simulated agents through a real Mosquitto into the
// hub (a separate process, so its CPU and memory are its own) and a real
// InfluxDB, and prints what the issue asks for: sustained device samples
// per second, hub CPU seconds per 1,000 samples, hub peak RSS, samples sent
// versus points found in InfluxDB, and publish → websocket latency of state
// changes. Size it with CITYWATCH_BENCH_AGENTS (1000), _DEVICES per agent
// (100), _SECONDS of measurement (60). Run with -benchtime 1x: one run is
// one minute of load.
func BenchmarkSpine(b *testing.B) {
	agents, devices, window := envInt(b, "CITYWATCH_BENCH_AGENTS", 1000), envInt(b, "CITYWATCH_BENCH_DEVICES", 100),
		time.Duration(envInt(b, "CITYWATCH_BENCH_SECONDS", 60))*time.Second
	const interval = 10 * time.Second
	total := agents * devices

	broker := testenv.Mosquitto(b)
	// In a deployment InfluxDB has a host of its own; on this benchmark's
	// two cores its compactions would otherwise take both in bursts and
	// the hub's answers would wait for a core. It still has to keep up:
	// what landed is counted.
	influx := testenv.InfluxDB(b, testenv.InfluxNice(10))
	hub := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL(), env: []string{
		"INFLUX_URL=" + influx.URL(), "INFLUX_ORG=" + influx.Org(), "INFLUX_BUCKET=" + influx.Bucket(), "INFLUX_TOKEN=" + influx.Token()}})

	// The counting subscriber sees what the agents sent, at the broker.
	sent := newSampleCounter(b, broker.URL())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // before the cleanups, which wait for the sim
	startup := time.Now()
	// The city runs in a process of its own, as agents are machines of
	// their own: this process only measures, and neither the simulator's
	// heap nor its collections delay the clients timing the hub.
	city := sim.CityOptions{Seed: 1, Districts: 8, Sites: agents, Devices: total}
	world := runSimProcess(b, broker.URL(), city, interval)
	waitCityOnline(b, hub, city)
	b.Logf("all online after %s; measuring for %s", time.Since(startup).Round(time.Second), window)

	lat := newLatencyProbe(b, hub)
	queries := newAPIPollers([]*apiClient{hub.api}, 1, deviceQueries(b, hub)...)
	b.ResetTimer()
	t0, m0 := time.Now(), snapshotCPU(b)
	cpu0 := hub.cpuSeconds(b)
	sent.start(t0)
	queries.start()
	lat.run(ctx, world, window, devicesOfCity(world))
	queries.stop()
	t1, m1 := time.Now(), snapshotCPU(b)
	sent.stop(t1)
	cpu1 := hub.cpuSeconds(b)
	b.StopTimer()

	// Reports stamped inside the window may still be on their way to the
	// counter and to InfluxDB: read both until they stop growing.
	samples := settle(func() int64 { return sent.samples() })
	found := settle(func() int64 { return countPoints(b, influx, t0, t1) })
	elapsed := t1.Sub(t0).Seconds()
	rate := float64(samples) / elapsed
	offered := float64(total) / interval.Seconds()
	cpu := cpu1 - cpu0
	p50, p99, n := lat.percentiles()
	qP50, qP99, qN := percentiles(queries.samples())
	// A replay is a message whose seq the hub already applied: QoS 1
	// resends after an agent's reconnect (the start-up burst makes some
	// time out), harmless. Anything else refused is lost.
	rejects := hub.metric(b, `citywatch_mqtt_rejects_total`)
	refused := rejects - hub.metric(b, `citywatch_mqtt_rejects_total{reason="replay"}`)

	fmt.Printf(`
== citywatch spine benchmark: %d agents × %d devices, report every %s, %s window ==
device samples/s sustained (sent by agents):  %.0f   of %.0f offered (target: all of 10000/s, no loss: %s)
samples sent in window:                        %d
points found in InfluxDB for the window:       %d   (loss %d, %.4f%%)
hub CPU:                                       %.2f s over %.0f s = %.2f cores   (target ≤ 1: %s)
hub CPU seconds per 1,000 samples:             %.4f
hub peak RSS:                                  %.0f MiB
the machine in the window:                     %s
publish → websocket latency (state changes):   p50 %s, p99 %s over %d changes
device queries (pages of 100, filters):        p50 %s, p99 %s over %d requests, %d errors   (target p99 ≤ 50 ms: %s)
%shub rejects since it started:                 %v %v   (target: none but replays, start-up burst included: %s)
ingest backpressure (waited for a full shard): %v
influx points failed / dropped:                %v / %v
`,
		agents, devices, interval, window.Round(time.Second),
		rate, offered, verdict(rate >= 0.99*offered && offered >= 10_000 && samples == found),
		samples, found, samples-found, 100*float64(samples-found)/float64(max(samples, 1)),
		cpu, elapsed, cpu/elapsed, verdict(cpu/elapsed <= 1),
		1000*cpu/float64(max(samples, 1)),
		float64(hub.peakRSS(b))/(1<<20),
		elsewhere(m0, m1),
		p50, p99, n,
		qP50.Round(100*time.Microsecond), qP99.Round(100*time.Microsecond), qN, queries.errors.Load(),
		verdict(qN > 0 && qP99 <= 50*time.Millisecond && queries.errors.Load() == 0), queries.byPathP99(),
		rejects, hub.api.metricNonZero(b, "citywatch_mqtt_rejects_total"), verdict(refused == 0),
		hub.metric(b, `citywatch_ingest_backpressure_total`),
		hub.metric(b, `citywatch_influx_points_failed_total`), hub.metric(b, `citywatch_influx_points_dropped_total`),
	)
	b.ReportMetric(rate, "samples/s")
	b.ReportMetric(1000*cpu/float64(max(samples, 1)), "hub-cpu-s/1k-samples")
	b.ReportMetric(float64(hub.peakRSS(b))/(1<<20), "hub-peak-MiB")
	b.ReportMetric(float64(samples-found), "lost-points")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(qP99.Microseconds())/1000, "query-p99-ms")
}

// deviceQueries are what consoles ask of a city's device list while it
// reports: the first page of 100, a district's, a site's online devices,
// the offline ones, a filter nothing matches (a full scan if it were not
// indexed), and sensors on a page deep in the list (keyset).
func deviceQueries(b *testing.B, hub *hubProcess) []string {
	var page struct {
		Devices []fleet.Device `json:"devices"`
		Total   int            `json:"total"`
	}
	if err := hub.get("api/devices?limit=1", &page); err != nil || len(page.Devices) == 0 {
		b.Fatalf("the hub lists no device: %v", err)
	}
	first := page.Devices[0]
	if err := hub.get(fmt.Sprintf("api/devices?limit=1&offset=%d", page.Total/2), &page); err != nil || len(page.Devices) == 0 {
		b.Fatalf("the hub lists no device halfway: %v", err)
	}
	mid := page.Devices[0]
	return []string{
		"api/devices?limit=100",
		"api/devices?limit=100&district=" + url.QueryEscape(first.District),
		"api/devices?limit=100&status=online&site=" + url.QueryEscape(first.Site),
		"api/devices?limit=100&status=offline",
		"api/devices?limit=100&district=Nowhere",
		"api/devices?limit=100&kind=sensor&after=" + url.QueryEscape(mid.ID),
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// simCity is a simulated city the benchmarks fault: *sim.Sim in the
// benchmark's process, or *simProcess.
type simCity interface {
	City() sim.City
	Fault(sim.Fault) error
}

func devicesOfCity(world simCity) []string {
	var cams []string
	for _, a := range world.City().Agents {
		for _, c := range a.Cameras {
			cams = append(cams, c.ID)
		}
	}
	return cams
}

// startScaleCity runs a simulated city in scale mode (cameras answered
// in-process) until ctx ends, and waits until the hub sees every device
// online.
func startScaleCity(b *testing.B, ctx context.Context, brokerURL string, hub *hubProcess, city sim.CityOptions, interval time.Duration) *sim.Sim {
	b.Helper()
	world, err := sim.New(sim.Options{BrokerURL: brokerURL, InProcessCameras: true, Interval: interval, Logger: testLogger(b), City: city})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	b.Cleanup(func() {
		if err := <-done; err != nil {
			b.Errorf("sim: %v", err)
		}
	})
	waitCityOnline(b, hub, city)
	return world
}

// waitCityOnline waits until the hub sees every device of city online.
func waitCityOnline(b testing.TB, hub *hubProcess, city sim.CityOptions) {
	b.Helper()
	b.Logf("waiting for %d devices of %d agents to come online", city.Devices, city.Sites)
	eventually(b, 5*time.Minute, func() error {
		var s fleet.Summary
		if err := hub.get("api/summary", &s); err != nil {
			return err
		}
		if s.Devices != city.Devices || s.ByStatus[wire.StatusOnline] != city.Devices {
			return fmt.Errorf("%d of %d devices known, %d online", s.Devices, city.Devices, s.ByStatus[wire.StatusOnline])
		}
		return nil
	})
}

// hubProcess is the hub binary running as a child process.
type hubProcess struct {
	cmd  *exec.Cmd
	bin  string   // the binary, for its administration commands
	conf string   // its configuration file
	env  []string // its environment
	data string   // its data_dir
	api  *apiClient
	base string // http://127.0.0.1:port/
}

// hubProcessOptions say how to run the hub binary.
type hubProcessOptions struct {
	brokerURL string
	yaml      string   // configuration besides data_dir
	env       []string // extra environment: INFLUX_*, CITYWATCH_*
	// successorOf is a hub (killed or stopped) whose data directory and
	// administrator token this one takes over, as a restarted hub does.
	successorOf *hubProcess
	// accountsOf is a hub whose accounts this one shares
	// (cluster.postgres_url): it uses that hub's administrator token.
	accountsOf *hubProcess
}

// startHubProcess runs the hub binary against o.brokerURL with its own
// data directory, in which it first makes an administrator's API token
// with the hub's command line, as an operator of the hub would.
func startHubProcess(b testing.TB, o hubProcessOptions) *hubProcess {
	b.Helper()
	h := &hubProcess{bin: filepath.Join(b.TempDir(), "citywatch-hub"), data: filepath.Join(b.TempDir(), "data")}
	if prev := o.successorOf; prev != nil {
		h.data, h.bin = prev.data, prev.bin // the same binary: a restart, not an upgrade
	} else {
		build := exec.Command("go", "build", "-o", h.bin, "github.com/citywatch/citywatch/hub/cmd/citywatch-hub")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("building the hub: %v\n%s", err, out)
		}
	}
	port := testenv.FreePort(b)
	h.conf = filepath.Join(b.TempDir(), "hub.yaml")
	if err := os.WriteFile(h.conf, []byte(fmt.Sprintf("data_dir: %q\n", h.data)+o.yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	h.env = append(os.Environ(),
		"CITYWATCH_LISTEN=127.0.0.1:"+strconv.Itoa(port),
		"CITYWATCH_MQTT_URL="+o.brokerURL,
		"CITYWATCH_MQTT_CLIENT_ID=bench-hub",
		"CITYWATCH_LOG_LEVEL=warn",
	)
	h.env = append(h.env, o.env...)
	h.base = fmt.Sprintf("http://127.0.0.1:%d/", port)
	if prev := o.accountsOf; prev != nil {
		// The hubs of a cluster append to one audit chain under one key,
		// as an operator sets them up.
		key, err := os.ReadFile(filepath.Join(prev.data, "audit.key"))
		if err == nil {
			err = os.MkdirAll(h.data, 0o700)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(h.data, "audit.key"), key, 0o600)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if prev := cmp.Or(o.successorOf, o.accountsOf); prev != nil {
		h.api = prev.api.at(h.base)
	} else {
		h.api = &apiClient{name: "token:e2e-admin", base: h.base, hc: httpClient,
			token: h.admin(b, "", "tokens", "add", "-role", "admin", "-expires", "2h", "e2e-admin")}
	}
	h.cmd = exec.Command(h.bin, "-config", h.conf)
	h.cmd.Env = h.env
	logf, err := os.Create(filepath.Join(b.TempDir(), "hub.log"))
	if err != nil {
		b.Fatal(err)
	}
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	cmd := h.cmd
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if b.Failed() {
			out, _ := os.ReadFile(logf.Name())
			b.Logf("hub log:\n%s", tail(strings.Split(string(out), "\n"), 40))
		}
	})
	eventually(b, 30*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})
	return h
}

// admin runs one of the hub's administration commands on its data
// directory with stdin as its input and returns what it printed on stdout,
// trimmed: the secret of a new token or agent credential.
func (h *hubProcess) admin(b testing.TB, stdin string, args ...string) string {
	b.Helper()
	cmd := exec.Command(h.bin, append(args, "-config", h.conf)...)
	cmd.Env = h.env
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("citywatch-hub %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// token makes an API token with the hub's command line and returns a
// client using it once the running hub has noticed it (it polls its data
// directory).
func (h *hubProcess) token(b testing.TB, name string, role auth.Role, scope auth.Scope) *apiClient {
	b.Helper()
	secret := h.admin(b, "", "tokens", "add", "-role", string(role), "-scope", scope.String(), "-expires", "2h", name)
	c := &apiClient{name: "token:" + name, base: h.base, hc: httpClient, token: secret}
	eventually(b, 30*time.Second, func() error {
		var me identity.Me
		return c.fetch("api/auth/me", &me)
	})
	return c
}

func (h *hubProcess) get(path string, v any) error { return h.api.fetch(path, v) }

// cpuSeconds is the hub's user+system CPU time so far.
func (h *hubProcess) cpuSeconds(b *testing.B) float64 { return procCPU(b, h.cmd.Process.Pid).Seconds() }

// peakRSS is the hub's high-water resident set, in bytes.
func (h *hubProcess) peakRSS(b *testing.B) int64 { return procHWM(b, h.cmd.Process.Pid) }

// procCPU is a process's user+system CPU time, from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // clock ticks of 10 ms
}

// procHWM is a process's peak resident set in bytes, from /proc.
func procHWM(b *testing.B, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}

// metric sums every series of a family in the hub's /metrics.
func (h *hubProcess) metric(b testing.TB, family string) float64 { return h.api.metricSum(b, family) }

// sampleCounter counts device samples in health reports stamped inside the
// measurement window, as the broker delivers them.
type sampleCounter struct {
	mu     sync.Mutex
	t0, t1 time.Time
	n      int64
}

func newSampleCounter(b *testing.B, brokerURL string) *sampleCounter {
	sc := &sampleCounter{}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("bench-counter").SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("counter connect: %v", tok.Error())
	}
	b.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(wire.Prefix+"+/"+string(wire.ChannelHealth), 1, func(_ mqtt.Client, m mqtt.Message) {
		var h struct {
			TS      time.Time         `json:"ts"`
			Devices []json.RawMessage `json:"devices"`
		}
		if json.Unmarshal(m.Payload(), &h) != nil {
			return
		}
		sc.mu.Lock()
		if !sc.t0.IsZero() && !h.TS.Before(sc.t0) && (sc.t1.IsZero() || h.TS.Before(sc.t1)) {
			sc.n += int64(len(h.Devices))
		}
		sc.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("counter subscribe: %v", tok.Error())
	}
	return sc
}

func (sc *sampleCounter) start(t time.Time) { sc.mu.Lock(); sc.t0 = t; sc.mu.Unlock() }
func (sc *sampleCounter) stop(t time.Time)  { sc.mu.Lock(); sc.t1 = t; sc.mu.Unlock() }

func (sc *sampleCounter) samples() int64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.n
}

// settle polls read until two readings a second apart agree (at most 30 s).
func settle(read func() int64) int64 {
	last := read()
	for range 30 {
		time.Sleep(time.Second)
		now := read()
		if now == last {
			return now
		}
		last = now
	}
	return last
}

func countPoints(b *testing.B, influx *testenv.Influx, t0, t1 time.Time) int64 {
	rows := influx.Query(b, fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "device_health" and r._field == "status_code")
  |> group()
  |> count()`, influx.Bucket(), t0.UTC().Format(time.RFC3339Nano), t1.UTC().Format(time.RFC3339Nano)))
	if len(rows) == 0 {
		return 0
	}
	return rows[0]["_value"].(int64)
}

// latencyProbe injects camera faults during the window and measures how
// long each state change takes from the agent (the change's Since, the
// agent's detection time) to a websocket client of the hub.
type latencyProbe struct {
	ev      *events
	mu      sync.Mutex
	samples []time.Duration
}

func newLatencyProbe(b *testing.B, h *hubProcess) *latencyProbe {
	return &latencyProbe{ev: h.api.events(b)}
}

func (l *latencyProbe) run(ctx context.Context, world simCity, window time.Duration, cams []string) {
	// Agents debounce: a camera is offline after two failed probes 10 s
	// apart, so a fault must last well beyond 20 s to be reported. Fail one
	// camera every half second and recover each after 25 s; both edges are
	// state changes to time.
	const hold = 25 * time.Second
	stop := time.After(window)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	type faulted struct {
		cam string
		at  time.Time
	}
	var down []faulted
	next := 0
	for {
		select {
		case c := <-l.ev.changes:
			if c.Kind == fleet.ChangeDevice && c.Device != nil && !c.Device.Since.IsZero() {
				l.mu.Lock()
				l.samples = append(l.samples, time.Since(c.Device.Since))
				l.mu.Unlock()
			}
		case now := <-tick.C:
			cam := cams[(next*7919)%len(cams)]
			next++
			if world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}) == nil {
				down = append(down, faulted{cam, now})
			}
			for len(down) > 0 && now.Sub(down[0].at) >= hold {
				world.Fault(sim.Fault{Device: down[0].cam, Fault: sim.FaultRecover})
				down = down[1:]
			}
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (l *latencyProbe) percentiles() (p50, p99 time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.samples)
	slices.Sort(s)
	if len(s) == 0 {
		return 0, 0, 0
	}
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)], len(s)
}
