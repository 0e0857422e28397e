package app

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/workorder"
)

// TestBreachAlarm checks the alarm of a work order's deadline: one per
// deadline, more critical for a more urgent order, its figures (the
// deadline that passed) for the console to word.
func TestBreachAlarm(t *testing.T) {
	respond, fix := time.Date(2026, 12, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600)), time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	o := workorder.Order{ID: "WO-3", Site: "S-1", District: "Xuhui", Priority: 1, RespondBy: respond, FixBy: fix, Breached: []string{"respond"}}
	tests := []struct {
		breached []string
		key, typ string
		due      string
	}{
		{[]string{"respond"}, "work_order:workorder/WO-3/respond", "respond_breach", "2026-12-01T00:00:00Z"},
		{[]string{"respond", "fix"}, "work_order:workorder/WO-3/fix", "fix_breach", "2026-12-01T12:00:00Z"},
	}
	for _, tt := range tests {
		o.Breached = tt.breached
		a := breachAlarm(o, "deadline passed")
		if a.Key != tt.key || a.Source != alarm.SourceWorkOrder || a.Type != tt.typ || a.Site != "S-1" || a.District != "Xuhui" ||
			a.Criticality != 4 || a.Detail != "WO-3: deadline passed" {
			t.Errorf("breach of %v: %+v", tt.breached, a)
		}
		if a.Args["order"] != "WO-3" || a.Args["due"] != tt.due || a.Args["priority"] != "1" {
			t.Errorf("breach of %v: args %v, want due %s", tt.breached, a.Args, tt.due)
		}
	}
}
