package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/hub/param"
)

// historyTimeout bounds one history query, so that a slow metric store
// costs a device page its history rather than the whole page.
const historyTimeout = 5 * time.Second

// routes are the console's routes with the permission each needs.
func (s *Server) routes() []auth.Route {
	get := func(path string, perm auth.Permission, h http.HandlerFunc) auth.Route {
		return auth.Route{Method: http.MethodGet, Path: path, Perm: perm, Handler: h}
	}
	rs := []auth.Route{
		get("/api/devices", auth.StatusRead, s.listDevices),
		get("/api/devices/{id}", auth.StatusRead, s.getDevice),
		get("/api/agents", auth.StatusRead, s.listAgents),
		get("/api/agents/{id}", auth.StatusRead, noParams(s.getAgent)),
		get("/api/summary", auth.StatusRead, s.getSummary),
		get("/api/events", auth.StatusRead, s.events(s.upgrader())),
		// Load balancers and supervisors ask without credentials; the
		// answer names components, not devices.
		get("/healthz", auth.Public, noParams(s.healthz)),
		get("/metrics", auth.MetricsRead, noParams(s.metrics)),
		// The console's files, the login page among them. It checks the
		// method itself: "GET /" would conflict with the method-less
		// patterns that answer 405.
		{Path: "/", Perm: auth.Public, Handler: http.HandlerFunc(s.static)},
	}
	if s.alarms != nil {
		rs = append(rs, s.alarmRoutes()...)
	}
	return rs
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method "+clip(r.Method)+" not allowed; use GET")
}

// noParams refuses any query parameter before h runs, for an endpoint
// that takes none: a typo never goes unnoticed.
func noParams(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := param.None(r.URL.RawQuery); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		h(w, r)
	}
}

// writeError answers with an error body whose code names the status.
func writeError(w http.ResponseWriter, status int, msg string) { auth.Fail(w, status, msg) }

