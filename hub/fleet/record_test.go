package fleet_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// A device keeps its site by value: an inventory that renames the site
// (or the device) moves the device in every read, while the snapshots
// handed out before keep what they showed.
func TestRenamesLeaveSnapshots(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "cam-2")
	before := h.r.Devices()
	inv := h.inventory("a1", "Hillside", "cam-1", "cam-2")
	inv.Inventory.Site.ID, inv.Inventory.Site.Name = "site-b", "Site B"
	inv.Inventory.Devices[0].Name, inv.Inventory.Devices[0].Serial = "Gate", "SN-9"
	h.must(inv)

	for _, d := range before {
		if d.Site != "site-a1" || d.SiteName != "Site a1" || d.District != "Riverside" || d.Name != "Cam "+d.ID {
			t.Errorf("snapshot taken before changed: %+v", d)
		}
	}
	if d := h.device("cam-1"); d.Site != "site-b" || d.SiteName != "Site B" || d.District != "Hillside" ||
		d.Name != "Gate" || d.Serial != "SN-9" || d.Status != wire.StatusOnline {
		t.Errorf("cam-1 after the inventory: %+v", d)
	}
	for _, tt := range []struct {
		name string
		f    fleet.DeviceFilter
		want int
	}{
		{"old site", fleet.DeviceFilter{Sites: []string{"site-a1"}}, 0},
		{"new site", fleet.DeviceFilter{Sites: []string{"site-b"}}, 2},
		{"old district", fleet.DeviceFilter{Districts: []string{"Riverside"}}, 0},
		{"new site name", fleet.DeviceFilter{Search: "site b"}, 2},
		{"old name", fleet.DeviceFilter{Search: "cam cam-1"}, 0},
		{"new name", fleet.DeviceFilter{Search: "gate"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if p := h.r.QueryDevices(fleet.DeviceQuery{DeviceFilter: tt.f}); p.Total != tt.want {
				t.Errorf("Total = %d, want %d", p.Total, tt.want)
			}
		})
	}
	if s := h.r.SummaryWhere(func(_, site string) bool { return site == "site-a1" }); s.Devices != 0 {
		t.Errorf("old site still counts %d devices", s.Devices)
	}
	checkInvariants(t, h.r)
}

// A device's times keep their instant to the nanosecond and are shown in
// the hub clock's location, whatever location the agent's report had.
func TestDeviceTimes(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	clk := &clock{now: t0.Add(123456789).In(cst)}
	h := &harness{t: t, clk: clk, r: fleet.New(fleet.Options{Now: clk.Now}), seq: map[string]uint64{}}
	h.must(h.birth("a1", 1))
	h.must(h.inventory("a1", "Riverside", "cam-1"))
	if d := h.device("cam-1"); !d.Since.Equal(clk.now) || d.Since.Location() != cst || !d.LastSeen.IsZero() || !d.Probed.IsZero() {
		t.Fatalf("new device: since %v, last seen %v, probed %v", d.Since, d.LastSeen, d.Probed)
	}
	now := clk.Add(time.Minute)
	l := line("cam-1", wire.StatusOffline, wire.ReasonRefused)
	l.Since, l.Probed = now.Add(-7*time.Second-5).UTC(), now.Add(-time.Second-3).UTC()
	h.must(h.health("a1", l))
	d := h.device("cam-1")
	for _, tt := range []struct {
		name      string
		got, want time.Time
	}{{"since", d.Since, l.Since}, {"last seen", d.LastSeen, now}, {"probed", d.Probed, l.Probed}} {
		if !tt.got.Equal(tt.want) || tt.got.Location() != cst {
			t.Errorf("%s = %v, want %v in %v", tt.name, tt.got, tt.want, cst)
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"since":"` + l.Since.In(cst).Format(time.RFC3339Nano) + `"`; !strings.Contains(string(b), want) {
		t.Errorf("JSON %s lacks %s", b, want)
	}
}

// The metrics of a device are its last report's, whatever the one before
// named.
func TestDeviceMetrics(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	for _, tt := range []struct {
		name string
		m    map[string]float64
	}{
		{"same names", map[string]float64{"fps": 25}},
		{"more", map[string]float64{"fps": 20, "bitrate_kbps": 1800}},
		{"others", map[string]float64{"tcp_ms": 1, "rtsp_ms": 8}},
		{"fewer", map[string]float64{"tcp_ms": 2}},
		{"empty", map[string]float64{}},
		{"none", nil},
		{"again", map[string]float64{"fps": 15}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := line("cam-1", wire.StatusOnline, "")
			l.Metrics = tt.m
			h.must(h.health("a1", l))
			if got := h.device("cam-1").Metrics; !maps.Equal(got, tt.m) || (got == nil) != (tt.m == nil) {
				t.Errorf("Metrics = %v, want %v", got, tt.m)
			}
		})
	}
}

// DeviceNames answers names by id without copying devices: the current
// name, "" for an id the fleet does not have.
func TestDeviceNames(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "cam-2")
	inv := h.inventory("a1", "Riverside", "cam-1", "cam-2")
	inv.Inventory.Devices[1].Name = "Gate"
	h.must(inv)
	if got, want := h.r.DeviceNames([]string{"cam-2", "gone", "cam-1"}), []string{"Gate", "", "Cam cam-1"}; !slices.Equal(got, want) {
		t.Errorf("DeviceNames = %q, want %q", got, want)
	}
}
