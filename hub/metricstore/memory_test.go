package metricstore_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/wire"
)

var t0 = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

func sample(device string, i int, status wire.Status, metrics map[string]float64) fleet.Sample {
	return fleet.Sample{
		Device: device, Agent: "agent-1", Site: "site-1", District: "Xicheng", Kind: wire.KindCamera,
		Status: status, Metrics: metrics, At: t0.Add(time.Duration(i) * time.Second),
	}
}

func TestMemorySamples(t *testing.T) {
	tests := []struct {
		name    string
		keep    int
		write   int
		since   time.Time
		wantAts []int // seconds after t0, oldest first
	}{
		{"fewer than capacity", 5, 3, time.Time{}, []int{0, 1, 2}},
		{"ring wraps, oldest go", 5, 12, time.Time{}, []int{7, 8, 9, 10, 11}},
		{"since filters", 5, 12, t0.Add(9 * time.Second), []int{9, 10, 11}},
		{"since after everything", 5, 3, t0.Add(time.Hour), []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metricstore.NewMemory(metricstore.MemoryOptions{Samples: tt.keep})
			for i := range tt.write {
				m.WriteSamples([]fleet.Sample{
					sample("cam-1", i, wire.StatusOnline, map[string]float64{"fps": float64(i)}),
					sample("cam-2", i, wire.StatusOffline, nil), // other devices do not interfere
				})
			}
			h, err := m.History("cam-1", tt.since)
			if err != nil {
				t.Fatal(err)
			}
			got := []int{}
			for _, p := range h.Samples {
				got = append(got, int(p.At.Sub(t0)/time.Second))
				if want := float64(got[len(got)-1]); p.Metrics["fps"] != want || p.Status != wire.StatusOnline {
					t.Errorf("sample at %v = %+v, want online fps=%v", p.At, p, want)
				}
			}
			if !reflect.DeepEqual(got, tt.wantAts) {
				t.Errorf("sample times = %v, want %v", got, tt.wantAts)
			}
			if h.Source != metricstore.SourceMemory || h.Device != "cam-1" {
				t.Errorf("history = %q from %q, want cam-1 from memory", h.Device, h.Source)
			}
		})
	}
}

// Metrics come and go between samples (an offline camera has no fps);
// each sample must come back with exactly the metrics it had.
func TestMemoryMetricColumns(t *testing.T) {
	m := metricstore.NewMemory(metricstore.MemoryOptions{Samples: 3})
	in := []map[string]float64{
		{"tcp_ms": 12.3},
		{"tcp_ms": 8, "fps": 25, "bitrate_kbps": 4096.5},
		nil,
		{"frame_age_s": 0.04, "fps": 24.97},
	}
	for i, metrics := range in {
		m.WriteSamples([]fleet.Sample{sample("cam-1", i, wire.StatusOnline, metrics)})
	}
	h, _ := m.History("cam-1", time.Time{})
	if len(h.Samples) != 3 {
		t.Fatalf("got %d samples, want 3", len(h.Samples))
	}
	for i, p := range h.Samples {
		if want := in[i+1]; !reflect.DeepEqual(p.Metrics, want) {
			t.Errorf("sample %d metrics = %v, want %v", i, p.Metrics, want)
		}
	}
}

func TestMemoryMetricColumnLimit(t *testing.T) {
	m := metricstore.NewMemory(metricstore.MemoryOptions{})
	metrics := map[string]float64{}
	for i := range wire.MaxMetrics + 5 {
		metrics[fmt.Sprintf("m%02d", i)] = float64(i)
	}
	m.WriteSamples([]fleet.Sample{sample("cam-1", 0, wire.StatusOnline, metrics)})
	h, _ := m.History("cam-1", time.Time{})
	if got := len(h.Samples[0].Metrics); got != wire.MaxMetrics {
		t.Errorf("kept %d metrics, want the first %d", got, wire.MaxMetrics)
	}
}

