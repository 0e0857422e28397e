package coverage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
	// DeviceNames returns the names of the devices ids, "" for one it
	// does not know. The model keeps no names: the fleet has them.
	DeviceNames(ids []string) []string
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

	mu     sync.Mutex
	atlas  *atlas // nil until the reference point is known
	cams   []camera
	byID   table[string] // cams by id
	free   []int32
	places interned[place] // the cameras' agents and sites
	laid   uint32          // cameras laid so far: camera.seq
	cells  []cell
	cellAt table[CellID] // cells by id
	// pool holds every camera's cells, camera.cells a range of it: one
	// allocation where a slice per camera took a header and a rounded-up
	// allocation. waste counts the entries no camera lists any more.
	pool  []int32
	waste int
	// mixed are the cells that cameras of more than one district are
	// designed to see, with those districts (districtsOf).
	mixed    map[CellID][]run
	dist     []tally // by district index (atlas.names)
	aoi      []tally // by area index
	city     tally   // the districts' and areas' cells, each once
	designed int     // cells some camera is designed to see

	camerasGauge, cellsGauge *metrics.Gauge
	limited                  *metrics.Vec[metrics.Counter]
}

// camera is one camera as the model keeps it. Its wedge follows from loc
// and info, so it is made again when needed rather than kept: a city has
// a hundred thousand cameras, and reads of wedges are few. What many
// cameras share (agent and site, status) is kept as a number, and the
// name is the fleet's (Fleet.DeviceNames).
type camera struct {
	id     string
	loc    wire.Location
	info   *wire.CameraInfo // shared with the fleet, never modified
	cells  cellRange        // the cells it is designed to see, in Model.pool
	dist   int32            // the district, an index of the atlas's names
	place  int32            // its agent and site, an index of Model.places
	seq    uint32           // when it was laid on the grid (Model.laid)
	status uint8            // 1 + its index in wire.Statuses; 0 for any other
	used   bool
	seen   bool // the wedge is laid on the grid
}

// place is a camera's agent and site.
type place struct{ agent, site string }

// cellRange is a camera's cells: Model.pool[at:at+n].
type cellRange struct{ at, n int32 }

// cellsOf lists the cells camera c is designed to see.
func (m *Model) cellsOf(c *camera) []int32 {
	end := c.cells.at + c.cells.n
	return m.pool[c.cells.at:end:end]
}

func statusCode(s wire.Status) uint8 { return uint8(slices.Index(wire.Statuses, s) + 1) }

func (c *camera) statusOf() wire.Status {
	if c.status == 0 {
		return ""
	}
	return wire.Statuses[c.status-1]
}

// working reports whether the camera gives usable video.
func (c *camera) working() bool { return working(c.statusOf()) }

// cell is one cell some camera is designed to see, or was. A city has
// several times as many as cameras, so it counts the cameras designed to
// see it, which list their cells, rather than list them too.
type cell struct {
	id       CellID
	designed int32 // cameras designed to see it
	working  int32 // how many of them work now
	facts    factsRef
	// dist is the district of the cameras designed to see it when they
	// are all of one, mixedDistricts when of several (Model.mixed), -1
	// when there are none.
	dist int32
}

const mixedDistricts = -2

// run is cameras designed to see a mixed cell, laid one after another
// and of one district: their number, and the seq of the first (or of
// the one before the cell became mixed: 0). A mixed cell's runs are in
// the order the cameras were laid, so they list its districts in the
// order of the first camera of each, as a list of its cameras would.
type run struct {
	dist  int32
	from  uint32
	count int32
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
	m := &Model{cfg: cfg, deps: deps, log: deps.Log.With("component", "coverage")}
	seed := maphash.MakeSeed()
	m.byID = newTable(hashString(seed), func(k int32) string { return m.cams[k].id })
	m.cellAt = newTable(hashCell(seed), func(ci int32) CellID { return m.cells[ci].id })
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
	for t := range fleet.Transitions(&c) {
		m.upsert(t.Device)
	}
}

