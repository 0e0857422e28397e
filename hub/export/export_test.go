package export

import (
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

type auditor struct {
	recs []audit.Record
	err  error
}

func (a *auditor) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	if a.err != nil {
		return r, a.err
	}
	a.recs = append(a.recs, r)
	return r, nil
}

func TestCSV(t *testing.T) {
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{Name: "ana", Role: auth.Analyst, Remote: "10.0.0.7"})
	log := &auditor{}
	rec := httptest.NewRecorder()
	CSV(ctx, rec, log, "availability by district, 2026-11", "availability", Table{
		Header: []string{"district", "online_rate"},
		Rows:   [][]string{{"高新区", "0.981"}, {"=HYPERLINK(\"x\")", "-1"}},
	})
	body := rec.Body.String()
	if !strings.HasPrefix(body, "\uFEFF") {
		t.Fatal("no byte-order mark")
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/csv; charset=utf-8" || !strings.Contains(rec.Header().Get("Content-Disposition"), `filename="availability-`) {
		t.Errorf("headers %v", rec.Header())
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\uFEFF"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[1][0] != "高新区" || rows[2][0] != `'=HYPERLINK("x")` || rows[2][1] != "'-1" {
		t.Errorf("rows %q", rows)
	}
	if len(log.recs) != 1 || log.recs[0].Actor != "ana" || log.recs[0].Action != Action || !strings.Contains(log.recs[0].Detail, "2026-11") {
		t.Errorf("audited %+v", log.recs)
	}

	// An export that cannot be recorded is not made.
	rec = httptest.NewRecorder()
	CSV(ctx, rec, &auditor{err: errors.New("disk full")}, "x", "availability", Table{Header: []string{"a"}})
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "\uFEFF") {
		t.Errorf("unrecorded export: %d %q", rec.Code, rec.Body.String())
	}
	if !Attachment(ctx, httptest.NewRecorder(), log, "cells", "cells.geojson", "application/geo+json") || len(log.recs) != 2 {
		t.Error("attachment not recorded")
	}
}
