package metricstore

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// A point dropped for a full queue is counted, dated and logged at once;
// more drops right after are counted, not logged again.
func TestDropsAreLoggedAtOnce(t *testing.T) {
	var logs bytes.Buffer
	in, err := NewInflux(InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "b", QueueLen: 2},
		Deps{Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: metrics.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		in.WriteSamples([]fleet.Sample{{Device: "cam-" + string(rune('a'+i)), Agent: "a1", Status: wire.StatusOnline, At: time.Now()}})
	}
	st := in.Status()
	if st.Dropped != 3 || st.QueueDepth != 2 || st.LastDropAt.IsZero() || time.Since(st.LastDropAt) > time.Minute {
		t.Errorf("status %+v", st)
	}
	if n := strings.Count(logs.String(), "InfluxDB falling behind"); n != 1 || !strings.Contains(logs.String(), "reason=queue_full dropped=1") {
		t.Errorf("%d log lines:\n%s", n, logs.String())
	}
}
