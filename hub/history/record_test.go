package history

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestObserve records what fleet changes carry through Run: device and
// agent changes, a device moved to another site (counted where it was at
// the time) and a device removed (its time after counts nowhere).
func TestObserve(t *testing.T) {
	c := &clock{now: at(0)}
	h := open(t, tempDB(t), c, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()

	a := *dev("a", wire.KindCamera, "A", "s1", "hik")
	b := *dev("b", wire.KindCamera, "A", "s1", "hik")
	a.Status, b.Status = wire.StatusOnline, wire.StatusOnline
	h.Observe(fleet.Change{At: at(0), Kind: fleet.ChangeInventory, Affected: []fleet.Device{a, b}})
	a.Status, b.Status = wire.StatusUnreachable, wire.StatusUnreachable
	h.Observe(fleet.Change{At: at(2), Kind: fleet.ChangeAgent, From: wire.StatusOnline, To: wire.StatusOffline,
		Agent: &fleet.Agent{ID: "agent-s1"}, Affected: []fleet.Device{a, b}})
	a.Status, b.Status = wire.StatusOnline, wire.StatusOnline
	h.Observe(fleet.Change{At: at(3), Kind: fleet.ChangeAgent, From: wire.StatusOffline, To: wire.StatusOnline,
		Agent: &fleet.Agent{ID: "agent-s1"}, Affected: []fleet.Device{a, b}})
	moved := a
	moved.Site = "s9"
	h.Observe(fleet.Change{At: at(12), Kind: fleet.ChangeInventory, Affected: []fleet.Device{moved}})
	a.Status = wire.StatusOffline
	h.Observe(fleet.Change{At: at(13), Kind: fleet.ChangeDevice, Device: &moved, From: wire.StatusOnline, To: wire.StatusOffline})
	h.Observe(fleet.Change{At: at(18), Kind: fleet.ChangeInventory, Removed: []string{"b", "never-seen"}})
	h.Observe(fleet.Change{At: at(19), Kind: fleet.ChangeTrigger, Device: &moved}) // not a status change
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.set(at(24))
	got, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(24), Group: "site", Scope: auth.Everything})
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		// a until 12:00 (online 11 h, 1 h unreachable), b until removed
		// at 18:00 (online 17 h, 1 h unreachable).
		row("s1", 2, 11+17, 0, 0, 2, 0, 0, 2, ptr(3600)),
		// a from 12:00: online 1 h, then offline.
		row("s9", 1, 1, 0, 11, 0, 0, 0, 1, nil),
	}
	if !reflect.DeepEqual(got.Rows, want) {
		t.Errorf("rows %s\nwant %s", rowsString(got.Rows), rowsString(want))
	}
	if got.Total.Devices != 2 {
		t.Errorf("city devices %d, want 2 (a counts once)", got.Total.Devices)
	}
	// Written (or found unchanged): 2 at first sight, 2 + 2 agent, the
	// move, the offline, the 2 removals.
	if n := h.written.Value(); n != 10 {
		t.Errorf("written %d, want 10", n)
	}
}

// TestDrops counts and reports what the history loses.
func TestDrops(t *testing.T) {
	c := &clock{now: at(0)}
	h := open(t, tempDB(t), c, Options{})
	if ok, why := h.Health(); !ok {
		t.Fatalf("a new history is unhealthy: %s", why)
	}
	h.Record(tr(c1, time.Time{}, wire.StatusOnline))
	h.Record(tr(c1, at(1), "broken"))
	h.Record(fleet.DeviceTransition{})
	if n := h.dropped.With("invalid").Value(); n != 3 {
		t.Errorf("invalid drops %d, want 3", n)
	}
	if ok, why := h.Health(); ok || !strings.Contains(why, "3 device transitions lost") {
		t.Errorf("health after drops: %v %q", ok, why)
	}
	if tr := h.Trouble(); tr == nil || tr.Op != TroubleLost || tr.Lost != 3 || !tr.At.Equal(at(0)) {
		t.Errorf("trouble after drops: %+v", tr)
	}
	c.set(at(1))
	if ok, why := h.Health(); !ok {
		t.Errorf("health an hour after the last drop: %q", why)
	}
	for range queueSize {
		h.Record(tr(c1, at(1), wire.StatusOnline))
	}
	h.Record(tr(c1, at(1), wire.StatusOffline))
	if n := h.dropped.With("queue_full").Value(); n != 1 {
		t.Errorf("queue_full drops %d, want 1", n)
	}
	if ok, _ := h.Health(); ok {
		t.Error("healthy right after a full queue lost a transition")
	}
	h.drain(nil)
	if n := h.written.Value(); n != queueSize {
		t.Errorf("written %d of a full queue, want %d", n, queueSize)
	}
}

