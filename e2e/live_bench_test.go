package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/e2e/internal/audience"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// go2rtcVersion is the go2rtc BenchmarkLive compares with, as
// scripts/deps.sh go2rtc builds it.
const go2rtcVersion = "1.9.13"

// liveCamera is the benchmark camera's device id at the agent.
const liveCamera = "bench-cam-01"

// BenchmarkLive measures live video end to end, in two parts.
//
// Viewers per core: one camera is FFmpeg encoding a moving test pattern
// (testsrc2, 1280×720, 25 fps, libx264 veryfast zerolatency, 2 Mbit/s
// constant bitrate, a keyframe every 25 frames, no B-frames, SPS and PPS
// before each keyframe) and publishing it over RTSP (TCP) to an RTSP server
// in the test process (gortsplib; packets of up to 1,460 bytes of payload).
// A real agent (the citywatch-agent binary, in its own process) has that
// camera in its configuration and relays it to the hub (its own process)
// through a real Mosquitto; go2rtc v1.9.13 (its own process, its WebRTC on
// one loopback UDP port, its default) reads the same RTSP stream. The
// viewers are pion WHEP players in a process of their own
// (e2e/internal/audience) with NACK, receiver reports and TWCC feedback;
// every one depacketizes H.264 and counts decodable frames and gaps. They
// read the hub through a 1,200-byte receive MTU, its packet size rule
// (docs/live-video.md), and go2rtc through 1,500 bytes: its RTP packets
// take up to 1,200 bytes before SRTP's tag, and cut to 1,200 nothing
// decodes. First the hub, then go2rtc, get
// CITYWATCH_LIVE_VIEWERS viewers (50) of the camera; once every viewer has
// decoded a frame, CITYWATCH_LIVE_SECONDS (20) are measured: the relay's
// CPU time (utime+stime from /proc), the packets and payload the viewers
// received, and per viewer the frames decoded, the frames not decodable
// and the gaps. The bench fails if a viewer decoded nothing in the window.
// The kernel's count of UDP datagrams dropped on a full receive buffer
// (RcvbufErrors, for the whole machine) is shown for the joins and for the
// window.
//
// Time to first frame: WHEP players in the test process against the hub,
// which relays simulated 720p30 cameras (agent/sim, 1 s keyframe interval,
// every RTSP reader started on a keyframe) from real agents through the
// same Mosquitto: POST of the offer → first RTP packet at the player,
// which is always the start of a keyframe, for 40 joins of a running
// stream and for a cold start of 20 cameras nobody watched.
//
// Everything runs on one machine; CPU is compared, not wall time. Run with
// -benchtime 1x.
func BenchmarkLive(b *testing.B) {
	viewers := envInt(b, "CITYWATCH_LIVE_VIEWERS", 50)
	window := time.Duration(envInt(b, "CITYWATCH_LIVE_SECONDS", 20)) * time.Second
	go2rtc := go2rtcBinary(b)
	viewersBin := buildCommand(b, "github.com/citywatch/citywatch/e2e/internal/audience/cmd/viewers")
	broker := testenv.Mosquitto(b)
	hub := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL(), yaml: fmt.Sprintf(
		"live: {loopback_only: true, linger: 300ms, max_upstreams_per_agent: 8, max_sessions_per_account: %d}\n", viewers+50)})
	cam := testenv.FFmpegCamera(b, testenv.CameraOptions{Width: 1280, Height: 720, FPS: 25, Bitrate: 2_000_000})
	agentExited := startAgentProcess(b, broker.URL(), cam.URL())
	eventually(b, time.Minute, func() error {
		select {
		case err := <-agentExited:
			b.Fatalf("the agent exited: %v", err)
		default:
		}
		var d struct{ Device fleet.Device }
		if err := hub.get("api/devices/"+liveCamera, &d); err != nil {
			return err
		}
		if d.Device.Status != wire.StatusOnline {
			return fmt.Errorf("%s is %s", liveCamera, d.Device.Status)
		}
		return nil
	})

	b.ResetTimer()
	hubRun := watchRelay(b, relayWatch{name: "hub", pid: hub.cmd.Process.Pid, viewersBin: viewersBin,
		url: hub.base + "api/cameras/" + liveCamera + "/whep", token: hub.api.token, viewers: viewers, mtu: 1200, window: window,
		counters: func() (float64, float64) {
			return hub.metric(b, "citywatch_live_packets_forwarded_total"), hub.metric(b, "citywatch_live_packets_resent_total")
		}})
	g := startGo2rtc(b, go2rtc, cam.URL())
	g2Run := watchRelay(b, relayWatch{name: "go2rtc", pid: g.cmd.Process.Pid, viewersBin: viewersBin,
		url: g.whep, viewers: viewers, mtu: 1500, window: window})
	running, cold := liveTTFF(b, broker.URL(), hub)
	b.StopTimer()

	const ms = 100 * time.Microsecond
	cp50, cp95 := pct(cold, 50).Round(ms), pct(cold, 95).Round(ms)
	rp50, rp95 := pct(running, 50).Round(ms), pct(running, 95).Round(ms)
	fmt.Printf(`
== citywatch live video benchmark ==
camera: FFmpeg testsrc2 1280x720 25 fps, libx264 2 Mbit/s CBR, keyframe every 1 s, RTSP over TCP from a gortsplib server
hub: its own process, fed by a real agent (own process) through Mosquitto; go2rtc %s: its own process, reading the camera itself
viewers: %d pion WHEP players in their own process (receive MTU: the hub's rule, 1,200; go2rtc's packets need more); %s measured per relay, one after the other
%s%s%s
the machine in the hub's window:      %s
the machine in go2rtc's window:       %s
viewers per core, hub / go2rtc:       %.2f
viewers per hub core ≥ 500:           %s
time to first frame, running stream:  p50 %s  p95 %s over %d joins   (targets p50 ≤ 150ms: %s, p95 ≤ 400ms: %s)
time to first frame, cold start:      p50 %s  p95 %s over %d cameras (target p95 ≤ 1.5s: %s)
(time to first frame: simulated 720p30 cameras, 1 s keyframe interval, players in the test process)
`,
		go2rtcVersion, viewers, window, relayHeader, hubRun, g2Run, hubRun.machine, g2Run.machine,
		hubRun.perCore()/g2Run.perCore(), verdict(hubRun.perCore() >= 500),
		rp50, rp95, len(running), verdict(rp50 <= 150*time.Millisecond), verdict(rp95 <= 400*time.Millisecond),
		cp50, cp95, len(cold), verdict(cp95 <= 1500*time.Millisecond))
	b.ReportMetric(hubRun.perCore(), "hub-viewers/core")
	b.ReportMetric(g2Run.perCore(), "go2rtc-viewers/core")
	b.ReportMetric(float64(rp95.Milliseconds()), "running-p95-ms")
	b.ReportMetric(float64(cp95.Milliseconds()), "cold-p95-ms")
}

