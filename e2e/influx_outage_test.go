package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// outageCity is 1,000 devices reporting every second: 1,000 samples/s
// through the hub under the race detector, the same shape as a city
// (100 devices an agent), a tenth of a hub's design rate.
var outageCity = sim.CityOptions{Seed: 11, Districts: 4, Sites: 10, Devices: 1000}

// outageStack runs city with in-process cameras against a hub writing to
// influx, its configuration adjusted by hubCfg.
func outageStack(t testing.TB, influx *testenv.Influx, city sim.CityOptions, hubCfg func(*config.Config)) *stack {
	t.Helper()
	s := startStack(t, stackOptions{city: city, influx: influx, interval: time.Second, hubCfg: hubCfg,
		agents: func(o *sim.Options, _ *app.App) { o.InProcessCameras = true }})
	s.waitAllOnline(t)
	return s
}

// healthTally counts, at the broker, the distinct device samples (device,
// report time) the agents sent with a report time inside [t0, t1).
type healthTally struct {
	mu       sync.Mutex
	t0, t1   time.Time
	seen     map[string]struct{}
	byDevice map[string][]int64 // each device's report times counted, Unix ms
}

func tallyHealth(t testing.TB, brokerURL string) *healthTally {
	t.Helper()
	h := &healthTally{seen: map[string]struct{}{}, byDevice: map[string][]int64{}}
	// A persistent session: should the tally's connection drop under load,
	// the broker keeps its messages meanwhile.
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("outage-tally-" + strings.ReplaceAll(t.Name(), "/", "-")).
		SetOrderMatters(false).SetCleanSession(false).SetResumeSubs(true).SetKeepAlive(time.Minute).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { t.Logf("tally: connection lost (%v); reconnecting", err) }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("tally connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(wire.Prefix+"+/"+string(wire.ChannelHealth), 1, func(_ mqtt.Client, m mqtt.Message) {
		var r struct {
			TS      time.Time `json:"ts"`
			Devices []struct {
				ID string `json:"id"`
			} `json:"devices"`
		}
		if json.Unmarshal(m.Payload(), &r) != nil {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.t0.IsZero() || r.TS.Before(h.t0) || (!h.t1.IsZero() && !r.TS.Before(h.t1)) {
			return
		}
		ms := r.TS.UnixMilli()
		for _, d := range r.Devices {
			key := fmt.Sprintf("%s@%d", d.ID, ms)
			if _, dup := h.seen[key]; !dup {
				h.seen[key] = struct{}{}
				h.byDevice[d.ID] = append(h.byDevice[d.ID], ms)
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("tally subscribe: %v", tok.Error())
	}
	return h
}

// window starts counting at t0 (and stops at t1 when not zero). Report
// times are milliseconds, as InfluxDB stores them.
func (h *healthTally) window(t0, t1 time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !t0.IsZero() {
		h.t0 = t0.Truncate(time.Millisecond)
	}
	h.t1 = t1.Truncate(time.Millisecond)
}

// await waits until n samples were counted, the agents' pace being the
// clock of these tests.
func (h *healthTally) await(t testing.TB, n int64) {
	t.Helper()
	eventually(t, time.Duration(n/500+30)*time.Second, func() error {
		if c := h.count(); c < n {
			return fmt.Errorf("%d of %d samples reported", c, n)
		}
		return nil
	})
}

// between counts the samples with a report time in [from, to).
func (h *healthTally) between(from, to time.Time) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for _, times := range h.byDevice {
		for _, ms := range times {
			if ms >= from.UnixMilli() && ms < to.UnixMilli() {
				n++
			}
		}
	}
	return n
}

// widestGap returns the device with the longest time between two of its
// samples counted, and that time: about the agents' interval when none
// was lost.
func (h *healthTally) widestGap() (string, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var dev string
	var widest int64
	for id, times := range h.byDevice {
		sorted := slices.Sorted(slices.Values(times))
		for i := 1; i < len(sorted); i++ {
			if gap := sorted[i] - sorted[i-1]; gap > widest {
				dev, widest = id, gap
			}
		}
	}
	return dev, time.Duration(widest) * time.Millisecond
}

func (h *healthTally) count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.seen))
}