// upsert takes a device's current view.
func (m *Model) upsert(d *fleet.Device) {
	k, ok := m.byID.get(d.ID)
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
	pl := m.places.id(place{d.Agent, d.Site})
	if ok {
		c := &m.cams[k]
		c.place = pl
		if c.loc == d.Location && sameView(c.info, d.Camera) && m.districtName(c.dist) == d.District {
			if w := working(d.Status); w != c.working() {
				m.setWorking(k, w)
			}
			c.status = statusCode(d.Status)
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
		m.cams[k].id = d.ID // the table reads it
		m.byID.put(d.ID, k)
		m.camerasGauge.Add(1)
	}
	m.cams[k] = camera{used: true, id: d.ID, place: pl,
		dist: m.atlas.names.id(d.District), status: statusCode(d.Status), loc: d.Location, info: d.Camera}
	m.growDistricts()
	m.lay(k)
}

// placeOf is camera c's agent and site.
func (m *Model) placeOf(c *camera) place { return m.places.list[c.place] }

func sameView(a, b *wire.CameraInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Heading == b.Heading && a.FOV == b.FOV && a.Range == b.Range
}

func (m *Model) remove(id string) {
	k, ok := m.byID.get(id)
	if !ok {
		return
	}
	m.unlay(k)
	m.byID.remove(id)
	m.cams[k] = camera{}
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
	if m.laid == math.MaxUint32 {
		m.renumber()
	}
	m.laid++
	c.seen, c.seq = true, m.laid
	var blocked func(from, to orb.Point) bool
	if b := m.atlas.buildings; b != nil {
		blocked = b.blocker(pt)
	}
	at := len(m.pool)
	g.cells(&w, blocked, func(id CellID) {
		ci, ok := m.cellAt.get(id)
		if !ok {
			ci = int32(len(m.cells))
			m.cells = append(m.cells, cell{id: id, facts: m.atlas.ref(id), dist: -1})
			m.cellAt.put(id, ci)
		}
		m.pool = append(m.pool, ci)
	})
	c.cells = cellRange{int32(at), int32(len(m.pool) - at)}
	works := c.working()
	for _, ci := range m.cellsOf(c) {
		m.account(ci, -1)
		cl := &m.cells[ci]
		if cl.designed == 0 {
			m.designed++
		}
		cl.designed++
		m.join(cl, c)
		if works {
			cl.working++
		}
		m.account(ci, 1)
	}
	m.cellsGauge.Set(float64(m.designed))
}

// join and leave keep the districts of the cameras designed to see cell
// cl as camera c becomes or stops being one of them, cl.designed counting
// it already or no longer: c's seq orders it among the others, as a list
// of them in the order they were laid would.
func (m *Model) join(cl *cell, c *camera) {
	switch {
	case cl.designed == 1:
		cl.dist = c.dist
	case cl.dist == c.dist:
	case cl.dist >= 0:
		// Every camera already there was laid before c.
		if m.mixed == nil {
			m.mixed = map[CellID][]run{}
		}
		m.mixed[cl.id] = []run{{dist: cl.dist, count: cl.designed - 1}, {dist: c.dist, from: c.seq, count: 1}}
		cl.dist = mixedDistricts
	default:
		runs := m.mixed[cl.id]
		if last := &runs[len(runs)-1]; last.dist == c.dist {
			last.count++
		} else {
			m.mixed[cl.id] = append(runs, run{dist: c.dist, from: c.seq, count: 1})
		}
	}
}

func (m *Model) leave(cl *cell, c *camera) {
	switch {
	case cl.designed == 0:
		cl.dist = -1
	case cl.dist != mixedDistricts:
	default:
		runs := m.mixed[cl.id]
		i := len(runs) - 1
		for runs[i].from > c.seq {
			i--
		}
		if runs[i].count--; runs[i].count == 0 {
			if i > 0 && i+1 < len(runs) && runs[i-1].dist == runs[i+1].dist {
				runs[i-1].count += runs[i+1].count
				runs = slices.Delete(runs, i, i+2)
			} else {
				runs = slices.Delete(runs, i, i+1)
			}
		}
		if len(runs) == 1 {
			cl.dist = runs[0].dist
			delete(m.mixed, cl.id)
		} else {
			m.mixed[cl.id] = runs
		}
	}
}

// renumber gives the cameras on the grid seqs from 1 in the order they
// were laid, and the mixed cells' runs the boundaries that go with them,
// before Model.laid would wrap.
func (m *Model) renumber() {
	var order []int32
	for k := range m.cams {
		if m.cams[k].seen {
			order = append(order, int32(k))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(m.cams[a].seq, m.cams[b].seq) })
	was := make([]uint32, len(order))
	for i, k := range order {
		was[i], m.cams[k].seq = m.cams[k].seq, uint32(i+1)
	}
	for _, runs := range m.mixed {
		for j := range runs {
			if from := runs[j].from; from > 0 {
				// The first camera laid since the run began is the first of
				// it, if any of it is still there, and after the run before.
				i, _ := slices.BinarySearch(was, from)
				runs[j].from = uint32(i + 1)
			}
		}
	}
	m.laid = uint32(len(order))
}

// unlay takes camera k's wedge off the grid.
func (m *Model) unlay(k int32) {
	c := &m.cams[k]
	works := c.working()
	for _, ci := range m.cellsOf(c) {
		m.account(ci, -1)
		cl := &m.cells[ci]
		cl.designed--
		m.leave(cl, c)
		if works {
			cl.working--
		}
		if cl.designed == 0 {
			m.designed--
		}
		m.account(ci, 1)
	}
	m.waste += int(c.cells.n)
	c.cells, c.seen = cellRange{}, false
	m.cellsGauge.Set(float64(m.designed))
	if m.waste > 1024 && 2*m.waste > len(m.pool) {
		m.compactPool()
	}
}

// compactPool makes the pool again with the cells cameras list.
func (m *Model) compactPool() {
	pool := make([]int32, 0, len(m.pool)-m.waste)
	for k := range m.cams {
		c := &m.cams[k]
		at := len(pool)
		pool = append(pool, m.cellsOf(c)...)
		c.cells.at = int32(at)
	}
	m.pool, m.waste = pool, 0
}

// camerasOfCells lists the cameras designed to see each cell, in the
// order they were laid: the model keeps only how many there are.
func (m *Model) camerasOfCells() func(ci int32) []int32 {
	var order []int32
	for k := range m.cams {
		if c := &m.cams[k]; c.used && c.cells.n > 0 {
			order = append(order, int32(k))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(m.cams[a].seq, m.cams[b].seq) })
	start := make([]int32, len(m.cells)+1)
	for _, k := range order {
		for _, ci := range m.cellsOf(&m.cams[k]) {
			start[ci+1]++
		}
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	next := slices.Clone(start[:len(m.cells)])
	list := make([]int32, start[len(m.cells)])
	for _, k := range order {
		for _, ci := range m.cellsOf(&m.cams[k]) {
			list[next[ci]] = k
			next[ci]++
		}
	}
	return func(ci int32) []int32 { return list[start[ci]:start[ci+1]:start[ci+1]] }
}

// setWorking records that camera k started or stopped working; its
// status follows.
func (m *Model) setWorking(k int32, w bool) {
	c := &m.cams[k]
	d := int32(1)
	if !w {
		d = -1
	}
	for _, ci := range m.cellsOf(c) {
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
	if home := m.atlas.factsOf(c.facts).home; home >= 0 {
		return append(buf, home)
	}
	if len(m.atlas.districts) > 0 {
		return buf
	}
	switch {
	case c.dist >= 0:
		buf = append(buf, c.dist)
	case c.dist == mixedDistricts:
		for _, r := range m.mixed[c.id] {
			if !slices.Contains(buf, r.dist) {
				buf = append(buf, r.dist)
			}
		}
	}
	return buf
}

// account adds (sign 1) or takes away (-1) what cell ci contributes to
// the tallies of its districts, its areas and the city.
func (m *Model) account(ci int32, sign int64) {
	c := &m.cells[ci]
	f := m.atlas.factsOf(c.facts)
	if c.designed == 0 && !f.static {
		return
	}
	var buf [8]int32
	for _, k := range m.districtsOf(c, buf[:0]) {
		// A cell counted by its cameras' districts is no district's own:
		// it counts while a camera is designed to see it.
		m.dist[k].add(c, f.weight, sign, f.home < 0)
	}
	if f.aoi >= 0 {
		for _, a := range m.atlas.aoiCells[f.aoi].areas {
			m.aoi[a].add(c, f.weight, sign, false)
		}
	}
	if f.static {
		m.city.add(c, f.weight, sign, false)
	}
}
