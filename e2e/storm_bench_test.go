package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/e2e/internal/consoles"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkAlarmStorm is a district power cut: every agent of the city
// (CITYWATCH_STORM_AGENTS, default 100, × 100 devices = 10,000 devices)
// drops off MQTT within one second while CITYWATCH_STORM_CLIENTS (1000)
// consoles are connected to /api/events?batch=1, in a process of their own
// (e2e/internal/consoles). The hub runs as its own process
// against a real Mosquitto, with alarm holds of 0 s (quickRules). The
// consoles are operators with API tokens, four of them (one per district),
// each shared by a quarter of the consoles.
//
// The storm runs three times, on a new hub and city each time, differing
// only in the tokens' scope: the whole city; every district named one by
// one (each change is checked against the scope, and every console still
// receives everything); and one district each (what a city's operators
// have). Each run prints: publish → websocket latency of single camera
// alarms before the storm (from the transition's "at" to receipt, over
// every client that may see it), the time until /api/summary shows every
// device unreachable and /api/alarms every agent_offline alarm (the whole
// picture), how many alarms an operator sees (one per agent, not per
// device), alarm delivery latency during the storm, API latency of
// /api/alarms and /api/summary polled throughout the storm, hub CPU
// seconds and peak RSS, and the CPU of the consoles' process and of the
// benchmark's own (simulated agents, pollers) over the same window. At the end it prints the hub CPU of the scoped runs
// against the whole-city run: what scope checks cost. Run with -benchtime
// 1x.
func BenchmarkAlarmStorm(b *testing.B) {
	variants := []struct {
		name, what string
		scope      func(district string, all []string) auth.Scope
	}{
		{"whole-city", "the whole city", func(string, []string) auth.Scope { return auth.Everything }},
		{"every-district", "every district by name", func(_ string, all []string) auth.Scope { return auth.Scope{Districts: all} }},
		{"one-district", "one district each", func(d string, _ []string) auth.Scope { return auth.Scope{Districts: []string{d}} }},
	}
	cpu := map[string]float64{}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) { cpu[v.name] = runAlarmStorm(b, v.what, v.scope) })
	}
	base := cpu["whole-city"]
	if base == 0 || len(cpu) != len(variants) {
		return // a variant was not run (-bench selected some) or failed
	}
	fmt.Printf(`
== citywatch alarm storm: what scope checks cost the hub (the same storm and consoles; only the tokens' scope differs) ==
hub CPU over the storm: whole city %.2f s, every district by name %.2f s, one district each %.2f s
auth and scope checks, consoles scoped to every district by name ÷ whole city:  %.3f   (checks at equal output; target ≤ 1.05: %s)
auth and scope checks, consoles scoped to one district each ÷ whole city:      %.3f   (target ≤ 1.05: %s)
`, base, cpu["every-district"], cpu["one-district"],
		cpu["every-district"]/base, verdict(cpu["every-district"]/base <= 1.05),
		cpu["one-district"]/base, verdict(cpu["one-district"]/base <= 1.05))
}

