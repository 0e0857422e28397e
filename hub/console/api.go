package console

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
)

// historyTimeout bounds one history query, so that a slow metric store
// costs a device page its history rather than the whole page.
const historyTimeout = 5 * time.Second

// contentSecurityPolicy allows the console to load only its own files and
// to talk to its own API and websocket.
const contentSecurityPolicy = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"

// routes builds the handler. Every path is registered twice: for GET (which
// also serves HEAD), and for any other method, to answer 405 in JSON rather
// than the mux's plain text.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	up := s.upgrader()
	for _, r := range []struct {
		path string
		h    http.HandlerFunc
	}{
		{"/api/devices", s.listDevices},
		{"/api/devices/{id}", s.getDevice},
		{"/api/agents", s.listAgents},
		{"/api/agents/{id}", s.getAgent},
		{"/api/summary", s.getSummary},
		{"/api/events", s.events(up)},
		{"/healthz", s.healthz},
		{"/metrics", s.metrics},
	} {
		mux.HandleFunc("GET "+r.path, r.h)
		mux.HandleFunc(r.path, methodNotAllowed)
	}
	if s.alarms != nil {
		s.alarmRoutes(mux)
	}
	if s.live != nil {
		mux.Handle("/api/cameras/", s.live)
		mux.Handle("/api/live/", s.live)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+clip(r.URL.Path))
	})
	// The UI takes every other path; "GET /" would conflict with the
	// method-less patterns above, so it checks the method itself.
	mux.HandleFunc("/", s.static)
	return s.instrument(mux)
}

// instrument sets the security headers and counts requests by route
// pattern, which keeps the label set small whatever paths clients try.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.requests.With(cmp.Or(r.Pattern, "none"), strconv.Itoa(cmp.Or(rec.code, http.StatusOK))).Inc()
	})
}

// recorder remembers the status code. It passes Hijack through because
// gorilla/websocket asserts http.Hijacker directly.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.code = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method "+clip(r.Method)+" not allowed; use GET")
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(errorBody{msg}) // a struct of one string always encodes
	writeBody(w, code, b)
}

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
	Total   int             `json:"total"` // matching devices, before limit and offset
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
	all := s.fleet.Devices()
	// Pointers: sorting 100,000 device structs would move megabytes.
	match := make([]*fleet.Device, 0, len(all))
	for i := range all {
		if lq.matchDevice(&all[i]) {
			match = append(match, &all[i])
		}
	}
	sortByID(match, func(d *fleet.Device) string { return d.ID })
	lo, hi := lq.page(len(match))
	streamList(s, w, "devices", match[lo:hi], len(match))
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	lq, err := parseList(r.URL.RawQuery, agentParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	all := s.fleet.Agents()
	match := make([]*fleet.Agent, 0, len(all))
	for i := range all {
		if lq.matchAgent(&all[i]) {
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
	if !ok {
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
	s.reply(w, out)
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.URL.RawQuery != "" {
		writeError(w, http.StatusBadRequest, "this endpoint takes no parameters")
		return
	}
	a, ok := s.fleet.Agent(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no agent "+strconv.Quote(clip(id)))
		return
	}
	s.reply(w, AgentDetail{Agent: a})
}

func (s *Server) getSummary(w http.ResponseWriter, _ *http.Request) {
	s.reply(w, s.fleet.Summary())
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

// checkOrigin lets pages of the hub's own host open the websocket, and
// pages of the configured origins. Requests without an Origin do not come
// from a browser page, and origin checks protect only browser users.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	norm, ok := normalizeOrigin(origin)
	return ok && s.origins[norm]
}
