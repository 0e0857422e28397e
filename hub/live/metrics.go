package live

import (
	"strconv"
	"time"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// ttffBuckets are the upper bounds, in seconds, of the cumulative TTFF
// counters: around the targets (150 ms and 400 ms joining a running
// stream, 1.5 s for a cold start).
var ttffBuckets = []float64{0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1, 1.5, 2.5, 5, 10}

// failureReasons bound the reason label of upstream failures: the agent's
// reasons are outside input.
var failureReasons = map[wire.Reason]bool{
	wire.ReasonUnreachable: true, wire.ReasonRefused: true, wire.ReasonAuthFailed: true,
	wire.ReasonNoStream: true, wire.ReasonTimeout: true, wire.ReasonProbeError: true,
	wire.ReasonLiveStopped: true, wire.ReasonLiveHubGone: true, wire.ReasonLiveLimit: true,
	wire.ReasonLiveNoCamera: true, wire.ReasonLiveNegotiate: true, wire.ReasonLiveCodec: true,
	reasonNoAnswer: true, reasonConnection: true,
}

// instruments are the relay's series on /metrics. Per-camera series are
// counters only, created when a camera is first watched, so a stream that
// ends leaves no stale value behind: fps is rate(frames), bitrate
// rate(bytes)·8.
type instruments struct {
	ttff                      map[bool][]*metrics.Counter // by cold start; per bucket, then +Inf
	forwarded, forwardedBytes *metrics.Counter
	dropped, unsplit, resent  *metrics.Counter
	keyframeRequests          *metrics.Counter
	failures                  *metrics.Vec[metrics.Counter] // reason
	sessions, freezes         *metrics.Vec[metrics.Counter] // camera
	frames, received, lost    *metrics.Vec[metrics.Counter] // camera
}

func newInstruments(m *metrics.Registry, s *SFU) *instruments {
	in := &instruments{ttff: map[bool][]*metrics.Counter{}}
	ttff := m.CounterVec("citywatch_live_ttff_seconds",
		"Viewers by time to first frame (request to first packet sent), cumulative per upper bound le; start is warm (the stream was running) or cold.",
		"start", "le")
	for _, cold := range []bool{false, true} {
		start := "warm"
		if cold {
			start = "cold"
		}
		for _, b := range ttffBuckets {
			in.ttff[cold] = append(in.ttff[cold], ttff.With(start, strconv.FormatFloat(b, 'g', -1, 64)))
		}
		in.ttff[cold] = append(in.ttff[cold], ttff.With(start, "+Inf"))
	}
	in.forwarded = m.Counter("citywatch_live_packets_forwarded_total", "RTP packets sent to viewers.")
	in.forwardedBytes = m.Counter("citywatch_live_bytes_forwarded_total", "RTP payload bytes sent to viewers.")
	in.dropped = m.Counter("citywatch_live_packets_dropped_total",
		"Packets not sent to a viewer: it fell behind (its queue was full), or the kernel refused a batch of its datagrams.")
	in.resent = m.Counter("citywatch_live_packets_resent_total",
		"Packets sent to viewers again on their NACK (each at most twice).")
	in.unsplit = m.Counter("citywatch_live_packets_unsplit_total",
		"Packets from agents over the WebRTC packet size that could not be split (malformed, or a payload structure that cannot be split: H.264 other than packetization mode 1, H.265 PACI): not forwarded.")
	in.keyframeRequests = m.Counter("citywatch_live_keyframe_requests_total",
		"Picture loss indications sent to agents: cold starts and viewers' requests, at most one per keyframe interval per stream.")
	in.failures = m.CounterVec("citywatch_live_upstream_failures_total",
		"Camera streams that failed, by reason: the agent's (refused, auth_failed, no_stream, timeout, unreachable, limit, …) or the hub's (no_answer, connection).",
		"reason")
	in.sessions = m.CounterVec("citywatch_live_sessions_total", "Viewing sessions started, by camera.", "camera")
	in.freezes = m.CounterVec("citywatch_live_freezes_total",
		"Times a running stream brought no frame for over a second, by camera.", "camera")
	in.frames = m.CounterVec("citywatch_live_frames_total", "Frames received from agents, by camera.", "camera")
	in.received = m.CounterVec("citywatch_live_bytes_received_total", "RTP payload bytes received from agents, by camera.", "camera")
	in.lost = m.CounterVec("citywatch_live_packets_lost_total",
		"Packets missing from an agent's RTP sequence, by camera.", "camera")
	m.GaugeFunc("citywatch_live_viewers", "Viewers connected or connecting.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.viewers))
	})
	m.GaugeFunc("citywatch_live_upstreams", "Camera streams from agents, starting, running or lingering.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.upstreams))
	})
	return in
}

func (in *instruments) observeTTFF(cold bool, d time.Duration) {
	cs := in.ttff[cold]
	for i, b := range ttffBuckets {
		if d.Seconds() <= b {
			cs[i].Inc()
		}
	}
	cs[len(cs)-1].Inc()
}

func (in *instruments) failed(r wire.Reason) {
	if !failureReasons[r] {
		r = "other"
	}
	in.failures.With(string(r)).Inc()
}
