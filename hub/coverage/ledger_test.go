package coverage

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// The ledger's day: 2025-03-01, and the hour an event at h happens.
var day = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func h(hours float64) time.Time { return day.Add(time.Duration(hours * float64(time.Hour))) }

// long sees the 10 cells straight north of it, (0, 0) to (0, 9): a 10°
// wedge 250 m long from the bottom of column 0's centre line. short looks
// back south at the top 4 of them, (0, 6) to (0, 9).
func long() fleet.Device  { return camAt("long", "Central", 12.5, 0, 0, 10, 250) }
func short() fleet.Device { return camAt("short", "Central", 12.5, 250, 180, 10, 100) }

// timeline is up all day but for the given offline hours.
func timeline(downFrom, downTo float64) []fleet.StatusSpan {
	return []fleet.StatusSpan{
		{From: h(0), To: h(downFrom), Status: wire.StatusOnline},
		{From: h(downFrom), To: h(downTo), Status: wire.StatusOffline},
		{From: h(downTo), To: h(24), Status: wire.StatusOnline},
	}
}

func allDay(s wire.Status) []fleet.StatusSpan {
	return []fleet.StatusSpan{{From: h(0), To: h(24), Status: s}}
}

func TestLedgerCameraCells(t *testing.T) {
	m := newModel(t, Config{}, newEnv(long(), short()))
	if got := cellsOf(m, "long"); !slices.Equal(got, ids([2]int32{0, 0}, [2]int32{0, 1}, [2]int32{0, 2}, [2]int32{0, 3}, [2]int32{0, 4},
		[2]int32{0, 5}, [2]int32{0, 6}, [2]int32{0, 7}, [2]int32{0, 8}, [2]int32{0, 9})) {
		t.Fatalf("long sees %v", got)
	}
	if got := cellsOf(m, "short"); !slices.Equal(got, ids([2]int32{0, 6}, [2]int32{0, 7}, [2]int32{0, 8}, [2]int32{0, 9})) {
		t.Fatalf("short sees %v", got)
	}
}

