package coverage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/export"
	"github.com/citywatch/citywatch/hub/param"
	"github.com/citywatch/citywatch/wire"
)

// maxDrawnBuildings bounds the buildings file the hub hands to browsers
// as it is: a bigger one clips coverage all the same, but is drawn by a
// basemap, not by the console.
const maxDrawnBuildings = 32 << 20

// maxPlanBody bounds a what-if request: MaxPlanned cameras fit in far less.
const maxPlanBody = 64 << 10

// MaxNearest bounds the cameras /api/coverage/nearest lists.
const MaxNearest = 20

// Routes are the map's and coverage's HTTP routes. What the map draws
// needs status.read, as the device table does; the ledger and what-if
// are reports.
func (m *Model) Routes() []auth.Route {
	s := &server{m: m}
	get := func(path string, perm auth.Permission, h http.HandlerFunc) auth.Route {
		return auth.Route{Method: http.MethodGet, Path: path, Perm: perm, Handler: h}
	}
	return []auth.Route{
		get("/api/map/config", auth.StatusRead, s.config),
		get("/api/map/districts", auth.StatusRead, s.layer("districts")),
		get("/api/map/areas", auth.StatusRead, s.layer("areas")),
		get("/api/map/buildings", auth.StatusRead, s.buildings),
		get("/api/map/basemap", auth.StatusRead, s.basemap),
		get("/api/map/wedges", auth.StatusRead, s.wedges),
		get("/api/coverage", auth.StatusRead, s.summary),
		get("/api/coverage/cells", auth.StatusRead, s.cells),
		get("/api/coverage/nearest", auth.StatusRead, s.nearest),
		get("/api/coverage/ledger", auth.ReportRead, s.ledger),
		{Method: http.MethodPost, Path: "/api/coverage/whatif", Perm: auth.ReportRead, Handler: http.HandlerFunc(s.whatIf)},
	}
}

type server struct{ m *Model }

// begin reads the query, knowing only the names given, and the caller;
// it answers the problems itself and returns nil then.
func begin(w http.ResponseWriter, r *http.Request, known ...string) (*auth.Principal, *param.Values) {
	p := auth.From(r.Context())
	if p == nil {
		auth.WriteError(w, http.StatusForbidden, "forbidden", "the map needs a signed-in caller")
		return nil, nil
	}
	return p, param.Parse(r.URL.RawQuery, known...)
}

// ok answers the query's problems, if any, and reports whether to go on.
func ok(w http.ResponseWriter, q *param.Values) bool {
	if err := q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	return true
}

// district reads ?district=, which must name a district the hub knows.
func (s *server) district(q *param.Values) string {
	d := q.String("district", "")
	if d != "" && !s.m.knows(d) {
		q.Bad("district", "no district is named %q", param.Clip(d))
	}
	return d
}

// box reads ?bbox=west,south,east,north (degrees), which is required.
func box(q *param.Values) Box {
	raw := q.String("bbox", "")
	parts := strings.Split(raw, ",")
	if raw == "" || len(parts) != 4 {
		q.Bad("bbox", "want west,south,east,north in degrees")
		return Box{}
	}
	var v [4]float64
	for i, s := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			q.Bad("bbox", "%q is not a number", param.Clip(s))
			return Box{}
		}
		v[i] = f
	}
	b := Box{West: v[0], South: v[1], East: v[2], North: v[3]}
	if err := b.Check(); err != nil {
		q.Bad("bbox", "%v", err)
	}
	return b
}

func (s *server) config(w http.ResponseWriter, r *http.Request) {
	if p, q := begin(w, r); p != nil && ok(w, q) {
		auth.WriteJSON(w, http.StatusOK, s.m.Map(p.Scope))
	}
}

func (s *server) layer(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, q := begin(w, r); p != nil && ok(w, q) {
			geoJSON(w, s.m.Layer(p.Scope, name))
		}
	}
}

func geoJSON(w http.ResponseWriter, fc FeatureCollection) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/geo+json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(fc) // the caller going away is no error of ours
}

// buildings hands the buildings file to the browser as it is, when it is
// small enough to draw.
func (s *server) buildings(w http.ResponseWriter, r *http.Request) {
	if p, q := begin(w, r); p == nil || !ok(w, q) {
		return
	}
	s.serveFile(w, r, s.m.cfg.Buildings, "buildings.geojson", "application/geo+json", maxDrawnBuildings)
}

