package coverage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/hub/param"
	"github.com/citywatch/citywatch/wire"
)

// layer is what a GeoJSON file holds, with its limits: a file over them is
// a mistake (a country's buildings, a file of points), refused before it
// costs the hub its memory.
type layer struct {
	what        string // for errors: "districts", "areas", "buildings"
	maxBytes    int64
	maxFeatures int
	maxVertices int
	named       bool // features need a name property
}

var (
	districtsLayer = layer{what: "districts", maxBytes: 64 << 20, maxFeatures: 1000, maxVertices: 2_000_000, named: true}
	areasLayer     = layer{what: "areas", maxBytes: 64 << 20, maxFeatures: 100_000, maxVertices: 2_000_000, named: true}
	buildingsLayer = layer{what: "buildings", maxBytes: 512 << 20, maxFeatures: 2_000_000, maxVertices: 20_000_000}
)

// Area weights: an area of interest's importance, a positive number up to
// maxWeight, default 1. Weights are kept in thousandths so that running
// sums stay exact integers.
const (
	maxWeight  = 100
	unitWeight = 1000
)

// maxProblems is how many problems of one file an error lists.
const maxProblems = 20

// feature is one validated polygon feature of a file.
type feature struct {
	index    int
	geom     orb.MultiPolygon // WGS-84, as orb keeps it: [lon, lat]
	name     string
	kind     string // areas: school, station, square…
	district string // areas: the district it belongs to, if the file says
	weight   int32  // areas: thousandths
}

