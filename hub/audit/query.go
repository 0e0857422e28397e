package audit

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Export formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// Filter selects records. Empty fields select everything.
type Filter struct {
	From time.Time // At >= From
	To   time.Time // At < To
	// Exact matches.
	Actor   string
	Object  string
	Outcome Outcome
	Remote  string
	// Action matches exactly, or as a prefix when it ends in "." or "*":
	// "alarm." and "alarm.*" match alarm.ack.
	Action string
	// Q is a case-insensitive substring of the actor, object or detail.
	Q string
	// Before pages: only records with a smaller seq (Page.Next).
	Before uint64
	// Limit bounds a page: 0 means DefaultLimit, at most MaxLimit. Export
	// ignores it.
	Limit int
}

// Check reports everything wrong with a filter at once.
func (f Filter) Check() error {
	var errs []error
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"from", f.From}, {"to", f.To}} {
		if !t.t.IsZero() && (t.t.Before(minTime) || t.t.After(maxTime)) {
			errs = append(errs, fmt.Errorf("%s: time is out of range", t.name))
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		errs = append(errs, errors.New("from must be before to"))
	}
	if f.Outcome != "" && !f.Outcome.Valid() {
		errs = append(errs, fmt.Errorf("outcome %q is not success, failure or denied", clip(string(f.Outcome))))
	}
	for _, s := range []struct{ name, v string }{
		{"actor", f.Actor}, {"object", f.Object}, {"remote", f.Remote}, {"action", f.Action}, {"q", f.Q},
	} {
		switch {
		case !utf8.ValidString(s.v):
			errs = append(errs, fmt.Errorf("%s is not valid UTF-8", s.name))
		case len(s.v) > MaxField:
			errs = append(errs, fmt.Errorf("%s is longer than %d bytes", s.name, MaxField))
		}
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		errs = append(errs, fmt.Errorf("limit %d is not between 1 and %d", f.Limit, MaxLimit))
	}
	return errors.Join(errs...)
}

// Values writes the filter as the query parameters ParseFilter reads.
func (f Filter) Values() url.Values {
	v := url.Values{}
	set := func(name, value string) {
		if value != "" {
			v.Set(name, value)
		}
	}
	if !f.From.IsZero() {
		v.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		v.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	set("actor", f.Actor)
	set("action", f.Action)
	set("object", f.Object)
	set("outcome", string(f.Outcome))
	set("remote", f.Remote)
	set("q", f.Q)
	if f.Before > 0 {
		v.Set("before", strconv.FormatUint(f.Before, 10))
	}
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return v
}

// actionPrefix returns the prefix Action asks for, if it asks for one.
func (f Filter) actionPrefix() (string, bool) {
	switch {
	case strings.HasSuffix(f.Action, "*"):
		return strings.TrimSuffix(f.Action, "*"), true
	case strings.HasSuffix(f.Action, "."):
		return f.Action, true
	}
	return "", false
}

// where builds the SQL condition for every field but Q, which is matched
// in Go (SQLite's lower() folds ASCII only).
func (f Filter) where() (string, []any) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if !f.From.IsZero() {
		add("at >= ?", f.From.UnixNano())
	}
	if !f.To.IsZero() {
		add("at < ?", f.To.UnixNano())
	}
	for _, eq := range []struct{ col, v string }{
		{"actor", f.Actor}, {"object", f.Object}, {"outcome", string(f.Outcome)}, {"remote", f.Remote},
	} {
		if eq.v != "" {
			add(eq.col+" = ?", eq.v)
		}
	}
	if prefix, ok := f.actionPrefix(); ok {
		if prefix != "" {
			// A range rather than LIKE, so the action index serves it:
			// every string starting with prefix sorts between prefix and
			// prefix with its last byte raised (valid UTF-8 never holds
			// 0xFF, so the byte can be raised).
			upper := []byte(prefix)
			upper[len(upper)-1]++
			add("action >= ? AND action < ?", prefix, string(upper))
		}
	} else if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Before > 0 {
		add("seq < ?", int64(min(f.Before, math.MaxInt64)))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// matchQ applies a lower-cased Filter.Q.
func matchQ(r *Record, q string) bool {
	return q == "" || strings.Contains(strings.ToLower(r.Actor), q) ||
		strings.Contains(strings.ToLower(r.Object), q) || strings.Contains(strings.ToLower(r.Detail), q)
}

const columns = `seq, at, actor, role, session, remote, action, object, outcome, detail, hash`

func scanRecord(rows *sql.Rows) (Record, error) {
	var (
		r       Record
		seq, at int64
		outcome string
	)
	err := rows.Scan(&seq, &at, &r.Actor, &r.Role, &r.Session, &r.Remote, &r.Action, &r.Object, &outcome, &r.Detail, &r.Hash)
	r.Seq, r.At, r.Outcome = uint64(seq), time.Unix(0, at).UTC(), Outcome(outcome)
	return r, err
}

// scan streams the records f selects, newest first or oldest first,
// without loading them all.
func (l *Log) scan(ctx context.Context, f Filter, oldestFirst bool, limit int) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		where, args := f.where()
		q := `SELECT ` + columns + ` FROM records` + where + ` ORDER BY seq DESC`
		if oldestFirst {
			q = `SELECT ` + columns + ` FROM records` + where + ` ORDER BY seq`
		}
		if limit > 0 && f.Q == "" {
			q += ` LIMIT ?`
			args = append(args, limit)
		}
		rows, err := l.r.QueryContext(ctx, l.dialect.SQL(q), args...)
		if err != nil {
			yield(Record{}, err)
			return
		}
		defer rows.Close()
		lq := strings.ToLower(f.Q)
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				yield(Record{}, err)
				return
			}
			if matchQ(&r, lq) && !yield(r, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(Record{}, err)
		}
	}
}

