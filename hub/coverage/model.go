package coverage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/hub/export"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// Config is what the coverage model and its routes need. Zero values take
// the defaults noted.
type Config struct {
	// CellSize is the side of the grid's square cells in metres, 5 to
	// 500 (25, about an H3 resolution 11 cell).
	CellSize float64
	// Reference is the grid's origin. Nil takes the middle of what the
	// districts, areas and buildings files cover, else the centroid of the
	// cameras at start, else the first camera. Cell ids are stable while
	// it stays the same; set it for ids that survive restarts.
	Reference *wire.Location
	// Districts, Areas and Buildings are GeoJSON FeatureCollection files
	// of Polygon and MultiPolygon features, all optional: district
	// boundaries (property name, the district agents report), areas of
	// interest (name; kind, weight (default 1, at most 100) and district
	// optional) and building footprints (no properties needed).
	Districts, Areas, Buildings string
	// Basemap is a PMTiles file served at /api/map/basemap; optional.
	Basemap string
	// MaxCells bounds the cells one /api/coverage/cells or what-if answer
	// may carry (50,000).
	MaxCells int
	// MaxPeriod bounds a ledger's period (93 days).
	MaxPeriod time.Duration
	// OnlineRateOK and LostFlag flag a district in the ledger whose camera
	// online rate is at least OnlineRateOK (0.95) while it lost at least
	// LostFlag (0.05) of its weighted designed coverage to outages.
	OnlineRateOK, LostFlag float64
	// Top is how many cameras a ledger ranks unless asked (20).
	Top int
	// Maintenance is planned downtime: the ledger counts what it costs
	// apart from outages.
	Maintenance *maintenance.Schedule
}

// Defaults.
const (
	DefaultCellSize  = 25
	DefaultMaxCells  = 50_000
	DefaultMaxPeriod = 93 * 24 * time.Hour
	DefaultTop       = 20
)

// Fleet is where the model finds devices (hub/fleet's Registry).
type Fleet interface {
	DevicesWhere(keep func(district, site string) bool) []fleet.Device
}

// History is where the ledger reads camera timelines (hub/history). For
// each device asked it returns its status spans within [from, to), in
// order and not overlapping; time no span covers is time the hub knew
// nothing of the device. Devices without any span may be left out.
type History interface {
	Timelines(ctx context.Context, from, to time.Time, devices []string) (map[string][]fleet.StatusSpan, error)
}

// Deps are the model's collaborators.
type Deps struct {
	Log     *slog.Logger
	Metrics *metrics.Registry
	Fleet   Fleet
	History History
	Audit   export.Auditor // records exports
	// Now is the clock (time.Now).
	Now func() time.Time
	// Simulated reports whether history over [from, to) holds simulated
	// records (the demo's seeded week), so a ledger says so. Optional.
	Simulated func(ctx context.Context, from, to time.Time) (bool, error)
}

// Model is the coverage of the city now: every camera's wedge laid over
// the grid, and per cell how many cameras are designed to see it and how
// many of them work. One mutex guards it; readers get copies.
type Model struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	files layers // validated, kept until the grid's reference point is known

	mu       sync.Mutex
	atlas    *atlas // nil until the reference point is known
	cams     []camera
	byID     map[string]int32
	free     []int32
	cells    []cell
	cellAt   map[CellID]int32
	dist     []tally // by district index (atlas.names)
	aoi      []tally // by area index
	city     tally   // the districts' and areas' cells, each once
	designed int     // cells some camera is designed to see

	camerasGauge, cellsGauge *metrics.Gauge
	limited                  *metrics.Vec[metrics.Counter]
}

// camera is one camera as the model keeps it. Its wedge follows from loc
// and info, so it is made again when needed rather than kept: a city has
// a hundred thousand cameras, and reads of wedges are few.
type camera struct {
	id, name, agent, site string
	status                wire.Status
	loc                   wire.Location
	info                  *wire.CameraInfo // shared with the fleet, never modified
	cells                 []int32          // replaced, never modified: snapshots share it
	dist                  int32            // the district, an index of the atlas's names
	used, working         bool
	seen                  bool // the wedge is laid on the grid
}

// cell is one cell some camera is designed to see, or was.
type cell struct {
	id      CellID
	cams    []int32 // cameras designed to see it
	working int32   // how many of them work now
	cellFacts
}