// basemap serves the PMTiles basemap with HTTP range requests, which is
// how the map library reads it.
func (s *server) basemap(w http.ResponseWriter, r *http.Request) {
	if p, q := begin(w, r); p == nil || !ok(w, q) {
		return
	}
	s.serveFile(w, r, s.m.cfg.Basemap, "basemap.pmtiles", "application/vnd.pmtiles", 0)
}

// serveFile serves a configured file, ranges and conditional requests
// included; limit (0: none) is its largest size.
func (s *server) serveFile(w http.ResponseWriter, r *http.Request, path, name, ctype string, limit int64) {
	if path == "" {
		auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no %s is configured (see docs/configuration.md, map)", name))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.m.log.Error("map file unreadable", "file", path, "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the map file could not be read")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.m.log.Error("map file unreadable", "file", path, "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the map file could not be read")
		return
	}
	if limit > 0 && st.Size() > limit {
		auth.WriteError(w, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("the %s is %d MiB, more than the %d MiB a browser is given; it still clips coverage", name, st.Size()>>20, limit>>20))
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "private, max-age=300")
	http.ServeContent(w, r, name, st.ModTime(), f)
}

func (s *server) wedges(w http.ResponseWriter, r *http.Request) {
	p, q := begin(w, r, "bbox")
	if p == nil {
		return
	}
	b := box(q)
	if !ok(w, q) {
		return
	}
	fc, err := s.m.Wedges(p.Scope, b)
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "too_many", err.Error())
		return
	}
	geoJSON(w, fc)
}

func (s *server) summary(w http.ResponseWriter, r *http.Request) {
	p, q := begin(w, r, "district")
	if p == nil {
		return
	}
	d := s.district(q)
	if ok(w, q) {
		auth.WriteJSON(w, http.StatusOK, s.m.Summary(p.Scope, d))
	}
}

func (s *server) cells(w http.ResponseWriter, r *http.Request) {
	p, q := begin(w, r, "bbox", "district", "state", "format")
	if p == nil {
		return
	}
	b := box(q)
	d := s.district(q)
	state := q.OneOf("state", "", CellStates...)
	q.OneOf("format", "geojson", "geojson")
	if !ok(w, q) {
		return
	}
	fc, err := s.m.Cells(p.Scope, b, d, state)
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "too_many", err.Error())
		return
	}
	geoJSON(w, fc)
}

// nearest answers which cameras see a device (a sensor raising an alarm)
// or a point: GET /api/coverage/nearest?device=ID or ?lat=&lon=, and n.
// Only cameras the caller sees are listed.
func (s *server) nearest(w http.ResponseWriter, r *http.Request) {
	p, q := begin(w, r, "device", "lat", "lon", "n")
	if p == nil {
		return
	}
	id := q.String("device", "")
	at := wire.Location{Lat: q.Float("lat", 0, -85, 85), Lon: q.Float("lon", 0, -180, 180)}
	n := q.Int("n", 4, 1, MaxNearest)
	if point := q.Has("lat") || q.Has("lon"); (id != "" && point) || (id == "" && !(q.Has("lat") && q.Has("lon"))) {
		q.Bad("device", "give either device or both lat and lon")
	}
	if !ok(w, q) {
		return
	}
	devices := s.m.deps.Fleet.DevicesWhere(p.Sees)
	if id != "" {
		found := false
		for _, d := range devices {
			if d.ID == id {
				at, found = d.Location, true
				break
			}
		}
		if !found {
			auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no device %q", param.Clip(id)))
			return
		}
	}
	auth.WriteJSON(w, http.StatusOK, struct {
		At      wire.Location `json:"at"`
		Cameras []Camera      `json:"cameras"`
	}{at, orEmptyCameras(Nearest(devices, at, n))})
}

func orEmptyCameras(c []Camera) []Camera {
	if c == nil {
		return []Camera{}
	}
	return c
}

// ledgerTables are the ledger's CSV downloads.
var ledgerTables = []string{"districts", "cameras", "maintenance"}

