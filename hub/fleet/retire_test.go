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

// TestSummaryOf counts a subset as Summary counts the whole fleet.
func TestSummaryOf(t *testing.T) {
	h := newHarness(t)
	h.must(h.birth("a1", 1))
	h.must(h.inventory("a1", "North", "cam-1", "cam-2"))
	h.must(h.birth("a2", 1))
	h.must(h.inventory("a2", "South", "cam-3"))
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, ""), line("cam-2", wire.StatusDegraded, wire.ReasonNoStream)))

	whole := h.r.Summary()
	all := fleet.SummaryOf(whole.At, h.r.Devices(), h.r.Agents())
	if !reflect.DeepEqual(all, whole) {
		t.Errorf("SummaryOf(everything) = %+v\nSummary() = %+v", all, whole)
	}
	var north []fleet.Device
	for _, d := range h.r.Devices() {
		if d.District == "North" {
			north = append(north, d)
		}
	}
	a1, _ := h.r.Agent("a1")
	part := fleet.SummaryOf(whole.At, north, []fleet.Agent{a1})
	if part.Devices != 2 || part.OnlineRate != 1 || part.IntactRate != 0.5 || len(part.Districts) != 1 ||
		part.Agents[wire.StatusOnline] != 1 {
		t.Errorf("SummaryOf(North) = %+v", part)
	}
}
