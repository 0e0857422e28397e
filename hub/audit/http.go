package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
)

// Actions the trail's own routes append: reading the evidence in bulk and
// checking it are themselves evidence.
const (
	ExportAction = "audit.export"
	VerifyAction = "audit.verify"
)

// FormatJSON is the page format of GET /api/audit, the default.
const FormatJSON = "json"

var filterParams = []string{"from", "to", "actor", "action", "object", "outcome", "remote", "q", "before", "limit", "format"}

// Routes are the trail's HTTP endpoints, for auth.Router:
//
//	GET /api/audit         a page of records (JSON), or with format=csv or
//	                       jsonl the whole matching trail as a download
//	GET /api/audit/verify  the Report of a verification; head_seq and
//	                       head_hash check a head written down earlier
func (l *Log) Routes() []auth.Route {
	return []auth.Route{
		{Method: http.MethodGet, Path: "/api/audit", Perm: auth.AuditRead, Handler: http.HandlerFunc(l.serveTrail)},
		{Method: http.MethodGet, Path: "/api/audit/verify", Perm: auth.AuditRead, Handler: http.HandlerFunc(l.serveVerify)},
	}
}

// ParseFilter reads GET /api/audit's query parameters: from and to (RFC
// 3339), actor, action, object, outcome, remote, q, before, limit and
// format (json, csv or jsonl). An empty value means the parameter is not
// set. Every problem is reported at once; unknown and repeated parameters
// are problems.
func ParseFilter(q url.Values) (f Filter, format string, err error) {
	format = FormatJSON
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vs := q[name]
		switch {
		case !slices.Contains(filterParams, name):
			errs = append(errs, fmt.Errorf("unknown parameter %q; known: %s", clip(name), strings.Join(filterParams, ", ")))
			continue
		case len(vs) > 1:
			errs = append(errs, fmt.Errorf("parameter %s is given %d times", name, len(vs)))
			continue
		case len(vs) == 0 || vs[0] == "":
			continue
		}
		v := vs[0]
		switch name {
		case "from", "to":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not an RFC 3339 time like 2026-11-28T12:00:00Z", name, clip(v)))
			} else if name == "from" {
				f.From = t.UTC()
			} else {
				f.To = t.UTC()
			}
		case "actor":
			f.Actor = v
		case "action":
			f.Action = v
		case "object":
			f.Object = v
		case "outcome":
			f.Outcome = Outcome(v)
		case "remote":
			f.Remote = v
		case "q":
			f.Q = v
		case "before":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("before: %q is not a record seq", clip(v)))
			}
			f.Before = n
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLimit {
				errs = append(errs, fmt.Errorf("limit: %q is not a number from 1 to %d", clip(v), MaxLimit))
				n = 0
			}
			f.Limit = n
		case "format":
			if v != FormatJSON && v != FormatCSV && v != FormatJSONL {
				errs = append(errs, fmt.Errorf("format: %q is not json, csv or jsonl", clip(v)))
			}
			format = v
		}
	}
	if err := errors.Join(append(errs, f.Check())...); err != nil {
		return Filter{}, "", err
	}
	return f, format, nil
}