func (s *server) ledger(w http.ResponseWriter, r *http.Request) {
	p, q := begin(w, r, "from", "to", "district", "top", "format", "table")
	if p == nil {
		return
	}
	to := q.Time("to", s.m.deps.Now())
	from := q.Time("from", to.Add(-7*24*time.Hour))
	d := s.district(q)
	top := q.Int("top", s.m.cfg.Top, 1, 1000)
	format := q.OneOf("format", "json", "json", "csv")
	table := q.OneOf("table", "", ledgerTables...)
	if format == "csv" && table == "" {
		q.Bad("table", "a CSV download names its table: %s", strings.Join(ledgerTables, ", "))
	}
	if !ok(w, q) {
		return
	}
	if format == "csv" && !p.Can(auth.ReportExport) {
		auth.WriteError(w, http.StatusForbidden, "forbidden", "a download needs the report.export permission")
		return
	}
	l, err := s.m.Ledger(r.Context(), LedgerQuery{From: from, To: to, District: d, Top: top, Scope: p.Scope})
	if err != nil {
		s.fail(r.Context(), w, err)
		return
	}
	if format == "json" {
		auth.WriteJSON(w, http.StatusOK, l)
		return
	}
	what := fmt.Sprintf("coverage ledger (%s) %s to %s", table, l.From.Format(time.RFC3339), l.To.Format(time.RFC3339))
	if d != "" {
		what += " in " + d
	}
	export.CSV(r.Context(), w, s.m.deps.Audit, what, "coverage-"+table, ledgerTable(l, table))
}

// ledgerTable is one table of the ledger for a spreadsheet.
func ledgerTable(l Ledger, table string) export.Table {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	switch table {
	case "cameras":
		t := export.Table{Header: []string{"camera", "name", "district", "site", "down_hours", "cell_hours", "weighted_cell_hours"}}
		for _, c := range l.Cameras {
			t.Rows = append(t.Rows, []string{c.ID, c.Name, c.District, c.Site, f(c.DownHours), f(c.CellHours), f(c.WeightedCellHours)})
		}
		return t
	case "maintenance":
		t := export.Table{Header: []string{"windows", "approved_by", "cell_hours", "weighted"}}
		for _, m := range l.Maintenance {
			t.Rows = append(t.Rows, []string{strings.Join(m.Names, "; "), strings.Join(m.ApprovedBy, "; "), f(m.CellHours), f(m.Weighted)})
		}
		return t
	}
	t := export.Table{Header: []string{"district", "cells", "designed_cells", "camera_online_rate",
		"never_covered_hectare_hours", "outage_hectare_hours", "maintenance_hectare_hours", "unknown_hectare_hours",
		"outage_weighted_cell_hours", "weighted_lost_pct", "flagged"}}
	for _, d := range l.Districts {
		rate := ""
		if d.CameraOnlineRate != nil {
			rate = strconv.FormatFloat(*d.CameraOnlineRate*100, 'f', 2, 64)
		}
		t.Rows = append(t.Rows, []string{d.District, strconv.FormatInt(d.Cells, 10), strconv.FormatInt(d.DesignedCells, 10), rate,
			f(d.NeverCovered.HectareHours), f(d.Outage.HectareHours), f(d.Maintenance.HectareHours), f(d.Unknown.HectareHours),
			f(d.Outage.Weighted), f(d.WeightedLostPct), strconv.FormatBool(d.Flagged)})
	}
	return t
}

// fail answers a ledger that could not be made.
func (s *server) fail(ctx context.Context, w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrPeriod):
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case ctx.Err() != nil:
		auth.Fail(w, http.StatusServiceUnavailable, "the ledger was cancelled")
	default:
		s.m.log.Error("coverage ledger failed", "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the ledger could not be made")
	}
}

// whatIf answers POST /api/coverage/whatif {"cameras": [Planned…]}.
func (s *server) whatIf(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	if p == nil {
		auth.WriteError(w, http.StatusForbidden, "forbidden", "the map needs a signed-in caller")
		return
	}
	var body struct {
		Cameras []Planned `json:"cameras"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxPlanBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("want {\"cameras\": [{lat, lon, heading, fov, range_m}]} of at most %d KiB: %v", maxPlanBody>>10, err))
		return
	}
	out, err := s.m.WhatIf(p.Scope, body.Cameras)
	switch {
	case errors.Is(err, ErrPlan) || errors.Is(err, ErrTooMany):
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case err != nil:
		s.m.log.Error("what-if failed", "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the what-if could not be computed")
	default:
		auth.WriteJSON(w, http.StatusOK, out)
	}
}
