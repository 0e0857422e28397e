package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is a database and key file in a temporary directory.
type env struct {
	dir, db, key string
}

// onPostgres, set while TestPostgres runs tests again, puts newEnv's
// database in PostgreSQL (a database of the test's own).
var onPostgres bool

func newEnv(t testing.TB) env {
	dir := t.TempDir()
	e := env{dir: dir, db: filepath.Join(dir, "audit.db"), key: filepath.Join(dir, "audit.key")}
	if onPostgres {
		e.db = testenv.Postgres(t)
	}
	return e
}

// open opens the env's log, closed at the end of the test.
func (e env) open(t testing.TB, opts Options, deps Deps) *Log {
	t.Helper()
	opts.KeyFile = e.key
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	l, err := Open(e.db, opts, deps)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// attacker opens the database file as someone with access to it would,
// without the log's code.
func (e env) attacker(t testing.TB) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+e.db+"?_pragma=busy_timeout(5000)"
	if onPostgres {
		driver, dsn = "pgx", e.db+"&search_path="+pgSchema
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t testing.TB, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if name, ok := strings.CutPrefix(s, "DROP TRIGGER "); ok && onPostgres {
			s += " ON " + name[:strings.IndexByte(name, '_')] // PostgreSQL's triggers are their table's
		}
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// run starts l.Run; the returned stop ends it and waits.
func run(t testing.TB, l *Log) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func sample(i int) Record {
	return Record{
		At: t0.Add(time.Duration(i) * time.Minute), Actor: fmt.Sprintf("user%d", i%3), Role: "operator",
		Session: fmt.Sprintf("s%d", i), Remote: "10.0.0.1", Action: "alarm.ack", Object: fmt.Sprintf("alarm/A-%d", i),
		Outcome: Success, Detail: fmt.Sprintf("note %d", i),
	}
}

func appendN(t testing.TB, l *Log, n int) []Record {
	t.Helper()
	out := make([]Record, n)
	for i := range n {
		r, err := l.Append(context.Background(), sample(i+1))
		if err != nil {
			t.Fatalf("Append %d: %v", i+1, err)
		}
		out[i] = r
	}
	return out
}

func mustVerify(t testing.TB, l *Log) Report {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func TestAppendVerifyRoundTrip(t *testing.T) {
	e := newEnv(t)
	reg := metrics.NewRegistry()
	l := e.open(t, Options{}, Deps{Metrics: reg})
	recs := appendN(t, l, 20)
	for i, r := range recs {
		want := sample(i + 1)
		want.Seq, want.Hash = uint64(i+1), r.Hash
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("Append returned %+v, want %+v", r, want)
		}
		if len(r.Hash) != 64 {
			t.Fatalf("hash %q is not 64 hex digits", r.Hash)
		}
	}
	page, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(page.Records)
	if !reflect.DeepEqual(page.Records, recs) {
		t.Fatalf("Query returned\n%+v\nwant\n%+v", page.Records, recs)
	}
	rep := mustVerify(t, l)
	want := Report{OK: true, Records: 20, HeadSeq: 20, HeadHash: recs[19].Hash, KeyFingerprint: l.KeyFingerprint()}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("Verify = %+v, want %+v", rep, want)
	}
	seq, hash, err := l.Head(context.Background())
	if err != nil || seq != 20 || hash != recs[19].Hash {
		t.Fatalf("Head = %d %s %v, want 20 %s", seq, hash, err, recs[19].Hash)
	}
	var text bytes.Buffer
	reg.WriteText(&text)
	for _, line := range []string{"citywatch_audit_records_total 20", "citywatch_audit_commits_total 20"} {
		if !strings.Contains(text.String(), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, text.String())
		}
	}
}

