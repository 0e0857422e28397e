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

// influxOutage is what one InfluxDB outage under a reporting city cost.
type influxOutage struct {
	devices      int
	outage       time.Duration
	sent, landed int64 // samples at the broker, and in InfluxDB, over the whole run
	made         int64 // of those sent, the ones reported while InfluxDB was down
	// The spill when InfluxDB came back, and its limit, influx.spill_bytes.
	spillPoints, spillBytes, spillMax float64
	spilled                           float64       // points put in the spill over the run
	dropped, spillFull                float64       // points the hub dropped: for any reason, for want of spill
	failed, rejects                   float64       // points InfluxDB refused; messages the hub refused
	replayed                          float64       // points written from the spill
	drained                           time.Duration // from InfluxDB's return until the spill was empty
}

// pointBytes is what a point took in the spill.
func (r influxOutage) pointBytes() float64 { return r.spillBytes / max(r.spillPoints, 1) }

// spillNeed is the bytes of every point that went to the spill or was
// dropped for want of it, at the size a point took in it: more than the
// spill ever held at once, since it also frees segments as it replays.
// Points go on being spilled after InfluxDB is back, until the hub's
// probe notices, so this is more than the outage's own samples.
func (r influxOutage) spillNeed() float64 { return r.pointBytes() * (r.spilled + r.spillFull) }

// fits reports whether the spill had room for all it was asked to keep.
func (r influxOutage) fits() bool { return r.spillPoints > 0 && r.spillMax >= r.spillNeed() }

// check fails t if a sample was lost without the hub counting it, if the
// hub dropped points its spill had room for, or if a point or message was
// refused on the way.
func (r influxOutage) check(t testing.TB) {
	t.Helper()
	switch lost := r.sent - r.landed; {
	case lost < 0:
		t.Fatalf("InfluxDB holds %d samples of the run, more than the %d sent", r.landed, r.sent)
	case lost > 0 && r.dropped == 0:
		t.Fatalf("sent %d, landed %d: %d samples lost silently, the hub dropped none", r.sent, r.landed, lost)
	case float64(lost) > r.dropped:
		t.Fatalf("sent %d, landed %d: %d samples lost, only %v points counted as dropped", r.sent, r.landed, lost, r.dropped)
	case r.fits() && r.dropped != 0:
		t.Fatalf("the spill (%.1f MiB) had room for the %v points it was asked to keep (%.1f MiB), yet the hub dropped %v",
			r.spillMax/(1<<20), r.spilled+r.spillFull, r.spillNeed()/(1<<20), r.dropped)
	}
	if r.failed != 0 || r.rejects != 0 {
		t.Errorf("InfluxDB refused %v points, the hub refused %v messages; want none", r.failed, r.rejects)
	}
}

// runInfluxOutage stops InfluxDB for outage while city reports every
// second into a hub whose spill is spillBytes (0: the hub's default), and
// counts what the agents sent and what reached InfluxDB once it was back
// and the spill drained. While InfluxDB is down the hub must say so on
// /healthz; what was lost is for the caller to judge (influxOutage.check).
func runInfluxOutage(t testing.TB, city sim.CityOptions, outage time.Duration, spillBytes int64) influxOutage {
	t.Helper()
	influx := testenv.InfluxDB(t)
	s := outageStack(t, influx, city, func(c *config.Config) {
		c.Influx.Timeout = 2 * time.Second
		if spillBytes != 0 {
			c.Influx.SpillBytes = spillBytes
		}
	})
	res := influxOutage{devices: s.deviceCount(), outage: outage}
	perRound := int64(res.devices)
	tally := tallyHealth(t, s.broker.URL())
	t0 := time.Now()
	tally.window(t0, time.Time{})
	tally.await(t, 3*perRound) // three rounds written normally

	influx.Stop()
	down := time.Now()
	eventually(t, 60*time.Second, func() error {
		if n := s.api.metric(t, "citywatch_influx_spill_points"); n == 0 {
			return fmt.Errorf("nothing in the spill %v after InfluxDB stopped", time.Since(down).Round(time.Second))
		}
		var h healthz
		if err := s.api.fetch("healthz", &h); err != nil {
			return err
		}
		if c := h.Components["history"]; c.Status != "degraded" || !strings.Contains(c.Reason, "InfluxDB") {
			return fmt.Errorf("healthz during the outage: %+v", h)
		}
		return nil
	})
	time.Sleep(outage - time.Since(down))
	res.spillPoints = s.api.metric(t, "citywatch_influx_spill_points")
	res.spillBytes = s.api.metric(t, "citywatch_influx_spill_bytes")
	res.spillMax = s.api.metric(t, "citywatch_influx_spill_max_bytes")
	influx.Restart()
	back := time.Now()
	eventually(t, outage+2*time.Minute, func() error {
		if n := s.api.metric(t, "citywatch_influx_spill_points"); n != 0 {
			return fmt.Errorf("%v points still in the spill %v after InfluxDB returned", n, time.Since(back).Round(time.Second))
		}
		return nil
	})
	res.drained = time.Since(back)

	tally.await(t, tally.count()+3*perRound) // three more rounds after the spill drained
	t1 := time.Now()
	tally.window(time.Time{}, t1)
	res.sent = settle(tally.count)
	res.made = tally.between(down, back)
	res.dropped = s.api.metricSum(t, "citywatch_influx_points_dropped_total")
	res.spillFull = s.api.metricSum(t, `citywatch_influx_points_dropped_total{reason="spill_full"}`)
	res.spilled = s.api.metricSum(t, "citywatch_influx_points_spilled_total")
	count := func() int64 { return landed(t, influx, t0, t1) }
	if res.dropped == 0 {
		// Every sample should land: give the writers time to catch up
		// before calling a shortfall a loss.
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
			if res.landed = count(); res.landed >= res.sent || time.Now().After(deadline) {
				break
			}
		}
	} else {
		res.landed = settle(count)
	}
	res.failed = s.api.metricSum(t, "citywatch_influx_points_failed_total")
	res.rejects = s.api.metricSum(t, "citywatch_mqtt_rejects_total")
	res.replayed = s.api.metric(t, "citywatch_influx_points_replayed_total")
	return res
}