// loadLayer reads and validates a GeoJSON FeatureCollection file.
func loadLayer(path string, l layer) ([]feature, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("coverage: %s file: %w", l.what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("coverage: %s file: %w", l.what, err)
	}
	if !st.Mode().IsRegular() || st.Size() > l.maxBytes {
		return nil, fmt.Errorf("coverage: %s file %s: not a regular file of at most %d MiB", l.what, path, l.maxBytes>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, l.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("coverage: %s file %s: %w", l.what, path, err)
	}
	feats, err := parseLayer(data, l)
	if err != nil {
		return nil, fmt.Errorf("coverage: %s file %s: %w", l.what, path, err)
	}
	return feats, nil
}

type rawCollection struct {
	Type     string            `json:"type"`
	Features []json.RawMessage `json:"features"`
}

type rawFeature struct {
	Type       string                     `json:"type"`
	Geometry   *rawGeometry               `json:"geometry"`
	Properties map[string]json.RawMessage `json:"properties"`
}

type rawGeometry struct {
	Type        string          `json:"type"`
	Coordinates json.RawMessage `json:"coordinates"`
}

// problems collects what is wrong with a file, up to maxProblems.
type problems struct {
	list  []error
	extra int
}

func (p *problems) add(index int, format string, args ...any) {
	if len(p.list) == maxProblems {
		p.extra++
		return
	}
	p.list = append(p.list, fmt.Errorf("feature %d: %s", index, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error {
	if p.extra > 0 {
		p.list = append(p.list, fmt.Errorf("and %d more problems", p.extra))
	}
	return errors.Join(p.list...)
}

// parseLayer decodes a FeatureCollection of Polygon and MultiPolygon
// features and checks every feature, reporting the problems by feature
// index.
func parseLayer(data []byte, l layer) ([]feature, error) {
	if int64(len(data)) > l.maxBytes {
		return nil, fmt.Errorf("larger than %d MiB", l.maxBytes>>20)
	}
	var fc rawCollection
	if err := json.Unmarshal(data, &fc); err != nil {
		return nil, fmt.Errorf("not GeoJSON: %w", err)
	}
	if fc.Type != "FeatureCollection" {
		return nil, fmt.Errorf("type is %q; want a FeatureCollection", param.Clip(fc.Type))
	}
	if len(fc.Features) > l.maxFeatures {
		return nil, fmt.Errorf("%d features exceed the limit of %d", len(fc.Features), l.maxFeatures)
	}
	var (
		p        problems
		out      = make([]feature, 0, len(fc.Features))
		vertices int
		names    = map[string]int{}
	)
	for i, raw := range fc.Features {
		var rf rawFeature
		if err := json.Unmarshal(raw, &rf); err != nil {
			p.add(i, "not a GeoJSON feature: %v", err)
			continue
		}
		if rf.Type != "Feature" {
			p.add(i, "type is %q; want Feature", param.Clip(rf.Type))
			continue
		}
		ft, n, err := parseGeometry(rf.Geometry)
		if err != nil {
			p.add(i, "%v", err)
			continue
		}
		if vertices += n; vertices > l.maxVertices {
			return nil, fmt.Errorf("more than %d vertices in all", l.maxVertices)
		}
		ft.index = i
		if l.named && !ft.properties(rf.Properties, l, func(format string, args ...any) { p.add(i, format, args...) }) {
			continue
		}
		if l == districtsLayer {
			if first, dup := names[ft.name]; dup {
				p.add(i, "district %q is already feature %d; put a district's parts in one MultiPolygon", ft.name, first)
				continue
			}
			names[ft.name] = i
		}
		out = append(out, ft)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// properties reads a district's or area's properties into ft, reporting
// each problem through bad; it returns whether all were good.
func (ft *feature) properties(props map[string]json.RawMessage, l layer, bad func(string, ...any)) bool {
	ok := true
	text := func(key string, required bool) string {
		raw, present := props[key]
		if !present || string(raw) == "null" {
			if required {
				bad("property %q is missing", key)
				ok = false
			}
			return ""
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			bad("property %q is not a string", key)
			ok = false
			return ""
		}
		if err := checkName(s); err != nil {
			bad("property %q: %v", key, err)
			ok = false
		}
		return s
	}
	ft.name = text("name", true)
	ft.weight = unitWeight
	if l != areasLayer {
		return ok
	}
	ft.kind = text("kind", false)
	ft.district = text("district", false)
	if raw, present := props["weight"]; present && string(raw) != "null" {
		var w float64
		if err := json.Unmarshal(raw, &w); err != nil || !(w > 0 && w <= maxWeight) || math.Round(w*unitWeight) < 1 {
			bad("property \"weight\" is %s; want a number above 0 and at most %d", param.Clip(string(raw)), maxWeight)
			return false
		}
		ft.weight = int32(math.Round(w * unitWeight))
	}
	return ok
}

// checkName accepts what a district name may be (the rule auth.Scope
// applies): 1 to wire.MaxNameLen bytes of printable UTF-8.
func checkName(s string) error {
	if s == "" || len(s) > wire.MaxNameLen || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%q is not 1–%d bytes of printable UTF-8", param.Clip(s), wire.MaxNameLen)
	}
	return nil
}

// parseGeometry reads a Polygon or MultiPolygon and counts its vertices.
func parseGeometry(g *rawGeometry) (feature, int, error) {
	if g == nil {
		return feature{}, 0, errors.New("geometry is missing")
	}
	var polys [][][][]float64
	switch g.Type {
	case "Polygon":
		var poly [][][]float64
		if err := json.Unmarshal(g.Coordinates, &poly); err != nil {
			return feature{}, 0, fmt.Errorf("coordinates of the Polygon: %v", err)
		}
		polys = [][][][]float64{poly}
	case "MultiPolygon":
		if err := json.Unmarshal(g.Coordinates, &polys); err != nil {
			return feature{}, 0, fmt.Errorf("MultiPolygon coordinates: %v", err)
		}
	default:
		return feature{}, 0, fmt.Errorf("geometry type is %q; want Polygon or MultiPolygon", param.Clip(g.Type))
	}
	if len(polys) == 0 {
		return feature{}, 0, errors.New("geometry has no polygons")
	}
	var (
		mp orb.MultiPolygon
		n  int
	)
	for pi, poly := range polys {
		if len(poly) == 0 {
			return feature{}, 0, fmt.Errorf("polygon %d has no rings", pi)
		}
		var op orb.Polygon
		for ri, ring := range poly {
			if len(ring) < 4 {
				return feature{}, 0, fmt.Errorf("polygon %d ring %d has %d positions; a ring needs at least 4", pi, ri, len(ring))
			}
			r := make(orb.Ring, len(ring))
			for k, pos := range ring {
				if len(pos) < 2 || !finite(pos[0]) || !finite(pos[1]) || pos[0] < -180 || pos[0] > 180 || pos[1] < -90 || pos[1] > 90 {
					return feature{}, 0, fmt.Errorf("polygon %d ring %d position %d is not [longitude, latitude] in degrees", pi, ri, k)
				}
				r[k] = orb.Point{pos[0], pos[1]}
			}
			if r[0] != r[len(r)-1] {
				return feature{}, 0, fmt.Errorf("polygon %d ring %d is not closed (its first and last positions differ)", pi, ri)
			}
			n += len(r)
			op = append(op, r)
		}
		mp = append(mp, op)
	}
	return feature{geom: mp}, n, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// bandHeight is the height of the horizontal bands a polygon's edges are
// sorted into: a point-in-polygon test or a scan line reads only the
// edges of its band.
const bandHeight = 100

// polygon is a district or area in projected metres, indexed for
// point-in-polygon tests (even-odd, over all its rings) and scan lines.
type polygon struct {
	bound orb.Bound
	bands map[int32][]seg
}

type seg struct{ a, b orb.Point }

func band(y float64) int32 { return int32(math.Floor(y / bandHeight)) }

func newPolygon(mp orb.MultiPolygon, proj projection) polygon {
	p := polygon{bands: map[int32][]seg{}}
	first := true
	for _, poly := range mp {
		for _, ring := range poly {
			prev := proj.toXY(wire.Location{Lat: ring[0][1], Lon: ring[0][0]})
			for _, pt := range ring[1:] {
				cur := proj.toXY(wire.Location{Lat: pt[1], Lon: pt[0]})
				if first {
					p.bound, first = orb.Bound{Min: prev, Max: prev}, false
				}
				p.bound = p.bound.Extend(cur)
				s := seg{prev, cur}
				for b := band(math.Min(prev[1], cur[1])); b <= band(math.Max(prev[1], cur[1])); b++ {
					p.bands[b] = append(p.bands[b], s)
				}
				prev = cur
			}
		}
	}
	return p
}

// crossing reports whether s crosses the horizontal line at y and where:
// the rule every test here shares, so that a scan line and a
// point-in-polygon test agree on every cell centre.
func (s seg) crossing(y float64) (x float64, ok bool) {
	if (s.a[1] > y) == (s.b[1] > y) {
		return 0, false
	}
	return s.a[0] + (y-s.a[1])*(s.b[0]-s.a[0])/(s.b[1]-s.a[1]), true
}

// contains reports whether pt is inside (even-odd rule).
func (p *polygon) contains(pt orb.Point) bool {
	if !p.bound.Contains(pt) {
		return false
	}
	in := false
	for _, s := range p.bands[band(pt[1])] {
		if x, ok := s.crossing(pt[1]); ok && pt[0] < x {
			in = !in
		}
	}
	return in
}

// cells calls f with every cell of g whose centre is inside p, row by
// row, until f returns false. A centre is inside when an odd number of
// crossings lie to its right, as contains decides.
func (p *polygon) cells(g *grid, f func(CellID) bool) {
	var xs []float64
	for j := int32(math.Ceil(p.bound.Min[1]/g.size - 0.5)); float64(j)+0.5 <= p.bound.Max[1]/g.size; j++ {
		y := (float64(j) + 0.5) * g.size
		xs = xs[:0]
		for _, s := range p.bands[band(y)] {
			if x, ok := s.crossing(y); ok {
				xs = append(xs, x)
			}
		}
		slices.Sort(xs)
		for k := 0; k+1 < len(xs); k += 2 {
			// Centres cx with xs[k] <= cx < xs[k+1].
			for i := int32(math.Ceil(xs[k]/g.size - 0.5)); ; i++ {
				cx := (float64(i) + 0.5) * g.size
				if cx < xs[k] {
					continue
				}
				if cx >= xs[k+1] {
					break
				}
				if !f(cellID(i, j)) {
					return
				}
			}
		}
	}
}
