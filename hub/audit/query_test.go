package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trail is a small varied trail; seq i+1 is trail[i].
var trail = []Record{
	{At: t0, Actor: "ann", Role: "operator", Remote: "10.0.0.1", Action: "auth.login", Outcome: Success},
	{At: t0.Add(1 * time.Minute), Actor: "ann", Remote: "10.0.0.1", Action: "alarm.ack", Object: "alarm/A-1", Outcome: Success, Detail: "Checked by BOB on site"},
	{At: t0.Add(2 * time.Minute), Actor: "bob", Remote: "10.0.0.2", Action: "alarm.clear", Object: "alarm/A-1", Outcome: Denied},
	{At: t0.Add(3 * time.Minute), Actor: "mallory", Remote: "10.6.6.6", Action: "auth.login", Outcome: Failure, Detail: "wrong password"},
	{At: t0.Add(4 * time.Minute), Actor: "token:noc", Action: "alarmstore.compact", Outcome: Success},
	{At: t0.Add(5 * time.Minute), Actor: "Ärger", Action: "live.start", Object: "camera/cam-01", Outcome: Success, Detail: "ÜBER die Brücke"},
	{At: t0.Add(6 * time.Minute), Actor: "cli:root", Remote: "local", Action: "agent.enroll", Object: "agent/ag-7", Outcome: Success},
}

func seqs(rs []Record) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func TestQueryFilters(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	for _, r := range trail {
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    Filter
		want []uint64 // newest first
	}{
		{"all", Filter{}, []uint64{7, 6, 5, 4, 3, 2, 1}},
		{"actor", Filter{Actor: "ann"}, []uint64{2, 1}},
		{"actor is exact", Filter{Actor: "an"}, []uint64{}},
		{"action exact", Filter{Action: "auth.login"}, []uint64{4, 1}},
		{"action prefix with dot", Filter{Action: "alarm."}, []uint64{3, 2}},
		{"action prefix with star", Filter{Action: "alarm*"}, []uint64{5, 3, 2}},
		{"action prefix dot star", Filter{Action: "alarm.*"}, []uint64{3, 2}},
		{"star matches all", Filter{Action: "*"}, []uint64{7, 6, 5, 4, 3, 2, 1}},
		{"object", Filter{Object: "alarm/A-1"}, []uint64{3, 2}},
		{"outcome", Filter{Outcome: Failure}, []uint64{4}},
		{"remote", Filter{Remote: "local"}, []uint64{7}},
		{"from inclusive", Filter{From: t0.Add(5 * time.Minute)}, []uint64{7, 6}},
		{"to exclusive", Filter{To: t0.Add(2 * time.Minute)}, []uint64{2, 1}},
		{"window", Filter{From: t0.Add(time.Minute), To: t0.Add(3 * time.Minute)}, []uint64{3, 2}},
		{"q in detail, any case", Filter{Q: "bob"}, []uint64{3, 2}},
		{"q in object", Filter{Q: "CAM-01"}, []uint64{6}},
		{"q folds beyond ASCII", Filter{Q: "über"}, []uint64{6}},
		{"q in actor beyond ASCII", Filter{Q: "ärger"}, []uint64{6}},
		{"before", Filter{Before: 3}, []uint64{2, 1}},
		{"combined", Filter{Actor: "ann", Action: "alarm.", Outcome: Success}, []uint64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := l.Query(context.Background(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(p.Records); !slices.Equal(got, tt.want) || p.Next != 0 {
				t.Fatalf("got %v next %d, want %v next 0", got, p.Next, tt.want)
			}
		})
	}
}

func TestQueryPaging(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	appendN(t, l, 25)
	for _, tt := range []struct {
		name  string
		f     Filter
		pages [][2]uint64 // first and last seq of each page
	}{
		{"default limit holds all", Filter{}, [][2]uint64{{25, 1}}},
		{"pages of 10", Filter{Limit: 10}, [][2]uint64{{25, 16}, {15, 6}, {5, 1}}},
		{"exact fit", Filter{Limit: 5, Before: 11}, [][2]uint64{{10, 6}, {5, 1}}},
		{"filtered", Filter{Limit: 4, Actor: "user1"}, [][2]uint64{{25, 16}, {13, 4}, {1, 1}}},
		{"filtered by q", Filter{Limit: 4, Q: "NOTE 1"}, [][2]uint64{{19, 16}, {15, 12}, {11, 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			var got [][2]uint64
			for {
				p, err := l.Query(context.Background(), f)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Records) == 0 {
					t.Fatalf("empty page after %v", got)
				}
				got = append(got, [2]uint64{p.Records[0].Seq, p.Records[len(p.Records)-1].Seq})
				if p.Next == 0 {
					break
				}
				if p.Next != p.Records[len(p.Records)-1].Seq {
					t.Fatalf("next %d, last seq %d", p.Next, p.Records[len(p.Records)-1].Seq)
				}
				f.Before = p.Next
			}
			if !reflect.DeepEqual(got, tt.pages) {
				t.Fatalf("pages %v, want %v", got, tt.pages)
			}
		})
	}
}

func TestQueryRefusesBadFilter(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	for _, tt := range []struct {
		name string
		f    Filter
		want string
	}{
		{"limit too large", Filter{Limit: MaxLimit + 1}, "limit"},
		{"negative limit", Filter{Limit: -1}, "limit"},
		{"from after to", Filter{From: t0, To: t0}, "from must be before to"},
		{"bad outcome", Filter{Outcome: "maybe"}, "outcome"},
		{"invalid UTF-8", Filter{Actor: "\xff"}, "UTF-8"},
		{"long q", Filter{Q: strings.Repeat("q", MaxField+1)}, "longer"},
		{"time out of range", Filter{From: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, "out of range"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := l.Query(context.Background(), tt.f); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Query: %v, want an error about %s", err, tt.want)
			}
			if _, err := l.Export(context.Background(), io.Discard, tt.f, FormatCSV); err == nil {
				t.Fatal("Export took the filter")
			}
		})
	}
	if _, err := l.Export(context.Background(), io.Discard, Filter{}, "xlsx"); err == nil {
		t.Fatal("Export took format xlsx")
	}
}