// runAlarmStorm runs one storm with consoles whose tokens have the scope
// scopeOf gives each district (what says which, in words), and returns
// the hub's CPU seconds during the storm.
func runAlarmStorm(b *testing.B, what string, scopeOf func(district string, all []string) auth.Scope) float64 {
	agents, nclients := envInt(b, "CITYWATCH_STORM_AGENTS", 100), envInt(b, "CITYWATCH_STORM_CLIENTS", 1000)
	probes := envInt(b, "CITYWATCH_STORM_PROBES", 3)
	const (
		devicesPerAgent = 100
		interval        = 10 * time.Second
		cutFor          = 60 * time.Second
		districts       = 4
	)
	total := agents * devicesPerAgent
	raiseNoFileLimit(b)

	broker := testenv.Mosquitto(b)
	rules := filepath.Join(b.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules), 0o644); err != nil {
		b.Fatal(err)
	}
	// A quarter of the consoles share each token.
	yaml := fmt.Sprintf("alarms:\n  rules: %q\nhttp:\n  max_websockets: %d\n", rules, min(1000, nclients/districts+1))
	hub := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL(), yaml: yaml})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // before the cleanups, which wait for the sim
	startup := time.Now()
	world := startScaleCity(b, ctx, broker.URL(), hub, sim.CityOptions{Seed: 7, Districts: districts, Sites: agents, Devices: total}, interval)
	city := world.City()
	var names []string
	for _, d := range city.Districts {
		names = append(names, d.Name)
	}
	var tokens []*stormToken
	for i, d := range names {
		scope := scopeOf(d, names)
		tokens = append(tokens, &stormToken{
			api: hub.token(b, fmt.Sprintf("console-%d", i+1), auth.Operator, scope), scope: scope,
		})
	}
	b.Logf("all online after %s; connecting %d websocket clients with tokens scoped to %s", time.Since(startup).Round(time.Second), nclients, what)

	fleetWS := newStormFleet(b, hub.base, tokens, nclients)
	connectedRSS := float64(hub.peakRSS(b)) / (1 << 20)
	districtOf := map[string]string{} // agents and cameras
	for _, a := range city.Agents {
		districtOf[a.ID] = a.Site.District
		for _, c := range a.Cameras {
			districtOf[c.ID] = a.Site.District
		}
	}

	// Baseline: single camera faults, one at a time, outside any storm.
	fleetWS.setPhase(b, phaseBaseline)
	cams := devicesOfCity(world)
	for i := range probes {
		cam := cams[(i*7919+13)%len(cams)]
		if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
			b.Fatal(err)
		}
		// Agents debounce: two failed probes an interval apart.
		id := fleetWS.awaitEverywhere(b, 3*interval+10*time.Second, districtOf[cam], func(r consoles.Raise) bool {
			return r.Source == alarm.SourceDeviceOffline && r.Device == cam
		})
		// Acknowledge it, so that once cleared it is closed and the operator's
		// list is empty again when the storm starts.
		if code, body := postAlarm(b, hub.api, id, "ack", `{}`); code != 200 {
			b.Fatalf("ack %s: %d %s", id, code, body)
		}
		if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultRecover}); err != nil {
			b.Fatal(err)
		}
	}
	eventually(b, 3*interval+10*time.Second, func() error {
		var l console.AlarmList
		if err := hub.get("api/alarms", &l); err != nil {
			return err
		}
		if l.Total != 0 {
			return fmt.Errorf("%d alarms still open after the baseline", l.Total)
		}
		return nil
	})
	fleetWS.setPhase(b, phaseIdle)
	baseP50, baseP99, baseN := percentiles(fleetWS.latencies(b, phaseBaseline))

	// The storm: every agent of every district loses its connection.
	lost := map[string]string{} // agent → district
	var lostDistricts []string
	for _, a := range city.Agents {
		lost[a.ID] = a.Site.District
		if !slices.Contains(lostDistricts, a.Site.District) {
			lostDistricts = append(lostDistricts, a.Site.District)
		}
	}
	b.Logf("storm: cutting %d agents in %d districts (%s)", len(lost), len(lostDistricts), strings.Join(lostDistricts, ", "))

	pollers := make([]*apiClient, len(tokens))
	for i, c := range tokens {
		pollers[i] = c.api
	}
	api := newAPIPollers(pollers, 4, "api/alarms", "api/summary")
	b.ResetTimer()
	fleetWS.setPhase(b, phaseStorm)
	cpu0 := hub.cpuSeconds(b)
	consoleCPU0, selfCPU0 := procCPU(b, fleetWS.cmd.Process.Pid), procCPU(b, os.Getpid())
	t0, m0 := time.Now(), snapshotCPU(b)
	api.start()
	for id := range lost {
		if err := world.Fault(sim.Fault{Agent: id, Fault: sim.FaultDisconnect, For: cutFor}); err != nil {
			b.Fatal(err)
		}
	}
	issued := time.Since(t0)

	// The whole picture: every device unreachable, every agent alarm listed.
	var picture time.Duration
	var seen console.AlarmList
	deadline := t0.Add(cutFor - 5*time.Second)
	for {
		var s fleet.Summary
		var l console.AlarmList
		errS := hub.get("api/summary", &s)
		errL := hub.get("api/alarms?source=agent_offline&limit=1", &l)
		if errS == nil && errL == nil && s.ByStatus[wire.StatusUnreachable] == total && l.Total == len(lost) {
			picture = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no whole picture within %s: %d of %d devices unreachable, %d of %d agent alarms (%v, %v)",
				deadline.Sub(t0), s.ByStatus[wire.StatusUnreachable], total, l.Total, len(lost), errS, errL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every console has the whole picture when each has every agent alarm
	// it may see.
	wsPicture := fleetWS.awaitStorm(b, lost, t0, deadline)
	// Let late device changes and alarms settle, then read what an
	// operator sees.
	time.Sleep(5 * time.Second)
	if err := hub.get("api/alarms?limit=1", &seen); err != nil {
		b.Fatal(err)
	}
	var bySource = map[alarm.Source]int{}
	for _, src := range []alarm.Source{alarm.SourceAgentOffline, alarm.SourceDeviceOffline} {
		var l console.AlarmList
		if err := hub.get("api/alarms?limit=1&source="+string(src), &l); err != nil {
			b.Fatal(err)
		}
		bySource[src] = l.Total
	}
	api.stop()
	t1, m1 := time.Now(), snapshotCPU(b)
	cpu1 := hub.cpuSeconds(b)
	consoleCPU, selfCPU := procCPU(b, fleetWS.cmd.Process.Pid)-consoleCPU0, procCPU(b, os.Getpid())-selfCPU0
	counts := fleetWS.counts(b)
	fleetWS.setPhase(b, phaseIdle)
	b.StopTimer()

	stormP50, stormP99, stormN := percentiles(fleetWS.latencies(b, phaseStorm))
	apiP50, apiP99, apiN := percentiles(api.samples())
	rss := float64(hub.peakRSS(b)) / (1 << 20)
	cpu := cpu1 - cpu0
	window := t1.Sub(t0).Seconds()

	fmt.Printf(`
== citywatch alarm storm: %d agents × %d devices = %d devices, %d websocket clients, operator tokens scoped to %s ==
baseline alarm delivery (publish → websocket):  p50 %s, p99 %s over %d receipts of %d alarms   (target p99 ≤ 50 ms: %s)
storm: %d agents in %d districts cut, faults issued in %s
whole picture in the API (summary + alarms):     %s after the first fault
whole picture at every websocket client:         %s after the first fault
alarms an operator sees:                         %d   (agent_offline %d, device_offline %d; want %d, one per agent: %s)
alarm delivery during the storm:                 p50 %s, p99 %s over %d receipts   (target p99 ≤ 250 ms: %s)
received during the storm, per console:          %.0f messages, %.0f KiB
API latency during the storm (alarms, summary):  p50 %s, p99 %s over %d requests, %d errors   (target p99 ≤ 100 ms: %s)
hub CPU over the storm:                          %.2f s over %.1f s = %.2f cores
the consoles' process, the same window:          %.2f s   (the benchmark's own, with the simulated agents and pollers: %.2f s)
the machine, the same window:                    %s
hub peak RSS:                                    %.0f MiB   (%.0f MiB once the consoles had connected)
websocket clients dropped:                       %d (hub: %v)
`,
		agents, devicesPerAgent, total, nclients, what,
		baseP50, baseP99, baseN, probes, verdict(baseN > 0 && baseP99 <= 50*time.Millisecond),
		len(lost), len(lostDistricts), issued.Round(time.Millisecond),
		picture.Round(time.Millisecond),
		wsPicture.Round(time.Millisecond),
		seen.Total, bySource[alarm.SourceAgentOffline], bySource[alarm.SourceDeviceOffline], len(lost), verdict(seen.Total == len(lost)),
		stormP50, stormP99, stormN, verdict(stormN > 0 && stormP99 <= 250*time.Millisecond),
		float64(counts.Messages[phaseStorm])/float64(nclients), float64(counts.Bytes[phaseStorm])/float64(nclients)/1024,
		apiP50, apiP99, apiN, api.errors.Load(), verdict(apiN > 0 && apiP99 <= 100*time.Millisecond),
		cpu, window, cpu/window,
		consoleCPU.Seconds(), selfCPU.Seconds(),
		elsewhere(m0, m1),
		rss, connectedRSS,
		counts.Closed, hub.metric(b, "citywatch_ws_dropped_clients_total"),
	)
	b.ReportMetric(float64(picture.Milliseconds()), "picture-ms")
	b.ReportMetric(float64(seen.Total), "operator-alarms")
	b.ReportMetric(ms(baseP99), "baseline-p99-ms")
	b.ReportMetric(ms(stormP99), "storm-p99-ms")
	b.ReportMetric(ms(apiP99), "api-p99-ms")
	b.ReportMetric(cpu, "hub-cpu-s")
	b.ReportMetric(rss, "hub-peak-MiB")
	return cpu
}

// stormToken is one operator token the storm's consoles share.
type stormToken struct {
	api   *apiClient
	scope auth.Scope
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentiles returns p50 and p99 of ds (sorted in place) and their number.
func percentiles(ds []time.Duration) (p50, p99 time.Duration, n int) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], len(ds)
}