// relayWatch says how to watch one relay.
type relayWatch struct {
	name       string
	pid        int // the relay's process, whose CPU is measured
	viewersBin string
	url, token string // the WHEP endpoint and its bearer token
	viewers    int
	mtu        int // the viewers' receive MTU
	window     time.Duration
	// counters reads the relay's own count of packets forwarded and
	// resent, if it has one.
	counters func() (forwarded, resent float64)
}

// relayRun is what one relay did for its viewers in the window.
type relayRun struct {
	name                    string
	viewers, mtu, largest   int // largest: RTP packet received
	cores                   float64
	packets, bytes          float64 // a second, as the viewers received them
	forwarded, resent       float64 // a second, as the relay counted them; -1 unknown
	minFrames, maxFrames    uint64  // decodable frames of a viewer
	undecodable, gaps, lost uint64  // of all viewers
	// UDP datagrams the kernel dropped on a full receive buffer
	// (RcvbufErrors, /proc/net/snmp; the whole machine), while the viewers
	// joined and in the window; and what the viewers lost while joining.
	joinOverflows, overflows uint64
	joinLost                 uint64
	machine                  string // what else ran in the window (elsewhere)
}

func (r relayRun) perCore() float64 { return float64(r.viewers) / max(r.cores, 1e-9) }

const relayHeader = "relay     cores  viewers/core  µs CPU/packet  packets/s  Mbit/s/viewer  frames/viewer  undecodable  gaps  lost  rcvbuf drops  joins: lost/rcvbuf drops  MTU/largest RTP  relay's own count: sent/s resent/s\n"

