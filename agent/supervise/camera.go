package supervise

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/wire"
)

// cameraState is what a camera supervisor remembers between probes.
type cameraState struct {
	failures   int       // consecutive failed probes
	lastSample time.Time // start of the last stream sample
	// stream holds fps and bitrate of the last sample (zero when it played
	// nothing); they stay in reports between samples and go when the
	// camera goes offline.
	stream map[string]float64
	// sub is the same for the sub-stream (sub_fps, sub_bitrate_kbps;
	// zeros when its last sample played nothing).
	sub map[string]float64
	// main and subShape are what the probes found the streams to be,
	// reported through OnStreams when they change; a sub-stream that
	// fails keeps its last shape.
	main, subShape wire.Stream
	// identified is when the camera last answered its Identifier; drift
	// its clock's distance from the agent's then (a metric while known).
	identified time.Time
	drift      time.Duration
	identErr   string // the last Identifier error, logged once
}

// runCamera probes until ctx ends. The first probe waits a random part of
// the interval so that a hundred cameras configured together are not all
// probed in the same millisecond, and keep their spread afterwards.
func (sup *supervisor) runCamera(ctx context.Context, prober CameraProber) {
	cam := sup.dev.Camera
	if cam.Events != nil {
		go sup.watchEvents(ctx, cam.Events)
	}
	timer := time.NewTimer(rand.N(cam.Interval))
	defer timer.Stop()
	var st cameraState
	for {
		var done chan struct{}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-sup.changed:
		case done = <-sup.kick:
		}
		sup.probeCamera(ctx, prober, &st)
		if done != nil {
			close(done)
		}
		timer.Reset(cam.Interval)
	}
}

// watchEvents follows the camera's events until ctx ends, watching again
// rewatchAfter a failure (logged when it is new). A change of what is
// wrong with the picture probes the camera at once, so the report follows
// in seconds; motion is sent as it comes, and ended when the events stop
// being followed, since nothing would say when it ends.
func (sup *supervisor) watchEvents(ctx context.Context, src EventSource) {
	last := ""
	for {
		err := src.Watch(ctx, func(kind string, active bool) {
			if kind == KindMotion {
				sup.trigger(active, wire.ReasonMotion, "", time.Now())
				return
			}
			sup.pictureMu.Lock()
			was := sup.picture[kind]
			if active {
				if sup.picture == nil {
					sup.picture = map[string]bool{}
				}
				sup.picture[kind] = true
			} else {
				delete(sup.picture, kind)
			}
			sup.pictureMu.Unlock()
			if was == active {
				return
			}
			sup.log.Info("camera reports its picture", "kind", kind, "active", active)
			select {
			case sup.changed <- struct{}{}:
			default: // a probe is already due
			}
		})
		if ctx.Err() != nil {
			return
		}
		sup.trigger(false, wire.ReasonMotion, "the camera's events are not followed", time.Now())
		if err != nil && err.Error() != last {
			sup.log.Warn("camera's events not followed (ONVIF); trying again", "err", err, "after", rewatchAfter)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rewatchAfter):
		}
	}
}

// probeCamera runs one probe, or a stream sample when one is due. A sample
// is also taken whenever the camera is not cleanly online, so a degraded or
// failing camera is re-judged on its video, not only on DESCRIBE, and a
// recovery is confirmed by frames.
func (sup *supervisor) probeCamera(ctx context.Context, prober CameraProber, st *cameraState) {
	cam := sup.dev.Camera
	status, _, _ := sup.current()
	now := time.Now()
	sample := cam.StreamEvery > 0 &&
		(st.lastSample.IsZero() || now.Sub(st.lastSample) >= cam.StreamEvery ||
			st.failures > 0 || status != wire.StatusOnline)
	var res probe.Result
	if sample {
		st.lastSample = now
		res = prober.Sample(ctx, cam.Target, cam.StreamSample)
	} else {
		res = prober.Probe(ctx, cam.Target)
	}
	if cam.Sub.URL != "" && res.OK() && (sample || st.subShape.Codec == "") {
		sup.probeSub(ctx, prober, st, sample)
	}
	if ctx.Err() != nil {
		return // stopping: the result says nothing about the camera
	}
	sup.noteStreams(res, st)
	if res.OK() && cam.Identify != nil && (st.identified.IsZero() || now.Sub(st.identified) >= IdentifyEvery) {
		sup.identify(ctx, cam.Identify, st, now)
	}
	sup.judgeCamera(res, st)
}

// identify asks the camera who it is; the answer goes to OnIdentity and
// its clock drift into the reports. An error is logged when it is new;
// the camera is asked again at the next probe.
func (sup *supervisor) identify(ctx context.Context, idr Identifier, st *cameraState, now time.Time) {
	id, err := idr.Identify(ctx)
	if err != nil {
		if ctx.Err() == nil && err.Error() != st.identErr {
			sup.log.Warn("camera not identified (ONVIF)", "err", err)
		}
		st.identErr = err.Error()
		return
	}
	st.identified, st.drift, st.identErr = now, id.Drift, ""
	sup.onIdentity(sup.dev.ID, id)
}

