package metricstore

import (
	"math"
	"time"
)

// measurementLive holds the live video relay's view of each stream:
//
//	live_stream    one point per relayed camera stream every stats interval
//	               (10 s) while it runs, and one when it ends
//	  tags    camera, agent, site, district
//	  fields  state, reason (strings; reason only in a point of a stream
//	          that ended), viewers, joins, packets_lost,
//	          freezes, bytes_sent (ints), fps, bitrate_kbps, loss_pct,
//	          ttff_ms (floats)
const measurementLive = "live_stream"

// LiveStat is one live video stream over the last stats interval.
type LiveStat struct {
	Camera, Agent, Site, District string

	At          time.Time
	State       string  // starting, running, lingering, stopped or failed
	Reason      string  // why it stopped or failed; empty while it runs
	Viewers     int     // watching at At
	Joins       int     // viewers who got their first packet in the interval
	TTFFMillis  float64 // the slowest of those joins' time to first frame; 0 without joins
	FPS         float64 // frames received from the agent per second
	BitrateKbps float64 // received from the agent
	PacketsLost uint64  // missing from the agent's sequence in the interval
	LossPct     float64 // PacketsLost against the packets expected
	Freezes     uint64  // times no frame came for over a second while running
	BytesSent   uint64  // to all viewers in the interval
}

// WriteLive records a stream's statistics in InfluxDB without blocking.
// Without InfluxDB they are not kept: GET /api/live/streams shows the
// current ones.
func (s *Store) WriteLive(st LiveStat) {
	if s.influx != nil {
		s.influx.WriteLive(st)
	}
}

// WriteLive enqueues one live_stream point, without blocking, like
// WriteSamples.
func (in *Influx) WriteLive(st LiveStat) {
	in.q.add(func(b []byte) ([]byte, int) {
		b, ok := appendLive(b, &st)
		if ok {
			return b, 1
		}
		return b, 0
	})
}

func appendLive(b []byte, st *LiveStat) ([]byte, bool) {
	start := len(b)
	l := newLine(b, measurementLive)
	l.tag("agent", st.Agent)
	l.tag("camera", st.Camera)
	l.tag("district", st.District)
	l.tag("site", st.Site)
	l.str("state", st.State)
	l.int("viewers", int64(st.Viewers))
	l.int("joins", int64(st.Joins))
	l.float("ttff_ms", finiteOr0(st.TTFFMillis))
	l.float("fps", finiteOr0(st.FPS))
	l.float("bitrate_kbps", finiteOr0(st.BitrateKbps))
	l.int("packets_lost", int64(st.PacketsLost))
	l.float("loss_pct", finiteOr0(st.LossPct))
	l.int("freezes", int64(st.Freezes))
	l.int("bytes_sent", int64(st.BytesSent))
	if st.Reason != "" {
		l.str("reason", st.Reason)
	}
	return l.end(start, st.At)
}

// finiteOr0 keeps NaN and Inf, which line protocol cannot carry, out of a
// point: the field reads 0 rather than being absent.
func finiteOr0(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
