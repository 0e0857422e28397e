// Package supervise runs one supervisor goroutine per device. A camera
// supervisor probes on a jittered cycle, debounces short drops and decides
// online / degraded / offline; a sensor supervisor watches its driver and
// declares supervision loss when check-ins stop. Each keeps the device's
// current wire.DeviceHealth and reports every change as it happens. Set is
// shaped like grafana/alloy's runner: Apply starts new supervisors, stops
// removed ones and restarts changed ones.
package supervise

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/agent/sensor"
	"github.com/citywatch/citywatch/wire"
)

// CameraProber probes cameras. *probe.Prober is the real one; the
// simulator plugs in an in-process prober to run 100,000 cameras.
type CameraProber interface {
	Probe(ctx context.Context, t probe.Target) probe.Result
	Sample(ctx context.Context, t probe.Target, d time.Duration) probe.Result
}

// Device is one device to supervise; exactly one of Camera and Sensor is set.
type Device struct {
	ID     string
	Camera *Camera
	Sensor *Sensor
}

// Camera says how to probe a camera.
type Camera struct {
	Target probe.Target
	// Sub is the camera's sub-stream (rtsp_sub), sampled with the main
	// stream; its frame rate and bitrate are metrics, a failure none of
	// the camera's status. A zero URL: none.
	Sub          probe.Target
	Interval     time.Duration // between probes
	StreamEvery  time.Duration // between stream samples; 0 never samples
	StreamSample time.Duration // length of a stream sample
	// FailuresBeforeOffline consecutive failures make the camera offline;
	// fewer leave its status alone, so a short drop raises no alarm.
	FailuresBeforeOffline int
	MinFPS                float64 // a sampled stream below this is degraded
	// Identify asks the camera who it is and reads its clock (ONVIF) at
	// its first good probe and every IdentifyEvery after; nil when the
	// camera has no ONVIF service configured.
	Identify Identifier
	// Events is the camera's own event stream (ONVIF), watched for as
	// long as the supervisor runs; nil when it has none. A camera that
	// reports tampering, or a poor picture, while its probes pass is
	// degraded (tamper, image_quality); one that reports motion stays as
	// it is and sends triggered and restored events (reason motion).
	Events EventSource
}

// EventSource is a camera's stream of events.
type EventSource interface {
	// Watch reports every event about the picture to report, by kind
	// (KindTamper, KindMotion or a picture kind, as the source names
	// them), until ctx ends (nil) or the stream fails (the error: the
	// supervisor watches again a while later).
	Watch(ctx context.Context, report func(kind string, active bool)) error
}

// Event kinds an EventSource reports. KindTamper is a camera covered,
// sprayed or turned away; KindMotion something moving in its picture,
// which is no fault; any other kind is a fault of the picture (too
// blurry, dark, bright…), named by it.
const (
	KindTamper = "tamper"
	KindMotion = "motion"
)

// rewatchAfter is how long a supervisor waits to watch a failed event
// stream again.
const rewatchAfter = 30 * time.Second

// Identifier asks a camera who it is and how far its clock is from the
// agent's.
type Identifier interface {
	Identify(ctx context.Context) (Identity, error)
}

// Identity is what a camera says of itself.
type Identity struct {
	Manufacturer, Model, Firmware, Serial string
	// Drift is the camera's clock minus the agent's.
	Drift time.Duration
}

// IdentifyEvery is how often a camera with an Identifier is asked again.
const IdentifyEvery = time.Hour

// Sensor says how to watch a sensor.
type Sensor struct {
	Driver      sensor.Driver
	Params      map[string]string
	Supervision time.Duration // silence longer than this is supervision loss
}

// equal reports whether a running supervisor for d can stay as it is.
func (d Device) equal(o Device) bool {
	switch {
	case d.ID != o.ID || (d.Camera == nil) != (o.Camera == nil) || (d.Sensor == nil) != (o.Sensor == nil):
		return false
	case d.Camera != nil:
		return *d.Camera == *o.Camera
	case d.Sensor != nil:
		return d.Sensor.Driver == o.Sensor.Driver && d.Sensor.Supervision == o.Sensor.Supervision &&
			maps.Equal(d.Sensor.Params, o.Sensor.Params)
	}
	return true
}