// parseCheckpoint reads GET /api/audit/verify's parameters.
func parseCheckpoint(q url.Values) (Checkpoint, error) {
	var errs []error
	for name, vs := range q {
		switch {
		case name != "head_seq" && name != "head_hash":
			errs = append(errs, fmt.Errorf("unknown parameter %q; known: head_seq, head_hash", clip(name)))
		case len(vs) > 1:
			errs = append(errs, fmt.Errorf("parameter %s is given %d times", name, len(vs)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Checkpoint{}, err
	}
	seq, hash := q.Get("head_seq"), q.Get("head_hash")
	if seq == "" && hash == "" {
		return Checkpoint{}, nil
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("head_seq: %q is not a record seq (give head_seq and head_hash together)", clip(seq))
	}
	cp := Checkpoint{Seq: n, Hash: strings.ToLower(hash)}
	return cp, cp.Check()
}

func (l *Log) serveTrail(w http.ResponseWriter, r *http.Request) {
	p := l.caller(w, r)
	if p == nil {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", "the query string is not well-formed")
		return
	}
	f, format, err := ParseFilter(q)
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if format != FormatJSON {
		if r.Method == http.MethodHead {
			// Nothing is downloaded, so nothing is exported or recorded.
			setExportHeaders(w.Header(), format, l.now())
			return
		}
		l.serveExport(w, r, p, f, format)
		return
	}
	page, err := l.Query(r.Context(), f)
	if err != nil {
		l.internal(w, r, err)
		return
	}
	writeJSON(w, page)
}

// serveExport records the export before sending anything: a download that
// could not be recorded is not made.
func (l *Log) serveExport(w http.ResponseWriter, r *http.Request, p *auth.Principal, f Filter, format string) {
	v := f.Values()
	v.Set("format", format)
	detail := v.Encode()
	ctx := r.Context()
	if _, err := l.Append(ctx, By(p, ExportAction, "", Success, detail)); err != nil {
		l.internal(w, r, err)
		return
	}
	h := w.Header()
	setExportHeaders(h, format, l.now())
	tw := &trackWriter{w: w}
	n, err := l.Export(ctx, tw, f, format)
	if err == nil {
		return
	}
	l.log.Error("audit export interrupted", "actor", p.Name, "records", n, "err", err)
	l.Append(context.WithoutCancel(ctx), //nolint:errcheck // a failure is counted and logged by Append
		By(p, ExportAction, "", Failure, fmt.Sprintf("%s; interrupted after %d records", detail, n)))
	if !tw.wrote {
		h.Del("Content-Disposition")
		auth.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
	}
}

// setExportHeaders makes a download with a dated file name.
func setExportHeaders(h http.Header, format string, now time.Time) {
	switch format {
	case FormatCSV:
		h.Set("Content-Type", "text/csv; charset=utf-8; header=present")
	case FormatJSONL:
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="citywatch-audit-%s.%s"`, now.UTC().Format("20060102-150405"), format))
	h.Set("Cache-Control", "no-store")
}

// trackWriter tells whether anything reached the client, after which the
// status can no longer change.
type trackWriter struct {
	w     io.Writer
	wrote bool
}

func (t *trackWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.w.Write(b)
}

func (l *Log) serveVerify(w http.ResponseWriter, r *http.Request) {
	p := l.caller(w, r)
	if p == nil {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", "the query string is not well-formed")
		return
	}
	cp, err := parseCheckpoint(q)
	if err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	ctx := r.Context()
	rep, err := l.VerifyHead(ctx, cp)
	if err != nil {
		l.Append(context.WithoutCancel(ctx), //nolint:errcheck // a failure is counted and logged by Append
			By(p, VerifyAction, "", Failure, "verification could not run"))
		l.internal(w, r, err)
		return
	}
	outcome := Success
	detail := fmt.Sprintf("chain intact: %d records from anchor %d to head %d %s", rep.Records, rep.AnchorSeq, rep.HeadSeq, rep.HeadHash)
	if !rep.OK {
		outcome = Failure
		detail = fmt.Sprintf("chain broken at seq %d: %s", rep.FirstBroken.Seq, rep.FirstBroken.Reason)
	}
	if cp.Seq > 0 {
		detail += fmt.Sprintf("; checkpoint %d %s: %s", cp.Seq, cp.Hash, cmp.Or(rep.Checkpoint, "not matched"))
	}
	if _, err := l.Append(ctx, By(p, VerifyAction, "", outcome, detail)); err != nil {
		l.internal(w, r, err)
		return
	}
	writeJSON(w, rep)
}

// caller returns the principal the gate put in the request, the only
// source of who is asking; without one the route was mounted wrongly.
func (l *Log) caller(w http.ResponseWriter, r *http.Request) *auth.Principal {
	p := auth.From(r.Context())
	switch {
	case p == nil:
		l.log.Error("audit route served without a principal; mount it through auth.Router", "path", r.URL.Path)
		auth.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return nil
	case !p.Can(auth.AuditRead):
		auth.WriteError(w, http.StatusForbidden, "forbidden", "your role does not allow this ("+string(auth.AuditRead)+")")
		return nil
	}
	return p
}

// internal answers an internal error without its text, which is logged.
func (l *Log) internal(w http.ResponseWriter, r *http.Request, err error) {
	l.log.Error("audit request failed", "path", r.URL.Path, "err", err)
	auth.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil { // records hold valid UTF-8 strings only; cannot happen
		auth.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.Write(append(b, '\n')) //nolint:errcheck // the client went away
}
