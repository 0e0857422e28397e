package maintenance

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) // a Tuesday midnight, UTC

func TestDailyAcrossMidnight(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	w := Window{Name: "night", Sites: []string{"s1"}, Daily: "22:00-06:00", Location: shanghai}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	s := Subject{Device: "cam-1", Site: "s1"}
	// 22:00–06:00 Shanghai is 14:00–22:00 UTC.
	for _, tt := range []struct {
		at    time.Time
		ok    bool
		until time.Time
	}{
		{t0.Add(13 * time.Hour), false, time.Time{}},
		{t0.Add(14 * time.Hour), true, t0.Add(22 * time.Hour)},
		{t0.Add(21*time.Hour + 59*time.Minute), true, t0.Add(22 * time.Hour)},
		{t0.Add(22 * time.Hour), false, time.Time{}},
	} {
		until, ok := w.Covers(s, tt.at)
		if ok != tt.ok || !until.Equal(tt.until) {
			t.Errorf("Covers at %s = %s %v, want %s %v", tt.at, until, ok, tt.until, tt.ok)
		}
	}
	if _, ok := w.Covers(Subject{Device: "cam-2", Site: "s2"}, t0.Add(15*time.Hour)); ok {
		t.Error("a window covers a site it does not name")
	}
	// Two days: two 8-hour spans, the range clipping the ends.
	spans := w.Spans(s, t0.Add(16*time.Hour), t0.Add(48*time.Hour))
	want := []Span{{t0.Add(16 * time.Hour), t0.Add(22 * time.Hour)}, {t0.Add(38 * time.Hour), t0.Add(46 * time.Hour)}}
	if len(spans) != len(want) {
		t.Fatalf("spans %v, want %v", spans, want)
	}
	for i := range want {
		if !spans[i].From.Equal(want[i].From) || !spans[i].To.Equal(want[i].To) {
			t.Errorf("span %d = %v, want %v", i, spans[i], want[i])
		}
	}
}

func TestWindowsMerge(t *testing.T) {
	ws := Windows{
		{Name: "swap", ApprovedBy: "ops-ticket-7", Devices: []string{"cam-1"}, From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)},
		{Name: "power", ApprovedBy: "grid co.", Districts: []string{"North"}, From: t0.Add(2 * time.Hour), To: t0.Add(4 * time.Hour)},
		{Name: "later", Devices: []string{"cam-1"}, From: t0.Add(10 * time.Hour), To: t0.Add(11 * time.Hour)},
	}
	got := ws.Spans(Subject{Device: "cam-1", District: "North"}, t0, t0.Add(24*time.Hour))
	if len(got) != 2 || !got[0].From.Equal(t0.Add(time.Hour)) || !got[0].To.Equal(t0.Add(4*time.Hour)) ||
		len(got[0].Names) != 2 || len(got[0].ApprovedBy) != 2 || !got[1].From.Equal(t0.Add(10*time.Hour)) {
		t.Fatalf("merged spans %+v", got)
	}
	if got := ws.Spans(Subject{Device: "cam-9", District: "South"}, t0, t0.Add(24*time.Hour)); len(got) != 0 {
		t.Errorf("spans of an uncovered device: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	for _, w := range []Window{
		{Sites: []string{"s"}, Daily: "22:00-06:00"},
		{Name: "x", Daily: "22:00-06:00"},
		{Name: "x", Sites: []string{"s"}, Daily: "25:00-06:00"},
		{Name: "x", Sites: []string{"s"}, Daily: "06:00-06:00"},
		{Name: "x", Sites: []string{"s"}, From: t0.Add(time.Hour), To: t0},
		{Name: "x", Sites: []string{"s"}, Daily: "22:00-06:00", From: t0, To: t0.Add(time.Hour)},
	} {
		if w.Validate() == nil {
			t.Errorf("%+v accepted", w)
		}
	}
}