// InfluxDB is down for 25 s while 1,000 devices report every second: the
// hub keeps what it cannot write in its spill, says so on /healthz and
// /metrics, and once InfluxDB is back every sample the agents sent in the
// whole window is in InfluxDB — none lost, none failed, none dropped.
func TestInfluxOutageLosesNothing(t *testing.T) {
	r := runInfluxOutage(t, outageCity, 25*time.Second, 0)
	r.check(t)
	if r.dropped != 0 {
		t.Errorf("the hub dropped %v points", r.dropped)
	}
	if r.spillPoints < 5000 || r.spillBytes <= 0 {
		t.Errorf("%v points, %v bytes in the spill when InfluxDB came back", r.spillPoints, r.spillBytes)
	}
	if r.replayed < 5000 {
		t.Errorf("%v points replayed from the spill", r.replayed)
	}
	t.Logf("InfluxDB down %v: %d samples sent meanwhile; %d sent, %d landed; %v points (%.0f bytes each) spilled, drained %v after InfluxDB was back",
		r.outage, r.made, r.sent, r.landed, r.spillPoints, r.pointBytes(), r.drained.Round(time.Second))
}

// BenchmarkInfluxOutage stops InfluxDB for 5 minutes
// (CITYWATCH_INFLUX_OUTAGE_SECONDS) while 10,000 devices
// (CITYWATCH_OUTAGE_DEVICES) report every second — 10,000 samples/s —
// into a hub whose spill holds the outage and a minute more (InfluxDB's
// restart, the hub's probe noticing it) at twice the documented ~150
// bytes a sample (CITYWATCH_INFLUX_SPILL_MB to choose it, smaller to see
// the drops counted beyond it). It prints what was sent,
// landed, lost and dropped, the spill, and how long the spill took to
// drain once InfluxDB was back; it fails on a sample lost uncounted, or
// on any drop while the spill had room for the outage.
func BenchmarkInfluxOutage(b *testing.B) {
	city := outageBenchCity(b, 13)
	seconds := envInt(b, "CITYWATCH_INFLUX_OUTAGE_SECONDS", 300)
	spillMiB := envInt(b, "CITYWATCH_INFLUX_SPILL_MB", (city.Devices*(seconds+60)*2*150)>>20+1)
	r := runInfluxOutage(b, city, time.Duration(seconds)*time.Second, int64(spillMiB)<<20)
	fmt.Printf("\n== InfluxDB 1.8 down %v, %d devices reporting every 1s (%d samples/s), hub spill %d MiB ==\n",
		r.outage, r.devices, r.devices, spillMiB)
	fmt.Printf("sent %d (%d while InfluxDB was down), landed %d, lost %d; hub dropped %v points (%v spill_full); "+
		"spill at InfluxDB's return %v points, %.1f MiB (%.0f bytes a point); spilled %v points in all, ≈%.1f MiB with the spill_full ones (spill large enough: %t); "+
		"replayed %v; spill drained %v after InfluxDB returned\n",
		r.sent, r.made, r.landed, r.sent-r.landed, r.dropped, r.spillFull,
		r.spillPoints, r.spillBytes/(1<<20), r.pointBytes(), r.spilled, r.spillNeed()/(1<<20), r.fits(),
		r.replayed, r.drained.Round(time.Second))
	b.ReportMetric(float64(r.sent), "sent")
	b.ReportMetric(float64(r.landed), "landed")
	b.ReportMetric(float64(r.sent-r.landed), "lost")
	b.ReportMetric(r.dropped, "dropped")
	b.ReportMetric(r.spillBytes/(1<<20), "spill-MiB")
	b.ReportMetric(r.drained.Seconds(), "drain-s")
	r.check(b)
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
	sent := settle(tally.count)
	eventually(t, 120*time.Second, func() error {
		if n := s.api.metric(t, "citywatch_influx_spill_points"); n != 0 {
			return fmt.Errorf("%v points still in the spill", n)
		}
		return nil
	})
	got := settle(func() int64 { return landed(t, influx, t0, t1) })
	dropped := int64(s.api.metricSum(t, "citywatch_influx_points_dropped_total"))
	if got >= sent || sent-got > dropped {
		t.Errorf("sent %d, landed %d, dropped %d: want a loss, and every lost sample counted", sent, got, dropped)
	}
}
