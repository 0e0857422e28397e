package alarm

import (
	"testing"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestSetRules: after a reload, a new fault is judged by the new rules
// (here: critical, and a threshold the old rules did not have).
func TestSetRules(t *testing.T) {
	h := newHarness(t, instantRules)
	h.camera("cam1", wire.StatusOffline)
	if a := h.only(); a.Severity != Major {
		t.Fatalf("before the reload: %s", a.Severity)
	}
	rs, err := ParseRules([]byte(`
rules:
  - source: device_offline
    severity: critical
  - source: threshold
    metric: fps
    below: 5
    severity: minor
`))
	if err != nil {
		t.Fatal(err)
	}
	h.e.SetRules(rs)
	h.camera("cam2", wire.StatusOffline)
	as := h.all()
	if len(as) != 2 || as[0].Device != "cam2" || as[0].Severity != Critical {
		t.Fatalf("after the reload: %+v, want cam2 critical first", as)
	}
	h.e.ObserveSamples([]fleet.Sample{{Device: "cam3", Kind: wire.KindCamera, Metrics: map[string]float64{"fps": 2}}})
	if n := len(h.all()); n != 3 {
		t.Fatalf("%d alarms, want the new threshold rule to raise one for cam3", n)
	}
}