func TestLedgerByHand(t *testing.T) {
	school := writeFile(t, "areas.geojson", collection(
		// Four cells far from any camera: (-40, -40) to (-39, -39).
		rectFeature(-1000, -1000, -950, -950, map[string]any{"name": "Station", "kind": "station", "weight": 2, "district": "Central"}),
	))
	pole := maintenance.Window{Name: "pole swap", ApprovedBy: "Li Wei", Devices: []string{"long"}, From: h(10), To: h(12)}
	type camWant struct {
		id              string
		cellHours, down float64
	}
	for _, tt := range []struct {
		name        string
		cfg         Config
		devices     []fleet.Device
		spans       map[string][]fleet.StatusSpan
		outage      float64
		maintenance float64
		unknown     float64
		never       float64
		cameras     []camWant
	}{
		{
			name:    "one camera down 2 h of 24 over its 10 cells",
			devices: []fleet.Device{long()},
			spans:   map[string][]fleet.StatusSpan{"long": timeline(10, 12)},
			outage:  20, cameras: []camWant{{"long", 20, 2}},
		},
		{
			name:    "a working camera keeps 4 of the cells",
			devices: []fleet.Device{long(), short()},
			spans:   map[string][]fleet.StatusSpan{"long": timeline(10, 12), "short": allDay(wire.StatusDegraded)},
			outage:  12, cameras: []camWant{{"long", 12, 2}},
		},
		{
			name:        "in a maintenance window the loss is planned",
			cfg:         Config{Maintenance: maintenance.MustSchedule(pole)},
			devices:     []fleet.Device{long()},
			spans:       map[string][]fleet.StatusSpan{"long": timeline(10, 12)},
			maintenance: 20,
		},
		{
			name:    "a window while the camera works costs nothing",
			cfg:     Config{Maintenance: maintenance.MustSchedule(pole)},
			devices: []fleet.Device{long()},
			spans:   map[string][]fleet.StatusSpan{"long": timeline(14, 15)},
			outage:  10, cameras: []camWant{{"long", 10, 1}},
		},
		{
			// 6 cells of its own × 2 h, and 4 shared × 2 h split evenly.
			name:    "two cameras down together split the shared cells",
			devices: []fleet.Device{long(), short()},
			spans:   map[string][]fleet.StatusSpan{"long": timeline(10, 12), "short": timeline(10, 12)},
			outage:  20, cameras: []camWant{{"long", 16, 2}, {"short", 4, 2}},
		},
		{
			// 10–11 only long is down: its 6 own cells; 11–12 both: 6 own
			// to long, 4 shared split 2 and 2; 12–13 only short: long
			// covers the shared cells.
			name:    "overlapping outages",
			devices: []fleet.Device{long(), short()},
			spans:   map[string][]fleet.StatusSpan{"long": timeline(10, 12), "short": timeline(11, 13)},
			outage:  16, cameras: []camWant{{"long", 14, 2}, {"short", 2, 2}},
		},
		{
			name:    "time the hub knew nothing of is unknown, not lost",
			devices: []fleet.Device{long()},
			spans: map[string][]fleet.StatusSpan{"long": {
				{From: h(6), To: h(10), Status: wire.StatusOnline},
				{From: h(10), To: h(12), Status: wire.StatusUnreachable},
				{From: h(12), To: h(23), Status: wire.StatusUnknown},
				{From: h(23), To: h(24), Status: wire.StatusOnline},
			}},
			outage: 20, unknown: 170, cameras: []camWant{{"long", 20, 2}},
		},
		{
			name:    "never covered: the station's 4 cells all day",
			cfg:     Config{Areas: school},
			devices: []fleet.Device{long()},
			spans:   map[string][]fleet.StatusSpan{"long": allDay(wire.StatusOnline)},
			never:   96,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(tt.devices...)
			env.history.spans = tt.spans
			m := newModel(t, tt.cfg, env)
			l, err := m.Ledger(context.Background(), LedgerQuery{From: h(0), To: h(24), Scope: auth.Everything})
			if err != nil {
				t.Fatal(err)
			}
			got := l.Totals
			if got.Outage.CellHours != tt.outage || got.Maintenance.CellHours != tt.maintenance ||
				got.Unknown.CellHours != tt.unknown || got.NeverCovered.CellHours != tt.never {
				t.Errorf("totals %+v; want outage %v maintenance %v unknown %v never %v", got, tt.outage, tt.maintenance, tt.unknown, tt.never)
			}
			if got.Outage.HectareHours != tt.outage*625/10_000 {
				t.Errorf("hectare-hours %v for %v cell-hours of 625 m²", got.Outage.HectareHours, tt.outage)
			}
			var cams []camWant
			for _, c := range l.Cameras {
				cams = append(cams, camWant{c.ID, c.CellHours, c.DownHours})
				if c.WeightedCellHours != c.CellHours || c.District != "Central" || c.Site != "site-Central" || c.Name == "" {
					t.Errorf("camera line %+v", c)
				}
			}
			if !slices.Equal(cams, tt.cameras) {
				t.Errorf("cameras %v, want %v", cams, tt.cameras)
			}
			if tt.maintenance > 0 {
				if len(l.Maintenance) != 1 || !slices.Equal(l.Maintenance[0].Names, []string{"pole swap"}) ||
					!slices.Equal(l.Maintenance[0].ApprovedBy, []string{"Li Wei"}) || l.Maintenance[0].CellHours != tt.maintenance {
					t.Errorf("maintenance %+v", l.Maintenance)
				}
			} else if len(l.Maintenance) != 0 {
				t.Errorf("maintenance %+v", l.Maintenance)
			}
			if tt.never > 0 && (got.NeverCovered.Weighted != 2*tt.never || l.Districts[0].NeverCovered.CellHours != tt.never) {
				t.Errorf("never covered weighted %v, district %+v", got.NeverCovered.Weighted, l.Districts)
			}
		})
	}
}