// Page is one page of Query, newest first.
type Page struct {
	Records []Record `json:"records"`
	// Next is the Before of the next page, 0 when there is none.
	Next uint64 `json:"next"`
}

// Query returns the newest records f selects, at most f.Limit of them.
func (l *Log) Query(ctx context.Context, f Filter) (Page, error) {
	if err := f.Check(); err != nil {
		return Page{}, fmt.Errorf("audit: query: %w", err)
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	p := Page{Records: make([]Record, 0, min(limit, 64))}
	// One more than the page tells whether there is a next one.
	for r, err := range l.scan(ctx, f, false, limit+1) {
		if err != nil {
			return Page{}, fmt.Errorf("audit: query: %w", err)
		}
		if len(p.Records) == limit {
			p.Next = p.Records[limit-1].Seq
			break
		}
		p.Records = append(p.Records, r)
	}
	return p, nil
}

// Export writes every record f selects, oldest first, with seq and hash,
// as FormatCSV (a header row, then RFC 4180 rows; cells a spreadsheet
// would take for a formula are prefixed with ') or FormatJSONL (one
// Record per line, the form to keep: it can be re-verified with the key).
// It returns how many records it wrote.
func (l *Log) Export(ctx context.Context, w io.Writer, f Filter, format string) (int, error) {
	if err := f.Check(); err != nil {
		return 0, fmt.Errorf("audit: export: %w", err)
	}
	var (
		write func(*Record) error
		flush func() error
	)
	switch format {
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.UseCRLF = true
		cw.Write(csvHeader) //nolint:errcheck // a failed write shows in Error after Flush
		write = func(r *Record) error { return cw.Write(csvRow(r)) }
		flush = func() error { cw.Flush(); return cw.Error() }
	case FormatJSONL:
		bw := bufio.NewWriterSize(w, 64<<10)
		enc := json.NewEncoder(bw)
		write = func(r *Record) error { return enc.Encode(r) }
		flush = bw.Flush
	default:
		return 0, fmt.Errorf("audit: export: format %q is not %s or %s", clip(format), FormatCSV, FormatJSONL)
	}
	n := 0
	for r, err := range l.scan(ctx, f, true, 0) {
		if err == nil {
			err = write(&r)
		}
		if err != nil {
			return n, fmt.Errorf("audit: export: after %d records: %w", n, err)
		}
		n++
	}
	if err := flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}

var csvHeader = []string{"seq", "at", "actor", "role", "session", "remote", "action", "object", "outcome", "detail", "hash"}

func csvRow(r *Record) []string {
	return []string{
		strconv.FormatUint(r.Seq, 10), r.At.Format(time.RFC3339Nano), cell(r.Actor), cell(r.Role), cell(r.Session),
		cell(r.Remote), cell(r.Action), cell(r.Object), cell(string(r.Outcome)), cell(r.Detail), r.Hash,
	}
}

// cell defuses text a spreadsheet would run as a formula (OWASP's CSV
// injection advice): a leading ' makes it text. Tabs and carriage returns,
// also on OWASP's list, never reach a record.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}
