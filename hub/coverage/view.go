package coverage

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/wire"
)

// What the map asks for: the cells and the fields of view within a box of
// the screen, and the layers the files hold, each as GeoJSON.

// Cell states, as /api/coverage/cells names them.
const (
	CellCovered = "covered" // seen by two or more working cameras
	CellFragile = "fragile" // seen by exactly one working camera
	CellLost    = "lost"    // designed to be seen, no camera seeing it works
	CellGap     = "gap"     // a district's or area's cell no camera is designed to see
)

// CellStates lists the states in the order the API documents them.
var CellStates = []string{CellCovered, CellFragile, CellLost, CellGap}

// maxWedges bounds the fields of view one answer carries.
const maxWedges = 20_000

// ErrTooMany is returned for a box holding more than an answer may carry;
// the map zooms in.
var ErrTooMany = errors.New("coverage: too many for one answer")

// Box is a rectangle of WGS-84 degrees.
type Box struct{ West, South, East, North float64 }

// Check reports what is wrong with the box, if anything.
func (b Box) Check() error {
	for _, v := range []float64{b.West, b.South, b.East, b.North} {
		if !finite(v) {
			return errors.New("coordinates must be numbers")
		}
	}
	switch {
	case b.West < -180 || b.East > 180 || b.South < -85 || b.North > 85:
		return errors.New("longitudes are within ±180 and latitudes within ±85")
	case b.West >= b.East || b.South >= b.North:
		return errors.New("west must be less than east and south less than north")
	}
	return nil
}

// GeoJSON as the map library reads it.
type (
	// FeatureCollection is a GeoJSON FeatureCollection.
	FeatureCollection struct {
		Type     string    `json:"type"` // "FeatureCollection"
		Features []Feature `json:"features"`
	}
	// Feature is a GeoJSON Feature.
	Feature struct {
		Type       string   `json:"type"` // "Feature"
		Geometry   Geometry `json:"geometry"`
		Properties any      `json:"properties"`
	}
	// Geometry is a GeoJSON Polygon or MultiPolygon.
	Geometry struct {
		Type        string `json:"type"`
		Coordinates any    `json:"coordinates"`
	}
)

func featureCollection(fs []Feature) FeatureCollection {
	if fs == nil {
		fs = []Feature{}
	}
	return FeatureCollection{Type: "FeatureCollection", Features: fs}
}

func polygonFeature(ring []wire.Location, props any) Feature {
	coords := make([][2]float64, len(ring))
	for i, l := range ring {
		coords[i] = [2]float64{round7(l.Lon), round7(l.Lat)}
	}
	return Feature{Type: "Feature", Geometry: Geometry{Type: "Polygon", Coordinates: [][][2]float64{coords}}, Properties: props}
}

// round7 keeps a centimetre: GeoJSON with 15 digits per coordinate is
// twice the bytes for nothing.
func round7(v float64) float64 { return math.Round(v*1e7) / 1e7 }

// CellProps are a cell's properties in /api/coverage/cells.
type CellProps struct {
	ID       string  `json:"id"` // "column,row" of the grid
	State    string  `json:"state"`
	Cameras  int     `json:"cameras"` // designed to see it
	Working  int     `json:"working"` // of those, working now
	Weight   float64 `json:"weight"`  // its areas of interest's largest weight, else 1
	District string  `json:"district,omitempty"`
}

// span is a box as a range of grid columns and rows.
type gridSpan struct{ i0, i1, j0, j1 int32 }

func (s gridSpan) size() int64 { return int64(s.i1-s.i0+1) * int64(s.j1-s.j0+1) }

func (s gridSpan) holds(c CellID) bool {
	i, j := c.IJ()
	return i >= s.i0 && i <= s.i1 && j >= s.j0 && j <= s.j1
}

func (g *grid) span(b Box) gridSpan {
	lo := g.proj.toXY(wire.Location{Lat: b.South, Lon: b.West})
	hi := g.proj.toXY(wire.Location{Lat: b.North, Lon: b.East})
	at := func(v float64) int32 { return g.index(math.Max(-maxSpan, math.Min(maxSpan, v))) }
	return gridSpan{i0: at(lo[0]), i1: at(hi[0]), j0: at(lo[1]), j1: at(hi[1])}
}