// spreadsheet is what a crafted record tries to smuggle into a download.
var spreadsheet = []Record{
	{Actor: "=HYPERLINK(\"http://evil\")", Action: "auth.login", Outcome: Failure, Detail: "=cmd|' /C calc'!A0"},
	{Actor: "+ann", Role: "-1", Remote: "@10.0.0.1", Action: "alarm.ack", Outcome: Success, Detail: `a "quoted", comma note`},
	{Actor: "bob", Action: "alarm.ack", Object: "alarm/A-1", Outcome: Success, Detail: "plain"},
}

func TestExportCSV(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	var recs []Record
	for _, r := range spreadsheet {
		r.At = t0
		got, err := l.Append(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got)
	}
	var buf bytes.Buffer
	n, err := l.Export(context.Background(), &buf, Filter{}, FormatCSV)
	if err != nil || n != 3 {
		t.Fatalf("Export = %d, %v", n, err)
	}
	if !strings.Contains(buf.String(), "\r\n") {
		t.Error("rows do not end in CRLF (RFC 4180)")
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("the export does not parse as CSV: %v", err)
	}
	want := [][]string{csvHeader}
	for i, r := range recs {
		want = append(want, []string{
			strconv.Itoa(i + 1), "2026-11-28T12:00:00Z", r.Actor, r.Role, r.Session, r.Remote, r.Action, r.Object,
			string(r.Outcome), r.Detail, r.Hash,
		})
	}
	// Escaped against formulas: the cells starting with = + - @.
	want[1][2], want[1][9] = "'"+want[1][2], "'"+want[1][9]
	want[2][2], want[2][3], want[2][5] = "'+ann", "'-1", "'@10.0.0.1"
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("CSV rows\n%q\nwant\n%q", rows, want)
	}
}

func TestExportJSONL(t *testing.T) {
	l := newEnv(t).open(t, Options{}, Deps{})
	recs := appendN(t, l, 12)
	var buf bytes.Buffer
	n, err := l.Export(context.Background(), &buf, Filter{Action: "alarm.", Before: 12}, FormatJSONL)
	if err != nil || n != 11 {
		t.Fatalf("Export = %d, %v", n, err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	var got []Record
	for _, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if !reflect.DeepEqual(got, recs[:11]) {
		t.Fatalf("JSONL records\n%+v\nwant oldest first\n%+v", got, recs[:11])
	}
	// The backup story: with the key, the exported chain is recomputed
	// away from the database.
	c, prev := newChain(l.key), genesis
	for _, r := range got {
		prev = c.sum(prev, &r)
		if h := hex.EncodeToString(prev); h != r.Hash {
			t.Fatalf("record %d: exported hash %s, recomputed %s", r.Seq, r.Hash, h)
		}
	}
}
