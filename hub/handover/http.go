package handover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/alarmstore"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/history"
	"github.com/citywatch/citywatch/hub/param"
)

// Auditor records what people do (hub/audit's Log).
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// maxBody bounds a request body: notes and two times.
const maxBody = MaxNotes + 1024

// Routes are the handover's HTTP routes, all needing shift.handover:
//
//	GET  /api/handover/report?from=&to=   the figures of a window (Window fills what is left out)
//	GET  /api/handovers?limit=            the latest handovers the caller's scope covers
//	GET  /api/handovers/{id}              one, with the report as handed over
//	POST /api/handovers                   {from?, to?, notes}: hand the shift over
//	POST /api/handovers/{id}/accept       {note?}: take it over
//
// Writing and accepting are recorded in the audit trail against the
// caller, refused attempts too.
func (s *Service) Routes(log Auditor) []auth.Route {
	h := &server{s: s, audit: log}
	return []auth.Route{
		{Method: http.MethodGet, Path: "/api/handover/report", Perm: auth.ShiftHandover, Handler: http.HandlerFunc(h.report)},
		{Method: http.MethodGet, Path: "/api/handovers", Perm: auth.ShiftHandover, Handler: http.HandlerFunc(h.list)},
		{Method: http.MethodGet, Path: "/api/handovers/{id}", Perm: auth.ShiftHandover, Handler: http.HandlerFunc(h.get)},
		{Method: http.MethodPost, Path: "/api/handovers", Perm: auth.ShiftHandover, Handler: http.HandlerFunc(h.submit)},
		{Method: http.MethodPost, Path: "/api/handovers/{id}/accept", Perm: auth.ShiftHandover, Handler: http.HandlerFunc(h.accept)},
	}
}

type server struct {
	s     *Service
	audit Auditor
}

func (h *server) report(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	q := param.Parse(r.URL.RawQuery, "from", "to")
	from, to := q.Time("from", time.Time{}), q.Time("to", time.Time{})
	if err := q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	from, to, err := h.s.Window(r.Context(), from, to, p.Scope)
	if h.fail(w, err) {
		return
	}
	rep, err := h.s.Report(r.Context(), from, to, p.Scope)
	if !h.fail(w, err) {
		auth.WriteJSON(w, http.StatusOK, rep)
	}
}

func (h *server) list(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	q := param.Parse(r.URL.RawQuery, "limit")
	limit := q.Int("limit", 20, 1, 200)
	if err := q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	hs, err := h.s.List(r.Context(), p.Scope, limit)
	if !h.fail(w, err) {
		auth.WriteJSON(w, http.StatusOK, struct {
			Handovers []Handover `json:"handovers"`
		}{hs})
	}
}

func (h *server) get(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	if err := param.None(r.URL.RawQuery); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	id, err := idOf(r)
	if err == nil {
		var ho Handover
		if ho, err = h.s.Get(r.Context(), id, p.Scope); err == nil {
			auth.WriteJSON(w, http.StatusOK, ho)
			return
		}
	}
	h.fail(w, err)
}

// submitBody is POST /api/handovers's body.
type submitBody struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Notes string    `json:"notes"`
}

func (h *server) submit(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	var b submitBody
	err := decode(r, &b)
	var ho Handover
	if err == nil {
		ho, err = h.s.Submit(r.Context(), p.Name, p.Scope, b.From, b.To, b.Notes)
	}
	object := "handover"
	if err == nil {
		object = fmt.Sprintf("handover/%d", ho.ID)
	}
	h.record(r, p, "handover.submit", object, summary(b.Notes), err)
	if !h.fail(w, err) {
		auth.WriteJSON(w, http.StatusCreated, ho)
	}
}

func (h *server) accept(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	var b struct {
		Note string `json:"note"`
	}
	id, err := idOf(r)
	if err == nil {
		err = decode(r, &b)
	}
	var ho Handover
	if err == nil {
		ho, err = h.s.Accept(r.Context(), id, p.Name, p.Scope, b.Note)
	}
	h.record(r, p, "handover.accept", "handover/"+r.PathValue("id"), summary(b.Note), err)
	if !h.fail(w, err) {
		auth.WriteJSON(w, http.StatusOK, ho)
	}
}

func idOf(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %q", ErrNotFound, param.Clip(r.PathValue("id")))
	}
	return id, nil
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: the body is not the expected JSON object of at most %d KiB: %v", ErrBad, maxBody>>10, err)
	}
	return nil
}

// summary is what the audit trail keeps of notes: their start.
func summary(s string) string { return param.Cut(s, 200) }

func (h *server) record(r *http.Request, p *auth.Principal, action, object, note string, err error) {
	rec := audit.By(p, action, object, audit.Success, note)
	if err != nil {
		rec.Outcome, rec.Detail = audit.Failure, strings.TrimPrefix(rec.Detail+"; "+err.Error(), "; ")
	}
	if _, aerr := h.audit.Append(r.Context(), rec); aerr != nil {
		// The handover stands; the audit log counts and reports its own
		// failures.
		h.s.log.Error("handover action not audited", "object", object, "action", action, "who", p.Name, "err", aerr)
	}
}

// fail answers err, if any, and reports whether it did.
func (h *server) fail(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotFound):
		auth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrConflict):
		auth.WriteError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrBad), errors.Is(err, history.ErrPeriod), errors.Is(err, alarmstore.ErrWindow):
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ErrUnavailable):
		auth.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		h.s.log.Error("handover request failed", "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the handover could not be made")
	}
	return true
}
