package handover

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarmstore"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/history"
	"github.com/citywatch/citywatch/hub/workorder"
)

var now = time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)

// figures stands in for the alarm store, the history and the work orders:
// it answers fixed figures and remembers the windows and scopes asked.
type figures struct {
	windows [][2]time.Time
	scopes  []auth.Scope
}

func (f *figures) Shift(_ context.Context, from, to time.Time, scope auth.Scope) (alarmstore.Shift, error) {
	f.windows = append(f.windows, [2]time.Time{from, to})
	f.scopes = append(f.scopes, scope)
	return alarmstore.Shift{From: from, To: to, Total: alarmstore.Tally{Raised: 7, Open: 2}}, nil
}

func (f *figures) Outages(_ context.Context, from, to time.Time, _ auth.Scope) (history.Outages, error) {
	return history.Outages{From: from, To: to, Total: history.OutageTally{Began: 3}}, nil
}

func (f *figures) Page(fl workorder.Filter, _ string, _, _ int) ([]workorder.Ranked, int) {
	if fl.States[0] == workorder.Open && fl.Keep("d1", "s1") {
		return nil, 4
	}
	return nil, 0
}

func newService(t *testing.T) (*Service, *figures) {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "handovers.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &figures{}
	s, err := New(Options{Now: func() time.Time { return now }}, Deps{Log: slog.New(slog.DiscardHandler), Store: st, Alarms: f, Outages: f, Work: f})
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

// TestHandoverLifecycle: the first shift's window is the default 12 h;
// the handover freezes the report with the notes; the next window starts
// where it ended; nobody accepts their own handover, one person accepts
// it once, and it survives reopening the database.
func TestHandoverLifecycle(t *testing.T) {
	ctx := context.Background()
	s, f := newService(t)
	d1 := auth.Scope{Districts: []string{"d1"}}

	from, to, err := s.Window(ctx, time.Time{}, time.Time{}, d1)
	if err != nil || !from.Equal(now.Add(-DefaultShift)) || !to.Equal(now) {
		t.Fatalf("first window = %v – %v, %v; want the last 12 h", from, to, err)
	}
	h, err := s.Submit(ctx, "ann", d1, now.Add(-8*time.Hour), time.Time{}, "camera cam-7 flickers; crew 2 on site at 06:00")
	if err != nil {
		t.Fatal(err)
	}
	if h.ID == 0 || h.Report == nil || h.Report.Alarms.Total.Raised != 7 || h.Report.Outages.Total.Began != 3 || !h.To.Equal(now) {
		t.Fatalf("submitted %+v", h)
	}
	if w := []WorkCount{{workorder.Open, 4}, {workorder.Assigned, 0}, {workorder.InProgress, 0}, {workorder.OnHold, 0}, {workorder.Fixed, 0}}; len(h.Report.Work) != len(w) || h.Report.Work[0] != w[0] {
		t.Errorf("work = %+v, want %+v", h.Report.Work, w)
	}
	if f.scopes[len(f.scopes)-1].Key() != d1.Key() {
		t.Errorf("report made in scope %v, want the author's %v", f.scopes[len(f.scopes)-1], d1)
	}

	// Two hours later the next shift's window begins at the handover.
	s.opts.Now = func() time.Time { return now.Add(2 * time.Hour) }
	if from, _, _ := s.Window(ctx, time.Time{}, time.Time{}, d1); !from.Equal(now) {
		t.Errorf("next window starts %v, want %v (the last handover's end)", from, now)
	}
	if from, _, _ := s.Window(ctx, time.Time{}, time.Time{}, auth.Everything); !from.Equal(now.Add(2*time.Hour - DefaultShift)) {
		t.Errorf("another scope's window starts %v, want the default", from)
	}

	if _, err := s.Accept(ctx, h.ID, "ann", d1, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("author accepting: %v, want ErrConflict", err)
	}
	if _, err := s.Accept(ctx, h.ID, "eve", auth.Scope{Districts: []string{"d2"}}, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("accepting out of scope: %v, want ErrNotFound", err)
	}
	got, err := s.Accept(ctx, h.ID, "bob", auth.Everything, "taken over; will call crew 2")
	if err != nil || got.Incoming != "bob" || !got.AcceptedAt.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("accept = %+v, %v", got, err)
	}
	if _, err := s.Accept(ctx, h.ID, "cat", d1, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("second acceptance: %v, want ErrConflict", err)
	}

	list, err := s.List(ctx, d1, 10)
	if err != nil || len(list) != 1 || list[0].Report != nil || list[0].Incoming != "bob" || list[0].Notes == "" {
		t.Errorf("list = %+v, %v", list, err)
	}
	if list, _ := s.List(ctx, auth.Scope{Sites: []string{"s9"}}, 10); len(list) != 0 {
		t.Errorf("a site operator sees %+v", list)
	}
	back, err := s.Get(ctx, h.ID, auth.Everything)
	if err != nil || back.Report.Alarms.Total != h.Report.Alarms.Total || back.AcceptNote != "taken over; will call crew 2" {
		t.Errorf("get = %+v, %v", back, err)
	}
}

func TestHandoverRefuses(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	for name, c := range map[string]struct {
		from, to time.Time
		notes    string
	}{
		"future":    {now.Add(-time.Hour), now.Add(time.Hour), ""},
		"backwards": {now, now.Add(-time.Hour), ""},
		"too long":  {now.Add(-MaxWindow - time.Hour), now, ""},
		"long note": {time.Time{}, time.Time{}, string(make([]byte, MaxNotes+1))},
		"not utf-8": {time.Time{}, time.Time{}, "\xff"},
	} {
		if _, err := s.Submit(ctx, "ann", auth.Everything, c.from, c.to, c.notes); !errors.Is(err, ErrBad) {
			t.Errorf("%s: %v, want ErrBad", name, err)
		}
	}
	if _, err := s.Get(ctx, 99, auth.Everything); !errors.Is(err, ErrNotFound) {
		t.Errorf("get 99: %v", err)
	}
}

func TestCovers(t *testing.T) {
	d1, d12 := auth.Scope{Districts: []string{"d1"}}, auth.Scope{Districts: []string{"d1", "d2"}}
	for _, c := range []struct {
		reader, s auth.Scope
		want      bool
	}{
		{auth.Everything, d1, true},
		{d1, auth.Everything, false},
		{d12, d1, true},
		{d1, d12, false},
		{d1, auth.Scope{Sites: []string{"s1"}}, false},
		{auth.Scope{}, auth.Scope{}, true},
		{d1, auth.Scope{}, false},
	} {
		if got := Covers(c.reader, c.s); got != c.want {
			t.Errorf("Covers(%v, %v) = %v", c.reader, c.s, got)
		}
	}
}
