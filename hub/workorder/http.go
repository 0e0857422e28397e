package workorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/export"
	"github.com/citywatch/citywatch/hub/param"
)

// Auditor records what people do (hub/audit's Log).
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// maxBody bounds an action's body.
const maxBody = 16 << 10

// maxList bounds a page of orders.
const maxList = 1000

// Routes are the work orders' HTTP routes. Reading needs status.read;
// crews' actions need work.manage; dispatching (assign) and cancelling
// need work.dispatch. Every action is recorded in the audit trail against
// the caller; an order outside the caller's scope is not found.
func (m *Manager) Routes(log Auditor) []auth.Route {
	s := &server{m: m, audit: log, log: m.log}
	var rs []auth.Route
	rs = append(rs,
		auth.Route{Method: http.MethodGet, Path: "/api/workorders", Perm: auth.StatusRead, Handler: http.HandlerFunc(s.list)},
		auth.Route{Method: http.MethodGet, Path: "/api/workorders/{id}", Perm: auth.StatusRead, Handler: http.HandlerFunc(s.get)},
		auth.Route{Method: http.MethodPost, Path: "/api/workorders", Perm: auth.WorkManage, Handler: http.HandlerFunc(s.create)},
		auth.Route{Method: http.MethodGet, Path: "/api/crews", Perm: auth.StatusRead, Handler: http.HandlerFunc(s.crews)},
		auth.Route{Method: http.MethodGet, Path: "/api/reports/maintenance", Perm: auth.ReportRead, Handler: http.HandlerFunc(s.figures)},
	)
	rs = append(rs, auth.Route{Method: http.MethodPost, Path: "/api/workorders/{id}/probe", Perm: auth.DeviceProbe, Handler: s.viaAgents("probe", s.probe)},
		auth.Route{Method: http.MethodPost, Path: "/api/workorders/{id}/photos", Perm: auth.WorkManage, Handler: http.HandlerFunc(s.addPhoto)},
		auth.Route{Method: http.MethodPost, Path: "/api/workorders/{id}/snapshot", Perm: auth.WorkManage, Handler: s.viaAgents("snapshot", s.snapshot)},
		auth.Route{Method: http.MethodGet, Path: "/api/workorders/{id}/photos/{sha}", Perm: auth.StatusRead, Handler: http.HandlerFunc(s.photo)})
	for _, act := range PersonActions {
		perm := auth.WorkManage
		if act == ActAssign || act == ActCancel {
			perm = auth.WorkDispatch
		}
		rs = append(rs, auth.Route{Method: http.MethodPost, Path: "/api/workorders/{id}/" + string(act), Perm: perm, Handler: s.action(act)})
	}
	return rs
}

type server struct {
	m     *Manager
	audit Auditor
	log   *slog.Logger
}

// List is the answer of GET /api/workorders.
type List struct {
	Orders []Ranked `json:"orders"`
	Total  int      `json:"total"`
}

// Detail is the answer of GET /api/workorders/{id} and of actions.
type Detail struct {
	Order   Order        `json:"order"`
	History []Transition `json:"history"`
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	q := param.Parse(r.URL.RawQuery, "state", "district", "site", "crew", "assignee", "device", "mine", "sort", "limit", "offset")
	f := Filter{District: q.String("district", ""), Site: q.String("site", ""), Crew: q.String("crew", ""),
		Assignee: q.String("assignee", ""), Device: q.String("device", ""), Keep: p.Sees}
	if st := q.String("state", ""); st != "" {
		for _, x := range strings.Split(st, ",") {
			if x == "all" {
				f.States = States
				continue
			}
			if !isState(x) {
				q.Bad("state", "%q is not a state: %v or all", param.Clip(x), States)
			}
			f.States = append(f.States, State(x))
		}
	}
	if q.OneOf("mine", "false", "true", "false") == "true" {
		f.Mine = p.Name
	}
	sortBy := q.OneOf("sort", SortRank, SortRank, SortPriority)
	limit, offset := q.Int("limit", 100, 1, maxList), q.Int("offset", 0, 0, 1<<30)
	if err := q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	page, total := s.m.Page(f, sortBy, offset, limit)
	out := List{Orders: page, Total: total}
	auth.WriteJSON(w, http.StatusOK, out)
}

func (s *server) crews(w http.ResponseWriter, r *http.Request) {
	if q := param.Parse(r.URL.RawQuery); q.Err() != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", q.Err().Error())
		return
	}
	crews := s.m.Crews()
	if crews == nil {
		crews = []Crew{}
	}
	auth.WriteJSON(w, http.StatusOK, struct {
		Crews []Crew `json:"crews"`
	}{crews})
}

