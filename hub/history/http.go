package history

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/export"
	"github.com/citywatch/citywatch/hub/param"
)

// DefaultPeriod is a report's period when the request names none: the
// week up to now.
const DefaultPeriod = 7 * 24 * time.Hour

// Routes are the reports' HTTP endpoints, for auth.Router. Downloads
// (format=csv) also need auth.ReportExport and are recorded by auditor
// before a byte is sent.
//
//	GET /api/reports/availability?from=&to=&group=&district=&format=json|csv
//	    an Availability (JSON), or its rows and total as CSV with the same
//	    columns, rates in percent with two decimals
//	GET /api/reports/series?from=&to=&district=&format=json|csv
//	    a Series (JSON; the city's line is "city"), or CSV rows of day,
//	    district (empty for the city), online_rate and intact_rate in percent
//
// from and to are RFC 3339; to defaults to now and from to DefaultPeriod
// before to. Every figure is limited to the caller's scope.
func (h *History) Routes(auditor export.Auditor) []auth.Route {
	s := &server{h: h, audit: auditor}
	return []auth.Route{
		{Method: http.MethodGet, Path: "/api/reports/availability", Perm: auth.ReportRead, Handler: http.HandlerFunc(s.availability)},
		{Method: http.MethodGet, Path: "/api/reports/series", Perm: auth.ReportRead, Handler: http.HandlerFunc(s.series)},
	}
}

type server struct {
	h     *History
	audit export.Auditor
}

// request reads the parameters every report takes (and more, the
// report's own); it answers the problems itself and returns nil then.
func (s *server) request(w http.ResponseWriter, r *http.Request, own ...string) *request {
	p := auth.From(r.Context())
	if p == nil {
		auth.WriteError(w, http.StatusForbidden, "forbidden", "reports need a signed-in caller")
		return nil
	}
	q := param.Parse(r.URL.RawQuery, append([]string{"from", "to", "district", "format"}, own...)...)
	to := q.Time("to", s.h.opts.Now())
	rq := &request{p: p, q: q, to: to, from: q.Time("from", to.Add(-DefaultPeriod)), district: q.String("district", ""),
		format: q.OneOf("format", "json", "json", "csv")}
	return rq
}

type request struct {
	p                *auth.Principal
	q                *param.Values
	from, to         time.Time
	district, format string
}

// check answers a bad request or a download the caller may not make,
// and reports whether to go on.
func (rq *request) check(w http.ResponseWriter) bool {
	if err := rq.q.Err(); err != nil {
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	if rq.format == "csv" && !rq.p.Can(auth.ReportExport) {
		auth.WriteError(w, http.StatusForbidden, "forbidden", "a download needs the report.export permission")
		return false
	}
	return true
}

func (s *server) availability(w http.ResponseWriter, r *http.Request) {
	rq := s.request(w, r, "group")
	if rq == nil {
		return
	}
	group := rq.q.OneOf("group", "district", Groups...)
	if !rq.check(w) {
		return
	}
	a, err := s.h.Availability(r.Context(), AvailabilityQuery{From: rq.from, To: rq.to, Group: group, District: rq.district, Scope: rq.p.Scope})
	if err != nil {
		s.fail(r.Context(), w, err)
		return
	}
	if rq.format == "json" {
		auth.WriteJSON(w, http.StatusOK, a)
		return
	}
	t := export.Table{Header: []string{"key", "devices", "expected_s", "online_s", "degraded_s", "offline_s", "unreachable_s",
		"unknown_s", "maintenance_s", "online_rate", "intact_rate", "outages", "mttr_s"}}
	for _, row := range append(a.Rows, a.Total) {
		t.Rows = append(t.Rows, []string{row.Key, strconv.Itoa(row.Devices), seconds(row.ExpectedS), seconds(row.OnlineS),
			seconds(row.DegradedS), seconds(row.OfflineS), seconds(row.UnreachableS), seconds(row.UnknownS),
			seconds(row.MaintenanceS), percent(row.OnlineRate), percent(row.IntactRate), strconv.Itoa(row.Outages),
			optional(row.MTTRS)})
	}
	export.CSV(r.Context(), w, s.audit, fmt.Sprintf("availability %s to %s by %s%s", a.From.Format(time.RFC3339),
		a.To.Format(time.RFC3339), group, inDistrict(rq.district)), "availability", t)
}

func (s *server) series(w http.ResponseWriter, r *http.Request) {
	rq := s.request(w, r)
	if rq == nil || !rq.check(w) {
		return
	}
	se, err := s.h.Series(r.Context(), SeriesQuery{From: rq.from, To: rq.to, District: rq.district, Scope: rq.p.Scope})
	if err != nil {
		s.fail(r.Context(), w, err)
		return
	}
	if rq.format == "json" {
		auth.WriteJSON(w, http.StatusOK, se)
		return
	}
	t := export.Table{Header: []string{"day", "district", "online_rate", "intact_rate"}}
	for _, l := range append([]Line{se.City}, se.Series...) {
		for i, d := range se.Days {
			t.Rows = append(t.Rows, []string{d, l.District, percent(l.OnlineRate[i]), percent(l.IntactRate[i])})
		}
	}
	export.CSV(r.Context(), w, s.audit, fmt.Sprintf("daily availability %s to %s%s", se.From.Format(time.RFC3339),
		se.To.Format(time.RFC3339), inDistrict(rq.district)), "availability-daily", t)
}

func inDistrict(d string) string {
	if d == "" {
		return ""
	}
	return " in " + d
}

// fail answers a report that could not be made: the caller's fault (a bad
// period) is a 400; anything else is the hub's, logged and a 500.
func (s *server) fail(ctx context.Context, w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrPeriod):
		auth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case ctx.Err() != nil: // the caller went away
		auth.Fail(w, http.StatusServiceUnavailable, "the report was cancelled")
	default:
		s.h.log.Error("report failed", "err", err)
		auth.Fail(w, http.StatusInternalServerError, "the report could not be made")
	}
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', -1, 64) }

func percent(r *float64) string {
	if r == nil {
		return ""
	}
	return strconv.FormatFloat(*r*100, 'f', 2, 64)
}

func optional(s *float64) string {
	if s == nil {
		return ""
	}
	return seconds(*s)
}
