package history

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// The day every figure below is computed by hand from, 2026-12-01 UTC:
//
//	c1 camera, district A, site s1, vendor hik: online, offline 10:00–12:00
//	   → online 22 h, offline 2 h; one outage repaired in 2 h
//	c2 camera, district A, site s2, no vendor: online, degraded 06:00–09:00,
//	   offline 20:00–21:00 inside the window "pole" on site s2
//	   → online 20 h, degraded 3 h, maintenance 1 h; no outage (planned)
//	s1 sensor, district B, site s3, vendor bosch: first seen 06:00 online,
//	   unreachable 18:00–19:00 → unknown 6 h, online 17 h, unreachable 1 h;
//	   one outage repaired in 1 h
var (
	c1 = dev("c1", wire.KindCamera, "A", "s1", "hik")
	c2 = dev("c2", wire.KindCamera, "A", "s2", "")
	s1 = dev("s1", wire.KindSensor, "B", "s3", "bosch")

	pole = maintenance.Window{Name: "pole", ApprovedBy: "Chen", Sites: []string{"s2"}, From: at(20), To: at(21)}
)

func dayOne() []fleet.DeviceTransition {
	return []fleet.DeviceTransition{
		tr(c1, at(0), wire.StatusOnline), tr(c2, at(0), wire.StatusOnline),
		tr(c2, at(6), wire.StatusDegraded), tr(s1, at(6), wire.StatusOnline),
		tr(c2, at(9), wire.StatusOnline), tr(c1, at(10), wire.StatusOffline), tr(c1, at(12), wire.StatusOnline),
		tr(s1, at(18), wire.StatusUnreachable), tr(s1, at(19), wire.StatusOnline),
		tr(c2, at(20), wire.StatusOffline), tr(c2, at(21), wire.StatusOnline),
	}
}

// row builds an expected row from hours.
func row(key string, devices int, online, degraded, offline, unreachable, unknown, maint float64, outages int, mttr *float64) Row {
	r := Row{Key: key, Devices: devices, OnlineS: hours(online), DegradedS: hours(degraded), OfflineS: hours(offline),
		UnreachableS: hours(unreachable), UnknownS: hours(unknown), MaintenanceS: hours(maint), Outages: outages, MTTRS: mttr}
	expected := online + degraded + offline + unreachable
	r.ExpectedS = hours(expected)
	if expected > 0 {
		r.OnlineRate, r.IntactRate = ptr((online+degraded)/expected), ptr(online/expected)
	}
	return r
}

var (
	rowC1   = func(k string) Row { return row(k, 1, 22, 0, 2, 0, 0, 0, 1, ptr(7200)) }
	rowC2   = func(k string) Row { return row(k, 1, 20, 3, 0, 0, 0, 1, 0, nil) }
	rowS1   = func(k string) Row { return row(k, 1, 17, 0, 0, 1, 6, 0, 1, ptr(3600)) }
	rowCity = row("city", 3, 59, 3, 2, 1, 6, 1, 2, ptr(5400))
)

