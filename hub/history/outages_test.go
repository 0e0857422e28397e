package history

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// TestOutages lists the down periods that touch a window, from raw
// transitions and from rolled-up days alike: one that began before and
// recovered in it, one that began and recovered in it (switching between
// offline and unreachable), one under way at its end, one under way
// throughout, one ended by the device leaving the fleet, and one only
// after the window.
func TestOutages(t *testing.T) {
	c1 := dev("c1", wire.KindCamera, "A", "s1", "hik")
	c2 := dev("c2", wire.KindCamera, "A", "s1", "hik")
	c3 := dev("c3", wire.KindCamera, "A", "s1", "hik")
	c4 := dev("c4", wire.KindCamera, "B", "s2", "hik")
	c5 := dev("c5", wire.KindSensor, "B", "s2", "bosch")
	c6 := dev("c6", wire.KindCamera, "B", "s2", "hik")
	for _, rolled := range []bool{false, true} {
		t.Run(fmt.Sprint("rolled=", rolled), func(t *testing.T) {
			c := &clock{now: at(50)}
			h := open(t, tempDB(t), c, Options{Windows: maintenance.MustSchedule()})
			seed(t, h, false,
				tr(c1, at(0), wire.StatusOnline), tr(c2, at(0), wire.StatusOnline), tr(c3, at(0), wire.StatusOnline),
				tr(c4, at(0), wire.StatusOnline), tr(c5, at(0), wire.StatusOnline), tr(c6, at(0), wire.StatusOnline),
				tr(c1, at(10), wire.StatusOffline), tr(c4, at(20), wire.StatusOffline),
				tr(c1, at(32), wire.StatusOnline),
				tr(c2, at(33), wire.StatusOffline), tr(c2, at(34), wire.StatusUnreachable), tr(c2, at(35), wire.StatusUnknown),
				tr(c2, at(36), wire.StatusDegraded),
				tr(c5, at(35), wire.StatusOffline),
				tr(c3, at(40), wire.StatusOffline), tr(c3, at(45), wire.StatusOnline),
				tr(c6, at(43), wire.StatusOffline),
			)
			if err := h.write(context.Background(), []entry{{device: "c5", at: at(37).UnixNano(), code: absent, cause: "inventory", reason: "removed"}}); err != nil {
				t.Fatal(err)
			}
			if rolled {
				rollAll(t, h)
			}
			got, err := h.Outages(context.Background(), at(30), at(42), auth.Everything)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, o := range got.List {
				end := "…"
				if !o.To.IsZero() {
					end = fmt.Sprint(o.To.Sub(day0).Hours())
				}
				lines = append(lines, fmt.Sprintf("%s %s %v-%s ongoing=%v removed=%v", o.Device, o.Status,
					o.From.Sub(day0).Hours(), end, o.Ongoing, o.Removed))
			}
			want := []string{
				"c4 offline 20-… ongoing=true removed=false",
				"c3 offline 40-… ongoing=true removed=false",
				"c2 offline 33-36 ongoing=false removed=false",
				"c1 offline 10-32 ongoing=false removed=false",
				"c5 offline 35-… ongoing=false removed=true",
			}
			if strings.Join(lines, "\n") != strings.Join(want, "\n") {
				t.Errorf("list:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
			}
			// Recovered: c1 (22 h) and c2 (3 h).
			if got.Total.Began != 3 || got.Total.Recovered != 2 || got.Total.Ongoing != 2 || got.Total.MTTRS == nil || *got.Total.MTTRS != hours(12.5) {
				t.Errorf("total = %+v (mttr %v)", got.Total, got.Total.MTTRS)
			}
			if len(got.Districts) != 2 || got.Districts[1].District != "B" || got.Districts[1].Began != 1 || got.Districts[1].Ongoing != 1 || got.Districts[1].MTTRS != nil {
				t.Errorf("districts = %+v", got.Districts)
			}
			scoped, err := h.Outages(context.Background(), at(30), at(42), auth.Scope{Sites: []string{"s2"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(scoped.List) != 2 || scoped.List[0].Device != "c4" || scoped.List[1].Device != "c5" {
				t.Errorf("scoped to s2: %+v", scoped.List)
			}
		})
	}
}