func (r relayRun) String() string {
	own := "-"
	if r.forwarded >= 0 {
		own = fmt.Sprintf("%.0f %.0f", r.forwarded, r.resent)
	}
	return fmt.Sprintf("%-8s %6.3f %13.0f %14.1f %10.0f %14.2f %8d–%-5d %11d %5d %5d %13d %24s  %15s  %s\n",
		r.name, r.cores, r.perCore(), r.cores*1e6/max(r.packets, 1), r.packets, r.bytes*8/1e6/float64(r.viewers),
		r.minFrames, r.maxFrames, r.undecodable, r.gaps, r.lost, r.overflows,
		fmt.Sprintf("%d/%d", r.joinLost, r.joinOverflows), fmt.Sprintf("%d/%d", r.mtu, r.largest), own)
}

// watchRelay runs the viewers against one relay, waits until each has
// decoded a frame, and measures the window.
func watchRelay(b *testing.B, w relayWatch) relayRun {
	b.Helper()
	start, overflows0 := time.Now(), udpRcvbufErrors(b)
	c := startViewers(b, w)
	var r0 audience.Report
	eventually(b, time.Minute, func() error {
		r0 = c.report(b)
		for i, v := range r0.Viewers {
			if v.Frames == 0 {
				return fmt.Errorf("%s: viewer %d of %d has decoded nothing: %+v", w.name, i+1, len(r0.Viewers), v)
			}
		}
		return nil
	})
	var joinGaps, joinLost uint64
	for _, v := range r0.Viewers {
		joinGaps, joinLost = joinGaps+v.Gaps, joinLost+v.Lost
	}
	b.Logf("%s: %d viewers decoding %s after the first offer; %d gaps (%d packets) while joining",
		w.name, w.viewers, time.Since(start).Round(time.Millisecond), joinGaps, joinLost)
	fwd0, res0 := -1.0, -1.0
	if w.counters != nil {
		fwd0, res0 = w.counters()
	}
	overflows1, cpu0, t0, m0 := udpRcvbufErrors(b), procCPU(b, w.pid), time.Now(), snapshotCPU(b)
	time.Sleep(w.window) // the measurement window: the load runs, nothing to wait for
	cpu1, t1, overflows2, m1 := procCPU(b, w.pid), time.Now(), udpRcvbufErrors(b), snapshotCPU(b)
	r1 := c.report(b)
	fwd1, res1 := -1.0, -1.0
	if w.counters != nil {
		fwd1, res1 = w.counters()
	}
	last := c.stop(b)
	if len(last.Errors) > 0 {
		b.Logf("%s: ending the sessions: %v", w.name, last.Errors)
	}

	secs := t1.Sub(t0).Seconds()
	run := relayRun{name: w.name, viewers: w.viewers, mtu: w.mtu, minFrames: ^uint64(0),
		joinOverflows: overflows1 - overflows0, overflows: overflows2 - overflows1, joinLost: joinLost,
		machine: elsewhere(m0, m1)}
	run.cores = (cpu1 - cpu0).Seconds() / secs
	run.forwarded, run.resent = -1, -1
	if w.counters != nil {
		run.forwarded, run.resent = (fwd1-fwd0)/secs, (res1-res0)/secs
	}
	for i, v := range r1.Viewers {
		d := v.Counts
		was := r0.Viewers[i].Counts
		frames := d.Frames - was.Frames
		if frames == 0 {
			b.Fatalf("%s: viewer %d decoded nothing in %s: %+v (before: %+v)", w.name, i+1, w.window, v, r0.Viewers[i])
		}
		run.minFrames, run.maxFrames = min(run.minFrames, frames), max(run.maxFrames, frames)
		run.packets += float64(d.Packets - was.Packets)
		run.bytes += float64(d.Bytes - was.Bytes)
		run.undecodable += d.Undecodable - was.Undecodable
		run.gaps += d.Gaps - was.Gaps
		run.lost += d.Lost - was.Lost
		run.largest = max(run.largest, d.LargestPacket)
	}
	run.packets /= secs
	run.bytes /= secs
	return run
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped because a
// socket's receive buffer was full (Udp RcvbufErrors in /proc/net/snmp).
func udpRcvbufErrors(b *testing.B) uint64 {
	b.Helper()
	snmp, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(snmp), "\n") {
		fields, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(fields)
			continue
		}
		values := strings.Fields(fields)
		if i := slices.Index(names, "RcvbufErrors"); i >= 0 && i < len(values) {
			if n, err := strconv.ParseUint(values[i], 10, 64); err == nil {
				return n
			}
		}
		break
	}
	b.Fatalf("no Udp RcvbufErrors in /proc/net/snmp:\n%s", snmp)
	return 0
}

