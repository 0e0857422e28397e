package app

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// BenchmarkRestartIntake measures what a restarted hub does with the
// city it hears from: 1,000 agents' retained births and inventories of
// 100 cameras each, then one health report per agent (the answer to the
// report command), applied from four goroutines (ingest's shards on two
// cores) with every fleet change fanned out as the running hub does
// (console, transition logs, coverage, alarms, work orders). One op is
// one whole city on a fresh hub; decoding and MQTT are not included.
func BenchmarkRestartIntake(b *testing.B) {
	const agents, devices, workers = 1000, 100, 4
	boot := time.Now().Add(-time.Hour).UnixMilli()
	type agentMsgs struct{ birth, inventory, health wire.Message }
	city := make([]agentMsgs, agents)
	for i := range city {
		id := fmt.Sprintf("agent-%04d", i)
		district := fmt.Sprintf("district-%d", i%8)
		site := wire.Site{ID: "site-" + id, Name: "Site " + id, District: district,
			Location: wire.Location{Lat: 30.5 + float64(i%40)*0.005, Lon: 114.2 + float64(i/40)*0.005}}
		hdr := func(seq uint64) wire.Header {
			return wire.Header{V: wire.Version, Agent: id, Boot: boot, Seq: seq, TS: time.Now()}
		}
		inv := &wire.Inventory{Header: hdr(2), Site: site}
		h := &wire.Health{Header: hdr(3), Interval: 10}
		for j := range devices {
			dev := fmt.Sprintf("cam-%04d-%03d", i, j)
			loc := wire.Location{Lat: site.Location.Lat + float64(j%10)*0.0002, Lon: site.Location.Lon + float64(j/10)*0.0002}
			inv.Devices = append(inv.Devices, wire.Device{ID: dev, Name: "Camera " + dev, Kind: wire.KindCamera, District: district,
				Location: loc, Criticality: 3, Vendor: "hikvision", Model: "DS-2CD", Firmware: "V5.7.3", Serial: "DS" + dev,
				Camera: &wire.CameraInfo{Heading: float64(j * 36 % 360), FOV: 90, Range: 60}})
			h.Devices = append(h.Devices, wire.DeviceHealth{ID: dev, Status: wire.StatusOnline, Since: time.Now().Add(-time.Hour),
				Probed: time.Now(), Metrics: map[string]float64{wire.MetricFPS: 15, wire.MetricBitrateKbps: 1800}})
		}
		city[i] = agentMsgs{
			birth:     wire.Message{Agent: id, Channel: wire.ChannelState, State: &wire.State{Header: hdr(1), State: wire.AgentOnline, Conn: 1, Interval: 10}},
			inventory: wire.Message{Agent: id, Channel: wire.ChannelInventory, Inventory: inv},
			health:    wire.Message{Agent: id, Channel: wire.ChannelHealth, Health: h},
		}
	}
	for b.Loop() {
		b.StopTimer()
		hub := run(b, testConfig(b))
		samples := samplesTo{hub.store, hub.alarms}
		b.StartTimer()
		// Each worker takes the agents of its shard, in the broker's order:
		// every retained message first, then the reports.
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for _, pick := range []func(*agentMsgs) (wire.Message, bool){
					func(a *agentMsgs) (wire.Message, bool) { return a.birth, true },
					func(a *agentMsgs) (wire.Message, bool) { return a.inventory, true },
					func(a *agentMsgs) (wire.Message, bool) { return a.health, false },
				} {
					for i := w; i < agents; i += workers {
						m, retained := pick(&city[i])
						s, err := hub.fleet.Apply(m, retained)
						if err != nil {
							b.Error(err)
							return
						}
						if len(s) > 0 {
							samples.WriteSamples(s)
						}
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if s := hub.fleet.Summary(); s.Devices != agents*devices || s.ByStatus[wire.StatusOnline] != agents*devices {
			b.Fatalf("%d devices, %v", s.Devices, s.ByStatus)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/city")
}