// raiseNoFileLimit lifts this process's open file limit to its maximum: a
// thousand websocket clients need a thousand sockets.
func raiseNoFileLimit(b *testing.B) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
}

// Phases of the benchmark (consoles.Run): receipts are recorded only in
// baseline and storm.
const (
	phaseIdle int32 = iota
	phaseBaseline
	phaseStorm
)

// stormFleet is the storm's consoles, in a process of their own
// (e2e/internal/consoles). Each reads every message (asking for batches,
// as the browser console does) and keeps those with alarm events, with
// their receipt time, undecoded until the benchmark asks for the raises.
type stormFleet struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *json.Decoder
	scopes []auth.Scope       // console i's
	recv   [][]consoles.Raise // decoded raises, by console
}

// newStormFleet starts n consoles, spread evenly over tokens, and waits
// until every one is connected.
func newStormFleet(b *testing.B, base string, tokens []*stormToken, n int) *stormFleet {
	bin := buildCommand(b, "github.com/citywatch/citywatch/e2e/internal/consoles/cmd/consoles")
	f := &stormFleet{scopes: make([]auth.Scope, n), recv: make([][]consoles.Raise, n)}
	var secrets []string
	for _, t := range tokens {
		secrets = append(secrets, t.api.token)
	}
	for i := range n {
		f.scopes[i] = tokens[i%len(tokens)].scope
	}
	f.cmd = exec.Command(bin, "-url", base, "-n", strconv.Itoa(n))
	f.cmd.Env = append(os.Environ(), "CONSOLE_TOKENS="+strings.Join(secrets, ","))
	f.cmd.Stderr = os.Stderr
	var err error
	if f.in, err = f.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	f.out = json.NewDecoder(stdout)
	if err := f.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		f.in.Close() // the consoles end at the end of their input
		f.cmd.Wait()
	})
	var hello struct{ Connected int }
	if err := f.out.Decode(&hello); err != nil || hello.Connected != n {
		b.Fatalf("consoles: %d of %d connected (%v)", hello.Connected, n, err)
	}
	return f
}