func TestAppendFillsTimeFromClock(t *testing.T) {
	e := newEnv(t)
	c := &clock{t: t0.In(time.FixedZone("CST", 8*3600))}
	l := e.open(t, Options{Now: c.Now}, Deps{})
	r := sample(1)
	r.At = time.Time{}
	r.Seq, r.Hash = 99, "forged"
	got, err := l.Append(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if got.At != t0 || got.Seq != 1 || got.Hash == "forged" {
		t.Fatalf("Append = %+v: want At %v in UTC, Seq 1 and a computed hash", got, t0)
	}
}

func TestAppendCleans(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes, 2 bytes a rune
	tests := []struct {
		name string
		in   func(*Record)
		want func(*testing.T, Record)
	}{
		{"control characters", func(r *Record) { r.Detail = "line1\nline2\x1b[31m\x00" }, func(t *testing.T, r Record) {
			if r.Detail != "line1\uFFFDline2\uFFFD[31m\uFFFD" {
				t.Errorf("detail %q", r.Detail)
			}
		}},
		{"bidi override", func(r *Record) { r.Actor = "admin\u202Enimda" }, func(t *testing.T, r Record) {
			if r.Actor != "admin\uFFFDnimda" {
				t.Errorf("actor %q", r.Actor)
			}
		}},
		{"invalid UTF-8", func(r *Record) { r.Object = "camera/\xff\xfe01" }, func(t *testing.T, r Record) {
			if r.Object != "camera/\uFFFD01" {
				t.Errorf("object %q", r.Object)
			}
		}},
		{"long detail", func(r *Record) { r.Detail = long }, func(t *testing.T, r Record) {
			if len(r.Detail) > MaxDetail || !strings.HasSuffix(r.Detail, "…") || !utf8.ValidString(r.Detail) ||
				!strings.HasPrefix(long, strings.TrimSuffix(r.Detail, "…")) || len(r.Detail) < MaxDetail-4 {
				t.Errorf("detail of %d bytes, valid %v, suffix %q", len(r.Detail), utf8.ValidString(r.Detail), r.Detail[len(r.Detail)-6:])
			}
		}},
		{"long session", func(r *Record) { r.Session = strings.Repeat("x", 1000) }, func(t *testing.T, r Record) {
			if r.Session != strings.Repeat("x", MaxField-3)+"…" {
				t.Errorf("session of %d bytes", len(r.Session))
			}
		}},
	}
	e := newEnv(t)
	reg := metrics.NewRegistry()
	l := e.open(t, Options{}, Deps{Metrics: reg})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sample(1)
			tt.in(&r)
			got, err := l.Append(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			tt.want(t, got)
			p, err := l.Query(context.Background(), Filter{Limit: 1})
			if err != nil || !reflect.DeepEqual(p.Records, []Record{got}) {
				t.Errorf("stored %+v (%v), want %+v", p.Records, err, got)
			}
		})
	}
	if rep := mustVerify(t, l); !rep.OK {
		t.Fatalf("Verify: %+v", rep.FirstBroken)
	}
	var text bytes.Buffer
	reg.WriteText(&text)
	if !strings.Contains(text.String(), "citywatch_audit_truncated_total 2\n") {
		t.Errorf("truncations not counted:\n%s", text.String())
	}
}

func TestAppendRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   func(*Record)
		want string
	}{
		{"no actor", func(r *Record) { r.Actor = "" }, "actor is required"},
		{"no action", func(r *Record) { r.Action = "" }, "action is required"},
		{"no outcome", func(r *Record) { r.Outcome = "" }, "outcome"},
		{"unknown outcome", func(r *Record) { r.Outcome = "ok" }, `outcome "ok"`},
		{"time out of range", func(r *Record) { r.At = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }, "out of range"},
	}
	e := newEnv(t)
	reg := metrics.NewRegistry()
	l := e.open(t, Options{}, Deps{Metrics: reg})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sample(1)
			tt.in(&r)
			_, err := l.Append(context.Background(), r)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Append: %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
	if seq, _, _ := l.Head(context.Background()); seq != 0 {
		t.Fatalf("head %d after refused records", seq)
	}
	var text bytes.Buffer
	reg.WriteText(&text)
	if want := fmt.Sprintf(`citywatch_audit_failures_total{reason="invalid"} %d`, len(tests)); !strings.Contains(text.String(), want) {
		t.Errorf("metrics lack %q:\n%s", want, text.String())
	}
	if ok, _, _ := l.Health(); !ok {
		t.Error("refused records made the log unhealthy")
	}
}

func TestKeyFile(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, Options{}, Deps{})
	appendN(t, l, 3)
	info, err := os.Stat(e.key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
	for _, f := range []string{e.db, e.db + "-wal"} {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, info.Mode().Perm())
		}
	}
	text, _ := os.ReadFile(e.key)
	if k := strings.TrimSpace(string(text)); len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		t.Errorf("key file holds %d characters, want 64 hex digits", len(k))
	}
	if left, _ := filepath.Glob(filepath.Join(e.dir, ".audit-key-*")); len(left) > 0 {
		t.Errorf("temporary key files left: %v", left)
	}

	// The same key opens the database again.
	again, err := Open(e.db, Options{KeyFile: e.key}, Deps{Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if again.KeyFingerprint() != l.KeyFingerprint() {
		t.Error("fingerprint changed on reopen")
	}
	again.Close()

	secret := "not-hex-SECRET-" + strings.Repeat("z", 49)
	bad := filepath.Join(e.dir, "bad.key")
	os.WriteFile(bad, []byte(secret), 0o600)
	other := filepath.Join(e.dir, "other.key")
	lost := filepath.Join(e.dir, "lost.key")
	if _, err := Open(filepath.Join(e.dir, "scratch.db"), Options{KeyFile: other}, Deps{Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err) // creates other.key
	}
	tests := []struct {
		name, key string
		want      []string
	}{
		{"malformed", bad, []string{"malformed", "64 hex digits"}},
		{"another key", other, []string{"fingerprint", "never be verified"}},
		{"lost key replaced", lost, []string{"fingerprint", "restore the old key file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(e.db, Options{KeyFile: tt.key}, Deps{Log: slog.New(slog.DiscardHandler)})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q echoes the key file", err)
			}
		})
	}
}