// reply writes v as JSON. Encoding to memory first means a value that
// cannot be encoded becomes a clean 500, not half a body.
func (s *Server) reply(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("cannot encode response", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeBody(w, http.StatusOK, b)
}

func writeBody(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // live state: never serve it from a cache
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// DeviceList is the answer of GET /api/devices.
type DeviceList struct {
	Devices []*fleet.Device `json:"devices"`
	// Total counts the matching devices on every page. For the whole
	// list (no limit), which is read in chunks, it counts those listed
	// (and skipped by offset).
	Total int `json:"total"`
	// Next is the after of the following page; absent on the last.
	Next string `json:"next,omitempty"`
}

// AgentList is the answer of GET /api/agents.
type AgentList struct {
	Agents []*fleet.Agent `json:"agents"`
	Total  int            `json:"total"`
}

// DeviceDetail is the answer of GET /api/devices/{id}.
type DeviceDetail struct {
	Device       fleet.Device         `json:"device"`
	History      *metricstore.History `json:"history,omitempty"`
	HistoryError string               `json:"history_error,omitempty"` // the history could not be read
	// Assets are the unit's recorded changes of serial and firmware
	// (replaced, upgraded), oldest first.
	Assets []fleet.AssetChange `json:"assets,omitempty"`
}

// AgentDetail is the answer of GET /api/agents/{id}.
type AgentDetail struct {
	Agent fleet.Agent `json:"agent"`
}

// Health is the answer of GET /healthz.
type Health struct {
	Status     HealthStatus `json:"status"`
	Components HealthReport `json:"components"`
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	lq, err := parseList(r.URL.RawQuery, deviceParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.writeDevices(w, lq.deviceQuery(auth.From(r.Context()).Scope))
}

// deviceChunk is the most devices one read of the registry copies: few
// enough that the copy holds the registry's lock for tens of microseconds
// and no answer sits in memory whole.
const deviceChunk = 512

// writeDevices answers a device query in the shape of DeviceList. It
// reads the registry in chunks of at most deviceChunk by keyset, each
// encoded and sent before the next is read, so the whole list of 100,000
// devices costs one chunk of memory, not 50 MB; a page of 100 is one
// read. A device that changes meanwhile is listed once, as its chunk
// found it, which is what the documented start (hello, list, then the
// changes since hello) needs.
func (s *Server) writeDevices(w http.ResponseWriter, q fleet.DeviceQuery) {
	want := q.Limit // 0: every match
	chunk := func(listed int) int {
		if want > 0 {
			return min(deviceChunk, want-listed)
		}
		return deviceChunk
	}
	// Only the first read counts the matches, and only when the answer
	// needs the count: the whole list counts what it lists.
	q.Limit, q.NoTotal = chunk(0), want == 0 && q.Offset == 0
	page := s.fleet.QueryDevices(q)
	total := page.Total
	skipped := min(q.Offset, total)

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	abort := func(err error) {
		// Part of a body may have gone out with 200: breaking the
		// connection is the only way left to say it is incomplete.
		// Usually the client went away mid-list, not a bug of ours.
		s.log.Debug("list not sent whole", "list", "devices", "err", err)
		panic(http.ErrAbortHandler)
	}
	bw.WriteString(`{"devices":[`)
	listed := 0
	for {
		for i := range page.Devices {
			if listed > 0 {
				bw.WriteByte(',')
			}
			if err := enc.Encode(&page.Devices[i]); err != nil {
				abort(err)
			}
			listed++
		}
		if page.Next == "" || listed == want {
			break
		}
		q.After, q.Offset, q.Limit, q.NoTotal = page.Next, 0, chunk(listed), true
		page = s.fleet.QueryDevices(q)
	}
	if want == 0 {
		total = skipped + listed
	}
	fmt.Fprintf(bw, `],"total":%d`, total)
	if want > 0 && page.Next != "" {
		bw.WriteString(`,"next":`)
		enc.Encode(page.Next)
	}
	bw.WriteString("}\n")
	if err := bw.Flush(); err != nil {
		abort(err)
	}
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	lq, err := parseList(r.URL.RawQuery, agentParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := auth.From(r.Context())
	all := s.fleet.Agents()
	match := make([]*fleet.Agent, 0, len(all))
	for i := range all {
		if lq.matchAgent(&all[i]) && p.Sees(all[i].District, all[i].Site) {
			match = append(match, &all[i])
		}
	}
	sortByID(match, func(a *fleet.Agent) string { return a.ID })
	lo, hi := lq.page(len(match))
	streamList(s, w, "agents", match[lo:hi], len(match))
}

// streamList writes {key: items, "total": total} (the shape of DeviceList
// and AgentList) one item at a time: the whole list of a city-sized fleet
// is tens of megabytes, which would otherwise be built in memory before the
// first byte leaves.
func streamList[T any](s *Server, w http.ResponseWriter, key string, items []*T, total int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	fmt.Fprintf(bw, "{%q:[", key)
	for i, item := range items {
		if i > 0 {
			bw.WriteByte(',')
		}
		if err := enc.Encode(item); err != nil {
			// Part of a body may have gone out with 200: breaking the
			// connection is the only way left to say it is incomplete.
			// Usually the client went away mid-list, not a bug of ours.
			s.log.Debug("list not sent whole", "list", key, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	fmt.Fprintf(bw, "],\"total\":%d}\n", total)
	bw.Flush()
}

// sortByID orders a list by id, so pages are stable; the fleet may already
// keep that order, and checking costs less than sorting.
func sortByID[T any](list []*T, id func(*T) string) {
	byID := func(a, b *T) int { return strings.Compare(id(a), id(b)) }
	if !slices.IsSortedFunc(list, byID) {
		slices.SortFunc(list, byID)
	}
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	since, err := parseSince(r.URL.RawQuery, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d, ok := s.fleet.Device(id)
	// Out of scope is not found: a scoped account does not learn which
	// ids exist elsewhere.
	if !ok || !auth.From(r.Context()).Sees(d.District, d.Site) {
		writeError(w, http.StatusNotFound, "no device "+strconv.Quote(clip(id)))
		return
	}
	out := DeviceDetail{Device: d}
	if s.history != nil {
		ctx, cancel := context.WithTimeout(r.Context(), historyTimeout)
		defer cancel()
		h, err := s.history.History(ctx, id, since)
		if err != nil {
			// Operators find the cause in the log; the console only needs
			// to say the history is missing.
			s.log.Warn("history query failed", "device", id, "err", err)
			out.HistoryError = "history unavailable"
		} else {
			out.History = &h
		}
	}
	if s.assets != nil {
		ctx, cancel := context.WithTimeout(r.Context(), historyTimeout)
		defer cancel()
		if out.Assets, err = s.assets.Assets(ctx, id); err != nil {
			s.log.Warn("asset history query failed", "device", id, "err", err)
			out.HistoryError = "history unavailable"
		}
	}
	s.reply(w, out)
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a, ok := s.fleet.Agent(id)
	if !ok || !auth.From(r.Context()).Sees(a.District, a.Site) {
		writeError(w, http.StatusNotFound, "no agent "+strconv.Quote(clip(id)))
		return
	}
	s.reply(w, AgentDetail{Agent: a})
}

// summaryParams are /api/summary's: now, for some districts and sites.
// Rates over a period are availability reports (/api/reports/availability).
var summaryParams = listParams{names: []string{"district", "site"}}

func (s *Server) getSummary(w http.ResponseWriter, r *http.Request) {
	lq, err := parseList(r.URL.RawQuery, summaryParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	scope := auth.From(r.Context()).Scope
	if len(lq.districts)+len(lq.sites) == 0 {
		s.reply(w, s.summary(scope))
		return
	}
	s.reply(w, s.fleet.SummaryWhere(func(district, site string) bool {
		return scope.Allows(district, site) && anyOf(lq.districts, district) && anyOf(lq.sites, site)
	}))
}

// summary is the fleet's summary as seen from scope: the registry's
// running counts for the whole city, or for the districts and sites in
// scope.
func (s *Server) summary(scope auth.Scope) fleet.Summary {
	if scope.All {
		return s.fleet.Summary()
	}
	return s.fleet.SummaryWhere(scope.Allows)
}

// devices are the devices scope sees, sorted by id; only those are copied.
func (s *Server) devices(scope auth.Scope) []fleet.Device {
	if scope.All {
		return s.fleet.Devices()
	}
	return s.fleet.DevicesWhere(scope.Allows)
}

// healthz answers 503 when any component is failing, so that a load
// balancer or supervisor acts; degraded components are reported with 200.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	out := Health{Status: HealthOK, Components: HealthReport{}}
	if s.health != nil {
		for name, c := range s.health() {
			out.Components[name] = c
			switch {
			case c.Status == HealthFailing:
				out.Status = HealthFailing
			case c.Status != HealthOK && out.Status == HealthOK:
				out.Status = HealthDegraded
			}
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		s.log.Error("cannot encode health", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	code := http.StatusOK
	if out.Status == HealthFailing {
		code = http.StatusServiceUnavailable
	}
	writeBody(w, code, b)
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	s.reg.WriteText(w)
}
