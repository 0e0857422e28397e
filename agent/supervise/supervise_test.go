package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/agent/sensor"
	"github.com/citywatch/citywatch/wire"
)

// fakeProber answers probes through function fields and counts calls.
type fakeProber struct {
	probe  func(probe.Target) probe.Result
	sample func(probe.Target, time.Duration) probe.Result

	mu      sync.Mutex
	probes  []time.Time
	samples []time.Time
}

func (f *fakeProber) Probe(_ context.Context, t probe.Target) probe.Result {
	f.mu.Lock()
	f.probes = append(f.probes, time.Now())
	f.mu.Unlock()
	return f.probe(t)
}

func (f *fakeProber) Sample(_ context.Context, t probe.Target, d time.Duration) probe.Result {
	f.mu.Lock()
	f.samples = append(f.samples, time.Now())
	f.mu.Unlock()
	return f.sample(t, d)
}

func (f *fakeProber) counts() (probes, samples int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.probes), len(f.samples)
}

// switchable is a camera whose probe outcome the test sets.
type switchable struct {
	mu     sync.Mutex
	reason wire.Reason
	fps    float64
}

func (s *switchable) set(reason wire.Reason, fps float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reason, s.fps = reason, fps
}

func (s *switchable) prober() *fakeProber {
	result := func(sampled bool) probe.Result {
		s.mu.Lock()
		defer s.mu.Unlock()
		r := probe.Result{Reason: s.reason, At: time.Now(), TCP: 2 * time.Millisecond}
		if s.reason == wire.ReasonNone {
			r.RTSP = 5 * time.Millisecond
			if sampled {
				r.Sampled, r.FPS, r.Frames, r.BitrateKbps, r.LastFrame = true, s.fps, int(s.fps), 2000, time.Now()
			}
		} else {
			r.Detail = "detail of " + string(s.reason)
		}
		return r
	}
	return &fakeProber{
		probe:  func(probe.Target) probe.Result { return result(false) },
		sample: func(probe.Target, time.Duration) probe.Result { return result(true) },
	}
}

// events records what a Set reports.
type events struct {
	mu   sync.Mutex
	list []wire.Event
}

func (e *events) add(ev wire.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) take() []wire.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.list
	e.list = nil
	return out
}

func camera(id string, interval time.Duration) Device {
	return Device{ID: id, Camera: &Camera{
		Target:   probe.Target{ID: id, URL: "rtsp://10.0.0.9/ch1"},
		Interval: interval, StreamEvery: time.Minute, StreamSample: time.Second,
		FailuresBeforeOffline: 2, MinFPS: 5,
	}}
}

func health(t *testing.T, s *Set, id string) wire.DeviceHealth {
	t.Helper()
	for _, h := range s.Health() {
		if h.ID == id {
			return h
		}
	}
	t.Fatalf("no health for %s", id)
	return wire.DeviceHealth{}
}

// wantStatus checks one status event and the health that goes with it.
func wantStatus(t *testing.T, got []wire.Event, from, to wire.Status, reason wire.Reason) {
	t.Helper()
	if len(got) != 1 || got[0].Type != wire.EventStatus || got[0].From != from || got[0].To != to || got[0].Reason != reason {
		t.Fatalf("events %+v, want one %s → %s (%q)", got, from, to, reason)
	}
}

func TestCameraDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &switchable{fps: 25}
		var ev events
		s := New(t.Context(), Options{Prober: cam.prober(), OnEvent: ev.add})
		defer s.Stop()
		s.Apply([]Device{camera("cam-1", 10*time.Second)})

		if h := health(t, s, "cam-1"); h.Status != wire.StatusUnknown {
			t.Fatalf("before the first probe: %s, want unknown", h.Status)
		}
		time.Sleep(10 * time.Second) // the jittered first probe lies within one interval
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusUnknown, wire.StatusOnline, "")
		h := health(t, s, "cam-1")
		if h.Metrics[wire.MetricFPS] != 25 || h.Metrics[wire.MetricTCPMillis] != 2 || h.Probed.IsZero() {
			t.Fatalf("online health %+v", h)
		}

		// One failed probe is a short drop: no event, but counted.
		cam.set(wire.ReasonRefused, 0)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := ev.take(); len(got) != 0 {
			t.Fatalf("one failure raised %+v", got)
		}
		if h := health(t, s, "cam-1"); h.Status != wire.StatusOnline || h.Metrics[wire.MetricProbeFailures] != 1 {
			t.Fatalf("after one failure: %+v", h)
		}

		// The second consecutive failure makes it offline.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusOnline, wire.StatusOffline, wire.ReasonRefused)
		h = health(t, s, "cam-1")
		if h.Detail != "detail of refused" || h.Since != h.Probed {
			t.Fatalf("offline health %+v", h)
		}
		if _, ok := h.Metrics[wire.MetricFPS]; ok {
			t.Errorf("offline camera still reports fps: %v", h.Metrics)
		}

		// A new failure class while offline is news.
		cam.set(wire.ReasonAuthFailed, 0)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusOffline, wire.StatusOffline, wire.ReasonAuthFailed)

		cam.set(wire.ReasonNone, 25)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusOffline, wire.StatusOnline, "")
	})
}

func TestCameraSampling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &switchable{fps: 25}
		p := cam.prober()
		var ev events
		s := New(t.Context(), Options{Prober: p, OnEvent: ev.add})
		defer s.Stop()
		s.Apply([]Device{camera("cam-1", 10*time.Second)}) // samples every minute

		time.Sleep(10 * time.Second)
		synctest.Wait()
		if probes, samples := p.counts(); probes != 0 || samples != 1 {
			t.Fatalf("first cycle: %d probes, %d samples; want a sample", probes, samples)
		}
		ev.take()
		time.Sleep(50 * time.Second)
		synctest.Wait()
		if probes, samples := p.counts(); probes != 5 || samples != 1 {
			t.Fatalf("within the minute: %d probes, %d samples; want 5 probes", probes, samples)
		}
		if age := health(t, s, "cam-1").Metrics[wire.MetricFrameAge]; age < 50 || age > 60 {
			t.Fatalf("frame age %v s, want the time since the sample", age)
		}

		// The next sample finds the stream too slow: degraded at once, and
		// sampled every cycle until it recovers.
		cam.set(wire.ReasonNone, 2)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusOnline, wire.StatusDegraded, wire.ReasonLowFrameRate)
		if d := health(t, s, "cam-1").Detail; d != "2.0 fps, expected at least 5" {
			t.Fatalf("detail %q", d)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if _, samples := p.counts(); samples != 4 {
			t.Fatalf("degraded camera: %d samples, want one per cycle (4)", samples)
		}
		cam.set(wire.ReasonNone, 25)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusDegraded, wire.StatusOnline, "")
	})
}

func TestCameraJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &switchable{fps: 25}
		p := cam.prober()
		s := New(t.Context(), Options{Prober: p})
		defer s.Stop()
		start := time.Now()
		var devs []Device
		for i := range 100 {
			devs = append(devs, camera("cam-"+string(rune('A'+i/26))+string(rune('a'+i%26)), 10*time.Second))
		}
		s.Apply(devs)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.samples) != 100 {
			t.Fatalf("%d first probes, want 100", len(p.samples))
		}
		distinct := make(map[time.Duration]bool)
		for _, at := range p.samples {
			distinct[at.Sub(start).Truncate(time.Millisecond)] = true
		}
		if len(distinct) < 90 {
			t.Errorf("100 first probes fell on only %d distinct milliseconds", len(distinct))
		}
	})
}

func sensorDevice(id string, d sensor.Driver) Device {
	return Device{ID: id, Sensor: &Sensor{Driver: d, Supervision: 30 * time.Second}}
}