// ask sends the consoles a command and decodes their answer into v.
func (f *stormFleet) ask(b *testing.B, cmd string, v any) {
	if _, err := fmt.Fprintln(f.in, cmd); err != nil {
		b.Fatalf("consoles: %s: %v", cmd, err)
	}
	if err := f.out.Decode(v); err != nil {
		b.Fatalf("consoles: %s: %v", cmd, err)
	}
}

func (f *stormFleet) setPhase(b *testing.B, phase int32) {
	f.ask(b, fmt.Sprintf("phase %d", phase), &struct{}{})
}

func (f *stormFleet) counts(b *testing.B) consoles.Counts {
	var c consoles.Counts
	f.ask(b, "counts", &c)
	return c
}

// decode has the consoles decode what they received since the last call
// and keeps the raises.
func (f *stormFleet) decode(b *testing.B) {
	var r struct{ Raises []consoles.Raise }
	f.ask(b, "raises", &r)
	for _, x := range r.Raises {
		f.recv[x.Console] = append(f.recv[x.Console], x)
	}
}

// awaitEverywhere waits until every console that sees district has
// received a raise matching match and returns the alarm's id.
func (f *stormFleet) awaitEverywhere(b *testing.B, within time.Duration, district string, match func(consoles.Raise) bool) string {
	var id string
	eventually(b, within, func() error {
		f.decode(b)
		missing := 0
		for i, recv := range f.recv {
			if !f.scopes[i].Allows(district, "") {
				continue
			}
			if k := slices.IndexFunc(recv, match); k >= 0 {
				id = recv[k].ID
			} else {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d consoles without the alarm", missing, len(f.recv))
		}
		return nil
	})
	return id
}

// awaitStorm waits until every console has an agent_offline raise for
// each of agents (agent → district) it sees and returns how long after t0
// the last of them arrived. Until every console has received at least as
// many alarm events as it should have raises, it only counts: decoding
// while other consoles still receive would take the CPU they and the hub
// share.
func (f *stormFleet) awaitStorm(b *testing.B, agents map[string]string, t0, deadline time.Time) time.Duration {
	want := make([]int, len(f.scopes))
	for i, scope := range f.scopes {
		for _, district := range agents {
			if scope.Allows(district, "") {
				want[i]++
			}
		}
	}
	for {
		items, short := f.counts(b).Items, 0
		for i := range want {
			short += max(want[i]-items[i][phaseStorm], 0)
		}
		if short == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("consoles short of %d alarm events", short)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		f.decode(b)
		var last time.Time
		missing := 0
		for i, recv := range f.recv {
			got := map[string]bool{}
			for _, r := range recv {
				if r.Phase == phaseStorm && r.Source == alarm.SourceAgentOffline && !got[r.Agent] {
					got[r.Agent] = true
					if r.At.After(last) {
						last = r.At
					}
				}
			}
			for a, district := range agents {
				if f.scopes[i].Allows(district, "") && !got[a] {
					missing++
				}
			}
		}
		if missing == 0 {
			return last.Sub(t0)
		}
		if time.Now().After(deadline) {
			b.Fatalf("consoles miss %d agent alarms", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// latencies returns every recorded receipt latency of phase.
func (f *stormFleet) latencies(b *testing.B, phase int32) []time.Duration {
	f.decode(b)
	var ds []time.Duration
	for _, recv := range f.recv {
		for _, r := range recv {
			if r.Phase == phase {
				ds = append(ds, r.Latency)
			}
		}
	}
	return ds
}

// apiPollers GET paths in turn from a few goroutines, each pausing
// pollPause between requests (so that the hub's CPU figure is mostly the
// load's, not the pollers'), and record each request's latency, the
// whole answer read. Poller i calls as as[i%len(as)].
type apiPollers struct {
	as     []*apiClient
	n      int
	paths  []string
	stopc  chan struct{}
	wg     sync.WaitGroup
	errors atomic.Int64
	mu     sync.Mutex
	lat    []time.Duration
	byPath map[string][]time.Duration
}

const pollPause = 20 * time.Millisecond

func newAPIPollers(as []*apiClient, n int, paths ...string) *apiPollers {
	return &apiPollers{as: as, n: n, paths: paths, stopc: make(chan struct{}), byPath: map[string][]time.Duration{}}
}

func (p *apiPollers) start() {
	paths := p.paths
	for i := range p.n {
		p.wg.Go(func() {
			for j := i; ; j++ {
				select {
				case <-p.stopc:
					return
				default:
				}
				t := time.Now()
				path := paths[j%len(paths)]
				res, err := p.as[i%len(p.as)].do(http.MethodGet, path, "", nil)
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err == nil && res.StatusCode != 200 {
						err = fmt.Errorf("%s", res.Status)
					}
				}
				d := time.Since(t)
				if err != nil {
					p.errors.Add(1)
				} else {
					p.mu.Lock()
					p.lat = append(p.lat, d)
					p.byPath[path] = append(p.byPath[path], d)
					p.mu.Unlock()
				}
				time.Sleep(pollPause)
			}
		})
	}
}

func (p *apiPollers) stop() { close(p.stopc); p.wg.Wait() }

func (p *apiPollers) samples() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lat)
}

// byPathP99 is each path's p99 and request count, one line per path.
func (p *apiPollers) byPathP99() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, path := range p.paths {
		_, p99, n := percentiles(slices.Clone(p.byPath[path]))
		fmt.Fprintf(&b, "    %-70s p99 %s over %d\n", path, p99.Round(100*time.Microsecond), n)
	}
	return b.String()
}
