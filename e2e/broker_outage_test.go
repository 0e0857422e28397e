package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// brokerOutage is what one broker outage under a reporting city cost.
type brokerOutage struct {
	devices        int
	outage         time.Duration
	made           int64         // samples the agents made while the broker was down
	sent, landed   int64         // samples at the broker, and in InfluxDB, over the whole run
	drained        time.Duration // from the broker's return until the last spooled sample reached it
	spooled        uint64        // reports the agents kept on disk
	dropped        uint64        // health reports and events the agents dropped
	hubRejects     float64       // messages the hub refused
	metricsDropped float64       // points the hub's metric store dropped
}

// runBrokerOutage stops the broker for outage while city reports every
// second into a hub writing to InfluxDB, fails one camera in the middle of
// it, and checks that nothing was lost: every device reported through the
// outage without a gap (the agents kept their reports and sent them once
// the broker was back), every sample at the broker is in InfluxDB, nothing
// was dropped or refused on the way, and the camera's failure is in the
// hub's history at the time it happened, flagged late.
func runBrokerOutage(t testing.TB, city sim.CityOptions, outage time.Duration) brokerOutage {
	t.Helper()
	influx := testenv.InfluxDB(t)
	s := outageStack(t, influx, city, nil)
	res := brokerOutage{devices: s.deviceCount(), outage: outage}
	perRound := int64(res.devices)
	tally := tallyHealth(t, s.broker.URL())
	t0 := time.Now()
	tally.window(t0, time.Time{})
	tally.await(t, 3*perRound)

	cam := s.sim.City().Agents[0].Cameras[0].ID
	s.broker.Stop()
	down := time.Now()
	time.Sleep(outage / 3)
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	failed := time.Now()
	time.Sleep(outage - time.Since(down))
	s.broker.Restart()
	back := time.Now()

	// The outage's reports arrive at the agents' resend pace; the run ends
	// three rounds after the last of them.
	res.made = perRound * int64(outage/time.Second)
	eventually(t, outage+2*time.Minute, func() error {
		if n := tally.between(down, back); n < res.made*9/10 {
			return fmt.Errorf("%d of about %d samples of the outage at the broker", n, res.made)
		}
		return nil
	})
	settle(func() int64 { return tally.between(down, back) })
	res.drained = time.Since(back)
	tally.await(t, tally.count()+3*perRound)
	t1 := time.Now()
	tally.window(time.Time{}, t1)
	res.sent = settle(tally.count)

	if dev, gap := tally.widestGap(); gap >= 2*time.Second {
		t.Errorf("%s has no sample for %v: reports were lost", dev, gap)
	}
	eventually(t, 2*time.Minute, func() error {
		if res.landed = landed(t, influx, t0, t1); res.landed != res.sent {
			return fmt.Errorf("InfluxDB has %d of the %d samples sent", res.landed, res.sent)
		}
		return nil
	})
	for id, st := range s.sim.AgentStats() {
		res.spooled += st.Spooled
		res.dropped += st.DroppedHealth + st.DroppedEvents
		if st.SpoolQueued != 0 {
			t.Errorf("agent %s still has %d reports spooled", id, st.SpoolQueued)
		}
	}
	if res.spooled == 0 || res.dropped != 0 {
		t.Errorf("agents spooled %d reports and dropped %d; want some spooled, none dropped", res.spooled, res.dropped)
	}
	// QoS 1 is at least once: a publish whose acknowledgement the broker
	// took down with it is sent again, and the hub refuses the second copy
	// of a seq it has as a replay. Those are the only refusals allowed;
	// that none was a lost message is checked above (every sample landed,
	// no gaps).
	res.hubRejects = s.api.metricSum(t, "citywatch_mqtt_rejects_total")
	replays := s.api.metric(t, `citywatch_mqtt_rejects_total{reason="`+string(wire.RejectReplay)+`"}`)
	res.metricsDropped = s.api.metricSum(t, "citywatch_influx_points_dropped_total")
	if res.hubRejects != replays || res.metricsDropped != 0 {
		t.Errorf("hub refused %v messages (%v of them duplicates refused as replays) and dropped %v points; want no refusal but duplicates, no drop",
			res.hubRejects, replays, res.metricsDropped)
	}
	if replays > 0 {
		t.Logf("hub refused %v duplicate deliveries as replays (QoS 1 after the broker restart)", replays)
	}

	var d struct {
		Device  fleet.Device
		History metricstore.History
	}
	eventually(t, 30*time.Second, func() error {
		if err := s.api.fetch("api/devices/"+url.PathEscape(cam)+"?since=1h", &d); err != nil {
			return err
		}
		if d.Device.Status != wire.StatusOffline {
			return fmt.Errorf("%s is %s, want offline", cam, d.Device.Status)
		}
		for _, tr := range d.History.Transitions {
			if tr.Cause == fleet.CauseLate && tr.To == wire.StatusOffline {
				if tr.At.Before(failed.Add(-2*time.Second)) || !tr.At.Before(back) {
					return fmt.Errorf("the late failure is at %s, want between %s and %s", tr.At, failed, back)
				}
				return nil
			}
		}
		return fmt.Errorf("no late failure in %+v", d.History.Transitions)
	})
	return res
}

// The broker is down for 20 s while 1,000 devices report every second:
// the agents keep their reports and events on disk and send them when it
// is back, and nothing is lost between them and InfluxDB.
func TestBrokerRestartLosesNothing(t *testing.T) {
	r := runBrokerOutage(t, outageCity, 20*time.Second)
	t.Logf("broker down %v: %d samples made meanwhile; %d sent, %d landed; spool drained %v after the broker was back",
		r.outage, r.made, r.sent, r.landed, r.drained.Round(time.Second))
}

// BenchmarkBrokerRestart stops the broker for 60 s (CITYWATCH_OUTAGE_SECONDS)
// while 10,000 devices (CITYWATCH_OUTAGE_DEVICES) report every second —
// 10,000 samples/s — and prints what was made, sent, landed and dropped,
// and how long the agents took to send their backlog.
func BenchmarkBrokerRestart(b *testing.B) {
	city := outageBenchCity(b, 12)
	outage := time.Duration(envInt(b, "CITYWATCH_OUTAGE_SECONDS", 60)) * time.Second
	r := runBrokerOutage(b, city, outage)
	fmt.Printf("\n== broker (Mosquitto) down %v, %d devices reporting every 1s (%d samples/s), hub → InfluxDB 1.8 ==\n",
		r.outage, r.devices, r.devices)
	fmt.Printf("made during the outage ≈%d; sent %d, landed %d (lost %d); agents spooled %d reports, dropped %d; hub refused %v, metric store dropped %v; backlog sent %v after the broker returned\n",
		r.made, r.sent, r.landed, r.sent-r.landed, r.spooled, r.dropped, r.hubRejects, r.metricsDropped, r.drained.Round(time.Second))
	b.ReportMetric(float64(r.sent-r.landed), "lost")
	b.ReportMetric(r.drained.Seconds(), "drain-s")
}

// outageBenchCity is the city of an outage benchmark:
// CITYWATCH_OUTAGE_DEVICES (10,000) devices, 100 to an agent, each
// reporting every second. It raises the open file limit for them.
func outageBenchCity(b *testing.B, seed uint64) sim.CityOptions {
	devices := envInt(b, "CITYWATCH_OUTAGE_DEVICES", 10_000)
	raiseNoFileLimit(b)
	return sim.CityOptions{Seed: seed, Districts: 8, Sites: devices / 100, Devices: devices}
}
