package metricstore

import (
	"math"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"
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
	p := livePoint(&st)
	in.mu.RLock()
	defer in.mu.RUnlock()
	in.enqueue(p)
}

func livePoint(st *LiveStat) *write.Point {
	p := write.NewPointWithMeasurement(measurementLive).
		AddTag("agent", tagValue(st.Agent)).
		AddTag("camera", tagValue(st.Camera)).
		AddTag("district", tagValue(st.District)).
		AddTag("site", tagValue(st.Site)).
		AddField("state", st.State).
		AddField("viewers", int64(st.Viewers)).
		AddField("joins", int64(st.Joins)).
		AddField("ttff_ms", finiteOr0(st.TTFFMillis)).
		AddField("fps", finiteOr0(st.FPS)).
		AddField("bitrate_kbps", finiteOr0(st.BitrateKbps)).
		AddField("packets_lost", int64(st.PacketsLost)).
		AddField("loss_pct", finiteOr0(st.LossPct)).
		AddField("freezes", int64(st.Freezes)).
		AddField("bytes_sent", int64(st.BytesSent)).
		SetTime(st.At)
	if st.Reason != "" {
		p.AddField("reason", st.Reason)
	}
	return p
}

// finiteOr0 keeps NaN and Inf, which fail a whole batch's encoding, out of
// a point.
func finiteOr0(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
