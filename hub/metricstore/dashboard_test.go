package metricstore_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// dashboard is the part of configs/grafana/citywatch-dashboard.json the
// test runs.
type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Query string `json:"query"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestGrafanaDashboardQueries runs every panel's query of the Grafana
// dashboard in the repository, as Grafana would (its time range and window
// as a Flux record v, the variables filled in), against a real InfluxDB
// holding points the hub's own writer wrote, and checks each answers what
// the points say.
func TestGrafanaDashboardQueries(t *testing.T) {
	raw, err := os.ReadFile("../../configs/grafana/citywatch-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	db := testenv.InfluxDB(t)
	w := startInflux(t, db, metricstore.InfluxConfig{BatchSize: 100, FlushInterval: 50 * time.Millisecond})

	// Two districts over the last hour: North's two cameras are online
	// three reports in four and offline the fourth (online rate 75 %,
	// intact 75 %); South's camera is degraded half the time (online rate
	// 100 %, intact 50 %).
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	// The panels aggregate over windowPeriod 1d, windows that start at
	// midnight UTC: samples on both sides of one would be two windows.
	if midnight := end.Truncate(24 * time.Hour); end.Add(-10 * time.Minute).Before(midnight) {
		end = midnight.Add(-time.Second)
	}
	var samples []fleet.Sample
	for i := range 8 {
		at := end.Add(-time.Duration(8-i) * time.Minute)
		for _, cam := range []string{"n-cam-1", "n-cam-2"} {
			st, m := wire.StatusOnline, map[string]float64{"fps": 25, "bitrate_kbps": 2000, "rtsp_ms": 40, "tcp_ms": 5}
			if i%4 == 3 {
				st, m = wire.StatusOffline, map[string]float64{"tcp_ms": 5}
			}
			samples = append(samples, fleet.Sample{Device: cam, Agent: "a-n", Site: "s-n", District: "North", Kind: wire.KindCamera,
				Status: st, Metrics: m, At: at})
		}
		st := wire.StatusOnline
		if i%2 == 1 {
			st = wire.StatusDegraded
		}
		samples = append(samples, fleet.Sample{Device: "s-cam-1", Agent: "a-s", Site: "s-s", District: "South", Kind: wire.KindCamera,
			Status: st, Metrics: map[string]float64{"fps": 10, "bitrate_kbps": 500, "rtsp_ms": 100, "tcp_ms": 20}, At: at})
	}
	w.WriteSamples(samples)
	waitFor(t, "the samples stored", func() bool {
		return fluxCount(t, db, `r._measurement == "device_health" and r._field == "status_code"`) == int64(len(samples))
	})

	vars := strings.NewReplacer(`${bucket}`, db.Bucket(), `${district:regex}`, ".*")
	record := fmt.Sprintf("v = {timeRangeStart: %s, timeRangeStop: %s, windowPeriod: 1d}\n",
		end.Add(-2*time.Hour).UTC().Format(time.RFC3339), end.Add(time.Minute).UTC().Format(time.RFC3339))
	byTable := func(rows []map[string]any, key string) map[string]float64 {
		out := map[string]float64{}
		for _, r := range rows {
			if v, ok := r["_value"].(float64); ok {
				out[fmt.Sprint(r[key])] = v
			}
		}
		return out
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

	if len(d.Panels) < 5 {
		t.Fatalf("the dashboard has %d panels", len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
			continue
		}
		rows := db.Query(t, record+vars.Replace(p.Targets[0].Query))
		switch {
		case strings.Contains(p.Title, "online rate"):
			got := byTable(rows, "district")
			if !near(got["North"], 75) || !near(got["South"], 100) {
				t.Errorf("%s: %v, want North 75, South 100", p.Title, got)
			}
		case strings.Contains(p.Title, "intact rate"):
			got := byTable(rows, "district")
			if !near(got["North"], 75) || !near(got["South"], 50) {
				t.Errorf("%s: %v, want North 75, South 50", p.Title, got)
			}
		case strings.Contains(p.Title, "frame rate"):
			got := byTable(rows, "device")
			if !near(got["n-cam-1"], 25) || !near(got["s-cam-1"], 10) {
				t.Errorf("%s: %v", p.Title, got)
			}
		case strings.Contains(p.Title, "bitrate"):
			got := byTable(rows, "device")
			if !near(got["n-cam-2"], 2000) || !near(got["s-cam-1"], 500) {
				t.Errorf("%s: %v", p.Title, got)
			}
		case strings.Contains(p.Title, "Probe latency"):
			rtsp := map[string]float64{}
			for _, r := range rows {
				if r["_field"] == "rtsp_ms" {
					rtsp[fmt.Sprint(r["district"])] = r["_value"].(float64)
				}
			}
			if !near(rtsp["North"], 40) || !near(rtsp["South"], 100) {
				t.Errorf("%s: rtsp %v", p.Title, rtsp)
			}
		default:
			t.Errorf("panel %q is not checked by this test: add its expectation", p.Title)
		}
	}
	// The district variable lists the districts.
	for _, v := range d.Templating.List {
		if v.Name != "district" {
			continue
		}
		rows := db.Query(t, vars.Replace(v.Query))
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprint(r["_value"]))
		}
		if strings.Join(got, ",") != "North,South" {
			t.Errorf("the district variable lists %v", got)
		}
	}
}