// FuzzRecord decodes anything without panicking, and round-trips what
// the writer builds.
func FuzzRecord(f *testing.F) {
	w := newRecordWriter(1000)
	w.add(&dayEntry{dev: 3, start: state{online, 1}, since: 0, changes: []change{{1500, state{offline | simBit, 2}}}})
	w.add(&dayEntry{dev: 9, start: state{offline, 1}, since: 400})
	f.Add(w.bytes())
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := newRecordReader(b, 1000, 1000+86400e9)
		if err != nil {
			return
		}
		var e dayEntry
		var es []dayEntry
		for {
			ok, err := r.next(&e)
			if err != nil || !ok {
				break
			}
			es = append(es, dayEntry{dev: e.dev, start: e.start, since: e.since, changes: append([]change(nil), e.changes...)})
		}
		rw := newRecordWriter(1000)
		for i := range es {
			rw.add(&es[i])
		}
		r2, err := newRecordReader(rw.bytes(), 1000, 1000+86400e9)
		if err != nil {
			t.Fatalf("a record the writer built: %v", err)
		}
		for i := range es {
			if ok, err := r2.next(&e); !ok || err != nil || e.dev != es[i].dev || e.start != es[i].start || e.since != es[i].since ||
				len(e.changes) != len(es[i].changes) {
				t.Fatalf("entry %d: %+v (%v), want %+v", i, e, err, es[i])
			}
		}
	})
}

// TestRunRollsUp closes every day that is over when Run stops, and
// records that the hub was alive then.
func TestRunRollsUp(t *testing.T) {
	c := &clock{now: at(72.5)}
	h := open(t, tempDB(t), c, Options{})
	seed(t, h, false, tr(c1, at(0), wire.StatusOnline), tr(c1, at(30), wire.StatusOffline))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var days, alive int64
	if err := h.rdb.QueryRow(`SELECT (SELECT COUNT(*) FROM days), (SELECT value FROM meta WHERE name = 'alive')`).Scan(&days, &alive); err != nil {
		t.Fatal(err)
	}
	if days != 3 || h.rolled.Value() != 3 || alive != at(72.5).UnixNano() {
		t.Errorf("%d days stored, %d rolled, alive at %s; want 3, 3, 72.5 h", days, h.rolled.Value(), time.Unix(0, alive).UTC())
	}
}

// TestConcurrent runs reports while new devices are written: a report
// never meets an id its catalog does not know (run with -race).
func TestConcurrent(t *testing.T) {
	c := &clock{now: at(24)}
	h := open(t, tempDB(t), c, Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			d := dev(fmt.Sprintf("d%d", i), wire.KindCamera, fmt.Sprintf("D%d", i%7), fmt.Sprintf("s%d", i), "")
			if err := h.Seed(context.Background(), []fleet.DeviceTransition{tr(d, at(float64(i%20)), wire.StatusOnline)}, false); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		a, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(24), Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
			if a, err = h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(24), Scope: auth.Everything}); err != nil || a.Total.Devices != 200 {
				t.Errorf("%d devices (%v), want 200", a.Total.Devices, err)
			}
			return
		default:
		}
	}
}

// TestLocationChanged rolls the days up again when the report time zone
// changes: days are the zone's.
func TestLocationChanged(t *testing.T) {
	path := tempDB(t)
	c := &clock{now: at(48)}
	h := open(t, path, c, Options{})
	seed(t, h, false, tr(c1, at(0), wire.StatusOnline))
	rollAll(t, h)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	h = open(t, path, c, Options{Location: sh})
	if h.closed != noDay {
		t.Fatalf("days of UTC kept in Asia/Shanghai: closed %s", h.closed)
	}
	rollAll(t, h)
	// 2026-12-01 08:00 +08 is the first transition: days 1 and 2 (ending
	// 3 Dec 00:00 +08 = 2 Dec 16:00 UTC) are over by 2 Dec 24:00 UTC.
	if want := dayOf(time.Date(2026, 12, 2, 12, 0, 0, 0, sh).UnixNano(), sh); h.closed != want {
		t.Errorf("closed %s, want %s", h.closed, want)
	}
}

// TestBurstArrayNotKept: the writer drains a start-up burst (every
// device's first transition at once) and does not keep its array for the
// quiet after it — 144 bytes a transition, ~6 MB at 40,000 devices, live
// heap the collector's target would grow by half again — while a small
// queue's array is reused.
func TestBurstArrayNotKept(t *testing.T) {
	c := &clock{now: at(0)}
	h := open(t, tempDB(t), c, Options{})
	burst := func(n int) {
		for i := range n {
			d := dev(fmt.Sprintf("cam-%05d", i), wire.KindCamera, "A", "s1", "hik")
			h.Record(tr(d, at(1), wire.StatusOnline))
		}
	}
	burst(maxBatch + 1)
	if spare := h.drain(nil); spare != nil {
		t.Errorf("after a burst of %d the writer keeps an array of %d entries, want none", maxBatch+1, cap(spare))
	}
	if got := h.written.Value(); got != maxBatch+1 {
		t.Fatalf("written %d, want %d", got, maxBatch+1)
	}
	burst(10)
	if spare := h.drain(nil); cap(spare) < 10 {
		t.Errorf("after 10 transitions the writer keeps an array of %d entries, want it reused", cap(spare))
	}
}