// TestAvailability checks the figures against the hand-computed ones,
// from raw transitions and from rolled-up days alike.
func TestAvailability(t *testing.T) {
	tests := []struct {
		name  string
		q     AvailabilityQuery
		rows  []Row
		total Row
	}{
		{"by district", AvailabilityQuery{Group: "district", Scope: auth.Everything},
			[]Row{row("A", 2, 42, 3, 2, 0, 0, 1, 1, ptr(7200)), rowS1("B")}, rowCity},
		{"by vendor", AvailabilityQuery{Group: "vendor", Scope: auth.Everything},
			[]Row{rowS1("bosch"), rowC1("hik"), rowC2("unknown")}, rowCity},
		{"by kind", AvailabilityQuery{Group: "kind", Scope: auth.Everything},
			[]Row{row("camera", 2, 42, 3, 2, 0, 0, 1, 1, ptr(7200)), rowS1("sensor")}, rowCity},
		{"by site", AvailabilityQuery{Group: "site", Scope: auth.Everything},
			[]Row{rowC1("s1"), rowC2("s2"), rowS1("s3")}, rowCity},
		{"city", AvailabilityQuery{Group: "city", Scope: auth.Everything}, []Row{rowCity}, rowCity},
		{"scope: district B", AvailabilityQuery{Group: "district", Scope: auth.Scope{Districts: []string{"B"}}},
			[]Row{rowS1("B")}, rowS1("city")},
		{"scope: site s2", AvailabilityQuery{Group: "site", Scope: auth.Scope{Sites: []string{"s2"}}},
			[]Row{rowC2("s2")}, rowC2("city")},
		{"district filter", AvailabilityQuery{Group: "vendor", District: "A", Scope: auth.Everything},
			[]Row{rowC1("hik"), rowC2("unknown")}, row("city", 2, 42, 3, 2, 0, 0, 1, 1, ptr(7200))},
		{"empty scope", AvailabilityQuery{Group: "district"}, []Row{}, row("city", 0, 0, 0, 0, 0, 0, 0, 0, nil)},
	}
	for _, rolled := range []bool{false, true} {
		c := &clock{now: at(30)}
		h := open(t, tempDB(t), c, Options{Windows: maintenance.MustSchedule(pole)})
		seed(t, h, false, dayOne()...)
		if rolled {
			rollAll(t, h)
			if h.closed != dayOf(day0.UnixNano(), time.UTC) {
				t.Fatalf("closed day %s after rolling up", h.closed)
			}
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q := tt.q
				q.From, q.To = at(0), at(24)
				got, err := h.Availability(context.Background(), q)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got.Rows, tt.rows) || !reflect.DeepEqual(got.Total, tt.total) {
					t.Errorf("rolled up %v:\nrows  %s\nwant  %s\ntotal %s\nwant  %s", rolled, rowsString(got.Rows), rowsString(tt.rows),
						rowsString([]Row{got.Total}), rowsString([]Row{tt.total}))
				}
				if got.Simulated || got.Timezone != "UTC" || !got.From.Equal(at(0)) || !got.To.Equal(at(24)) {
					t.Errorf("report header %+v", got)
				}
			})
		}
	}
}

func rowsString(rs []Row) string { return js(rs) }

func seriesString(s Series) string { return js(s) }

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestPeriod refuses what is not a period and clips the future.
func TestPeriod(t *testing.T) {
	c := &clock{now: at(12)}
	h := open(t, tempDB(t), c, Options{})
	seed(t, h, false, tr(c1, at(0), wire.StatusOnline))
	for _, p := range [][2]time.Time{{at(5), at(5)}, {at(6), at(5)}, {at(13), at(20)}, {at(-24 * 401), at(0)}} {
		if _, err := h.Availability(context.Background(), AvailabilityQuery{From: p[0], To: p[1], Scope: auth.Everything}); !errors.Is(err, ErrPeriod) {
			t.Errorf("period %v: %v, want ErrPeriod", p, err)
		}
	}
	a, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(48), Scope: auth.Everything})
	if err != nil || !a.To.Equal(at(12)) || a.Total.OnlineS != hours(12) {
		t.Errorf("a period into the future: to %s, online %v s (%v); want clipped to now, 12 h", a.To, a.Total.OnlineS, err)
	}
	if _, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(1), Group: "crew"}); err == nil {
		t.Error("an unknown group passed")
	}
}

