package alarm

import (
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

func withWindows(h *harness, ws ...maintenance.Window) {
	h.e.windows = maintenance.MustSchedule(ws...)
}

// Inside a maintenance window an alarm is recorded but notifies nobody;
// after the window the same fault is an ordinary alarm again.
func TestMaintenanceWindow(t *testing.T) {
	h := newHarness(t, instantRules)
	withWindows(h, maintenance.Window{Name: "firmware upgrade", Devices: []string{"cam1"}, From: t0, To: t0.Add(time.Hour)})
	h.camera("cam1", wire.StatusOffline)
	a := h.only()
	if len(h.events) != 0 {
		t.Fatalf("raised inside the window: %v", h.kinds())
	}
	if !a.ShelvedUntil.Equal(t0.Add(time.Hour)) {
		t.Errorf("shelved until %v, want the window's end", a.ShelvedUntil)
	}
	_, trail, _ := h.e.Alarm(a.ID)
	if len(trail) == 0 || !strings.Contains(trail[0].Note, "firmware upgrade") {
		t.Errorf("the trail does not say why: %+v", trail)
	}
	// Another device, not covered, raises as usual.
	h.camera("cam2", wire.StatusOffline)
	if got := h.kinds(); len(got) != 1 || got[0] != EventRaise {
		t.Errorf("uncovered camera: events %v", got)
	}
}
