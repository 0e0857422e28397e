package alarm

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

const thresholdRules = `
rules:
  - source: threshold
    metric: fps
    below: 5
    device_kind: camera
    severity: minor
    hold: 60s
    clear_hold: 60s
  - source: threshold
    metric: temp_c
    above: 80
    severity: major
    hold: 30s
    clear_hold: 2m
`

func (h *harness) sample(dev string, kind wire.DeviceKind, metrics map[string]float64) {
	h.e.ObserveSamples([]fleet.Sample{{Device: dev, Agent: "ag1", Site: "s1", Kind: kind, Metrics: metrics, At: h.now}})
}

func TestThresholdBelow(t *testing.T) {
	h := newHarness(t, thresholdRules)
	h.camera("cam1", wire.StatusOnline) // learns its criticality (3)

	// Past the threshold for less than hold: nothing.
	h.sample("cam1", wire.KindCamera, map[string]float64{"fps": 3.2})
	h.advance(50 * time.Second)
	h.sample("cam1", wire.KindCamera, map[string]float64{"fps": 12})
	h.advance(2 * time.Minute)
	if as := h.all(); len(as) != 0 {
		t.Fatalf("short dip raised %+v", as)
	}

	// Longer than hold: one alarm, however many samples.
	h.sample("cam1", wire.KindCamera, map[string]float64{"fps": 3.2})
	for range 7 {
		h.advance(10 * time.Second)
		h.sample("cam1", wire.KindCamera, map[string]float64{"fps": 3.2, "bitrate_kbps": 100})
	}
	a := h.only()
	if a.Key != "threshold:device/cam1/fps" || a.Source != SourceThreshold || a.Type != "fps" ||
		a.Detail != "fps 3.2 below 5" || a.Severity != Minor || a.Criticality != 3 || a.Site != "s1" || a.Count != 1 {
		t.Fatalf("alarm = %+v", a)
	}

	// A sample without the metric changes nothing.
	h.sample("cam1", wire.KindCamera, map[string]float64{"bitrate_kbps": 900})
	h.advance(5 * time.Minute)
	if a := h.only(); a.State != ActiveUnack {
		t.Fatalf("state = %s after a sample without fps", a.State)
	}

	// Back within: clears after clear_hold, not before.
	h.sample("cam1", wire.KindCamera, map[string]float64{"fps": 25})
	h.advance(50 * time.Second)
	if a := h.only(); a.State != ActiveUnack {
		t.Fatalf("cleared before clear_hold: %s", a.State)
	}
	h.advance(15 * time.Second)
	if a := h.only(); a.State != ClearedUnack {
		t.Fatalf("state = %s, want cleared", a.State)
	}
}

func TestThresholdAboveAndKinds(t *testing.T) {
	h := newHarness(t, thresholdRules)
	// The fps rule is for cameras only; temp_c is for any kind.
	h.sample("s1", wire.KindSensor, map[string]float64{"fps": 1, "temp_c": 85.456})
	h.advance(31 * time.Second)
	a := h.only()
	if w := map[string]string{"metric": "temp_c", "value": "85.46", "limit": "80", "dir": "above"}; !reflect.DeepEqual(a.Args, w) {
		t.Errorf("args %v, want %v", a.Args, w)
	}
	if a.Key != "threshold:device/s1/temp_c" || a.Detail != "temp_c 85.46 above 80" || a.Severity != Major || a.Criticality != 1 {
		t.Fatalf("alarm = %+v", a)
	}
	// At the limit is not past it.
	h.sample("s1", wire.KindSensor, map[string]float64{"temp_c": 80})
	h.advance(2 * time.Minute)
	if a := h.only(); a.State != ClearedUnack {
		t.Fatalf("state = %s, want cleared", a.State)
	}
	if got := h.kinds(); len(got) != 2 || got[0] != EventRaise || got[1] != EventClear {
		t.Fatalf("events = %v", got)
	}
}

