package history

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/maintenance"
)

// auditor is a fake export.Auditor.
type auditor struct {
	records []audit.Record
	err     error
}

func (a *auditor) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.records = append(a.records, r)
	return r, a.err
}

// serve calls the route at path as a caller holding perms within scope.
func serve(t *testing.T, routes []auth.Route, target string, scope auth.Scope, perms ...auth.Permission) *httptest.ResponseRecorder {
	t.Helper()
	path, _, _ := strings.Cut(target, "?")
	for _, rt := range routes {
		if rt.Path != path {
			continue
		}
		if rt.Perm != auth.ReportRead || rt.Method != http.MethodGet {
			t.Fatalf("%s: %s %s", path, rt.Method, rt.Perm)
		}
		p := &auth.Principal{Name: "ana", Perms: auth.Set{}, Scope: scope}
		for _, perm := range perms {
			p.Perms[perm] = struct{}{}
		}
		r := httptest.NewRequest(http.MethodGet, target, nil)
		w := httptest.NewRecorder()
		rt.Handler.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		return w
	}
	t.Fatalf("no route %s", path)
	return nil
}

func TestHTTP(t *testing.T) {
	c := &clock{now: at(24)}
	h := open(t, tempDB(t), c, Options{Windows: maintenance.MustSchedule(pole)})
	seed(t, h, false, dayOne()...)
	log := &auditor{}
	routes := h.Routes(log)
	const day = "from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z"

	t.Run("bad parameters", func(t *testing.T) {
		for _, target := range []string{
			"/api/reports/availability?" + day + "&color=red",
			"/api/reports/availability?from=yesterday",
			"/api/reports/availability?group=crew",
			"/api/reports/availability?format=xlsx",
			"/api/reports/availability?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
			"/api/reports/availability?to=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z",
			"/api/reports/series?group=site",
			"/api/reports/series?from=2020-01-01T00:00:00Z",
		} {
			w := serve(t, routes, target, auth.Everything, auth.ReportRead, auth.ReportExport)
			var body auth.ErrorBody
			if json.Unmarshal(w.Body.Bytes(), &body); w.Code != http.StatusBadRequest || body.Error == "" {
				t.Errorf("%s: %d %s, want 400 with a reason", target, w.Code, w.Body)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		w := serve(t, routes, "/api/reports/availability?"+day+"&group=vendor", auth.Everything, auth.ReportRead)
		var a Availability
		if err := json.Unmarshal(w.Body.Bytes(), &a); w.Code != http.StatusOK || err != nil {
			t.Fatalf("%d %s (%v)", w.Code, w.Body, err)
		}
		want := []Row{rowS1("bosch"), rowC1("hik"), rowC2("unknown")}
		if js(a.Rows) != js(want) || js(a.Total) != js(rowCity) || a.Group != "vendor" || a.Timezone != "UTC" {
			t.Errorf("%s", w.Body)
		}
		// The default period is the week up to now; the scope applies. The
		// sensor was unknown for 6 days and 6 hours before it was first seen.
		w = serve(t, routes, "/api/reports/availability", auth.Scope{Districts: []string{"B"}}, auth.ReportRead)
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || !a.From.Equal(at(24-7*24)) || !a.To.Equal(at(24)) ||
			js(a.Rows) != js([]Row{row("B", 1, 17, 0, 0, 1, 150, 0, 1, ptr(3600))}) {
			t.Errorf("default period, district B: %s", w.Body)
		}
		w = serve(t, routes, "/api/reports/series?"+day+"&district=A", auth.Everything, auth.ReportRead)
		var s Series
		if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || len(s.Series) != 1 || *s.Series[0].IntactRate[0] != 42.0/47 ||
			s.Days[0] != "2026-12-01" || *s.City.OnlineRate[0] != 45.0/47 {
			t.Errorf("series: %s", w.Body)
		}
	})

	t.Run("csv needs report.export", func(t *testing.T) {
		for _, target := range []string{"/api/reports/availability?format=csv", "/api/reports/series?format=csv"} {
			if w := serve(t, routes, target, auth.Everything, auth.ReportRead); w.Code != http.StatusForbidden {
				t.Errorf("%s without report.export: %d", target, w.Code)
			}
		}
		if len(log.records) != 0 {
			t.Errorf("refused downloads were recorded: %v", log.records)
		}
	})

	t.Run("csv matches json", func(t *testing.T) {
		w := serve(t, routes, "/api/reports/availability?"+day+"&group=site&format=csv", auth.Everything, auth.ReportRead, auth.ReportExport)
		body := w.Body.String()
		if w.Code != http.StatusOK || !strings.HasPrefix(body, "\uFEFF") {
			t.Fatalf("%d %q", w.Code, body)
		}
		rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\uFEFF"))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var a Availability
		j := serve(t, routes, "/api/reports/availability?"+day+"&group=site", auth.Everything, auth.ReportRead)
		if err := json.Unmarshal(j.Body.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		all := append(a.Rows, a.Total)
		if len(rows) != len(all)+1 || strings.Join(rows[0], ",") !=
			"key,devices,expected_s,online_s,degraded_s,offline_s,unreachable_s,unknown_s,maintenance_s,online_rate,intact_rate,outages,mttr_s" {
			t.Fatalf("csv %q", rows)
		}
		for i, r := range all {
			got := rows[i+1]
			pct := func(p *float64) string {
				if p == nil {
					return ""
				}
				return strconv.FormatFloat(*p*100, 'f', 2, 64)
			}
			if got[0] != r.Key || got[1] != strconv.Itoa(r.Devices) || got[2] != seconds(r.ExpectedS) || got[3] != seconds(r.OnlineS) ||
				got[8] != seconds(r.MaintenanceS) || got[9] != pct(r.OnlineRate) || got[10] != pct(r.IntactRate) ||
				got[11] != strconv.Itoa(r.Outages) {
				t.Errorf("csv row %q, json %+v", got, r)
			}
		}
		if rows[1][0] != "s1" || rows[1][9] != "91.67" || rows[2][10] != "86.96" || rows[4][0] != "city" || rows[4][12] != "5400" {
			t.Errorf("csv figures %q", rows)
		}
		if n := len(log.records); n != 1 || log.records[0].Action != "report.export" || log.records[0].Actor != "ana" {
			t.Errorf("audit records %+v", log.records)
		}
		w = serve(t, routes, "/api/reports/series?"+day+"&format=csv", auth.Everything, auth.ReportRead, auth.ReportExport)
		rows, err = csv.NewReader(strings.NewReader(strings.TrimPrefix(w.Body.String(), "\uFEFF"))).ReadAll()
		if err != nil || len(rows) != 4 || strings.Join(rows[1], ",") != "2026-12-01,,95.38,90.77" ||
			strings.Join(rows[2], ",") != "2026-12-01,A,95.74,89.36" {
			t.Errorf("series csv %q (%v)", rows, err)
		}
	})

	t.Run("export not recorded", func(t *testing.T) {
		log.err = errors.New("disk full")
		defer func() { log.err = nil }()
		w := serve(t, routes, "/api/reports/availability?format=csv", auth.Everything, auth.ReportRead, auth.ReportExport)
		if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "city") {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})
}
