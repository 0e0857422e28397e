package workorder

import (
	"errors"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/wire"
)

// Repair figures against a hand-computed day:
//   - WO-1, cam-1 at S1 (North), major: detected 0:00, started 0:20, fixed
//     0:30, online 0:40, closed verified 0:50 — TTA 1200 s, TTR 3000 s;
//   - WO-2, cam-9 at S2 (South), minor: detected 1:00, nobody responds,
//     online 2:00, closed recovered 2:10 — TTR 4200 s, deadlines met;
//   - WO-3, cam-2 at S1, detected 3:00, still open at 4:00.
//
// Over [0:00, 4:00) with 4 devices: 3 opened, 2 closed, MTTA 1200 s, MTTR
// 3600 s, 3 failures so MTBF 4 × 4 h / 3 = 5.3333 h, first-time fix 1/1,
// repeats 0/2, deadlines 2/2, backlog 1 of age 1 h.
func TestFigures(t *testing.T) {
	r := newRig(t, Options{})
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Major)
	r.at(10 * time.Minute)
	wo1 := r.open1().ID
	r.at(20 * time.Minute)
	r.act(wo1, ActStart, Request{Who: "wang"})
	r.at(30 * time.Minute)
	r.act(wo1, ActFix, Request{Who: "wang"})
	r.at(40 * time.Minute)
	r.status("cam-1", wire.StatusOnline, "")
	r.at(50 * time.Minute)

	r.at(time.Hour)
	r.status("cam-9", wire.StatusOffline, wire.ReasonTimeout)
	r.raise(alarm.SourceDeviceOffline, "cam-9", "S2", alarm.Minor)
	r.at(70 * time.Minute)
	r.at(2 * time.Hour)
	r.status("cam-9", wire.StatusOnline, "")
	r.at(130 * time.Minute)

	r.at(3 * time.Hour)
	r.status("cam-2", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-2", "S1", alarm.Major)
	r.at(190 * time.Minute)
	r.at(4 * time.Hour)

	f, err := r.m.Figures(FigureQuery{From: t0, To: t0.Add(4 * time.Hour), Group: "city"})
	if err != nil {
		t.Fatal(err)
	}
	c := f.Total
	if c.Opened != 3 || c.Closed != 2 || *c.MTTAS != 1200 || *c.MTTRS != 3600 || c.Failures != 3 || c.Devices != 4 ||
		*c.MTBFH != 5.3333 || *c.FirstTimeFix != 1 || *c.RepeatRate != 0 || *c.RespondMet != 1 || *c.FixMet != 1 ||
		c.Backlog != 1 || *c.BacklogMaxAgeH != 1 || len(f.Rows) != 0 {
		t.Errorf("city %+v", c)
	}

	f, err = r.m.Figures(FigureQuery{From: t0, To: t0.Add(4 * time.Hour), Group: "district"})
	if err != nil || len(f.Rows) != 2 {
		t.Fatalf("%v %+v", err, f.Rows)
	}
	north, south := f.Rows[0], f.Rows[1]
	if north.Key != "North" || north.Opened != 2 || north.Closed != 1 || *north.MTTRS != 3000 || *north.MTBFH != 6 || north.Backlog != 1 {
		t.Errorf("North %+v", north)
	}
	if south.Key != "South" || south.Closed != 1 || *south.MTTRS != 4200 || south.MTTAS != nil || *south.MTBFH != 4 || south.FirstTimeFix != nil {
		t.Errorf("South %+v", south)
	}
	// West's scope sees none of it; an empty period is refused.
	f, _ = r.m.Figures(FigureQuery{From: t0, To: t0.Add(4 * time.Hour), Group: "site", Keep: func(d, _ string) bool { return d == "West" }})
	if f.Total.Opened != 0 || len(f.Rows) != 0 || f.Total.MTTRS != nil {
		t.Errorf("out of scope: %+v", f)
	}
	if _, err := r.m.Figures(FigureQuery{From: t0, To: t0, Group: "city"}); !errors.Is(err, ErrFigures) {
		t.Errorf("empty period: %v", err)
	}
	if _, err := r.m.Figures(FigureQuery{From: t0, To: t0.Add(time.Hour), Group: "colour"}); !errors.Is(err, ErrFigures) {
		t.Errorf("group colour: %v", err)
	}
	// By model: cam-1 and cam-2 are a DS-2CD, cam-9 has no model.
	for _, id := range []string{"cam-1", "cam-2"} {
		d := r.fleet.devices[id]
		d.Vendor, d.Model = "Hikvision", "DS-2CD"
		r.fleet.devices[id] = d
	}
	f, err = r.m.Figures(FigureQuery{From: t0, To: t0.Add(4 * time.Hour), Group: "model"})
	if err != nil || len(f.Rows) != 2 || f.Rows[0].Key != "Hikvision DS-2CD" || f.Rows[0].Opened != 2 || f.Rows[1].Key != "unknown" || f.Rows[1].Opened != 1 {
		t.Errorf("by model: %v %+v", err, f.Rows)
	}
}
