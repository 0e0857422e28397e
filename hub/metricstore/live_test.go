package metricstore_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
)

// Live stream statistics land in live_stream with every field typed as
// documented; a non-finite rate does not cost the batch.
func TestInfluxWritesLiveStats(t *testing.T) {
	db := testenv.InfluxDB(t)
	w := startInflux(t, db, metricstore.InfluxConfig{FlushInterval: 10 * time.Millisecond})
	at := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
	w.WriteLive(metricstore.LiveStat{
		Camera: "cam-1", Agent: "agent-1", Site: "site-1", District: "Xicheng", At: at,
		State: "running", Viewers: 3, Joins: 2, TTFFMillis: 120.5, FPS: 25, BitrateKbps: 1850.5,
		PacketsLost: 4, LossPct: 0.5, Freezes: 1, BytesSent: 123456,
	})
	w.WriteLive(metricstore.LiveStat{Camera: "cam-2", Agent: "agent-1", At: at, State: "failed", Reason: "refused", FPS: math.NaN()})
	waitFor(t, "two points written", func() bool { return w.Status().Written == 2 })

	rows := db.Query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "live_stream" and r.camera == "cam-1")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`, db.Bucket()))
	want := map[string]any{
		"agent": "agent-1", "site": "site-1", "district": "Xicheng", "state": "running", "reason": nil,
		"viewers": int64(3), "joins": int64(2), "ttff_ms": 120.5, "fps": 25.0, "bitrate_kbps": 1850.5,
		"packets_lost": int64(4), "loss_pct": 0.5, "freezes": int64(1), "bytes_sent": int64(123456),
	}
	if len(rows) != 1 {
		t.Fatalf("cam-1: %d rows, want 1: %v", len(rows), rows)
	}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("cam-1 %s = %#v, want %#v", k, rows[0][k], v)
		}
	}
	if got := fluxCount(t, db, `r._measurement == "live_stream" and r.camera == "cam-2" and r._field == "reason"`); got != 1 {
		t.Errorf("cam-2's failure point: %d", got)
	}
}