func TestThresholdNoRules(t *testing.T) {
	h := newHarness(t, instantRules)
	h.sample("cam1", wire.KindCamera, map[string]float64{"fps": 0})
	h.advance(time.Hour)
	if as := h.all(); len(as) != 0 {
		t.Fatalf("no threshold rule, yet %+v", as)
	}
}

func TestThresholdRuleErrors(t *testing.T) {
	_, err := ParseRules([]byte(`
rules:
  - source: threshold
    severity: minor
    below: 5
  - source: threshold
    metric: fps
    severity: minor
  - source: threshold
    metric: fps
    severity: minor
    below: 1
    above: 2
  - source: threshold
    metric: fps
    severity: minor
    above: .nan
  - source: threshold
    metric: "bad metric"
    severity: minor
    above: 1
  - source: device_offline
    severity: minor
    metric: fps
  - source: threshold
    metric: temp
    sensor_kind: smoke
    severity: minor
    above: 1
  - source: threshold
    metric: rtt
    severity: minor
    above: 1
  - source: threshold
    metric: rtt
    severity: major
    below: 100
  - source: threshold
    metric: fps
    device_kind: camera
    severity: minor
    above: .inf
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"rule 1: metric is required for threshold rules",
		"rule 2: threshold rules need exactly one of below and above",
		"rule 3: threshold rules need exactly one of below and above",
		"rule 4: threshold NaN is not a finite number",
		"rule 5: metric:",
		"rule 6: metric, below and above are for threshold rules only",
		"rule 7: sensor_kind is not supported for threshold rules",
		"rule 9: same metric and device_kind as threshold rule 8",
		"rule 10: threshold +Inf is not a finite number",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	// Rules of different metrics or device kinds are not duplicates.
	if _, err := ParseRules([]byte(thresholdRules + `  - source: threshold
    metric: fps
    below: 2
    severity: warning
`)); err != nil {
		t.Fatalf("valid rules: %v", err)
	}
}

// BenchmarkObserveSamples feeds 100-device health reports, all within their
// thresholds but one in ten past it (as a bad day might look).
func BenchmarkObserveSamples(b *testing.B) {
	rs, err := ParseRules([]byte(thresholdRules))
	if err != nil {
		b.Fatal(err)
	}
	now := t0
	e := New(rs, Options{Now: func() time.Time { return now }})
	report := make([]fleet.Sample, 100)
	for i := range report {
		fps := 25.0
		if i%10 == 0 {
			fps = 2
		}
		report[i] = fleet.Sample{
			Device: fmt.Sprintf("cam-%04d", i), Agent: "ag1", Site: "s1", Kind: wire.KindCamera,
			Metrics: map[string]float64{
				wire.MetricFPS: fps, wire.MetricBitrateKbps: 2048, wire.MetricTCPMillis: 3,
				wire.MetricRTSPMillis: 20, wire.MetricFrameAge: 0.1, wire.MetricProbeFailures: 0,
			},
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.ObserveSamples(report)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(report)), "ns/sample")
}

// TestDefaultClockDrift: by the default rules, a camera whose clock is off
// by more than 5 s raises a warning; one within 5 s nothing.
func TestDefaultClockDrift(t *testing.T) {
	h := newHarness(t, string(DefaultYAML()))
	h.camera("cam1", wire.StatusOnline)
	h.camera("cam2", wire.StatusOnline)
	h.sample("cam1", wire.KindCamera, map[string]float64{wire.MetricClockDrift: 4.5})
	h.sample("cam2", wire.KindCamera, map[string]float64{wire.MetricClockDrift: 31})
	h.advance(time.Second)
	a := h.only()
	if a.Device != "cam2" || a.Type != wire.MetricClockDrift || a.Severity != Warning || a.Detail != "clock_drift_s 31 above 5" {
		t.Fatalf("alarm = %+v", a)
	}
}
