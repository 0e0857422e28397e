package sim

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

func TestGenerateCityDemo(t *testing.T) {
	city, err := GenerateCity(CityOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(city.Districts) < 6 {
		t.Errorf("%d districts, want at least 6", len(city.Districts))
	}
	if len(city.Agents) < 20 {
		t.Errorf("%d sites, want at least 20", len(city.Agents))
	}
	cams, sensors := city.Devices()
	if cams+sensors < 200 {
		t.Errorf("%d devices, want at least 200", cams+sensors)
	}
	if share := float64(cams) / float64(cams+sensors); share < 0.5 || share > 0.7 {
		t.Errorf("cameras are %.0f%% of devices, want about 60%%", share*100)
	}

	ids := make(map[string]bool)
	unique := func(kind, id string) {
		t.Helper()
		if err := wire.ValidID(id); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
		if ids[id] {
			t.Errorf("%s id %q used twice", kind, id)
		}
		ids[id] = true
	}
	kinds := make(map[wire.SensorKind]bool)
	perDistrict := make(map[string]int)
	for _, a := range city.Agents {
		unique("agent", a.ID)
		unique("site", a.Site.ID)
		perDistrict[a.Site.District]++
		near(t, a.Site.ID, a.Site.Location, defaultCenter, 15000)
		for i := range a.Cameras {
			c := &a.Cameras[i]
			unique("camera", c.ID)
			near(t, c.ID, c.Location, a.Site.Location, 100)
			// Validate needs a URL; Sim fills the real one in.
			c.RTSP = secret.URL("rtsp://127.0.0.1:554/stream")
		}
		for _, s := range a.Sensors {
			unique("sensor", s.ID)
			near(t, s.ID, s.Location, a.Site.Location, 100)
			kinds[s.Kind] = true
		}
		if err := a.Validate(); err != nil {
			t.Errorf("agent %s: %v", a.ID, err)
		}
	}
	for _, k := range wire.SensorKinds {
		if !kinds[k] {
			t.Errorf("no %s sensor in the city", k)
		}
	}
	for _, d := range city.Districts {
		if perDistrict[d.Name] == 0 {
			t.Errorf("district %s has no site", d.Name)
		}
		if d.NameZH == "" {
			t.Errorf("district %s has no Chinese name", d.Name)
		}
	}
}

func TestGenerateCityDeterministic(t *testing.T) {
	a, _ := GenerateCity(CityOptions{Seed: 7})
	b, _ := GenerateCity(CityOptions{Seed: 7})
	c, _ := GenerateCity(CityOptions{Seed: 8})
	if !reflect.DeepEqual(a, b) {
		t.Error("same seed, different cities")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("different seeds, same city")
	}
}

func TestGenerateCitySizes(t *testing.T) {
	tests := []struct {
		opts    CityOptions
		wantErr bool
	}{
		{CityOptions{Districts: 8, Sites: 1000, Devices: 100_000}, false},
		{CityOptions{Districts: 1, Sites: 1, Devices: 1}, false},
		{CityOptions{Districts: 9}, true},
		{CityOptions{Sites: 10, Devices: 5}, true},
		{CityOptions{Sites: 1, Devices: 5000}, true},
	}
	for _, tt := range tests {
		city, err := GenerateCity(tt.opts)
		if (err != nil) != tt.wantErr {
			t.Errorf("%+v: err %v, want error %v", tt.opts, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		cams, sensors := city.Devices()
		if len(city.Agents) != tt.opts.Sites || cams+sensors != tt.opts.Devices {
			t.Errorf("%+v: %d sites, %d devices", tt.opts, len(city.Agents), cams+sensors)
		}
		ids := make(map[string]bool)
		for _, a := range city.Agents {
			for _, c := range a.Cameras {
				ids[c.ID] = true
			}
			for _, s := range a.Sensors {
				ids[s.ID] = true
			}
		}
		if len(ids) != tt.opts.Devices {
			t.Errorf("%+v: %d distinct device ids", tt.opts, len(ids))
		}
	}
}

// near checks that loc is a valid position within metres of ref.
func near(t *testing.T, what string, loc, ref wire.Location, metres float64) {
	t.Helper()
	if loc.Lat < -90 || loc.Lat > 90 || loc.Lon < -180 || loc.Lon > 180 {
		t.Errorf("%s: %v is not a WGS-84 position", what, loc)
		return
	}
	dy := (loc.Lat - ref.Lat) * metresPerDegree
	dx := (loc.Lon - ref.Lon) * metresPerDegree * math.Cos(ref.Lat*math.Pi/180)
	if d := math.Hypot(dx, dy); d > metres {
		t.Errorf("%s: %.0f m from its reference, want at most %.0f", what, d, metres)
	}
}

// TestGenerateCityChineseNames: every district, site and device of a city
// has a Chinese name in what its agent sends, distinct within its kind
// and the same for the same seed — the demo console in 中文 shows no
// English name.
func TestGenerateCityChineseNames(t *testing.T) {
	for _, opts := range []CityOptions{{Seed: 1}, {Seed: 3, Districts: len(districtNames), Sites: 40, Devices: 2000, Switches: true}} {
		city, err := GenerateCity(opts)
		if err != nil {
			t.Fatal(err)
		}
		districts := map[string]string{}
		for _, d := range city.Districts {
			districts[d.Name] = d.NameZH
		}
		seen := map[string]string{} // zh-CN name → what has it
		distinct := func(what, zh string) {
			t.Helper()
			if zh == "" || !utf8.ValidString(zh) || !containsHan(zh) {
				t.Errorf("%s: zh-CN name %q", what, zh)
			}
			if other, dup := seen[zh]; dup {
				t.Errorf("%s and %s are both %q", what, other, zh)
			}
			seen[zh] = what
		}
		for _, a := range city.Agents {
			c := a
			for i := range c.Cameras {
				c.Cameras[i].RTSP = secret.URL("rtsp://127.0.0.1:554/stream")
			}
			if err := c.Validate(); err != nil { // names within the contract
				t.Errorf("agent %s: %v", a.ID, err)
			}
			if got := a.Site.DistrictNames["zh-CN"]; got == "" || got != districts[a.Site.District] {
				t.Errorf("site %s: district %s named %q, want %q", a.Site.ID, a.Site.District, got, districts[a.Site.District])
			}
			distinct("site "+a.Site.ID, a.Site.Names["zh-CN"])
			for _, c := range a.Cameras {
				distinct("camera "+c.ID, c.Names["zh-CN"])
			}
			for _, s := range a.Sensors {
				distinct("sensor "+s.ID, s.Names["zh-CN"])
			}
		}
		zh := map[string]bool{}
		for _, d := range city.Districts {
			if !containsHan(d.NameZH) || zh[d.NameZH] {
				t.Errorf("district %s: Chinese name %q", d.Name, d.NameZH)
			}
			zh[d.NameZH] = true
		}
	}
}

func containsHan(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.Is(unicode.Han, r) }) >= 0
}

// With PowerFeeds every site of a district hangs off the district's one
// feed, an id the agents' contract accepts; without, none has a feed.
func TestGenerateCityPowerFeeds(t *testing.T) {
	for _, feeds := range []bool{false, true} {
		city, err := GenerateCity(CityOptions{Seed: 5, Districts: len(districtNames), Sites: 24, Devices: 240, PowerFeeds: feeds})
		if err != nil {
			t.Fatal(err)
		}
		byDistrict := map[string]map[string]bool{}
		for _, a := range city.Agents {
			if !feeds {
				if a.Site.PowerFeed != "" {
					t.Fatalf("%s has feed %q without PowerFeeds", a.ID, a.Site.PowerFeed)
				}
				continue
			}
			if err := wire.ValidID(a.Site.PowerFeed); err != nil {
				t.Fatalf("%s: feed %q: %v", a.ID, a.Site.PowerFeed, err)
			}
			if byDistrict[a.Site.District] == nil {
				byDistrict[a.Site.District] = map[string]bool{}
			}
			byDistrict[a.Site.District][a.Site.PowerFeed] = true
		}
		feedsSeen := map[string]bool{}
		for d, fs := range byDistrict {
			if len(fs) != 1 {
				t.Errorf("district %s has feeds %v, want one", d, fs)
			}
			for f := range fs {
				if feedsSeen[f] {
					t.Errorf("feed %s serves two districts", f)
				}
				feedsSeen[f] = true
			}
		}
		if feeds && len(feedsSeen) != len(districtNames) {
			t.Errorf("%d feeds for %d districts", len(feedsSeen), len(districtNames))
		}
	}
}