func TestSensorSupervision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := sensor.NewSim(10 * time.Second)
		var ev events
		s := New(t.Context(), Options{OnEvent: ev.add})
		defer s.Stop()
		s.Apply([]Device{sensorDevice("pir-1", sim)})
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusUnknown, wire.StatusOnline, "")

		sim.Trigger("pir-1", true)
		synctest.Wait()
		if got := ev.take(); len(got) != 1 || got[0].Type != wire.EventTriggered || got[0].Device != "pir-1" {
			t.Fatalf("trigger: events %+v", got)
		}
		if !health(t, s, "pir-1").Triggered {
			t.Fatal("health does not show the trigger")
		}
		sim.Trigger("pir-1", false)
		synctest.Wait()
		if got := ev.take(); len(got) != 1 || got[0].Type != wire.EventRestored {
			t.Fatalf("restore: events %+v", got)
		}

		// Silence: the last check-in was just now, so the window runs 30 s
		// from here, not from the next missed tick.
		sim.SetSupervision("pir-1", false)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if got := ev.take(); len(got) != 0 {
			t.Fatalf("offline before the supervision window ended: %+v", got)
		}
		if age := health(t, s, "pir-1").Metrics[wire.MetricCheckinAge]; age != 29 {
			t.Fatalf("checkin_age_s = %v, want 29", age)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusOnline, wire.StatusOffline, wire.ReasonSupervisionLost)

		sim.SetSupervision("pir-1", true)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusOffline, wire.StatusOnline, "")
	})
}

// fakeDriver emits what its function field decides.
type fakeDriver struct {
	watch func(ctx context.Context, emit func(sensor.Reading)) error
}

func (f fakeDriver) Watch(ctx context.Context, _ string, _ map[string]string, emit func(sensor.Reading)) error {
	return f.watch(ctx, emit)
}

func TestSensorTamperAndBattery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := fakeDriver{watch: func(ctx context.Context, emit func(sensor.Reading)) error {
			emit(sensor.Reading{At: time.Now(), Tamper: true, Battery: 81})
			<-ctx.Done()
			return ctx.Err()
		}}
		var ev events
		s := New(t.Context(), Options{OnEvent: ev.add})
		defer s.Stop()
		s.Apply([]Device{sensorDevice("door-1", &d)})
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusUnknown, wire.StatusDegraded, wire.ReasonTamper)
		if h := health(t, s, "door-1"); h.Metrics[wire.MetricBatteryPct] != 81 {
			t.Fatalf("metrics %v", h.Metrics)
		}
	})
}

// TestSensorDriverFailure: a driver that fails is restarted with backoff,
// and its error explains the supervision loss.
func TestSensorDriverFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var starts []time.Time
		d := fakeDriver{watch: func(context.Context, func(sensor.Reading)) error {
			mu.Lock()
			defer mu.Unlock()
			starts = append(starts, time.Now())
			return errors.New("serial port gone")
		}}
		var ev events
		s := New(t.Context(), Options{OnEvent: ev.add})
		defer s.Stop()
		begin := time.Now()
		s.Apply([]Device{sensorDevice("smoke-1", &d)})
		time.Sleep(30 * time.Second)
		synctest.Wait()
		got := ev.take()
		wantStatus(t, got, wire.StatusUnknown, wire.StatusOffline, wire.ReasonSupervisionLost)
		if want := "no check-in for 30s; driver: serial port gone"; got[0].Detail != want {
			t.Errorf("detail %q, want %q", got[0].Detail, want)
		}
		mu.Lock()
		defer mu.Unlock()
		var offsets []time.Duration
		for _, at := range starts {
			offsets = append(offsets, at.Sub(begin))
		}
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second}
		if !slices.Equal(offsets, want) {
			t.Errorf("driver started at %v, want backoff %v", offsets, want)
		}
	})
}

func TestApply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &switchable{fps: 25}
		p := cam.prober()
		var ev events
		s := New(t.Context(), Options{Prober: p, OnEvent: ev.add})
		defer s.Stop()
		sim := sensor.NewSim(10 * time.Second)

		s.Apply([]Device{camera("cam-1", 10*time.Second), camera("cam-2", 10*time.Second), sensorDevice("pir-1", sim)})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := ev.take(); len(got) != 3 {
			t.Fatalf("start: %d events, want 3 (all online)", len(got))
		}

		// cam-1 unchanged, cam-2 removed, pir-1 changed, cam-3 new.
		changed := sensorDevice("pir-1", sim)
		changed.Sensor.Supervision = time.Minute
		s.Apply([]Device{camera("cam-3", 10*time.Second), changed, camera("cam-1", 10*time.Second)})
		synctest.Wait()
		var ids []string
		for _, h := range s.Health() {
			ids = append(ids, h.ID)
		}
		if !slices.Equal(ids, []string{"cam-3", "pir-1", "cam-1"}) {
			t.Fatalf("health lists %v, want configuration order", ids)
		}
		if h := health(t, s, "pir-1"); h.Status != wire.StatusOnline {
			t.Fatalf("restarted sensor lost its status: %+v", h)
		}
		if h := health(t, s, "cam-1"); h.Status != wire.StatusOnline {
			t.Fatalf("unchanged camera was restarted: %+v", h)
		}
		// The restart carried pir-1's status over: no spurious event.
		if got := ev.take(); len(got) != 0 {
			t.Fatalf("reload raised %+v", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusUnknown, wire.StatusOnline, "") // cam-3 only
	})
}

func TestProbeNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &switchable{fps: 25}
		p := cam.prober()
		s := New(t.Context(), Options{Prober: p})
		defer s.Stop()
		s.Apply([]Device{camera("cam-1", time.Hour), sensorDevice("pir-1", sensor.NewSim(time.Second))})

		unknown := s.ProbeNow(t.Context(), []string{"cam-1", "pir-1", "cam-9"})
		if !slices.Equal(unknown, []string{"cam-9"}) {
			t.Errorf("unknown = %v", unknown)
		}
		if probes, samples := p.counts(); probes+samples != 1 {
			t.Fatalf("ProbeNow returned before the probe: %d probes", probes+samples)
		}
		if h := health(t, s, "cam-1"); h.Status != wire.StatusOnline {
			t.Fatalf("health right after ProbeNow: %+v", h)
		}
		s.ProbeNow(t.Context(), nil) // all devices
		if probes, samples := p.counts(); probes+samples != 2 {
			t.Fatalf("ProbeNow(all): %d probes in total, want 2", probes+samples)
		}
	})
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", wire.MaxDetailLen) // 2 bytes each
	got := clip(long)
	if len(got) > wire.MaxDetailLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("clip: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if clip("short") != "short" {
		t.Error("clip changed a short detail")
	}
	// Invalid bytes from a camera must not grow past the limit once the
	// report is JSON-encoded and decoded by the hub.
	raw := "RTSP/1.0 400 " + strings.Repeat("\xff", wire.MaxDetailLen-20)
	b, err := json.Marshal(clip(raw))
	if err != nil {
		t.Fatal(err)
	}
	var back string
	if err := json.Unmarshal(b, &back); err != nil || len(back) > wire.MaxDetailLen {
		t.Errorf("detail is %d bytes after a JSON round trip, limit %d", len(back), wire.MaxDetailLen)
	}
}

// fakeEvents is a camera's event stream run by its function field.
type fakeEvents struct {
	watch func(ctx context.Context, report func(kind string, active bool)) error
}

func (f *fakeEvents) Watch(ctx context.Context, report func(kind string, active bool)) error {
	return f.watch(ctx, report)
}

// TestCameraMotion: motion a camera reports is a triggered event (reason
// motion) and triggered in its health, once however often it is said,
// with no status change; its end is a restored event; and a motion under
// way ends when the camera's events stop being followed, since nothing
// would say when it ends.
func TestCameraMotion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &switchable{fps: 25}
		reports := make(chan func(string, bool), 1)
		lost := make(chan struct{})
		calls := 0
		src := &fakeEvents{watch: func(ctx context.Context, report func(string, bool)) error {
			if calls++; calls > 1 {
				<-ctx.Done()
				return nil
			}
			reports <- report
			select {
			case <-ctx.Done():
				return nil
			case <-lost:
				return errors.New("subscription lost")
			}
		}}
		var ev events
		s := New(t.Context(), Options{Prober: cam.prober(), OnEvent: ev.add})
		defer s.Stop()
		d := camera("cam-1", 10*time.Second)
		d.Camera.Events = src
		s.Apply([]Device{d})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantStatus(t, ev.take(), wire.StatusUnknown, wire.StatusOnline, "")
		report := <-reports

		wantTrigger := func(typ wire.EventType, detail string) {
			t.Helper()
			got := ev.take()
			if len(got) != 1 || got[0].Type != typ || got[0].Reason != wire.ReasonMotion || got[0].Detail != detail || got[0].Device != "cam-1" {
				t.Fatalf("events %+v, want one %s (motion, %q)", got, typ, detail)
			}
			if h := health(t, s, "cam-1"); h.Triggered != (typ == wire.EventTriggered) || h.Status != wire.StatusOnline {
				t.Fatalf("health after %s: %+v, want online", typ, h)
			}
		}
		report(KindMotion, true)
		report(KindMotion, true)
		wantTrigger(wire.EventTriggered, "")
		time.Sleep(10 * time.Second) // a probe while the motion lasts changes nothing
		synctest.Wait()
		if got := ev.take(); len(got) != 0 {
			t.Fatalf("a probe during motion sent %+v", got)
		}
		report(KindMotion, false)
		wantTrigger(wire.EventRestored, "")
		report(KindMotion, true)
		wantTrigger(wire.EventTriggered, "")

		close(lost)
		synctest.Wait()
		wantTrigger(wire.EventRestored, "the camera's events are not followed")
	})
}

