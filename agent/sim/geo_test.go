package sim

import (
	"encoding/json"
	"math"
	"testing"
)

// TestCityGeoJSON checks the districts tile the city (each site lies in
// its own district's polygon and no other) and the areas of interest are
// well-formed, weighted, and sit in their districts.
func TestCityGeoJSON(t *testing.T) {
	city, err := GenerateCity(CityOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	dj, aj, err := city.GeoJSON()
	if err != nil {
		t.Fatal(err)
	}
	var districts, areas collection
	if err := json.Unmarshal(dj, &districts); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(aj, &areas); err != nil {
		t.Fatal(err)
	}
	if len(districts.Features) != len(city.Districts) {
		t.Fatalf("%d district features for %d districts", len(districts.Features), len(city.Districts))
	}
	inside := func(f feature, lon, lat float64) bool {
		ring := f.Geometry.Coordinates[0]
		in := false
		for i, j := 0, len(ring)-1; i < len(ring); j, i = i, i+1 {
			a, b := ring[i], ring[j]
			if (a[1] > lat) != (b[1] > lat) && lon < (b[0]-a[0])*(lat-a[1])/(b[1]-a[1])+a[0] {
				in = !in
			}
		}
		return in
	}
	for _, a := range city.Agents {
		for _, f := range districts.Features {
			in := inside(f, a.Site.Location.Lon, a.Site.Location.Lat)
			if own := f.Properties["name"] == a.Site.District; in != own {
				t.Errorf("site %s of %s: inside %s = %v", a.Site.ID, a.Site.District, f.Properties["name"], in)
			}
		}
	}
	kinds := map[string]int{}
	for _, f := range areas.Features {
		ring := f.Geometry.Coordinates[0]
		if len(ring) < 4 || ring[0] != ring[len(ring)-1] {
			t.Errorf("area %v: ring not closed", f.Properties["name"])
		}
		w, _ := f.Properties["weight"].(float64)
		if w < 1 || math.IsNaN(w) {
			t.Errorf("area %v: weight %v", f.Properties["name"], f.Properties["weight"])
		}
		kinds[f.Properties["kind"].(string)]++
	}
	if kinds["park"] != len(city.Districts) || len(kinds) < 3 {
		t.Errorf("area kinds %v", kinds)
	}
	// The same seed, the same map.
	dj2, aj2, _ := city.GeoJSON()
	if string(dj2) != string(dj) || string(aj2) != string(aj) {
		t.Error("the map is not deterministic")
	}
}