// Options configures a Set.
type Options struct {
	Prober CameraProber
	// OnEvent receives every status change, every sensor trigger or
	// restore and every start and end of a camera's motion, in order per
	// device and kind, from the device's goroutines (a camera's motion
	// comes from the one watching its events). It must not block; the
	// Header is left for the publisher to fill.
	OnEvent func(wire.Event)
	// OnIdentity receives what a camera's Identifier answered, from the
	// device's goroutine; it must not block. Nil ignores it.
	OnIdentity func(device string, id Identity)
	// OnStreams receives a camera's streams (main, then sub) whenever
	// what its probes found of them changes, from the device's goroutine;
	// it must not block. Nil ignores them.
	OnStreams func(device string, streams []wire.Stream)
	Logger    *slog.Logger
}

// Set is the set of running supervisors.
type Set struct {
	ctx  context.Context
	opts Options

	mu      sync.Mutex // guards running and order; held while Apply waits for stops
	running map[string]*supervisor
	order   []string // device ids in configuration order, for reports
}

// New returns an empty set whose supervisors run until ctx ends or Stop.
func New(ctx context.Context, opts Options) *Set {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnEvent == nil {
		opts.OnEvent = func(wire.Event) {}
	}
	if opts.OnIdentity == nil {
		opts.OnIdentity = func(string, Identity) {}
	}
	if opts.OnStreams == nil {
		opts.OnStreams = func(string, []wire.Stream) {}
	}
	return &Set{ctx: ctx, opts: opts, running: make(map[string]*supervisor)}
}

// Apply makes the running supervisors match devices: it starts
// supervisors for new devices, stops those of removed devices and restarts
// those whose settings changed. A restarted device keeps its status, so a
// config reload does not report a spurious status change. Apply returns
// once removed supervisors have stopped.
func (s *Set) Apply(devices []Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]Device, len(devices))
	s.order = s.order[:0]
	for _, d := range devices {
		want[d.ID] = d
		s.order = append(s.order, d.ID)
	}
	carried := make(map[string]wire.DeviceHealth)
	for id, sup := range s.running {
		if d, ok := want[id]; ok && d.equal(sup.dev) {
			continue
		}
		sup.stop()
		delete(s.running, id)
		if _, ok := want[id]; ok {
			carried[id] = sup.snapshot(time.Now())
		}
	}
	for _, d := range devices {
		if _, ok := s.running[d.ID]; ok {
			continue
		}
		var prev *wire.DeviceHealth
		if h, ok := carried[d.ID]; ok {
			prev = &h
		}
		s.running[d.ID] = s.start(d, prev)
	}
}

// Stop stops every supervisor and waits for them.
func (s *Set) Stop() { s.Apply(nil) }

// Health returns the current health of every device, in configuration
// order.
func (s *Set) Health() []wire.DeviceHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]wire.DeviceHealth, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.running[id].snapshot(now))
	}
	return out
}

// ProbeNow makes the supervisors of ids (all devices when ids is empty)
// probe at once and returns when they have, or when ctx ends. Sensors
// report by themselves, so for them it returns at once. It returns the ids
// it does not know.
func (s *Set) ProbeNow(ctx context.Context, ids []string) (unknown []string) {
	s.mu.Lock()
	var sups []*supervisor
	if len(ids) == 0 {
		for _, id := range s.order {
			sups = append(sups, s.running[id])
		}
	}
	for _, id := range ids {
		if sup, ok := s.running[id]; ok {
			sups = append(sups, sup)
		} else {
			unknown = append(unknown, id)
		}
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, sup := range sups {
		wg.Go(func() { sup.probeNow(ctx) })
	}
	wg.Wait()
	return unknown
}
