package fleet_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// TestRetire removes a revoked agent and its devices in one inventory
// change, and leaves the other agents and the counts right.
func TestRetire(t *testing.T) {
	h := newHarness(t)
	h.must(h.birth("a1", 1))
	h.must(h.inventory("a1", "North", "cam-1", "cam-2"))
	h.must(h.birth("a2", 1))
	h.must(h.inventory("a2", "South", "cam-3"))
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, ""), line("cam-2", wire.StatusOffline, wire.ReasonRefused)))
	h.take()

	if !h.r.Retire("a1") {
		t.Fatal("Retire of a known agent reported false")
	}
	ch := h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeInventory || !ch[0].Retired || ch[0].Agent == nil || ch[0].Agent.ID != "a1" ||
		!slices.Equal(ch[0].Removed, []string{"cam-1", "cam-2"}) {
		t.Fatalf("retire changes = %+v", ch)
	}
	if _, ok := h.r.Agent("a1"); ok {
		t.Error("the retired agent is still in the fleet")
	}
	if got := statuses(h.r.Devices()); !slices.Equal(got, []string{"cam-3=unknown"}) {
		t.Errorf("devices after retire = %v", got)
	}
	s := h.r.Summary()
	if s.Devices != 1 || s.Agents[wire.StatusOnline] != 1 || len(s.Districts) != 1 || s.Districts[0].District != "South" {
		t.Errorf("summary after retire = %+v", s)
	}
	if h.r.Retire("a1") {
		t.Error("retiring twice reported true")
	}
	// A re-enrolled agent comes back as new.
	h.must(h.birth("a1", 2))
	h.must(h.inventory("a1", "North", "cam-1"))
	if _, ok := h.r.Device("cam-1"); !ok {
		t.Error("a returning agent's device was not taken")
	}
}

// TestSummaryWhere counts part of the city as Summary counts the whole,
// from tallies kept by district and site as statuses change.
func TestSummaryWhere(t *testing.T) {
	h := newHarness(t)
	h.must(h.birth("a1", 1))
	h.must(h.inventory("a1", "North", "cam-1", "cam-2"))
	h.must(h.birth("a2", 1))
	h.must(h.inventory("a2", "South", "cam-3"))
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, ""), line("cam-2", wire.StatusDegraded, wire.ReasonNoStream)))

	whole := h.r.Summary()
	if all := h.r.SummaryWhere(func(string, string) bool { return true }); !reflect.DeepEqual(all, whole) {
		t.Errorf("SummaryWhere(everything) = %+v\nSummary() = %+v", all, whole)
	}
	north := func(district, _ string) bool { return district == "North" }
	part := h.r.SummaryWhere(north)
	if part.Devices != 2 || part.OnlineRate != 1 || part.IntactRate != 0.5 || len(part.Districts) != 1 ||
		part.Agents[wire.StatusOnline] != 1 {
		t.Errorf("SummaryWhere(North) = %+v", part)
	}
	site := h.r.SummaryWhere(func(_, s string) bool { return s == "site-a2" })
	if site.Devices != 1 || site.Districts[0].District != "South" || site.Agents[wire.StatusOnline] != 1 {
		t.Errorf("SummaryWhere(site-a2) = %+v", site)
	}
	// The tallies follow changes of status and of place.
	h.must(h.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused), line("cam-2", wire.StatusOnline, "")))
	h.must(h.inventory("a1", "South", "cam-1", "cam-2"))
	if got := h.r.SummaryWhere(north); got.Devices != 0 || len(got.Districts) != 0 {
		t.Errorf("North after its devices moved = %+v", got)
	}
	south := h.r.SummaryWhere(func(district, _ string) bool { return district == "South" })
	if south.Devices != 3 || south.ByStatus[wire.StatusOffline] != 1 || south.ByStatus[wire.StatusOnline] != 1 {
		t.Errorf("South = %+v", south)
	}
	if got := h.r.DevicesWhere(func(_, s string) bool { return s == "site-a2" }); len(got) != 1 || got[0].ID != "cam-3" {
		t.Errorf("DevicesWhere(site-a2) = %+v", got)
	}
}