// A district whose cameras were online 22 h of 24 (91.7 %) but lost 8.3 %
// of its weighted coverage is flagged when 90 % looks fine.
func TestLedgerFlagsDistricts(t *testing.T) {
	districts := writeFile(t, "districts.geojson", collection(
		rectFeature(-500, -500, 500, 500, map[string]any{"name": "Central"}),
		rectFeature(500, -500, 1500, 500, map[string]any{"name": "Quiet"}),
	))
	for _, tt := range []struct {
		ok      float64
		flagged []string
	}{{0.95, []string{}}, {0.9, []string{"Central"}}} {
		env := newEnv(long())
		env.history.spans = map[string][]fleet.StatusSpan{"long": timeline(10, 12)}
		m := newModel(t, Config{Districts: districts, OnlineRateOK: tt.ok}, env)
		l, err := m.Ledger(context.Background(), LedgerQuery{From: h(0), To: h(24), Scope: auth.Everything})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l.Flagged, tt.flagged) || len(l.Districts) != 2 {
			t.Fatalf("ok at %v: flagged %v, districts %+v", tt.ok, l.Flagged, l.Districts)
		}
		c := l.Districts[0]
		if c.District != "Central" || c.CameraOnlineRate == nil || *c.CameraOnlineRate != 0.9167 || c.WeightedLostPct != 8.33 ||
			c.Cells != 1600 || c.DesignedCells != 10 || c.NeverCovered.CellHours != 1590*24 || c.Outage.CellHours != 20 {
			t.Errorf("Central %+v", c)
		}
		if q := l.Districts[1]; q.District != "Quiet" || q.CameraOnlineRate != nil || q.NeverCovered.CellHours != 1600*24 {
			t.Errorf("Quiet %+v", q)
		}
		if l.Totals.NeverCovered.CellHours != (1590+1600)*24 {
			t.Errorf("never covered %v", l.Totals.NeverCovered)
		}
	}
}

func TestLedgerScopeAndPeriod(t *testing.T) {
	env := newEnv(long(), camAt("other", "Elsewhere", 5012.5, 0, 0, 10, 250))
	env.history.spans = map[string][]fleet.StatusSpan{"long": timeline(10, 12), "other": timeline(0, 24)}
	m := newModel(t, Config{}, env)
	l, err := m.Ledger(context.Background(), LedgerQuery{From: h(0), To: h(24), Scope: auth.Scope{Districts: []string{"Elsewhere"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Cameras) != 1 || l.Cameras[0].ID != "other" || l.Totals.Outage.CellHours != 240 || len(l.Districts) != 1 {
		t.Errorf("scoped ledger %+v", l)
	}
	if slices.Contains(env.history.asked, "long") {
		t.Error("the history was asked about a camera outside the scope")
	}
	l, err = m.Ledger(context.Background(), LedgerQuery{From: h(0), To: h(24), Scope: auth.Everything, District: "Central"})
	if err != nil || len(l.Cameras) != 1 || l.Cameras[0].ID != "long" || l.Totals.Outage.CellHours != 20 {
		t.Errorf("filtered ledger %+v %v", l, err)
	}
	// The clock stands at 01:00 the next day: a period reaching further
	// ends now.
	l, err = m.Ledger(context.Background(), LedgerQuery{From: h(0), To: h(48), Scope: auth.Everything})
	if err != nil || !l.To.Equal(env.now) || l.Hours != 25 {
		t.Errorf("future clipped: to %v hours %v %v", l.To, l.Hours, err)
	}
	for _, q := range []LedgerQuery{{From: h(5), To: h(5)}, {From: h(-24 * 100), To: h(0)}, {From: h(30), To: h(40)}} {
		if _, err := m.Ledger(context.Background(), q); !errors.Is(err, ErrPeriod) {
			t.Errorf("period %v–%v: %v", q.From, q.To, err)
		}
	}
	env.history.err = errors.New("disk gone")
	if _, err := m.Ledger(context.Background(), LedgerQuery{From: h(0), To: h(24), Scope: auth.Everything}); err == nil {
		t.Error("a history failure was not reported")
	}
}
