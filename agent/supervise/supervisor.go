package supervise

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/citywatch/citywatch/wire"
)

// supervisor is the goroutine of one device and the device's health. The
// goroutine is the only writer of the health but for a camera's Triggered
// (its motion), which the goroutine watching its events writes; mu lets
// reports read it.
type supervisor struct {
	dev        Device
	cancel     context.CancelFunc
	done       chan struct{}
	kick       chan chan struct{} // ProbeNow: probe, then close the channel
	changed    chan struct{}      // the camera's events changed its state: probe soon (buffered)
	onEvent    func(wire.Event)
	onIdentity func(string, Identity)
	onStreams  func(string, []wire.Stream)
	log        *slog.Logger

	mu     sync.Mutex
	health wire.DeviceHealth
	// ageOf is the time a liveness age metric counts from (last frame of
	// a camera, last check-in of a sensor), computed at report time so it
	// keeps growing while nothing arrives.
	ageOf     time.Time
	ageMetric string

	// picture is what the camera's own events say is wrong with its
	// picture now, by kind (KindTamper, too_blurry…).
	pictureMu sync.Mutex
	picture   map[string]bool
}

func (s *Set) start(d Device, prev *wire.DeviceHealth) *supervisor {
	ctx, cancel := context.WithCancel(s.ctx)
	sup := &supervisor{
		dev:        d,
		cancel:     cancel,
		done:       make(chan struct{}),
		kick:       make(chan chan struct{}),
		changed:    make(chan struct{}, 1),
		onEvent:    s.opts.OnEvent,
		onIdentity: s.opts.OnIdentity,
		onStreams:  s.opts.OnStreams,
		log:        s.opts.Logger.With("component", "supervise", "device", d.ID),
		health:     wire.DeviceHealth{ID: d.ID, Status: wire.StatusUnknown, Since: time.Now()},
	}
	if prev != nil {
		sup.health.Status, sup.health.Reason, sup.health.Detail = prev.Status, prev.Reason, prev.Detail
		sup.health.Since, sup.health.Triggered = prev.Since, prev.Triggered
	}
	go func() {
		defer close(sup.done)
		if d.Camera != nil {
			sup.runCamera(ctx, s.opts.Prober)
		} else {
			sup.runSensor(ctx)
		}
	}()
	return sup
}

func (sup *supervisor) stop() {
	sup.cancel()
	<-sup.done
}

// probeNow asks the supervisor's goroutine for an immediate probe and
// waits for it.
func (sup *supervisor) probeNow(ctx context.Context) {
	done := make(chan struct{})
	select {
	case sup.kick <- done:
	case <-sup.done:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-sup.done:
	case <-ctx.Done():
	}
}

// snapshot returns a copy of the device's health as of now.
func (sup *supervisor) snapshot(now time.Time) wire.DeviceHealth {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	h := sup.health
	h.Metrics = maps.Clone(h.Metrics)
	if !sup.ageOf.IsZero() {
		if h.Metrics == nil {
			h.Metrics = make(map[string]float64, 1)
		}
		h.Metrics[sup.ageMetric] = max(0, now.Sub(sup.ageOf).Seconds())
	}
	return h
}

// report is one update of a device's health.
type report struct {
	at      time.Time
	status  wire.Status
	reason  wire.Reason
	detail  string
	metrics map[string]float64 // replaces the previous metrics unless nil
	probed  bool               // at is also the time of the last probe
}

// update applies r and emits a status event when status or reason
// changed: offline for a new reason (refused → auth_failed) is news for
// the crew even though the device stays offline.
func (sup *supervisor) update(r report) {
	r.detail = clip(r.detail)
	sup.mu.Lock()
	from := sup.health
	changed := from.Status != r.status || from.Reason != r.reason
	sup.health.Status, sup.health.Reason, sup.health.Detail = r.status, r.reason, r.detail
	if r.metrics != nil {
		sup.health.Metrics = r.metrics
	}
	if r.probed {
		sup.health.Probed = r.at
	}
	if changed {
		sup.health.Since = r.at
	}
	sup.mu.Unlock()
	if !changed {
		return
	}
	sup.log.Info("status changed", "from", from.Status, "to", r.status, "reason", r.reason, "detail", r.detail)
	sup.onEvent(wire.Event{
		Device: sup.dev.ID, Type: wire.EventStatus,
		From: from.Status, To: r.status, Reason: r.reason, Detail: r.detail, At: r.at,
	})
}

// trigger sets whether the device's alarm input is active (a sensor's
// contact, a camera's motion, said by reason) and sends a triggered or
// restored event when that changed. The status is left alone: it says how
// the device is, not what it saw.
func (sup *supervisor) trigger(active bool, reason wire.Reason, detail string, at time.Time) {
	sup.mu.Lock()
	changed := sup.health.Triggered != active
	sup.health.Triggered = active
	sup.mu.Unlock()
	if !changed {
		return
	}
	typ := wire.EventRestored
	if active {
		typ = wire.EventTriggered
	}
	sup.log.Info("device "+string(typ), "reason", reason, "at", at)
	sup.onEvent(wire.Event{Device: sup.dev.ID, Type: typ, Reason: reason, Detail: clip(detail), At: at})
}

// current returns the device's status, reason and detail.
func (sup *supervisor) current() (wire.Status, wire.Reason, string) {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	return sup.health.Status, sup.health.Reason, sup.health.Detail
}

func (sup *supervisor) setAge(metric string, t time.Time) {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	sup.ageMetric, sup.ageOf = metric, t
}

// clip shortens a detail to what the wire contract accepts: a longer one
// would get the whole report rejected. Details come from error messages of
// drivers and libraries, so their length is not ours to choose.
func clip(s string) string {
	// Error texts can carry bytes a camera sent; JSON would turn each
	// invalid byte into a three-byte U+FFFD, pushing the detail over the
	// hub's limit and getting the whole report rejected.
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= wire.MaxDetailLen {
		return s
	}
	const ellipsis = "…"
	s = s[:wire.MaxDetailLen-len(ellipsis)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + ellipsis
}