// figures answers GET /api/reports/maintenance?from=&to=&group=&format=.
func (s *server) figures(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	q := param.Parse(r.URL.RawQuery, "from", "to", "group", "format")
	to := q.Time("to", s.m.opts.Now())
	from := q.Time("from", to.Add(-30*24*time.Hour))
	group := q.OneOf("group", "crew", FigureGroups...)
	format := q.OneOf("format", "json", "json", "csv")
	if err := q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if format == "csv" && !p.Can(auth.ReportExport) {
		auth.WriteError(w, http.StatusForbidden, "forbidden", "a download needs the report.export permission")
		return
	}
	f, err := s.m.Figures(FigureQuery{From: from, To: to, Group: group, Keep: p.Sees})
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if format == "json" {
		auth.WriteJSON(w, http.StatusOK, f)
		return
	}
	t := export.Table{Header: []string{"key", "opened", "closed", "mtta_s", "mttr_s", "mtbf_h", "failures", "devices",
		"first_time_fix", "repeat_rate", "respond_met", "fix_met", "backlog", "backlog_max_age_h"}}
	for _, row := range append(f.Rows, f.Total) {
		t.Rows = append(t.Rows, []string{row.Key, strconv.Itoa(row.Opened), strconv.Itoa(row.Closed), num(row.MTTAS), num(row.MTTRS),
			num(row.MTBFH), strconv.Itoa(row.Failures), strconv.Itoa(row.Devices), num(row.FirstTimeFix), num(row.RepeatRate),
			num(row.RespondMet), num(row.FixMet), strconv.Itoa(row.Backlog), num(row.BacklogMaxAgeH)})
	}
	export.CSV(r.Context(), w, s.audit, fmt.Sprintf("repair figures %s to %s by %s", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), group),
		"repair-figures", t)
}

func num(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

func isState(s string) bool { return slices.Contains(States, State(s)) }

// visible finds an order the caller may see.
func (s *server) visible(r *http.Request, id string) (Order, []Transition, bool) {
	o, trail, ok := s.m.Order(id)
	if !ok || !auth.From(r.Context()).Sees(o.District, o.Site) {
		return Order{}, nil, false
	}
	return o, trail, true
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if q := param.Parse(r.URL.RawQuery); q.Err() != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", q.Err().Error())
		return
	}
	o, trail, ok := s.visible(r, id)
	if !ok {
		auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no work order %q", param.Clip(id)))
		return
	}
	auth.WriteJSON(w, http.StatusOK, Detail{Order: o, History: trail})
}

// actionBody is what an action may carry.
type actionBody struct {
	Note string `json:"note"`
	Crew string `json:"crew"`
	To   string `json:"to"`
}

// decode reads one JSON object of known fields, at most maxBody bytes;
// an empty body is an empty object.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("the body is not the expected JSON object of at most %d KiB: %v", maxBody>>10, err)
	}
	return nil
}

func (s *server) action(act Action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := auth.From(r.Context())
		id := r.PathValue("id")
		var b actionBody
		if err := decode(r, &b); err != nil {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		if len(b.Note) > 2000 {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", "a note is at most 2000 bytes")
			return
		}
		if _, _, ok := s.visible(r, id); !ok {
			auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no work order %q", param.Clip(id)))
			return
		}
		_, err := s.m.Act(id, act, Request{Who: p.Name, Note: b.Note, Crew: b.Crew, To: b.To})
		s.record(r, p, "workorder."+string(act), "workorder/"+id, b.Note, err)
		if s.fail(w, err) {
			return
		}
		o, trail, _ := s.m.Order(id)
		auth.WriteJSON(w, http.StatusOK, Detail{Order: o, History: trail})
	}
}

// ProbeReply is the answer of POST /api/workorders/{id}/probe.
type ProbeReply struct {
	Results []ProbeResult `json:"results"`
	Detail
}

// viaAgents serves an action that asks the order's agents and waits for
// them (re-probe, snapshots): audited, 503 when the agents cannot be
// reached.
func (s *server) viaAgents(action string, do func(ctx context.Context, id, who string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := auth.From(r.Context())
		id := r.PathValue("id")
		if _, _, ok := s.visible(r, id); !ok {
			auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no work order %q", param.Clip(id)))
			return
		}
		out, err := do(r.Context(), id, p.Name)
		s.record(r, p, "workorder."+action, "workorder/"+id, "", err)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrBadRequest) {
			s.log.Warn("work order action through the agents failed", "order", id, "action", action, "err", err)
			auth.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		if !s.fail(w, err) {
			auth.WriteJSON(w, http.StatusOK, out)
		}
	}
}