// tally counts the cells of a district, an area or the city. Weights are
// in thousandths.
type tally struct {
	cells, designed, current, fragile     int64
	wCells, wDesigned, wCurrent, wFragile int64
}

// working reports whether a camera in status s gives usable video.
func working(s wire.Status) bool { return s == wire.StatusOnline || s == wire.StatusDegraded }

// New validates cfg, reads the area files and builds the model from the
// fleet's cameras. It starts nothing.
func New(cfg Config, deps Deps) (*Model, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var errs []error
	if deps.Log == nil {
		errs = append(errs, errors.New("coverage: Deps.Log is required"))
	}
	if deps.Metrics == nil {
		errs = append(errs, errors.New("coverage: Deps.Metrics is required"))
	}
	if deps.Fleet == nil {
		errs = append(errs, errors.New("coverage: Deps.Fleet is required"))
	}
	if deps.History == nil {
		errs = append(errs, errors.New("coverage: Deps.History is required"))
	}
	if deps.Audit == nil {
		errs = append(errs, errors.New("coverage: Deps.Audit is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m := &Model{cfg: cfg, deps: deps, log: deps.Log.With("component", "coverage"), byID: map[string]int32{}, cellAt: map[CellID]int32{}}
	for _, f := range []struct {
		path string
		l    layer
		dst  *[]feature
	}{{cfg.Districts, districtsLayer, &m.files.districts}, {cfg.Areas, areasLayer, &m.files.areas}, {cfg.Buildings, buildingsLayer, &m.files.buildings}} {
		if f.path == "" {
			continue
		}
		feats, err := loadLayer(f.path, f.l)
		if err == nil && len(feats) == 0 {
			err = fmt.Errorf("coverage: %s file %s has no features", f.l.what, f.path)
		}
		if err != nil {
			errs = append(errs, err)
		}
		*f.dst = feats
	}
	if cfg.Basemap != "" {
		errs = append(errs, checkBasemap(cfg.Basemap))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.camerasGauge = deps.Metrics.Gauge("citywatch_coverage_cameras", "Cameras laid on the coverage grid.")
	m.cellsGauge = deps.Metrics.Gauge("citywatch_coverage_cells", "Grid cells at least one camera is designed to see.")
	m.limited = deps.Metrics.CounterVec("citywatch_coverage_cameras_limited_total",
		"Cameras whose view the grid limited: range beyond the coverage maximum (range), or too far from the map's reference point to lay at all (far).", "reason")

	devices := deps.Fleet.DevicesWhere(nil)
	ref, ok := m.reference(devices)
	if ok {
		if err := m.setAtlas(ref); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range devices {
		m.upsert(&devices[i])
	}
	return m, nil
}

func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.CellSize == 0 {
		cfg.CellSize = DefaultCellSize
	}
	if !(cfg.CellSize >= 5 && cfg.CellSize <= 500) {
		errs = append(errs, fmt.Errorf("coverage: cell size %v m is not between 5 and 500", cfg.CellSize))
	}
	if r := cfg.Reference; r != nil && (!finite(r.Lat) || !finite(r.Lon) || math.Abs(r.Lat) > 85 || math.Abs(r.Lon) > 180) {
		errs = append(errs, fmt.Errorf("coverage: reference point %v,%v is not a WGS-84 position within 85° of the equator", r.Lat, r.Lon))
	}
	cfg.MaxCells = cmp.Or(cfg.MaxCells, DefaultMaxCells)
	cfg.MaxPeriod = cmp.Or(cfg.MaxPeriod, DefaultMaxPeriod)
	cfg.Top = cmp.Or(cfg.Top, DefaultTop)
	cfg.OnlineRateOK = cmp.Or(cfg.OnlineRateOK, 0.95)
	cfg.LostFlag = cmp.Or(cfg.LostFlag, 0.05)
	if cfg.MaxCells < 1 || cfg.MaxPeriod < time.Hour || cfg.Top < 1 {
		errs = append(errs, errors.New("coverage: max cells and top must be positive, max period at least an hour"))
	}
	if !(cfg.OnlineRateOK > 0 && cfg.OnlineRateOK <= 1) || !(cfg.LostFlag > 0 && cfg.LostFlag <= 1) {
		errs = append(errs, errors.New("coverage: the ledger's flag thresholds are fractions in (0, 1]"))
	}
	return cfg, errors.Join(errs...)
}

func checkBasemap(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("coverage: basemap: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 7)
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != "PMTiles" {
		return fmt.Errorf("coverage: basemap %s is not a PMTiles file", path)
	}
	return nil
}

// reference is the grid's origin: configured, else the middle of the
// files, else the cameras' centroid.
func (m *Model) reference(devices []fleet.Device) (wire.Location, bool) {
	if m.cfg.Reference != nil {
		return *m.cfg.Reference, true
	}
	if b, ok := m.files.bound(); ok {
		c := b.Center()
		return wire.Location{Lat: c[1], Lon: c[0]}, true
	}
	var sum wire.Location
	n := 0
	for _, d := range devices {
		if d.Kind == wire.KindCamera {
			sum.Lat += d.Location.Lat
			sum.Lon += d.Location.Lon
			n++
		}
	}
	if n == 0 {
		return wire.Location{}, false
	}
	return wire.Location{Lat: sum.Lat / float64(n), Lon: sum.Lon / float64(n)}, true
}

// setAtlas lays the files on the grid around ref and starts the tallies
// from the cells they hold.
func (m *Model) setAtlas(ref wire.Location) error {
	a, err := newAtlas(m.files, ref, m.cfg.CellSize)
	if err != nil {
		return err
	}
	m.files = layers{}
	m.atlas = a
	m.dist = nil
	m.growDistricts()
	m.aoi = make([]tally, len(a.areas))
	for k, r := range a.areas {
		m.aoi[k] = tally{cells: r.cells, wCells: r.wcells}
	}
	m.city = tally{cells: a.cityCells, wCells: a.cityWeight}
	return nil
}

// growDistricts gives every district name a tally.
func (m *Model) growDistricts() {
	a := m.atlas
	for k := len(m.dist); k < len(a.names.list); k++ {
		var t tally
		if k < len(a.staticCells) {
			t.cells, t.wCells = a.staticCells[k], a.staticWeight[k]
		}
		m.dist = append(m.dist, t)
	}
}

// Apply brings the model up to date with one fleet change: cameras added,
// moved or removed by an inventory, cameras starting or stopping to work
// by a device or agent change. It costs the cells of the cameras changed.
func (m *Model) Apply(c fleet.Change) {
	if c.Kind == fleet.ChangeLate {
		return // history the agent kept through an outage; the model is the present
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.Kind == fleet.ChangeInventory {
		for i := range c.Affected {
			m.upsert(&c.Affected[i])
		}
		for _, id := range c.Removed {
			m.remove(id)
		}
		return
	}
	for _, t := range fleet.Transitions(&c) {
		m.upsert(t.Device)
	}
}

// upsert takes a device's current view.
func (m *Model) upsert(d *fleet.Device) {
	k, ok := m.byID[d.ID]
	if d.Kind != wire.KindCamera {
		if ok {
			m.remove(d.ID)
		}
		return
	}
	if m.atlas == nil {
		if err := m.setAtlas(d.Location); err != nil {
			// No files are pending when the reference point is not known
			// yet, and a grid around a camera always fits.
			m.log.Error("coverage grid not laid", "device", d.ID, "err", err)
			return
		}
	}
	if ok {
		c := &m.cams[k]
		c.name, c.agent, c.site = d.Name, d.Agent, d.Site
		if c.loc == d.Location && sameView(c.info, d.Camera) && m.districtName(c.dist) == d.District {
			if w := working(d.Status); w != c.working {
				m.setWorking(k, w)
			}
			c.status = d.Status
			return
		}
		m.unlay(k)
	} else {
		if n := len(m.free); n > 0 {
			k, m.free = m.free[n-1], m.free[:n-1]
		} else {
			k = int32(len(m.cams))
			m.cams = append(m.cams, camera{})
		}
		m.byID[d.ID] = k
		m.camerasGauge.Add(1)
	}
	m.cams[k] = camera{used: true, id: d.ID, name: d.Name, agent: d.Agent, site: d.Site,
		dist: m.atlas.names.id(d.District), status: d.Status, loc: d.Location, info: d.Camera, working: working(d.Status)}
	m.growDistricts()
	m.lay(k)
}

func sameView(a, b *wire.CameraInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Heading == b.Heading && a.FOV == b.FOV && a.Range == b.Range
}

func (m *Model) remove(id string) {
	k, ok := m.byID[id]
	if !ok {
		return
	}
	m.unlay(k)
	m.cams[k] = camera{}
	delete(m.byID, id)
	m.free = append(m.free, k)
	m.camerasGauge.Add(-1)
}

// lay puts camera k's wedge on the grid.
func (m *Model) lay(k int32) {
	c := &m.cams[k]
	g := &m.atlas.grid
	pt := g.proj.toXY(c.loc)
	if math.Hypot(pt[0], pt[1]) > maxSpan {
		m.limited.With("far").Inc()
		m.log.Warn("camera too far from the map's reference point to lay on the grid", "device", c.id,
			"km", math.Round(math.Hypot(pt[0], pt[1])/1000))
		return
	}
	w, ok := newWedge(pt, c.info)
	if !ok {
		return
	}
	if c.info.Range > MaxRange {
		m.limited.With("range").Inc()
		m.log.Info("camera range beyond the coverage maximum; counted as the maximum", "device", c.id, "range_m", c.info.Range, "max_m", MaxRange)
	}
	c.seen = true
	var blocked func(from, to orb.Point) bool
	if b := m.atlas.buildings; b != nil {
		blocked = b.blocker(pt)
	}
	var cells []int32
	g.cells(&w, blocked, func(id CellID) {
		ci, ok := m.cellAt[id]
		if !ok {
			ci = int32(len(m.cells))
			m.cells = append(m.cells, cell{id: id, cellFacts: m.atlas.facts(id)})
			m.cellAt[id] = ci
		}
		cells = append(cells, ci)
	})
	c.cells = cells
	for _, ci := range cells {
		m.account(ci, -1)
		cl := &m.cells[ci]
		if len(cl.cams) == 0 {
			m.designed++
		}
		cl.cams = append(cl.cams, k)
		if c.working {
			cl.working++
		}
		m.account(ci, 1)
	}
	m.cellsGauge.Set(float64(m.designed))
}

// unlay takes camera k's wedge off the grid.
func (m *Model) unlay(k int32) {
	c := &m.cams[k]
	for _, ci := range c.cells {
		m.account(ci, -1)
		cl := &m.cells[ci]
		if i := slices.Index(cl.cams, k); i >= 0 {
			cl.cams = slices.Delete(cl.cams, i, i+1)
		}
		if c.working {
			cl.working--
		}
		if len(cl.cams) == 0 {
			m.designed--
		}
		m.account(ci, 1)
	}
	c.cells, c.seen = nil, false
	m.cellsGauge.Set(float64(m.designed))
}

// setWorking records that camera k started or stopped working.
func (m *Model) setWorking(k int32, w bool) {
	c := &m.cams[k]
	c.working = w
	d := int32(1)
	if !w {
		d = -1
	}
	for _, ci := range c.cells {
		m.account(ci, -1)
		m.cells[ci].working += d
		m.account(ci, 1)
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// districtsOf appends the districts cell c counts in: the one holding
// it, else without a districts file those of the cameras designed to see
// it.
func (m *Model) districtsOf(c *cell, buf []int32) []int32 {
	if c.home >= 0 {
		return append(buf, c.home)
	}
	if len(m.atlas.districts) > 0 {
		return buf
	}
	for _, k := range c.cams {
		if d := m.cams[k].dist; !slices.Contains(buf, d) {
			buf = append(buf, d)
		}
	}
	return buf
}

// account adds (sign 1) or takes away (-1) what cell ci contributes to
// the tallies of its districts, its areas and the city.
func (m *Model) account(ci int32, sign int64) {
	c := &m.cells[ci]
	if len(c.cams) == 0 && !c.static {
		return
	}
	var buf [8]int32
	for _, k := range m.districtsOf(c, buf[:0]) {
		// A cell counted by its cameras' districts is no district's own:
		// it counts while a camera is designed to see it.
		m.dist[k].add(c, sign, c.home < 0)
	}
	if c.aoi >= 0 {
		for _, a := range m.atlas.aoiCells[c.aoi].areas {
			m.aoi[a].add(c, sign, false)
		}
	}
	if c.static {
		m.city.add(c, sign, false)
	}
}
