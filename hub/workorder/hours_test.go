package workorder

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/wire"
)

// Business hours Monday to Friday 08:30–17:30 in Shanghai, by hand:
// Friday 4 December 2026 16:30 + 3 h of work is 1 h on Friday and 2 h on
// Monday: 10:30 on the 7th; Saturday 10:00 + 1 h is Monday 09:30; Friday
// 16:30 to Monday 10:30 holds 3 h of work.
func TestBusinessHours(t *testing.T) {
	h, err := ParseHours("mon,tue,wed,thu,fri", "08:30-17:30", "Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	sh := h.Loc
	fri := time.Date(2026, 12, 4, 16, 30, 0, 0, sh)
	if got, want := h.add(fri, 3*time.Hour), time.Date(2026, 12, 7, 10, 30, 0, 0, sh); !got.Equal(want) {
		t.Errorf("Friday 16:30 + 3 h = %v, want %v", got, want)
	}
	if got, want := h.add(time.Date(2026, 12, 5, 10, 0, 0, 0, sh), time.Hour), time.Date(2026, 12, 7, 9, 30, 0, 0, sh); !got.Equal(want) {
		t.Errorf("Saturday 10:00 + 1 h = %v, want %v", got, want)
	}
	if got := h.between(fri, time.Date(2026, 12, 7, 10, 30, 0, 0, sh)); got != 3*time.Hour {
		t.Errorf("Friday 16:30 to Monday 10:30 = %v", got)
	}
	var none *Hours
	if got := none.add(fri, time.Hour); !got.Equal(fri.Add(time.Hour)) {
		t.Errorf("without hours: %v", got)
	}
	for _, bad := range [][3]string{{"mon,funday", "08:30-17:30", "UTC"}, {"mon", "17:30-08:30", "UTC"}, {"mon", "8-17", "UTC"}, {"mon", "08:30-17:30", "Mars/Olympus"}} {
		if _, err := ParseHours(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("ParseHours%q accepted", bad)
		}
	}
}

// With business hours, a P1 detected Friday 16:30 must be answered by
// 17:00 and fixed by Monday 11:30; a hold from Friday 17:00 to Monday
// 09:00 holds 1 h of work, so the fix deadline moves to 12:30.
func TestDeadlinesInBusinessHours(t *testing.T) {
	h, err := ParseHours("mon,tue,wed,thu,fri", "08:30-17:30", "Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	sh := h.Loc
	r := newRig(t, Options{Hours: h, SLA: map[Priority]SLA{P1: {Respond: 30 * time.Minute, Fix: 4 * time.Hour}}})
	r.now = time.Date(2026, 12, 4, 16, 30, 0, 0, sh)
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Critical)
	r.now = r.now.Add(10 * time.Minute)
	r.m.Tick(r.now)
	o := r.open1()
	if !o.RespondBy.Equal(time.Date(2026, 12, 4, 17, 0, 0, 0, sh)) || !o.FixBy.Equal(time.Date(2026, 12, 7, 11, 30, 0, 0, sh)) {
		t.Fatalf("deadlines %v, %v", o.RespondBy.In(sh), o.FixBy.In(sh))
	}
	r.now = time.Date(2026, 12, 4, 16, 50, 0, 0, sh)
	r.act(o.ID, ActStart, Request{Who: "wang"})
	r.now = time.Date(2026, 12, 4, 17, 0, 0, 0, sh)
	r.act(o.ID, ActHold, Request{Who: "wang", Note: "no access at night"})
	r.now = time.Date(2026, 12, 7, 9, 0, 0, 0, sh)
	o = r.act(o.ID, ActResume, Request{Who: "wang"})
	if !o.FixBy.Equal(time.Date(2026, 12, 7, 12, 30, 0, 0, sh)) || o.Paused != time.Hour {
		t.Errorf("after the hold: fix by %v, paused %v", o.FixBy.In(sh), o.Paused)
	}
}