// Cells returns the cells within box that scope may see, of state (one of
// CellStates, or "" for all) and, when district is not empty, of that
// district. A box holding more cells than Config.MaxCells is ErrTooMany.
func (m *Model) Cells(scope auth.Scope, box Box, district, state string) (FeatureCollection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.atlas
	if a == nil {
		return featureCollection(nil), nil
	}
	sp := a.grid.span(box)
	if n := sp.size(); n > int64(4*m.cfg.MaxCells) {
		return FeatureCollection{}, fmt.Errorf("%w: the box holds %d cells of %g m: zoom in", ErrTooMany, n, m.cfg.CellSize)
	}
	var out []CellProps
	var ids []CellID
	known := map[CellID]bool{}
	var buf [8]int32
	add := func(c *cell) {
		known[c.id] = true
		f := a.factsOf(c.facts)
		st := cellState(int(c.designed), int(c.working), f.static)
		if st == "" || (state != "" && st != state) {
			return
		}
		ds := m.districtsOf(c, buf[:0])
		visible := len(ds) == 0 && m.districtVisible(scope, district, -1)
		for _, k := range ds {
			visible = visible || m.districtVisible(scope, district, k)
		}
		if !visible {
			return
		}
		name := ""
		if len(ds) > 0 {
			name = m.districtName(ds[0])
		}
		ids = append(ids, c.id)
		out = append(out, CellProps{Cameras: int(c.designed), Working: int(c.working), State: st, Weight: float64(f.weight) / unitWeight, District: name})
	}
	if sp.size() < int64(len(m.cells)) {
		for i := sp.i0; i <= sp.i1; i++ {
			for j := sp.j0; j <= sp.j1; j++ {
				if ci, ok := m.cellAt.get(cellID(i, j)); ok {
					add(&m.cells[ci])
				}
			}
		}
	} else {
		for ci := range m.cells {
			if sp.holds(m.cells[ci].id) {
				add(&m.cells[ci])
			}
		}
	}
	// Gaps: cells of districts and areas no camera was ever laid on.
	if state == "" || state == CellGap {
		for i := sp.i0; i <= sp.i1; i++ {
			for j := sp.j0; j <= sp.j1; j++ {
				id := cellID(i, j)
				if known[id] {
					continue
				}
				f := a.facts(id)
				if !f.static || !m.districtVisible(scope, district, f.home) {
					continue
				}
				ids = append(ids, id)
				out = append(out, CellProps{State: CellGap, Weight: float64(f.weight) / unitWeight, District: m.districtName(f.home)})
			}
		}
	}
	if len(out) > m.cfg.MaxCells {
		return FeatureCollection{}, fmt.Errorf("%w: %d cells, more than %d: zoom in", ErrTooMany, len(out), m.cfg.MaxCells)
	}
	fs := make([]Feature, len(out))
	for k := range out {
		i, j := ids[k].IJ()
		out[k].ID = strconv.Itoa(int(i)) + "," + strconv.Itoa(int(j))
		sq := a.grid.square(ids[k])
		fs[k] = polygonFeature(sq[:], out[k])
	}
	return featureCollection(fs), nil
}

// cellState names a cell's state; "" for a cell that is none of them (no
// camera is designed to see it and it is no district's or area's).
func cellState(cameras, working int, static bool) string {
	switch {
	case working >= 2:
		return CellCovered
	case working == 1:
		return CellFragile
	case cameras > 0:
		return CellLost
	case static:
		return CellGap
	}
	return ""
}

// WedgeProps are a camera's properties in /api/map/wedges.
type WedgeProps struct {
	ID       string      `json:"id"`
	Name     string      `json:"name,omitempty"`
	Status   wire.Status `json:"status"`
	Site     string      `json:"site"`
	District string      `json:"district"`
	Heading  float64     `json:"heading"`
	FOV      float64     `json:"fov"`
	RangeM   float64     `json:"range_m"` // as the grid counts it: at most MaxRange
}

// Wedges returns the fields of view of the cameras scope may see that
// reach into box, coloured on the map by status.
func (m *Model) Wedges(scope auth.Scope, box Box) (FeatureCollection, error) {
	fs, ids, err := m.wedges(scope, box)
	if err != nil {
		return FeatureCollection{}, err
	}
	// Names are the fleet's, asked for outside the model's lock so that
	// neither lock is ever taken inside the other.
	for i, name := range m.deps.Fleet.DeviceNames(ids) {
		props := fs[i].Properties.(WedgeProps)
		props.Name = name
		fs[i].Properties = props
	}
	return featureCollection(fs), nil
}