// viewersProcess is the viewers program (e2e/internal/audience/cmd/viewers)
// running: a line on its stdin asks for a report on its stdout.
type viewersProcess struct {
	name   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *strings.Builder
}

// startViewers runs the viewers program and returns once every session
// was answered.
func startViewers(b *testing.B, w relayWatch) *viewersProcess {
	b.Helper()
	cmd := exec.Command(w.viewersBin, "-url", w.url, "-n", strconv.Itoa(w.viewers), "-mtu", strconv.Itoa(w.mtu))
	cmd.Env = append(os.Environ(), "WHEP_TOKEN="+w.token)
	v := &viewersProcess{name: w.name, cmd: cmd, stderr: &strings.Builder{}}
	cmd.Stderr = v.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	v.in, v.out = in, bufio.NewScanner(out)
	v.out.Buffer(make([]byte, 1<<20), 16<<20)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		v.in.Close()
		v.cmd.Wait()
	})
	first := v.read(b)
	if len(first.Errors) > 0 || first.Opened != w.viewers {
		b.Fatalf("%s: %d of %d sessions opened; errors: %v", w.name, first.Opened, w.viewers, first.Errors)
	}
	return v
}

func (v *viewersProcess) read(b *testing.B) audience.Report {
	b.Helper()
	if !v.out.Scan() {
		b.Fatalf("%s: the viewers program ended: %v\n%s", v.name, v.out.Err(), v.stderr)
	}
	var r audience.Report
	if err := json.Unmarshal(v.out.Bytes(), &r); err != nil {
		b.Fatalf("%s: viewers' report: %v", v.name, err)
	}
	return r
}

func (v *viewersProcess) report(b *testing.B) audience.Report {
	b.Helper()
	if _, err := io.WriteString(v.in, "report\n"); err != nil {
		b.Fatalf("%s: asking the viewers: %v\n%s", v.name, err, v.stderr)
	}
	return v.read(b)
}

// stop ends the sessions and returns the last report.
func (v *viewersProcess) stop(b *testing.B) audience.Report {
	b.Helper()
	v.in.Close()
	r := v.read(b)
	if err := v.cmd.Wait(); err != nil {
		b.Fatalf("%s: viewers: %v\n%s", v.name, err, v.stderr)
	}
	return r
}

