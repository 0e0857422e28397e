package metricstore

import (
	"testing"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkEncodeHealth compares what one health sample costs the ingest
// path to turn into line protocol: the hand-rolled encoder the writer
// uses, against the client library's point API that it replaced (a
// write.Point per sample, encoded by the library's line-protocol encoder)
// with the same tags and fields.
func BenchmarkEncodeHealth(b *testing.B) {
	s := fleet.Sample{Device: "cam-0042-07", Agent: "agent-0042", Site: "site-0042", District: "Xicheng", Kind: wire.KindCamera,
		Status: wire.StatusOnline, Metrics: map[string]float64{"tcp_ms": 1.2, "rtsp_ms": 8.5, "fps": 15, "bitrate_kbps": 1850},
		At: time.Now()}
	b.Run("lineproto", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 64<<10)
		for b.Loop() {
			buf, _ = appendHealth(buf[:0], &s)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("client-point", func(b *testing.B) {
		b.ReportAllocs()
		var line string
		for b.Loop() {
			p := write.NewPointWithMeasurement(measurementHealth).
				AddTag("agent", s.Agent).AddTag("device", s.Device).AddTag("district", s.District).AddTag("kind", string(s.Kind)).
				AddField(fieldStatusCode, int64(statusCode(s.Status))).SetTime(s.At)
			for k, v := range s.Metrics {
				p.AddField(k, v)
			}
			line = write.PointToLineProtocol(p, time.Millisecond)
		}
		b.SetBytes(int64(len(line)))
	})
}
