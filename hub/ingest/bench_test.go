package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkProcessHealth measures the hub's CPU per device sample from a
// queued MQTT payload to the sample writer: wire.Decode plus the real
// fleet.Registry, 1,000 agents × 100 devices, one health report per op.
// (The MQTT client's share is not included.) The target is 10,000
// samples/s on at most one core, i.e. under 100 µs/sample.
func BenchmarkProcessHealth(b *testing.B) {
	const agents, devices = 1000, 100
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	reg := fleet.New(fleet.Options{Now: func() time.Time { return now }})
	in, err := New(Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "bench"}, Deps{
		Fleet: reg, Samples: &fakeSamples{write: func([]fleet.Sample) {}}, Metrics: metrics.NewRegistry(),
		Now: func() time.Time { return now },
	})
	if err != nil {
		b.Fatal(err)
	}

	// Each agent's report is kept as the JSON around its seq, so every op
	// can send a fresh seq without re-encoding.
	type report struct {
		topic         string
		before, after []byte
		seq           uint64
	}
	reports := make([]report, agents)
	metricsLine := map[string]float64{wire.MetricFPS: 15, wire.MetricBitrateKbps: 1850, wire.MetricRTSPMillis: 8.5, wire.MetricTCPMillis: 1.2}
	for i := range reports {
		id := fmt.Sprintf("agent-%04d", i)
		hdr := wire.Header{V: wire.Version, Agent: id, Boot: testBoot, Seq: 1, TS: now}
		inv := &wire.Inventory{Header: hdr, Site: wire.Site{ID: "site-" + id, District: "d", Location: wire.Location{Lat: 30, Lon: 114}}}
		h := &wire.Health{Header: hdr, Interval: 10}
		for j := range devices {
			dev := fmt.Sprintf("cam-%04d-%03d", i, j)
			inv.Devices = append(inv.Devices, wire.Device{ID: dev, Kind: wire.KindCamera, District: "d", Location: wire.Location{Lat: 30, Lon: 114}, Criticality: 3})
			h.Devices = append(h.Devices, wire.DeviceHealth{ID: dev, Status: wire.StatusOnline, Since: now.Add(-time.Hour), Probed: now, Metrics: metricsLine})
		}
		if _, err := reg.Apply(wire.Message{Agent: id, Channel: wire.ChannelInventory, Inventory: inv}, false); err != nil {
			b.Fatal(err)
		}
		h.Seq = 2
		js, err := json.Marshal(h)
		if err != nil {
			b.Fatal(err)
		}
		before, after, ok := bytes.Cut(js, []byte(`"seq":2`))
		if !ok {
			b.Fatal("seq not found")
		}
		reports[i] = report{topic: wire.Topic(id, wire.ChannelHealth), before: append(before, `"seq":`...), after: after, seq: 1}
	}

	b.ReportAllocs()
	var buf []byte
	n := 0
	for b.Loop() {
		r := &reports[n%agents]
		r.seq++
		buf = append(strconv.AppendUint(append(buf[:0], r.before...), r.seq, 10), r.after...)
		in.process(delivery{topic: r.topic, payload: buf})
		n++
	}
	if got := totalRejects(in); got != 0 {
		b.Fatalf("%d rejects", got)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*devices), "ns/sample")
}
