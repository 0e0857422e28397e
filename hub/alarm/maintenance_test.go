package alarm

import (
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

func withWindows(h *harness, ws ...Window) {
	h.e.windows = ws
}

// Inside a maintenance window an alarm is recorded but notifies nobody;
// after the window the same fault is an ordinary alarm again.
func TestMaintenanceWindow(t *testing.T) {
	h := newHarness(t, instantRules)
	withWindows(h, Window{Name: "firmware upgrade", Devices: []string{"cam1"}, From: t0, To: t0.Add(time.Hour)})
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

func TestDailyWindowCrossesMidnight(t *testing.T) {
	w := Window{Name: "shop closed", Sites: []string{"s1"}, Daily: "22:00-06:00"}
	a := Alarm{Site: "s1"}
	for _, tc := range []struct {
		at    string
		in    bool
		until string
	}{
		{"2026-11-28T21:59:00Z", false, ""},
		{"2026-11-28T22:00:00Z", true, "2026-11-29T06:00:00Z"},
		{"2026-11-29T03:00:00Z", true, "2026-11-29T06:00:00Z"},
		{"2026-11-29T06:00:00Z", false, ""},
	} {
		now, _ := time.Parse(time.RFC3339, tc.at)
		until, in := w.covers(a, now)
		if in != tc.in || (in && until.Format(time.RFC3339) != tc.until) {
			t.Errorf("%s: in=%v until=%v, want %v %s", tc.at, in, until, tc.in, tc.until)
		}
	}
	if _, in := w.covers(Alarm{Site: "s2"}, time.Date(2026, 11, 28, 23, 0, 0, 0, time.UTC)); in {
		t.Error("covers another site")
	}
}

func TestWindowValidate(t *testing.T) {
	for _, w := range []Window{
		{Devices: []string{"c"}, Daily: "22:00-06:00"},                                     // no name
		{Name: "x", Daily: "22:00-06:00"},                                                  // covers nothing
		{Name: "x", Devices: []string{"c"}},                                                // no time
		{Name: "x", Devices: []string{"c"}, Daily: "25:00-06:00"},                          // bad clock
		{Name: "x", Devices: []string{"c"}, From: t0.Add(time.Hour), To: t0},               // backwards
		{Name: "x", Devices: []string{"c"}, Daily: "01:00-02:00", From: t0, To: t0.Add(1)}, // both
	} {
		if w.Validate() == nil {
			t.Errorf("accepted %+v", w)
		}
	}
	if err := (Window{Name: "x", Districts: []string{"d"}, Daily: "01:00-02:00"}).Validate(); err != nil {
		t.Error(err)
	}
}
