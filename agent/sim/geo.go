package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/citywatch/citywatch/wire"
)

// The city's map: what a hub draws it with and measures its coverage
// against. Districts are the Voronoi cells of their centres within the
// city's bounds, so they tile the city with no gaps or overlaps; areas of
// interest are the public places a city watches most (schools, stations,
// squares, hospitals, markets) around the sites of those kinds, weighted by
// importance, plus a park in each district that no site watches: a
// coverage gap by design, for the demo to show.

// areaKinds maps words of site names to an area kind and its weight.
var areaKinds = []struct {
	word, kind string
	weight     float64
}{
	{"School", "school", 3},
	{"Station", "station", 3},
	{"Terminal", "station", 3},
	{"Hospital", "hospital", 3},
	{"Plaza", "square", 2},
	{"Market", "market", 2},
	{"Stadium", "square", 2},
	{"Mall", "market", 1.5},
}

// areaRadius is the radius of a site's area of interest, metres.
const areaRadius = 120

// GeoJSON returns the city's districts and areas of interest as GeoJSON
// FeatureCollections, in the form the hub's map reads (districts: property
// name; areas: name, kind, weight, district).
func (c City) GeoJSON() (districts, areas []byte, err error) {
	if len(c.Districts) == 0 {
		return nil, nil, fmt.Errorf("sim: the city has no districts")
	}
	proj := newPlane(c.Districts[0].Center)
	centres := make([]point, len(c.Districts))
	lo, hi := point{math.Inf(1), math.Inf(1)}, point{math.Inf(-1), math.Inf(-1)}
	extend := func(p point) {
		lo, hi = point{math.Min(lo.x, p.x), math.Min(lo.y, p.y)}, point{math.Max(hi.x, p.x), math.Max(hi.y, p.y)}
	}
	for i, d := range c.Districts {
		centres[i] = proj.to(d.Center)
		extend(centres[i])
	}
	for _, a := range c.Agents {
		extend(proj.to(a.Site.Location))
	}
	const margin = 2500
	bounds := []point{{lo.x - margin, lo.y - margin}, {hi.x + margin, lo.y - margin}, {hi.x + margin, hi.y + margin}, {lo.x - margin, hi.y + margin}}

	var dfs []feature
	for i, d := range c.Districts {
		cell := bounds
		for j := range centres {
			if j != i {
				cell = clipHalfPlane(cell, centres[i], centres[j])
			}
		}
		dfs = append(dfs, feature{Type: "Feature", Geometry: polygon(proj, cell),
			Properties: map[string]any{"name": d.Name, "name_zh": d.NameZH}})
	}
	var afs []feature
	for _, a := range c.Agents {
		for _, k := range areaKinds {
			if strings.Contains(a.Site.Name, k.word) {
				afs = append(afs, feature{Type: "Feature", Geometry: polygon(proj, circle(proj.to(a.Site.Location), areaRadius)),
					Properties: map[string]any{"name": a.Site.Name, "kind": k.kind, "weight": k.weight, "district": a.Site.District}})
				break
			}
		}
	}
	for i, d := range c.Districts {
		// A park 1.2 km east of the centre, where the generator puts no
		// site on purpose: a design gap.
		park := centres[i]
		park.x += 1200
		afs = append(afs, feature{Type: "Feature", Geometry: polygon(proj, circle(park, 150)),
			Properties: map[string]any{"name": d.Name + " Park", "kind": "park", "weight": 1, "district": d.Name}})
	}
	if districts, err = json.Marshal(collection{Type: "FeatureCollection", Features: dfs}); err != nil {
		return nil, nil, err
	}
	areas, err = json.Marshal(collection{Type: "FeatureCollection", Features: afs})
	return districts, areas, err
}

type collection struct {
	Type     string    `json:"type"`
	Features []feature `json:"features"`
}

type feature struct {
	Type       string         `json:"type"`
	Geometry   geometry       `json:"geometry"`
	Properties map[string]any `json:"properties"`
}

type geometry struct {
	Type        string         `json:"type"`
	Coordinates [][][2]float64 `json:"coordinates"`
}

// point is a position in metres east (x) and north (y) of a plane's origin.
type point struct{ x, y float64 }

// plane is a local equirectangular projection, exact enough over a city.
type plane struct {
	origin wire.Location
	cosLat float64
}

func newPlane(origin wire.Location) plane {
	return plane{origin: origin, cosLat: math.Cos(origin.Lat * math.Pi / 180)}
}

func (p plane) to(l wire.Location) point {
	return point{(l.Lon - p.origin.Lon) * metresPerDegree * p.cosLat, (l.Lat - p.origin.Lat) * metresPerDegree}
}

func (p plane) from(q point) wire.Location {
	return round(wire.Location{Lat: p.origin.Lat + q.y/metresPerDegree, Lon: p.origin.Lon + q.x/(metresPerDegree*p.cosLat)})
}

// polygon closes a ring of plane points into a GeoJSON polygon.
func polygon(p plane, ring []point) geometry {
	coords := make([][2]float64, 0, len(ring)+1)
	for _, q := range append(ring, ring[0]) {
		l := p.from(q)
		coords = append(coords, [2]float64{l.Lon, l.Lat})
	}
	return geometry{Type: "Polygon", Coordinates: [][][2]float64{coords}}
}

// circle approximates a circle by a 32-gon, counter-clockwise.
func circle(c point, r float64) []point {
	ring := make([]point, 32)
	for i := range ring {
		a := 2 * math.Pi * float64(i) / float64(len(ring))
		ring[i] = point{c.x + r*math.Cos(a), c.y + r*math.Sin(a)}
	}
	return ring
}

// clipHalfPlane keeps the part of convex polygon poly nearer to a than to
// b (Sutherland–Hodgman against their perpendicular bisector).
func clipHalfPlane(poly []point, a, b point) []point {
	n := point{b.x - a.x, b.y - a.y}
	mid := point{(a.x + b.x) / 2, (a.y + b.y) / 2}
	side := func(p point) float64 { return (p.x-mid.x)*n.x + (p.y-mid.y)*n.y } // < 0: a's side
	var out []point
	for i, cur := range poly {
		prev := poly[(i+len(poly)-1)%len(poly)]
		sc, sp := side(cur), side(prev)
		if sc <= 0 {
			if sp > 0 {
				out = append(out, cross(prev, cur, sp, sc))
			}
			out = append(out, cur)
		} else if sp <= 0 {
			out = append(out, cross(prev, cur, sp, sc))
		}
	}
	return out
}

func cross(p, q point, sp, sq float64) point {
	t := sp / (sp - sq)
	return point{p.x + t*(q.x-p.x), p.y + t*(q.y-p.y)}
}
