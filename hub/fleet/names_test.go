package fleet_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// namedInventory is agent a1's site "Riverside Metro B" in Riverside
// with Chinese names for the site, its district and two of its three
// devices; cam-3 stands across the district line in Jianghan.
func (h *harness) namedInventory(device1 string) wire.Message {
	m := h.inventory("a1", "Riverside", "cam-1", "cam-2", "cam-3")
	inv := m.Inventory
	inv.Site.Name = "Riverside Metro B"
	inv.Site.Names = wire.Names{"zh-CN": "滨江地铁站 B 口"}
	inv.Site.DistrictNames = wire.Names{"zh-CN": "滨江区"}
	inv.Devices[0].Name, inv.Devices[0].Names = "Gate east", wire.Names{"zh-CN": device1, "en": "Gate east"}
	inv.Devices[2].District, inv.Devices[2].Names = "Jianghan", wire.Names{"zh-CN": "自行车棚"}
	return m
}

// TestLocalisedNames: the inventory's names in other languages reach the
// hub's views of the devices and the agent, and a search finds a device
// by any of them.
func TestLocalisedNames(t *testing.T) {
	h := newHarness(t)
	h.must(h.birth("a1", 1))
	h.must(h.namedInventory("东门"))
	h.setup("a2", "Hankou", "cam-9") // no names at all

	a := h.agent("a1")
	if a.SiteNames["zh-CN"] != "滨江地铁站 B 口" || a.DistrictNames["zh-CN"] != "滨江区" {
		t.Errorf("agent site names %v, district names %v", a.SiteNames, a.DistrictNames)
	}
	d1, d2, d3, d9 := h.device("cam-1"), h.device("cam-2"), h.device("cam-3"), h.device("cam-9")
	if d1.Localised == nil || d1.Names["zh-CN"] != "东门" || d1.SiteNames["zh-CN"] != "滨江地铁站 B 口" || d1.DistrictNames["zh-CN"] != "滨江区" {
		t.Errorf("cam-1 names %+v", d1.Localised)
	}
	if d2.Localised == nil || d2.Names != nil || d2.SiteNames["zh-CN"] != "滨江地铁站 B 口" || d2.DistrictNames["zh-CN"] != "滨江区" {
		t.Errorf("cam-2 (no names of its own) names %+v", d2.Localised)
	}
	// The site's district names are not cam-3's district's.
	if d3.Localised == nil || d3.Names["zh-CN"] != "自行车棚" || d3.SiteNames["zh-CN"] != "滨江地铁站 B 口" || d3.DistrictNames != nil {
		t.Errorf("cam-3 (in another district) names %+v", d3.Localised)
	}
	if d9.Localised != nil || d9.OwnNames() != nil {
		t.Errorf("cam-9 (no names anywhere) names %+v", d9.Localised)
	}

	// The JSON the console reads.
	for _, tc := range []struct {
		d    fleet.Device
		want []string
		not  []string
	}{
		{d1, []string{`"names":{"en":"Gate east","zh-CN":"东门"}`, `"site_names":{"zh-CN":"滨江地铁站 B 口"}`, `"district_names":{"zh-CN":"滨江区"}`}, nil},
		{d9, nil, []string{`names`}},
	} {
		b, err := json.Marshal(tc.d)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s JSON lacks %s: %s", tc.d.ID, w, b)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(string(b), w) {
				t.Errorf("%s JSON has %s: %s", tc.d.ID, w, b)
			}
		}
	}
	b, _ := json.Marshal(a)
	if !strings.Contains(string(b), `"site_names":{"zh-CN":"滨江地铁站 B 口"}`) || !strings.Contains(string(b), `"district_names":{"zh-CN":"滨江区"}`) {
		t.Errorf("agent JSON: %s", b)
	}

	search := map[string][]string{
		"东门":        {"cam-1"},
		"gate EAST": {"cam-1"},
		"自行车":       {"cam-3"},
		"滨江地铁站":     {"cam-1", "cam-2", "cam-3"}, // the site's name finds its devices
		"metro b":   {"cam-1", "cam-2", "cam-3"},
		"滨江区":       nil, // district names are a label, not a search term (as the district is not)
		"东门\x00":    nil,
	}
	for needle, want := range search {
		// Alone the search runs through the corpus; narrowed to a few
		// devices it looks at each; Match is the definition.
		for _, q := range []fleet.DeviceQuery{
			{DeviceFilter: fleet.DeviceFilter{Search: needle}},
			{DeviceFilter: fleet.DeviceFilter{Search: needle, Sites: []string{"site-a1"}}},
		} {
			var got []string
			for _, d := range h.r.QueryDevices(q).Devices {
				got = append(got, d.ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("search %q (sites %v) = %v, want %v", needle, q.Sites, got, want)
			}
		}
		var got []string
		for _, id := range []string{"cam-1", "cam-2", "cam-3", "cam-9"} {
			d := h.device(id)
			if (&fleet.DeviceFilter{Search: needle}).Match(&d) {
				got = append(got, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Match %q = %v, want %v", needle, got, want)
		}
	}

	// A renamed device is news, and found by its new name only.
	h.take()
	h.must(h.namedInventory("东大门"))
	var affected []string
	for _, c := range h.take() {
		if c.Kind == fleet.ChangeInventory {
			for _, d := range c.Affected {
				affected = append(affected, d.ID)
			}
		}
	}
	if !slices.Equal(affected, []string{"cam-1"}) {
		t.Errorf("rename affected %v, want cam-1", affected)
	}
	for needle, n := range map[string]int{"东大门": 1, "东门": 0} {
		if got := h.r.QueryDevices(fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Search: needle}}).Total; got != n {
			t.Errorf("after the rename, search %q found %d, want %d", needle, got, n)
		}
	}
	// Names dropped from the site leave the devices without names.
	m := h.inventory("a1", "Riverside", "cam-1", "cam-2", "cam-3")
	h.must(m)
	if d := h.device("cam-2"); d.Localised != nil {
		t.Errorf("names dropped, cam-2 still has %+v", d.Localised)
	}
	if a := h.agent("a1"); a.SiteNames != nil || a.DistrictNames != nil {
		t.Errorf("names dropped, agent still has %v %v", a.SiteNames, a.DistrictNames)
	}
}

// TestLocalisedNamesAreTheRegistrysOwn: changing the message's maps after
// Apply changes nothing the registry shows.
func TestLocalisedNamesAreTheRegistrysOwn(t *testing.T) {
	h := newHarness(t)
	h.must(h.birth("a1", 1))
	m := h.namedInventory("东门")
	h.must(m)
	m.Inventory.Devices[0].Names["zh-CN"] = "西门"
	m.Inventory.Site.Names["zh-CN"] = "别处"
	d := h.device("cam-1")
	if !maps.Equal(d.Names, wire.Names{"zh-CN": "东门", "en": "Gate east"}) || d.SiteNames["zh-CN"] != "滨江地铁站 B 口" {
		t.Errorf("names %v, site names %v", d.Names, d.SiteNames)
	}
}
