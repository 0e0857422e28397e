package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
)

// Health samples and state transitions written by the hub come back from a
// real InfluxDB 1.8 through Flux.
func TestMetricsAndTransitionsReachInfluxDB(t *testing.T) {
	influx := testenv.InfluxDB(t)
	s := startStack(t, stackOptions{city: smallCity, influx: influx})
	s.waitAllOnline(t)
	agent, cam := firstCamera(t, s)

	countHealth := func() int {
		rows := influx.Query(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: -10m)
  |> filter(fn: (r) => r._measurement == "device_health" and r._field == "status_code" and r.device == %q)
  |> count()`, influx.Bucket(), cam))
		if len(rows) == 0 {
			return 0
		}
		return int(rows[0]["_value"].(int64))
	}
	eventually(t, 30*time.Second, func() error {
		if n := countHealth(); n < 3 {
			return fmt.Errorf("%d device_health points for %s", n, cam)
		}
		return nil
	})
	// The first reports may precede the camera's first (jittered) probe:
	// wait for one that carries the RTSP round trip.
	var rows []map[string]any
	eventually(t, 30*time.Second, func() error {
		rows = influx.Query(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: -10m)
  |> filter(fn: (r) => r._measurement == "device_health" and r.device == %q and r._field == "rtsp_ms")
  |> last()`, influx.Bucket(), cam))
		if len(rows) != 1 {
			return fmt.Errorf("last rtsp_ms of %s: %v", cam, rows)
		}
		return nil
	})
	if rows[0]["agent"] != agent || rows[0]["kind"] != "camera" {
		t.Fatalf("last rtsp_ms of %s: %v", cam, rows)
	}
	if v, ok := rows[0]["_value"].(float64); !ok || v <= 0 {
		t.Errorf("rtsp_ms = %v, want a positive round trip", rows[0]["_value"])
	}

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultAuth}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		rows := influx.Query(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: -10m)
  |> filter(fn: (r) => r._measurement == "device_state" and r.device == %q)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`, influx.Bucket(), cam))
		for _, r := range rows {
			if r["to"] == "offline" && r["reason"] == "auth_failed" && r["cause"] == "device" {
				return nil
			}
		}
		return fmt.Errorf("no online→offline auth_failed transition for %s in %v", cam, rows)
	})
	// The hub's own counters agree that nothing was lost.
	if failed := s.api.metric(t, "citywatch_influx_points_failed_total"); failed != 0 {
		t.Errorf("%v points failed", failed)
	}
	if written := s.api.metric(t, "citywatch_influx_points_written_total"); written == 0 {
		t.Error("no points counted as written")
	}
}

// InfluxDB down long enough to fill the hub's queue: the points lost are
// never silent — /healthz says the metrics store is behind and a system
// alarm is raised.
func TestMetricsDropsAreAnAlarm(t *testing.T) {
	influx := testenv.InfluxDB(t)
	s := startStack(t, stackOptions{city: smallCity, influx: influx, interval: time.Second,
		hubCfg: func(c *config.Config) { c.Influx.Queue, c.Influx.BatchSize = 20, 10 }})
	s.waitAllOnline(t)
	influx.Stop()
	awaitDroppingAlarm(t, s.api)
	var health struct {
		Status     string `json:"status"`
		Components map[string]struct {
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"components"`
	}
	s.api.getJSON(t, "healthz", &health)
	if h := health.Components["history"]; health.Status != "degraded" || h.Status != "degraded" || !strings.Contains(h.Reason, "InfluxDB") {
		t.Errorf("healthz %+v", health)
	}
}

// awaitDroppingAlarm waits until the hub raises its metrics_dropping
// system alarm.
func awaitDroppingAlarm(t *testing.T, api *apiClient) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		var alarms struct {
			Alarms []struct {
				Type   string            `json:"type"`
				Detail string            `json:"detail"`
				Args   map[string]string `json:"args"`
			} `json:"alarms"`
		}
		if err := api.fetch("api/alarms?source=system", &alarms); err != nil {
			return err
		}
		for _, a := range alarms.Alarms {
			// The console words the detail from its figures.
			if a.Type == "metrics_dropping" && strings.Contains(a.Detail, "points dropped") && a.Args["dropped"] != "" && a.Args["dropped"] != "0" {
				return nil
			}
		}
		return fmt.Errorf("no metrics_dropping alarm: %+v", alarms.Alarms)
	})
}