// TestCameraStreams: a camera's main stream as DESCRIBE tells it and its
// sub-stream as its sample tells it go to OnStreams when they change, once
// for a change however many probes follow; the sub-stream's frame rate and
// bitrate are metrics; a sub-stream that stops playing reports zeros and
// leaves the camera's status and its streams as they were.
func TestCameraStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		main := wire.Stream{Codec: wire.CodecH265, Profile: "Main", Width: 2560, Height: 1440}
		sub := wire.Stream{Codec: wire.CodecH264, Profile: "High", Width: 640, Height: 360}
		var mu sync.Mutex
		subFails := false
		prober := &fakeProber{
			probe: func(probe.Target) probe.Result {
				return probe.Result{At: time.Now(), TCP: time.Millisecond, RTSP: time.Millisecond, Stream: main}
			},
			sample: func(tg probe.Target, _ time.Duration) probe.Result {
				mu.Lock()
				defer mu.Unlock()
				r := probe.Result{At: time.Now(), TCP: time.Millisecond, RTSP: time.Millisecond, Sampled: true, LastFrame: time.Now()}
				switch {
				case tg.URL == "rtsp://10.0.0.9/ch2" && subFails:
					r.Reason, r.Detail = wire.ReasonNoStream, "no frame"
				case tg.URL == "rtsp://10.0.0.9/ch2":
					r.FPS, r.Frames, r.BitrateKbps, r.Stream = 12.5, 12, 256, sub
				default:
					r.FPS, r.Frames, r.BitrateKbps, r.Stream = 25, 25, 4096, main
				}
				return r
			},
		}
		var got [][]wire.Stream
		s := New(t.Context(), Options{Prober: prober, OnStreams: func(device string, ss []wire.Stream) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ss)
		}})
		defer s.Stop()
		d := camera("cam-1", 10*time.Second)
		d.Camera.StreamEvery = 20 * time.Second
		d.Camera.Sub = probe.Target{ID: "cam-1", URL: "rtsp://10.0.0.9/ch2"}
		s.Apply([]Device{d})
		time.Sleep(45 * time.Second) // a sample, a probe, a sample
		synctest.Wait()

		mu.Lock()
		want := [][]wire.Stream{{
			{Role: wire.StreamMain, Codec: wire.CodecH265, Profile: "Main", Width: 2560, Height: 1440},
			{Role: wire.StreamSub, Codec: wire.CodecH264, Profile: "High", Width: 640, Height: 360},
		}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("OnStreams got %+v, want once %+v", got, want)
		}
		subFails = true
		mu.Unlock()
		h := health(t, s, "cam-1")
		if h.Metrics[wire.MetricSubFPS] != 12.5 || h.Metrics[wire.MetricSubBitrateKbps] != 256 || h.Metrics[wire.MetricFPS] != 25 {
			t.Fatalf("metrics %v", h.Metrics)
		}

		time.Sleep(40 * time.Second)
		synctest.Wait()
		h = health(t, s, "cam-1")
		if h.Status != wire.StatusOnline || h.Metrics[wire.MetricSubFPS] != 0 || h.Metrics[wire.MetricSubBitrateKbps] != 0 {
			t.Fatalf("after the sub-stream failed: %+v", h)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			t.Errorf("a failed sub-stream changed the streams: %+v", got)
		}
	})
}