// liveTTFF measures time to first frame with a simulated city's cameras:
// joins of a running stream, and cold starts.
func liveTTFF(b *testing.B, brokerURL string, hub *hubProcess) (running, cold []time.Duration) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{
		BrokerURL: brokerURL, LiveLoopbackOnly: true, Logger: testLogger(b),
		City:   sim.CityOptions{Seed: 3, Districts: 2, Sites: 6, Devices: 60},
		Camera: sim.CameraConfig{Width: 1280, Height: 720, FPS: 30},
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cams := devicesOfCity(world)
	eventually(b, 2*time.Minute, func() error {
		var s fleet.Summary
		if err := hub.get("api/summary", &s); err != nil {
			return err
		}
		// The city's devices and the benchmark camera.
		if s.ByStatus[wire.StatusOnline] != 61 {
			return fmt.Errorf("%d of 61 devices online", s.ByStatus[wire.StatusOnline])
		}
		return nil
	})

	ttff := func(cam string) time.Duration {
		start := time.Now()
		p, err := tryPlayWHEP(b, hub.api, cam)
		if err != nil {
			b.Fatal(err)
		}
		eventually(b, 10*time.Second, func() error {
			if p.firstPacketAt().IsZero() {
				return fmt.Errorf("no packet from %s", cam)
			}
			return nil
		})
		d := p.firstPacketAt().Sub(start)
		p.stop(b)
		return d
	}
	// Cold: cameras nobody watches, each once.
	for _, cam := range cams[4:min(len(cams), 24)] {
		cold = append(cold, ttff(cam))
	}
	// Running: a held viewer keeps cams[0] streaming; newcomers join it.
	held, err := tryPlayWHEP(b, hub.api, cams[0])
	if err != nil {
		b.Fatal(err)
	}
	held.awaitFrames(b, 30, 20*time.Second)
	for range 40 {
		running = append(running, ttff(cams[0]))
	}
	held.stop(b)
	return running, cold
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

// buildCommand builds a command of this module into a temporary directory.
func buildCommand(b testing.TB, pkg string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		b.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// startAgentProcess runs the agent binary with one camera, liveCamera at
// rtspURL, until the benchmark ends. The channel reports its exit.
func startAgentProcess(b *testing.B, brokerURL, rtspURL string) <-chan error {
	b.Helper()
	return runAgentProcess(b, brokerURL, fmt.Sprintf("  - {id: %s, name: \"FFmpeg test pattern\", rtsp: %q, fov: 90}\n", liveCamera, rtspURL))
}

// runAgentProcess runs the agent binary with cameras (the YAML list's
// items) until the test ends. The channel reports its exit.
func runAgentProcess(b testing.TB, brokerURL, cameras string) <-chan error {
	b.Helper()
	bin := buildCommand(b, "github.com/citywatch/citywatch/agent/cmd/citywatch-agent")
	dir := b.TempDir()
	conf := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf(`broker: {url: %q}
id: bench-agent-01
site: {id: bench-site-01, name: "Benchmark", district: Bench, location: {lat: 30.6, lon: 114.3}}
interval: 2s
probe: {interval: 2s, timeout: 1s, stream_every: 0s}
uplink: {spool_dir: %q}
live: {loopback_only: true}
cameras:
`, brokerURL, filepath.Join(dir, "spool")) + cameras
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		<-exited
		if b.Failed() {
			out, _ := os.ReadFile(logf.Name())
			b.Logf("agent log:\n%s", tail(strings.Split(string(out), "\n"), 40))
		}
	})
	return exited
}

// go2rtcProcess is go2rtc relaying one stream, "camera", over WebRTC.
type go2rtcProcess struct {
	cmd  *exec.Cmd
	whep string // its WHEP endpoint for the stream
}

// startGo2rtc runs go2rtc on loopback only: its API (and WHEP) on a free
// port, its WebRTC on one UDP port, its default; no RTSP or other servers.
func startGo2rtc(b *testing.B, bin, rtspURL string) *go2rtcProcess {
	b.Helper()
	dir := b.TempDir()
	api, rtc := testenv.FreePort(b), testenv.FreePort(b)
	conf := filepath.Join(dir, "go2rtc.yaml")
	yaml := fmt.Sprintf(`app: {modules: [api, rtsp, webrtc]}
api: {listen: "127.0.0.1:%d"}
rtsp: {listen: ""}
webrtc:
  listen: "127.0.0.1:%d/udp"
  ice_servers: []
  filters: {loopback: true, networks: [udp4]}
log: {level: warn}
streams:
  camera: %s
`, api, rtc, rtspURL)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "go2rtc.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", conf)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if b.Failed() {
			out, _ := os.ReadFile(logf.Name())
			b.Logf("go2rtc log:\n%s", tail(strings.Split(string(out), "\n"), 40))
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(api))
	eventually(b, 30*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return &go2rtcProcess{cmd: cmd, whep: "http://" + addr + "/api/webrtc?src=" + url.QueryEscape("camera")}
}

// go2rtcBinary returns go2rtc go2rtcVersion (see peerBinary).
func go2rtcBinary(b *testing.B) string {
	return peerBinary(b, "go2rtc", "CITYWATCH_GO2RTC", "go2rtc "+go2rtcVersion, checkGo2rtc)
}

// checkGo2rtc says why the binary at p is not the go2rtc compared with.
func checkGo2rtc(p string) error {
	out, err := exec.Command(p, "-version").Output()
	if err != nil {
		return fmt.Errorf("%s -version: %v", p, err)
	}
	if !strings.HasPrefix(string(out), "go2rtc version "+go2rtcVersion+" ") {
		return fmt.Errorf("%s is not go2rtc %s: %s", p, go2rtcVersion, strings.TrimSpace(string(out)))
	}
	return nil
}