func TestOpenChecksOptions(t *testing.T) {
	e := newEnv(t)
	logger := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name string
		opts Options
		deps Deps
		want string
	}{
		{"no logger", Options{KeyFile: e.key}, Deps{}, "Deps.Log"},
		{"no key file", Options{}, Deps{Log: logger}, "KeyFile"},
		{"negative retention", Options{KeyFile: e.key, Retention: -time.Hour}, Deps{Log: logger}, "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(e.db, tt.opts, tt.deps); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v, want an error about %s", err, tt.want)
			}
		})
	}
}

// TestGroupCommit appends from many goroutines while Run runs: every
// append returns its own committed record, and after Run has stopped
// appends commit on their caller's goroutine.
func TestGroupCommit(t *testing.T) {
	e := newEnv(t)
	reg := metrics.NewRegistry()
	l := e.open(t, Options{}, Deps{Metrics: reg})
	stop := run(t, l)
	const n = 300
	seqs := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := l.Append(context.Background(), sample(i))
			if err != nil {
				t.Errorf("Append %d: %v", i, err)
				return
			}
			if r.Detail != sample(i).Detail {
				t.Errorf("Append %d returned another caller's record %+v", i, r)
			}
			seqs[i] = r.Seq
		})
	}
	wg.Wait()
	stop()
	if r, err := l.Append(context.Background(), sample(n)); err != nil || r.Seq != n+1 {
		t.Fatalf("Append after Run: %+v %v", r, err)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seqs %v…: not 1..%d", seqs[:min(i+3, n)], n)
		}
	}
	if rep := mustVerify(t, l); !rep.OK || rep.Records != n+1 {
		t.Fatalf("Verify = %+v", rep)
	}
	var text bytes.Buffer
	reg.WriteText(&text)
	if !strings.Contains(text.String(), fmt.Sprintf("citywatch_audit_records_total %d\n", n+1)) {
		t.Errorf("records not counted:\n%s", text.String())
	}
}

// TestTwoWriters appends through two Logs on one file, as the hub and the
// command line do: one chain, no gaps.
func TestTwoWriters(t *testing.T) {
	e := newEnv(t)
	hub := e.open(t, Options{}, Deps{})
	cli := e.open(t, Options{}, Deps{})
	run(t, hub)
	const writers, each = 8, 40
	var (
		mu   sync.Mutex
		seqs []uint64
		wg   sync.WaitGroup
	)
	for w := range writers {
		l := hub
		if w%2 == 1 {
			l = cli
		}
		wg.Go(func() {
			for i := range each {
				r, err := l.Append(context.Background(), sample(w*each+i))
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				seqs = append(seqs, r.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seq %d at position %d: duplicates or gaps", s, i)
		}
	}
	for _, l := range []*Log{hub, cli} {
		if rep := mustVerify(t, l); !rep.OK || rep.Records != writers*each {
			t.Fatalf("Verify = %+v", rep)
		}
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	c := &clock{t: t0}
	reg := metrics.NewRegistry()
	var logs bytes.Buffer
	l := e.open(t, Options{Now: c.Now}, Deps{Metrics: reg, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if ok, msg, since := l.Health(); !ok || msg != "" || !since.Equal(t0) {
		t.Fatalf("Health at start = %v %q %v", ok, msg, since)
	}
	// A storage failure, simulated by a trigger only the test adds.
	db := e.attacker(t)
	exec(t, db, `CREATE TRIGGER fail BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`)
	c.Set(t0.Add(time.Minute))
	r := sample(1)
	r.Actor = "carol"
	if _, err := l.Append(context.Background(), r); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Append: %v, want the write error", err)
	}
	ok, msg, since := l.Health()
	if ok || !strings.Contains(msg, "disk on fire") || !since.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Health after failure = %v %q %v", ok, msg, since)
	}
	if !strings.Contains(logs.String(), "audit record not written") || !strings.Contains(logs.String(), "actor=carol") {
		t.Errorf("the lost record is not in the log:\n%s", logs.String())
	}
	exec(t, db, `DROP TRIGGER fail`)
	c.Set(t0.Add(2 * time.Minute))
	appendN(t, l, 1)
	ok, msg, since = l.Health()
	if !ok || !strings.Contains(msg, "disk on fire") || !since.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("Health after recovery = %v %q %v", ok, msg, since)
	}
	var text bytes.Buffer
	reg.WriteText(&text)
	if !strings.Contains(text.String(), `citywatch_audit_failures_total{reason="write"} 1`) {
		t.Errorf("write failure not counted:\n%s", text.String())
	}
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newEnv(t).open(t, Options{}, Deps{})
		run(t, l)
		synctest.Wait() // the first Run waits for work
		if err := l.Run(context.Background()); err == nil {
			t.Fatal("a second Run started")
		}
	})
}