func TestMemoryTransitions(t *testing.T) {
	m := metricstore.NewMemory(metricstore.MemoryOptions{Transitions: 3})
	cam := fleet.Device{ID: "cam-1", Agent: "agent-1", Status: wire.StatusOffline}
	statuses := []wire.Status{wire.StatusOffline, wire.StatusOnline, wire.StatusDegraded, wire.StatusOnline}
	from := wire.StatusUnknown
	for i, to := range statuses {
		m.WriteChange(fleet.Change{
			Seq: uint64(i), At: t0.Add(time.Duration(i) * time.Minute), Kind: fleet.ChangeDevice,
			From: from, To: to, Reason: "refused", Detail: fmt.Sprint(i), Device: &cam,
		})
		from = to
	}
	// The agent is lost: cam-1 and cam-2 become unreachable in one change.
	lost := t0.Add(time.Hour)
	m.WriteChange(fleet.Change{
		At: lost, Kind: fleet.ChangeAgent, From: wire.StatusOnline, To: wire.StatusOffline, Reason: "will",
		Agent: &fleet.Agent{ID: "agent-1"},
		Affected: []fleet.Device{
			{ID: "cam-1", Agent: "agent-1", Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline, Reported: wire.StatusOnline},
			{ID: "cam-2", Agent: "agent-1", Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline, Reported: wire.StatusOffline},
		},
	})
	// Triggers are not status changes.
	m.WriteChange(fleet.Change{At: lost, Kind: fleet.ChangeTrigger, Device: &cam})

	h, _ := m.History("cam-1", time.Time{})
	want := []metricstore.Transition{
		{At: t0.Add(2 * time.Minute), From: wire.StatusOnline, To: wire.StatusDegraded, Reason: "refused", Detail: "2", Cause: metricstore.CauseDevice},
		{At: t0.Add(3 * time.Minute), From: wire.StatusDegraded, To: wire.StatusOnline, Reason: "refused", Detail: "3", Cause: metricstore.CauseDevice},
		{At: lost, From: wire.StatusOnline, To: wire.StatusUnreachable, Reason: "agent_offline", Cause: metricstore.CauseAgent},
	}
	if !reflect.DeepEqual(h.Transitions, want) {
		t.Errorf("cam-1 transitions:\n got %+v\nwant %+v", h.Transitions, want)
	}
	h, _ = m.History("cam-2", time.Time{})
	if len(h.Transitions) != 1 || h.Transitions[0].From != wire.StatusOffline || h.Transitions[0].To != wire.StatusUnreachable {
		t.Errorf("cam-2 transitions = %+v, want one offline → unreachable", h.Transitions)
	}
	h, _ = m.History("cam-1", lost)
	if len(h.Transitions) != 1 || h.Transitions[0].At != lost {
		t.Errorf("transitions since %v = %+v, want the last one", lost, h.Transitions)
	}
}

// TestMemoryFallback: standing in for InfluxDB, the window keeps no
// device first found online, and everything else as always.
func TestMemoryFallback(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		m := metricstore.NewMemory(metricstore.MemoryOptions{Fallback: fallback})
		found := fleet.Device{ID: "cam-1", Agent: "agent-1", Status: wire.StatusOnline}
		down := fleet.Device{ID: "cam-2", Agent: "agent-1", Status: wire.StatusOffline}
		m.WriteChange(fleet.Change{At: t0, Kind: fleet.ChangeDevice, From: wire.StatusUnknown, To: wire.StatusOnline, Device: &found})
		m.WriteChange(fleet.Change{At: t0, Kind: fleet.ChangeDevice, From: wire.StatusUnknown, To: wire.StatusOffline, Device: &down})
		m.WriteChange(fleet.Change{At: t0.Add(time.Minute), Kind: fleet.ChangeDevice, From: wire.StatusOnline, To: wire.StatusDegraded, Device: &found})
		h1, _ := m.History("cam-1", time.Time{})
		h2, _ := m.History("cam-2", time.Time{})
		want := 2
		if fallback {
			want = 1
		}
		if len(h1.Transitions) != want || h1.Transitions[len(h1.Transitions)-1].To != wire.StatusDegraded {
			t.Errorf("fallback %v: cam-1 transitions %+v, want %d ending degraded", fallback, h1.Transitions, want)
		}
		if len(h2.Transitions) != 1 || h2.Transitions[0].To != wire.StatusOffline {
			t.Errorf("fallback %v: cam-2 transitions %+v, want unknown → offline", fallback, h2.Transitions)
		}
	}
}

