package fleet

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"unique"

	"github.com/citywatch/citywatch/wire"
)

// A device's metrics are its last report's, nil and empty kept apart,
// however its agent's devices change their metrics, come and go: the slab
// they share is made again as it fills, and never holds much more than its
// devices' values.
func TestMetricSlab(t *testing.T) {
	t.Run("reports", func(t *testing.T) { testMetricSlab(t, 0) })
	// Sets of metric names are numbered in 16 bits; an agent whose devices
	// went through that many makes its slab again.
	t.Run("sets run out", func(t *testing.T) { testMetricSlab(t, maxMetricSets-40) })
}

func testMetricSlab(t *testing.T, sets int) {
	a := &agent{}
	for i := range sets {
		a.metricSets = append(a.metricSets, unique.Make(fmt.Sprintf("old-%d\x00", i)))
	}
	want := map[*device]map[string]float64{}
	next := 0
	add := func() {
		id := fmt.Sprintf("cam-%d", next)
		next++
		d := &device{text: id, nameAt: uint8(len(id)), serialAt: uint8(len(id)), attrs: &attrs{agent: a}}
		a.devices = append(a.devices, d)
		want[d] = nil
	}
	for range 10 {
		add()
	}
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"fps", "bitrate_kbps", "tcp_ms", "rtsp_ms", "battery_pct", "rssi_dbm"}
	metrics := func() map[string]float64 {
		switch rng.IntN(8) {
		case 0:
			return nil
		case 1:
			return map[string]float64{}
		case 2, 3, 4:
			return map[string]float64{"fps": rng.Float64(), "bitrate_kbps": rng.Float64()} // as last time, mostly
		}
		m := map[string]float64{}
		for _, n := range names[:1+rng.IntN(len(names))] {
			if rng.IntN(2) == 0 {
				m[n] = rng.Float64()
			}
		}
		return m
	}
	for round := range 3000 {
		switch rng.IntN(20) {
		case 0: // an inventory drops a device
			i := rng.IntN(len(a.devices))
			delete(want, a.devices[i])
			a.devices = append(a.devices[:i:i], a.devices[i+1:]...)
			a.compactMetrics(0)
		case 1:
			add()
		}
		var lines []wire.DeviceHealth
		var devs []*device
		for _, d := range a.devices {
			if rng.IntN(3) > 0 {
				m := metrics()
				lines = append(lines, wire.DeviceHealth{ID: d.id(), Metrics: m})
				devs = append(devs, d)
				want[d] = m
			}
		}
		a.takeMetrics(lines, devs)
		live := 0
		for _, d := range a.devices {
			got := d.metrics()
			if !maps.Equal(got, want[d]) || (got == nil) != (want[d] == nil) {
				t.Fatalf("round %d: %s has %v, want %v", round, d.id(), got, want[d])
			}
			live += len(got)
		}
		if len(a.metrics) > 3*live+64 {
			t.Fatalf("round %d: the slab holds %d values for %d", round, len(a.metrics), live)
		}
	}
	if sets > 0 && len(a.metricSets) >= sets {
		t.Errorf("the sets were never made again: %d", len(a.metricSets))
	}
}
