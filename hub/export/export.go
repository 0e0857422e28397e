// Package export is how the hub hands tables to people: CSV that
// spreadsheets open correctly (UTF-8 with a byte-order mark, so Excel and
// WPS show Chinese names; cells a spreadsheet would take for a formula
// escaped), with download headers naming the file, and every export
// recorded in the audit trail before a byte leaves, so an export that
// cannot be recorded does not happen.
package export

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

// Auditor records exports (hub/audit's Log).
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// Action is the audit action of an export.
const Action = "report.export"

// bom is UTF-8's byte-order mark: spreadsheet programs take a CSV without
// it for the local code page and garble Chinese.
const bom = "\uFEFF"

// Table is what an export writes: a header row and rows of cells.
type Table struct {
	Header []string
	Rows   [][]string
}

// CSV records the export of what (the report and its filter, for the
// trail) by the caller, then writes t as name-YYYYMMDD.csv. It answers 503
// when the export cannot be recorded.
func CSV(ctx context.Context, w http.ResponseWriter, log Auditor, what, name string, t Table) {
	if !record(ctx, w, log, what, name+".csv") {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.csv"`, name, time.Now().UTC().Format("20060102")))
	bw := bufio.NewWriter(w)
	bw.WriteString(bom)
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	cw.Write(t.Header)
	for _, row := range t.Rows {
		safe := make([]string, len(row))
		for i, c := range row {
			safe[i] = Cell(c)
		}
		cw.Write(safe)
	}
	cw.Flush()
	bw.Flush()
}

// Attachment records the export of a document that is not a table (a
// GeoJSON file), sets its download headers and returns whether to write
// it. It answers 503 itself when the export cannot be recorded.
func Attachment(ctx context.Context, w http.ResponseWriter, log Auditor, what, filename, contentType string) bool {
	if !record(ctx, w, log, what, filename) {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, filename))
	return true
}

func record(ctx context.Context, w http.ResponseWriter, log Auditor, what, filename string) bool {
	rec := audit.By(auth.From(ctx), Action, filename, audit.Success, what)
	if _, err := log.Append(ctx, rec); err != nil {
		auth.Fail(w, http.StatusServiceUnavailable, "the export cannot be recorded in the audit trail, so it is not made")
		return false
	}
	return true
}

// Cell makes a cell safe for a spreadsheet: one starting with = + - @ or a
// tab or carriage return would be taken for a formula, so it gets a
// leading apostrophe.
func Cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