// An agent change lists each affected device's new status; the stored
// transition must also say where the device came from.
func TestMemoryAgentCascade(t *testing.T) {
	tests := []struct {
		name               string
		agentFrom, agentTo wire.Status
		device             fleet.Device
		wantFrom           wire.Status
	}{
		{"agent lost", wire.StatusOnline, wire.StatusOffline,
			fleet.Device{Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline, Reported: wire.StatusDegraded}, wire.StatusDegraded},
		{"agent lost before any report", wire.StatusOnline, wire.StatusOffline,
			fleet.Device{Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline}, wire.StatusUnknown},
		{"agent back", wire.StatusOffline, wire.StatusOnline,
			fleet.Device{Status: wire.StatusOnline, Reported: wire.StatusOnline}, wire.StatusUnreachable},
		{"agent first seen", wire.StatusUnknown, wire.StatusOnline,
			fleet.Device{Status: wire.StatusOffline, Reason: wire.ReasonRefused, Reported: wire.StatusOffline}, wire.StatusUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metricstore.NewMemory(metricstore.MemoryOptions{})
			tt.device.ID, tt.device.Agent = "cam-1", "agent-1"
			m.WriteChange(fleet.Change{At: t0, Kind: fleet.ChangeAgent, From: tt.agentFrom, To: tt.agentTo, Reason: "will",
				Agent: &fleet.Agent{ID: "agent-1"}, Affected: []fleet.Device{tt.device}})
			h, _ := m.History("cam-1", time.Time{})
			want := []metricstore.Transition{{At: t0, From: tt.wantFrom, To: tt.device.Status,
				Reason: cmp.Or(string(tt.device.Reason), "will"), Cause: metricstore.CauseAgent}}
			if !reflect.DeepEqual(h.Transitions, want) {
				t.Errorf("transitions = %+v, want %+v", h.Transitions, want)
			}
		})
	}
}

func TestMemoryForgetsRemovedDevices(t *testing.T) {
	m := metricstore.NewMemory(metricstore.MemoryOptions{})
	m.WriteSamples([]fleet.Sample{sample("cam-1", 0, wire.StatusOnline, nil), sample("cam-2", 0, wire.StatusOnline, nil)})
	m.WriteChange(fleet.Change{Kind: fleet.ChangeInventory, Agent: &fleet.Agent{ID: "agent-1"}, Removed: []string{"cam-1"}})
	if h, _ := m.History("cam-1", time.Time{}); len(h.Samples) != 0 {
		t.Errorf("removed device still has %d samples", len(h.Samples))
	}
	if h, _ := m.History("cam-2", time.Time{}); len(h.Samples) != 1 {
		t.Errorf("kept device has %d samples, want 1", len(h.Samples))
	}
}

func TestMemoryUnknownDevice(t *testing.T) {
	h, err := metricstore.NewMemory(metricstore.MemoryOptions{}).History("nope", time.Time{})
	if err != nil || len(h.Samples) != 0 || len(h.Transitions) != 0 || h.Samples == nil || h.Transitions == nil {
		t.Errorf("History(unknown) = %+v, %v; want empty, non-nil slices", h, err)
	}
}

// BenchmarkMemoryWriteSamples writes full windows for 10,000 devices and
// reports the heap they take, to size the window for a city.
func BenchmarkMemoryWriteSamples(b *testing.B) {
	const devices = 10_000
	batch := make([]fleet.Sample, devices)
	for i := range batch {
		batch[i] = sample(fmt.Sprintf("cam-%05d", i), 0, wire.StatusOnline, map[string]float64{
			"tcp_ms": 3, "rtsp_ms": 12, "fps": 25, "bitrate_kbps": 4000, "frame_age_s": 0.04, "probe_failures": 0,
		})
	}
	before := heapInUse()
	m := metricstore.NewMemory(metricstore.MemoryOptions{})
	b.ResetTimer()
	for i := range b.N {
		for j := range batch {
			batch[j].At = t0.Add(time.Duration(i) * time.Second)
		}
		m.WriteSamples(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*devices)/b.Elapsed().Seconds(), "samples/s")
	if b.N >= 60 { // the window is full
		b.ReportMetric(float64(heapInUse()-before)/devices, "heap-B/device")
	}
	runtime.KeepAlive(m)
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A value finite as float64 but beyond float32 must not become +Inf, which
// would make the device's history unencodable as JSON.
func TestMemoryHugeValueStaysEncodable(t *testing.T) {
	m := metricstore.NewMemory(metricstore.MemoryOptions{Samples: 4})
	m.WriteSamples([]fleet.Sample{sample("cam-1", 0, wire.StatusOnline, map[string]float64{"fps": 1e300, "tcp_ms": 2})})
	h, err := m.History("cam-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(h); err != nil {
		t.Fatalf("history not encodable: %v", err)
	}
	if len(h.Samples) != 1 || h.Samples[0].Metrics["tcp_ms"] != 2 {
		t.Fatalf("samples %+v", h.Samples)
	}
	if _, ok := h.Samples[0].Metrics["fps"]; ok {
		t.Errorf("out-of-range fps kept as %v", h.Samples[0].Metrics["fps"])
	}
}
