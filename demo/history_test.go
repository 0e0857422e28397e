package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/wire"
)

// The simulated week is one clean timeline per device (first sight, then
// alternating down and up, in time order, within the week), the same for
// a seed, and has the planned work's devices offline inside its window.
func TestSimulatedWeek(t *testing.T) {
	city, err := sim.GenerateCity(sim.CityOptions{Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	work := plannedWork(city, end)
	week := simulatedWeek(city, end, 11, work)
	if again := simulatedWeek(city, end, 11, work); !reflect.DeepEqual(week, again) {
		t.Fatal("the week differs for one seed")
	}
	start := end.Add(-seededDays * 24 * time.Hour)
	last := map[string]wire.Status{}
	var lastAt time.Time
	downs := 0
	for i, tr := range week {
		if tr.At.Before(lastAt) || tr.At.Before(start) || tr.At.After(end) {
			t.Fatalf("transition %d at %v: out of order or outside the week", i, tr.At)
		}
		lastAt = tr.At
		prev, seen := last[tr.Device.ID]
		switch {
		case !seen && (tr.From != wire.StatusUnknown || !tr.At.Equal(start)):
			t.Fatalf("%s first appears %v from %s", tr.Device.ID, tr.At, tr.From)
		case seen && (tr.From != prev || tr.To == prev):
			t.Fatalf("%s: %s → %s after %s", tr.Device.ID, tr.From, tr.To, prev)
		}
		if seen && tr.To != wire.StatusOnline {
			downs++
		}
		last[tr.Device.ID] = tr.To
	}
	devices := 0
	for _, a := range city.Agents {
		devices += len(a.Cameras) + len(a.Sensors)
	}
	if len(last) != devices || downs < devices/4 {
		t.Errorf("%d of %d devices in the week, %d outages", len(last), devices, downs)
	}
	// Every device of the planned work's site is down in the middle of
	// its window.
	mid := work.From.Add(work.To.Sub(work.From) / 2)
	at := map[string]wire.Status{}
	for _, tr := range week {
		if tr.Device.Site == work.Sites[0] && !tr.At.After(mid) {
			at[tr.Device.ID] = tr.To
		}
	}
	if len(at) == 0 {
		t.Fatal("the planned work's site has no devices")
	}
	for id, st := range at {
		if st == wire.StatusOnline {
			t.Errorf("%s online in the middle of the planned work", id)
		}
	}
}