// judgeCamera turns a probe result into the camera's status.
func (sup *supervisor) judgeCamera(res probe.Result, st *cameraState) {
	cam := sup.dev.Camera
	at := res.At
	if at.IsZero() {
		at = time.Now()
	}
	// A failure below the debounce threshold leaves the status as it is.
	r := report{at: at, probed: true}
	r.status, r.reason, r.detail = sup.current()

	if res.Sampled {
		st.stream = map[string]float64{wire.MetricFPS: res.FPS, wire.MetricBitrateKbps: res.BitrateKbps}
	}
	if !res.LastFrame.IsZero() {
		sup.setAge(wire.MetricFrameAge, res.LastFrame)
	}

	faults := sup.pictureFaults()
	switch {
	case !res.OK():
		st.failures++
		if st.failures >= cam.FailuresBeforeOffline {
			r.status, r.reason, r.detail = wire.StatusOffline, res.Reason, res.Detail
			st.stream, st.sub = nil, nil
		}
	case slices.Contains(faults, KindTamper):
		st.failures = 0
		r.status, r.reason, r.detail = wire.StatusDegraded, wire.ReasonTamper, "the camera reports tampering: covered, sprayed or turned away"
	case len(faults) > 0:
		st.failures = 0
		r.status, r.reason, r.detail = wire.StatusDegraded, wire.ReasonImageQuality, "the camera reports its picture "+strings.Join(faults, ", ")
	case res.Sampled && res.FPS < cam.MinFPS:
		st.failures = 0
		r.status, r.reason = wire.StatusDegraded, wire.ReasonLowFrameRate
		r.detail = fmt.Sprintf("%.1f fps, expected at least %g", res.FPS, cam.MinFPS)
	default:
		st.failures = 0
		r.status, r.reason, r.detail = wire.StatusOnline, wire.ReasonNone, ""
	}

	r.metrics = make(map[string]float64, 6)
	if res.TCP > 0 {
		r.metrics[wire.MetricTCPMillis] = millis(res.TCP)
	}
	if res.RTSP > 0 {
		r.metrics[wire.MetricRTSPMillis] = millis(res.RTSP)
	}
	for k, v := range st.stream {
		r.metrics[k] = v
	}
	for k, v := range st.sub {
		r.metrics[k] = v
	}
	r.metrics[wire.MetricProbeFailures] = float64(st.failures)
	if !st.identified.IsZero() {
		r.metrics[wire.MetricClockDrift] = st.drift.Abs().Seconds()
	}
	sup.update(r)
}

// probeSub samples the camera's sub-stream after a good sample of its
// main one, or describes it (DESCRIBE only) while its shape is unknown.
// A sub-stream that plays nothing reports zeros, and its failure is
// logged once: live view on browsers without H.265 depends on it, but the
// camera's status is its main stream's.
func (sup *supervisor) probeSub(ctx context.Context, prober CameraProber, st *cameraState, sample bool) {
	cam := sup.dev.Camera
	var res probe.Result
	if sample {
		res = prober.Sample(ctx, cam.Sub, cam.StreamSample)
	} else {
		res = prober.Probe(ctx, cam.Sub)
	}
	if ctx.Err() != nil {
		return
	}
	if res.OK() && res.Stream.Codec != "" {
		st.subShape = res.Stream
		st.subShape.Role = wire.StreamSub
	}
	if !sample {
		return
	}
	if !res.OK() {
		if st.sub == nil || st.sub[wire.MetricSubFPS] > 0 {
			sup.log.Warn("camera's sub-stream does not play", "reason", res.Reason, "detail", res.Detail)
		}
		st.sub = map[string]float64{wire.MetricSubFPS: 0, wire.MetricSubBitrateKbps: 0}
		return
	}
	st.sub = map[string]float64{wire.MetricSubFPS: res.FPS, wire.MetricSubBitrateKbps: res.BitrateKbps}
}

// noteStreams takes what a probe found the main stream to be and reports
// the camera's streams when they changed.
func (sup *supervisor) noteStreams(res probe.Result, st *cameraState) {
	was := [2]wire.Stream{st.main, st.subShape}
	if res.Stream.Codec != "" {
		st.main = res.Stream
		st.main.Role = wire.StreamMain
	}
	if was == [2]wire.Stream{st.main, st.subShape} || st.main.Codec == "" {
		return
	}
	streams := []wire.Stream{st.main}
	if st.subShape.Codec != "" {
		streams = append(streams, st.subShape)
	}
	sup.log.Info("camera's streams", "streams", streams)
	sup.onStreams(sup.dev.ID, streams)
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pictureFaults lists, sorted, what the camera's events say is wrong with
// its picture now.
func (sup *supervisor) pictureFaults() []string {
	sup.pictureMu.Lock()
	defer sup.pictureMu.Unlock()
	return slices.Sorted(maps.Keys(sup.picture))
}