// wedges are Wedges' features, without the cameras' names, and the
// cameras' ids.
func (m *Model) wedges(scope auth.Scope, box Box) ([]Feature, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.atlas == nil {
		return nil, nil, nil
	}
	p := m.atlas.grid.proj
	view := orb.Bound{Min: p.toXY(wire.Location{Lat: box.South, Lon: box.West}), Max: p.toXY(wire.Location{Lat: box.North, Lon: box.East})}
	var fs []Feature
	var ids []string
	for k := range m.cams {
		c := &m.cams[k]
		if !c.used || !c.seen || !scope.Allows(m.districtName(c.dist), m.placeOf(c).site) {
			continue
		}
		w, _ := newWedge(p.toXY(c.loc), c.info) // seen: it has one
		if !w.bound().Intersects(view) {
			continue
		}
		if len(fs) == maxWedges {
			return nil, nil, fmt.Errorf("%w: more than %d cameras' fields of view: zoom in", ErrTooMany, maxWedges)
		}
		ring := w.outline()
		locs := make([]wire.Location, len(ring))
		for i, pt := range ring {
			locs[i] = p.toLoc(pt)
		}
		fs = append(fs, polygonFeature(locs, WedgeProps{ID: c.id, Status: c.statusOf(), Site: m.placeOf(c).site, District: m.districtName(c.dist),
			Heading: w.heading, FOV: w.fov, RangeM: w.rng}))
		ids = append(ids, c.id)
	}
	return fs, ids, nil
}

// MapConfig is what the map needs before drawing: GET /api/map/config.
type MapConfig struct {
	Center    *wire.Location `json:"center"` // null until anything is known
	Bounds    *[2][2]float64 `json:"bounds"` // [[west, south], [east, north]] of what scope sees; null when nothing
	CellSizeM float64        `json:"cell_size_m"`
	Basemap   bool           `json:"basemap"`
	Layers    struct {
		Districts bool `json:"districts"`
		Areas     bool `json:"areas"`
		Buildings bool `json:"buildings"`
	} `json:"layers"`
}

// Map returns the map's configuration for scope: its bounds are those of
// the districts and cameras scope sees.
func (m *Model) Map(scope auth.Scope) MapConfig {
	out := MapConfig{CellSizeM: m.cfg.CellSize, Basemap: m.cfg.Basemap != ""}
	out.Layers.Buildings = m.cfg.Buildings != ""
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.atlas
	if a == nil {
		return out
	}
	out.Layers.Districts, out.Layers.Areas = len(a.districts) > 0, len(a.areas) > 0
	var b orb.Bound
	first := true
	extend := func(x orb.Bound) {
		if first {
			b, first = x, false
		} else {
			b = b.Union(x)
		}
	}
	for _, d := range a.districts {
		if scope.Allows(d.name, "") {
			extend(d.geom.Bound())
		}
	}
	for k := range m.cams {
		if c := &m.cams[k]; c.used && scope.Allows(m.districtName(c.dist), m.placeOf(c).site) {
			extend(orb.Bound{Min: orb.Point{c.loc.Lon, c.loc.Lat}, Max: orb.Point{c.loc.Lon, c.loc.Lat}})
		}
	}
	if first {
		ref := a.grid.proj.ref
		out.Center = &ref
		return out
	}
	c := b.Center()
	out.Center = &wire.Location{Lat: c[1], Lon: c[0]}
	out.Bounds = &[2][2]float64{{b.Min[0], b.Min[1]}, {b.Max[0], b.Max[1]}}
	return out
}

// DistrictProps and AreaProps are the properties of /api/map/districts
// and /api/map/areas.
type (
	DistrictProps struct {
		Name string `json:"name"`
	}
	AreaProps struct {
		ID       int     `json:"id"` // the feature's index in the areas file, as in /api/coverage
		Name     string  `json:"name"`
		Kind     string  `json:"kind,omitempty"`
		Weight   float64 `json:"weight"`
		District string  `json:"district,omitempty"`
	}
)

// Layer returns the districts ("districts") or the areas of interest
// ("areas") scope sees, as the files hold them (validated).
func (m *Model) Layer(scope auth.Scope, name string) FeatureCollection {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.atlas
	if a == nil {
		return featureCollection(nil)
	}
	var fs []Feature
	multi := func(r *region, props any) Feature {
		return Feature{Type: "Feature", Geometry: Geometry{Type: "MultiPolygon", Coordinates: r.geom}, Properties: props}
	}
	switch name {
	case "districts":
		for k := range a.districts {
			if r := &a.districts[k]; scope.Allows(r.name, "") {
				fs = append(fs, multi(r, DistrictProps{Name: r.name}))
			}
		}
	case "areas":
		for k := range a.areas {
			if r := &a.areas[k]; m.districtVisible(scope, "", r.dist) {
				fs = append(fs, multi(r, AreaProps{ID: r.index, Name: r.name, Kind: r.kind, Weight: float64(r.weight) / unitWeight, District: m.districtName(r.dist)}))
			}
		}
	}
	return featureCollection(fs)
}
