package fleet_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

const (
	benchAgents  = 1000
	benchDevices = 100 // per agent: 100,000 devices, one prefecture-level city
)

// benchFleet returns a registry of benchAgents online agents and, per
// agent, a health report of all its devices.
func benchFleet(b *testing.B) (*fleet.Registry, []wire.Message) {
	clk := &clock{now: t0}
	r := fleet.New(fleet.Options{Now: clk.Now, OnChange: func(fleet.Change) {}})
	h := &harness{t: b, clk: clk, r: r, seq: map[string]uint64{}}
	reports := make([]wire.Message, benchAgents)
	metrics := map[string]float64{wire.MetricFPS: 15, wire.MetricBitrateKbps: 1800, wire.MetricRTSPMillis: 8, wire.MetricTCPMillis: 1}
	for i := range benchAgents {
		id := fmt.Sprintf("agent-%04d", i)
		ids := make([]string, benchDevices)
		lines := make([]wire.DeviceHealth, benchDevices)
		for j := range ids {
			ids[j] = fmt.Sprintf("cam-%04d-%03d", i, j)
			lines[j] = wire.DeviceHealth{ID: ids[j], Status: wire.StatusOnline, Since: t0, Probed: t0, Metrics: metrics}
		}
		h.must(h.birth(id, 1))
		h.must(h.inventory(id, fmt.Sprintf("district-%02d", i%20), ids...))
		reports[i] = h.health(id, lines...)
	}
	return r, reports
}

// BenchmarkApplyHealth measures the registry's share of ingest: one health
// report of 100 devices per op, round-robin over 1,000 agents.
func BenchmarkApplyHealth(b *testing.B) {
	r, reports := benchFleet(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m := reports[n%len(reports)]
		m.Health.Seq++
		if _, err := r.Apply(m, false); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*benchDevices), "ns/sample")
}

// BenchmarkReads measures what the API calls often, at 100,000 devices.
func BenchmarkReads(b *testing.B) {
	r, reports := benchFleet(b)
	for _, m := range reports {
		m.Health.Seq++
		if _, err := r.Apply(m, false); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Devices", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(r.Devices()) != benchAgents*benchDevices {
				b.Fatal("wrong count")
			}
		}
	})
	b.Run("Summary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Summary()
		}
	})
	b.Run("Device", func(b *testing.B) {
		for b.Loop() {
			r.Device("cam-0500-050")
		}
	})
	b.Run("Sweep", func(b *testing.B) {
		for b.Loop() {
			r.Sweep(t0.Add(time.Second))
		}
	})
}

// BenchmarkQueryDevices measures the registry's indexed queries at
// 100,000 devices, and rebuilding the index after an inventory adds a
// device (which moves every rank after it).
func BenchmarkQueryDevices(b *testing.B) {
	r, reports := benchFleet(b)
	for _, m := range reports {
		m.Health.Seq++
		if _, err := r.Apply(m, false); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		q    fleet.DeviceQuery
	}{
		{"page100", fleet.DeviceQuery{Limit: 100}},
		{"district", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Districts: []string{"district-03"}}, Limit: 100}},
		{"district+status", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Districts: []string{"district-03"}, Statuses: []wire.Status{wire.StatusOnline}}, Limit: 100}},
		{"nomatch", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Districts: []string{"Nowhere"}}, Limit: 100}},
		{"offset50k", fleet.DeviceQuery{Offset: 50_000, Limit: 100}},
		{"search", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Search: "cam-0500-"}, Limit: 100}},
		{"search-all", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Search: "cam"}, Limit: 100}},
		{"search-district", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Search: "cam-0500-", Districts: []string{"district-03"}}, Limit: 100}},
		{"since", fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Since: t0.Add(time.Hour)}, Limit: 100}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.QueryDevices(tc.q)
			}
		})
	}
	clk := &clock{now: t0}
	h := &harness{t: b, clk: clk, r: r, seq: map[string]uint64{"agent-0500": 10}}
	ids := make([]string, benchDevices+1)
	for j := range ids {
		ids[j] = fmt.Sprintf("cam-%04d-%03d", 500, j)
	}
	b.Run("rebuild", func(b *testing.B) {
		n := 0
		for b.Loop() {
			// Device cam-0500-100 comes and goes.
			n++
			h.must(h.inventory("agent-0500", "district-00", ids[:benchDevices+n%2]...))
			r.QueryDevices(fleet.DeviceQuery{Limit: 1})
		}
	})
}