func (s *server) probe(ctx context.Context, id, who string) (any, error) {
	res, err := s.m.Probe(ctx, id, who)
	if err != nil {
		return nil, err
	}
	o, trail, _ := s.m.Order(id)
	return ProbeReply{Results: res, Detail: Detail{Order: o, History: trail}}, nil
}

// addPhoto takes POST /api/workorders/{id}/photos?note=: the body is the
// picture (JPEG or PNG, at most MaxPhoto).
func (s *server) addPhoto(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	id := r.PathValue("id")
	q := param.Parse(r.URL.RawQuery, "note")
	note := q.String("note", "")
	if err := q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if _, _, ok := s.visible(r, id); !ok {
		auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no work order %q", param.Clip(id)))
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxPhoto+1))
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", "the photo could not be read: "+err.Error())
		return
	}
	ph, err := s.m.AddPhoto(id, p.Name, note, data)
	s.record(r, p, "workorder.photo", "workorder/"+id, note, err)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrUnavailable) {
		s.log.Error("photo not kept", "order", id, "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the photo could not be kept")
		return
	}
	if s.fail(w, err) {
		return
	}
	auth.WriteJSON(w, http.StatusCreated, ph)
}

// snapshot answers POST /api/workorders/{id}/snapshot: the order's
// cameras' pictures now, kept with it.
func (s *server) snapshot(ctx context.Context, id, who string) (any, error) {
	res, err := s.m.Snapshot(ctx, id, who)
	if err != nil {
		return nil, err
	}
	return struct {
		Results []SnapshotResult `json:"results"`
	}{res}, nil
}

// photo serves one of an order's photos.
func (s *server) photo(w http.ResponseWriter, r *http.Request) {
	id, sha := r.PathValue("id"), r.PathValue("sha")
	if err := param.None(r.URL.RawQuery); err != nil {
		auth.Fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, _, ok := s.visible(r, id); !ok {
		auth.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no work order %q", param.Clip(id)))
		return
	}
	data, typ, err := s.m.Photo(id, sha)
	if errors.Is(err, ErrNotFound) {
		auth.WriteError(w, http.StatusNotFound, "not_found", "the order has no such photo")
		return
	}
	if err != nil {
		s.log.Error("photo unreadable", "order", id, "photo", sha, "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the photo could not be read")
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// createBody is POST /api/workorders: an order by hand.
type createBody struct {
	Devices  []string `json:"devices"`
	Title    string   `json:"title"`
	Priority int      `json:"priority"`
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	var b createBody
	if err := decode(r, &b); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if len(b.Devices) > 100 || len(b.Title) > 200 {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", "at most 100 devices and a title of 200 bytes")
		return
	}
	for _, id := range b.Devices {
		if d, ok := s.m.deps.Fleet.Device(id); !ok || !p.Sees(d.District, d.Site) {
			auth.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("no device %q", param.Clip(id)))
			return
		}
	}
	o, err := s.m.OpenByHand(p.Name, b.Devices, b.Title, Priority(b.Priority))
	s.record(r, p, "workorder.open", "workorder/"+o.ID, b.Title, err)
	if s.fail(w, err) {
		return
	}
	_, trail, _ := s.m.Order(o.ID)
	auth.WriteJSON(w, http.StatusCreated, Detail{Order: o, History: trail})
}

// record writes the audit record of an action, whatever its outcome.
func (s *server) record(r *http.Request, p *auth.Principal, action, object, note string, err error) {
	rec := audit.By(p, action, object, audit.Success, note)
	if err != nil {
		rec.Outcome, rec.Detail = audit.Failure, strings.TrimPrefix(rec.Detail+"; "+err.Error(), "; ")
	}
	if _, aerr := s.audit.Append(r.Context(), rec); aerr != nil {
		// The action stands; the audit log counts and reports its own
		// failures.
		s.log.Error("work order action not audited", "object", object, "action", action, "who", p.Name, "err", aerr)
	}
}

// fail answers an action's error, if any, and reports whether it did.
func (s *server) fail(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotFound):
		auth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrNotAllowed):
		auth.WriteError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrReasonMissing), errors.Is(err, ErrBadRequest):
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ErrUnavailable):
		auth.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		s.log.Error("work order action failed", "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the action could not be done")
	}
	return true
}