// TestHubDown counts the time the hub was down as unknown: it closed at
// 05:00 and came back at 08:00.
func TestHubDown(t *testing.T) {
	path := tempDB(t)
	c := &clock{now: at(0)}
	h := open(t, path, c, Options{})
	seed(t, h, false, tr(c1, at(0), wire.StatusOnline))
	c.set(at(5))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	c.set(at(8))
	h = open(t, path, c, Options{})
	seed(t, h, false, tr(c1, at(8), wire.StatusOnline))
	c.set(at(24))
	for _, rolled := range []bool{false, true} {
		if rolled {
			rollAll(t, h)
		}
		a, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(24), Group: "city", Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		if want := row("city", 1, 21, 0, 0, 0, 3, 0, 0, nil); !reflect.DeepEqual(a.Total, want) {
			t.Errorf("rolled %v: %s\nwant %s", rolled, rowsString([]Row{a.Total}), rowsString([]Row{want}))
		}
		tl, err := h.Timelines(context.Background(), at(0), at(24), []string{"c1", "nobody"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]fleet.StatusSpan{"c1": {
			{From: at(0), To: at(5), Status: wire.StatusOnline},
			{From: at(5), To: at(8), Status: wire.StatusUnknown},
			{From: at(8), To: at(24), Status: wire.StatusOnline},
		}}
		if !reflect.DeepEqual(tl, want) {
			t.Errorf("rolled %v: timelines %v, want %v", rolled, tl, want)
		}
	}
}

// TestOutageAcrossDays measures MTTR from detection, even when the down
// period began before the report's period, and counts the outage only in
// the period it began in.
func TestOutageAcrossDays(t *testing.T) {
	for _, rolled := range []bool{false, true} {
		c := &clock{now: at(72)}
		h := open(t, tempDB(t), c, Options{})
		seed(t, h, false, tr(c1, at(0), wire.StatusOnline), tr(c1, at(20), wire.StatusOffline),
			tr(c1, at(22), wire.StatusUnreachable), tr(c1, at(30), wire.StatusOnline))
		if rolled {
			rollAll(t, h)
		}
		day1, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(24), Group: "city", Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		day2, err := h.Availability(context.Background(), AvailabilityQuery{From: at(24), To: at(48), Group: "city", Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		if want := row("city", 1, 20, 0, 2, 2, 0, 0, 1, nil); !reflect.DeepEqual(day1.Total, want) {
			t.Errorf("rolled %v, day 1: %s\nwant %s", rolled, rowsString([]Row{day1.Total}), rowsString([]Row{want}))
		}
		if want := row("city", 1, 18, 0, 0, 6, 0, 0, 0, ptr(hours(10))); !reflect.DeepEqual(day2.Total, want) {
			t.Errorf("rolled %v, day 2: %s\nwant %s", rolled, rowsString([]Row{day2.Total}), rowsString([]Row{want}))
		}
	}
}

// TestSeries draws days in Asia/Shanghai (UTC+8, no DST): an outage from
// 22:00 to 02:00 local time costs two hours on each day.
func TestSeries(t *testing.T) {
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	local := func(d, h int) time.Time { return time.Date(2026, 12, d, h, 0, 0, 0, sh) }
	a := dev("a", wire.KindCamera, "A", "s1", "")
	b := dev("b", wire.KindCamera, "B", "s2", "")
	ts := []fleet.DeviceTransition{
		tr(a, local(1, 0), wire.StatusOnline), tr(b, local(1, 0), wire.StatusOnline),
		tr(a, local(1, 22), wire.StatusOffline), tr(a, local(2, 2), wire.StatusOnline),
		tr(b, local(2, 12), wire.StatusDegraded), tr(b, local(2, 18), wire.StatusOnline),
	}
	for _, rolled := range []bool{false, true} {
		c := &clock{now: local(3, 6)}
		h := open(t, tempDB(t), c, Options{Location: sh})
		seed(t, h, false, ts...)
		if rolled {
			rollAll(t, h)
		}
		// From 2026-12-01 00:00 +08 (30 Nov 16:00 UTC) to now, 3 Dec 06:00 +08.
		s, err := h.Series(context.Background(), SeriesQuery{From: local(1, 0).UTC(), To: local(4, 0), Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		want := Series{From: local(1, 0).UTC(), To: local(3, 6), Timezone: "Asia/Shanghai",
			Days: []string{"2026-12-01", "2026-12-02", "2026-12-03"},
			City: Line{OnlineRate: []*float64{ptr(46.0 / 48), ptr(46.0 / 48), ptr(1)}, IntactRate: []*float64{ptr(46.0 / 48), ptr(40.0 / 48), ptr(1)}},
			Series: []Line{
				{District: "A", OnlineRate: []*float64{ptr(22.0 / 24), ptr(22.0 / 24), ptr(1)}, IntactRate: []*float64{ptr(22.0 / 24), ptr(22.0 / 24), ptr(1)}},
				{District: "B", OnlineRate: []*float64{ptr(1), ptr(1), ptr(1)}, IntactRate: []*float64{ptr(1), ptr(18.0 / 24), ptr(1)}},
			}}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("rolled %v:\n%s\nwant\n%s", rolled, seriesString(s), seriesString(want))
		}
		// A district asked for, and a day with nothing expected.
		s, err = h.Series(context.Background(), SeriesQuery{From: local(0, 0), To: local(2, 0), District: "B", Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Series) != 1 || s.Series[0].District != "B" || s.Series[0].OnlineRate[0] != nil || *s.City.OnlineRate[1] != 1 ||
			!reflect.DeepEqual(s.Days, []string{"2026-11-30", "2026-12-01"}) {
			t.Errorf("rolled %v, district B: %s", rolled, seriesString(s))
		}
	}
}

// TestRollUpRebuilt writes into a day already rolled up: the day is
// reopened and the report sees the late transition.
func TestRollUpRebuilt(t *testing.T) {
	c := &clock{now: at(72)}
	h := open(t, tempDB(t), c, Options{})
	seed(t, h, false, tr(c1, at(0), wire.StatusOnline))
	rollAll(t, h)
	if want := dayOf(at(71).UnixNano(), time.UTC); h.closed != want {
		t.Fatalf("closed %s, want %s", h.closed, want)
	}
	seed(t, h, false, tr(c1, at(30), wire.StatusOffline), tr(c1, at(31), wire.StatusOnline))
	if want := dayOf(at(0).UnixNano(), time.UTC); h.closed != want {
		t.Errorf("after a late write closed is %s, want %s", h.closed, want)
	}
	check := func(when string) {
		a, err := h.Availability(context.Background(), AvailabilityQuery{From: at(0), To: at(48), Group: "city", Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		if want := row("city", 1, 47, 0, 1, 0, 0, 0, 1, ptr(3600)); !reflect.DeepEqual(a.Total, want) {
			t.Errorf("%s: %s\nwant %s", when, rowsString([]Row{a.Total}), rowsString([]Row{want}))
		}
	}
	check("reopened")
	rollAll(t, h)
	check("rolled up again")
}

// TestSimulated tells a period of seeded history from one of live
// history.
func TestSimulated(t *testing.T) {
	c := &clock{now: at(48)}
	h := open(t, tempDB(t), c, Options{})
	ctx := context.Background()
	if sim, err := h.Simulated(ctx, at(0), at(48)); err != nil || sim {
		t.Errorf("empty history: simulated %v (%v)", sim, err)
	}
	seed(t, h, true, tr(c1, at(0), wire.StatusOnline), tr(c1, at(5), wire.StatusOffline))
	seed(t, h, false, tr(c1, at(10), wire.StatusOnline))
	for _, tt := range []struct {
		from, to float64
		want     bool
	}{{0, 1, true}, {6, 8, true}, {9, 11, true}, {10, 48, false}, {20, 30, false}} {
		sim, err := h.Simulated(ctx, at(tt.from), at(tt.to))
		if err != nil || sim != tt.want {
			t.Errorf("%v h to %v h: simulated %v (%v), want %v", tt.from, tt.to, sim, err, tt.want)
		}
		a, err := h.Availability(ctx, AvailabilityQuery{From: at(tt.from), To: at(tt.to), Scope: auth.Everything})
		if err != nil || a.Simulated != tt.want {
			t.Errorf("%v h to %v h: report simulated %v (%v), want %v", tt.from, tt.to, a.Simulated, err, tt.want)
		}
	}
}