// landed counts the device_health points InfluxDB holds for [t0, t1).
func landed(t testing.TB, influx *testenv.Influx, t0, t1 time.Time) int64 {
	rows := influx.Query(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "device_health" and r._field == "status_code")
  |> group() |> count()`, influx.Bucket(),
		t0.Truncate(time.Millisecond).UTC().Format(time.RFC3339Nano), t1.Truncate(time.Millisecond).UTC().Format(time.RFC3339Nano)))
	if len(rows) == 0 {
		return 0
	}
	return rows[0]["_value"].(int64)
}

type healthz struct {
	Status     string `json:"status"`
	Components map[string]struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	} `json:"components"`
}

// InfluxDB is down for 25 s while 1,000 devices report every second: the
// hub keeps what it cannot write in its spill, says so on /healthz and
// /metrics, and once InfluxDB is back every sample the agents sent in the
// whole window is in InfluxDB — none lost, none failed, none dropped.
func TestInfluxOutageLosesNothing(t *testing.T) {
	influx := testenv.InfluxDB(t)
	s := outageStack(t, influx, outageCity, func(c *config.Config) { c.Influx.Timeout = 2 * time.Second })
	tally := tallyHealth(t, s.broker.URL())
	t0 := time.Now()
	tally.window(t0, time.Time{})
	tally.await(t, 3000) // three rounds written normally

	influx.Stop()
	atStop := tally.count()
	eventually(t, 60*time.Second, func() error {
		if n := s.api.metric(t, "citywatch_influx_spill_points"); n < 5000 {
			return fmt.Errorf("%v points in the spill", n)
		}
		return nil
	})
	var h healthz
	s.api.getJSON(t, "healthz", &h)
	if c := h.Components["history"]; c.Status != "degraded" || !strings.Contains(c.Reason, "InfluxDB") {
		t.Errorf("healthz during the outage: %+v", h)
	}
	if b := s.api.metric(t, "citywatch_influx_spill_bytes"); b <= 0 {
		t.Errorf("spill bytes %v during the outage", b)
	}
	// 25 rounds (25 s) of reports during the outage.
	tally.await(t, atStop+25_000)
	influx.Restart()
	tally.await(t, tally.count()+3000) // three more rounds after it is back
	t1 := time.Now()
	tally.window(time.Time{}, t1)

	sent := settleCount(tally.count)
	eventually(t, 120*time.Second, func() error {
		if got := landed(t, influx, t0, t1); got != sent {
			return fmt.Errorf("InfluxDB has %d of the %d samples sent (spill: %v points)", got, sent,
				s.api.metric(t, "citywatch_influx_spill_points"))
		}
		return nil
	})
	eventually(t, 60*time.Second, func() error {
		if n := s.api.metric(t, "citywatch_influx_spill_points"); n != 0 {
			return fmt.Errorf("%v points still in the spill", n)
		}
		return nil
	})
	for _, family := range []string{"citywatch_influx_points_dropped_total", "citywatch_influx_points_failed_total", "citywatch_mqtt_rejects_total"} {
		if n := s.api.metricSum(t, family); n != 0 {
			t.Errorf("%s = %v, want 0", family, n)
		}
	}
	if n := s.api.metric(t, "citywatch_influx_points_replayed_total"); n < 5000 {
		t.Errorf("%v points replayed from the spill", n)
	}
}

// The same outage with a spill far too small: the points that do not fit
// are dropped, counted as spill_full, raised as a metrics_dropping alarm
// and shown on /healthz; every sample missing from InfluxDB afterwards is
// one the hub counted as dropped.
func TestInfluxOutageBeyondTheSpillIsCounted(t *testing.T) {
	influx := testenv.InfluxDB(t)
	s := outageStack(t, influx, outageCity, func(c *config.Config) {
		c.Influx.Timeout = 2 * time.Second
		c.Influx.SpillBytes = 256 << 10 // ~2,000 samples
	})
	tally := tallyHealth(t, s.broker.URL())
	t0 := time.Now()
	tally.window(t0, time.Time{})
	influx.Stop()
	awaitDroppingAlarm(t, s.api)
	if n := s.api.metric(t, `citywatch_influx_points_dropped_total{reason="spill_full"}`); n == 0 {
		t.Error("no spill_full drops counted")
	}
	if max, b := s.api.metric(t, "citywatch_influx_spill_max_bytes"), s.api.metric(t, "citywatch_influx_spill_bytes"); b > max || b == 0 {
		t.Errorf("spill bytes %v of %v", b, max)
	}
	var h healthz
	s.api.getJSON(t, "healthz", &h)
	if c := h.Components["history"]; h.Status != "degraded" || c.Status != "degraded" {
		t.Errorf("healthz %+v", h)
	}

	influx.Restart()
	tally.await(t, tally.count()+2000) // two rounds after it is back
	t1 := time.Now()
	tally.window(time.Time{}, t1)
	sent := settleCount(tally.count)
	eventually(t, 120*time.Second, func() error {
		if n := s.api.metric(t, "citywatch_influx_spill_points"); n != 0 {
			return fmt.Errorf("%v points still in the spill", n)
		}
		return nil
	})
	got := settleCount(func() int64 { return landed(t, influx, t0, t1) })
	dropped := int64(s.api.metricSum(t, "citywatch_influx_points_dropped_total"))
	if got >= sent || sent-got > dropped {
		t.Errorf("sent %d, landed %d, dropped %d: want a loss, and every lost sample counted", sent, got, dropped)
	}
}

// settleCount reads a growing count until it stops growing (at most 30 s).
func settleCount(read func() int64) int64 {
	last := read()
	for range 30 {
		time.Sleep(time.Second)
		now := read()
		if now == last {
			return now
		}
		last = now
	}
	return last
}
