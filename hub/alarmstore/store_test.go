package alarmstore

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/internal/schema"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// backend is an engine the store runs on; db makes a fresh, empty
// database of it and returns what Open takes.
type backend struct {
	name string
	db   func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "alarms.db") }},
	{"postgres", func(t *testing.T) string { return testenv.Postgres(t) }},
}

// eachBackend runs test once on each engine, each time on a fresh
// database.
func eachBackend(t *testing.T, test func(t *testing.T, db string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.db(t)) })
	}
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	return openWith(t, path, Options{})
}

func openWith(t *testing.T, db string, opts Options) *Store {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := OpenWith(db, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// run starts s.Run and returns a stop that drains the queue, waits for Run
// and closes the store.
func run(t *testing.T, s *Store) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// sample returns alarm i after its j-th transition (j from 1), with every
// field set, so a column lost in the round trip shows.
func sample(i, j int) (alarm.Alarm, alarm.Transition) {
	at := t0.Add(time.Duration(i)*time.Minute + time.Duration(j)*time.Second)
	a := alarm.Alarm{
		ID: fmt.Sprintf("A%d", i), Key: fmt.Sprintf("device_offline:device/cam%d", i), Source: alarm.SourceDeviceOffline,
		Type: "camera_offline", Device: fmt.Sprintf("cam%d", i), Agent: "ag1", Site: "s1", District: "d1",
		Severity: alarm.Major, Criticality: 3, Priority: 33, State: alarm.ActiveAck, Count: j,
		FirstAt: t0, LastAt: at, ClearedAt: at.Add(1), AckedBy: "ann", AckedAt: at.Add(2), AssignedTo: "bob",
		ShelvedUntil: at.Add(time.Hour), Escalations: 2, Flapping: true, Detail: "no RTSP", Args: map[string]string{"n": fmt.Sprint(j)},
	}
	tr := alarm.Transition{At: at, Who: "ann", Action: alarm.ActRepeat, From: alarm.ActiveAck, To: alarm.ActiveAck, Note: fmt.Sprintf("%d/%d", i, j)}
	return a, tr
}

func TestRoundTrip(t *testing.T) { eachBackend(t, testRoundTrip) }

func testRoundTrip(t *testing.T, path string) {
	s := open(t, path)
	stop := run(t, s)
	const alarms, each = 50, 30
	want := map[string][]alarm.Transition{}
	var last []alarm.Alarm
	for j := 1; j <= each; j++ {
		for i := 1; i <= alarms; i++ {
			a, tr := sample(i, j)
			if !s.Record(a, tr) {
				t.Fatal("Record dropped a transition")
			}
			want[a.ID] = append(want[a.ID], tr)
			if j == each {
				last = append(last, a)
			}
		}
	}
	stop()
	if s.Written() != alarms*each || s.Dropped() != 0 {
		t.Errorf("written %d dropped %d, want %d and 0", s.Written(), s.Dropped(), alarms*each)
	}

	s = open(t, path)
	defer s.Close()
	got, trails, next, err := s.Load(1000)
	if err != nil {
		t.Fatal(err)
	}
	wantByID := map[string]alarm.Alarm{}
	for _, a := range last {
		wantByID[a.ID] = a
	}
	gotByID := map[string]alarm.Alarm{}
	for _, a := range got {
		gotByID[a.ID] = a
	}
	if !reflect.DeepEqual(gotByID, wantByID) {
		t.Errorf("alarms after reopen differ:\n%+v\nwant\n%+v", got[0], last[0])
	}
	if !reflect.DeepEqual(trails, want) {
		t.Errorf("trails after reopen differ")
	}
	if next != alarms+1 {
		t.Errorf("next id %d, want %d", next, alarms+1)
	}
}

func TestLoadKeepsRecentClosed(t *testing.T) { eachBackend(t, testLoadKeepsRecentClosed) }

func testLoadKeepsRecentClosed(t *testing.T, path string) {
	s := open(t, path)
	stop := run(t, s)
	for i := 1; i <= 5; i++ {
		a, tr := sample(i, 1)
		a.State = alarm.ClearedAck
		s.Record(a, tr)
	}
	a, tr := sample(6, 1)
	s.Record(a, tr)
	stop()
	s = open(t, path)
	defer s.Close()
	got, trails, next, err := s.Load(2)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range got {
		ids = append(ids, a.ID)
	}
	// The open alarm, and the two closed ones changed last.
	if want := []string{"A4", "A5", "A6"}; !reflect.DeepEqual(ids, want) || len(trails) != 3 {
		t.Errorf("loaded %v with %d trails, want %v", ids, len(trails), want)
	}
	if next != 7 {
		t.Errorf("next id %d, want 7: closed alarms left in the database still count", next)
	}
}

const rules = `
rules:
  - source: device_offline
    severity: minor
    clear_hold: 10s
    escalate_after: 1m
`

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestEngineRestore(t *testing.T) { eachBackend(t, testEngineRestore) }

func testEngineRestore(t *testing.T, path string) {
	rs, err := alarm.ParseRules([]byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	stop := run(t, s)
	clk := &clock{now: t0}
	e := alarm.New(rs, alarm.Options{Now: clk.Now, OnTransition: func(a alarm.Alarm, tr alarm.Transition) { s.Record(a, tr) }})
	camera := func(e *alarm.Engine, id string, st wire.Status) {
		e.Observe(fleet.Change{Kind: fleet.ChangeDevice, At: clk.now, Device: &fleet.Device{ID: id, Agent: "ag1", Kind: wire.KindCamera, Status: st, Criticality: 3}})
	}
	advance := func(e *alarm.Engine, d time.Duration) { clk.now = clk.now.Add(d); e.Tick(clk.now) }

	// One alarm in each state; A1 escalated and assigned, A5 shelved.
	camera(e, "cam1", wire.StatusOffline)
	advance(e, time.Minute)
	for _, c := range []string{"cam2", "cam3", "cam4", "cam5"} {
		camera(e, c, wire.StatusOffline)
	}
	for _, err := range []error{
		e.Assign("A1", "ann", "bob", ""), e.Ack("A2", "ann", ""), e.Ack("A4", "ann", ""),
		e.Shelve("A5", "ann", clk.now.Add(time.Hour), "roadworks"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	camera(e, "cam3", wire.StatusOnline)
	camera(e, "cam4", wire.StatusOnline)
	advance(e, 10*time.Second)
	stop()

	s = open(t, path)
	defer s.Close()
	alarms, trails, next, err := s.Load(1000)
	if err != nil {
		t.Fatal(err)
	}
	e2 := alarm.New(rs, alarm.Options{Now: clk.Now})
	if err := e2.Restore(alarms, trails, next); err != nil {
		t.Fatal(err)
	}
	all := alarm.Filter{States: alarm.States}
	states := map[alarm.State]bool{}
	for _, a := range e.Alarms(all) {
		states[a.State] = true
	}
	if len(states) != 4 {
		t.Fatalf("fixture covers states %v, want all four", states)
	}
	if got, want := e2.Alarms(all), e.Alarms(all); !reflect.DeepEqual(got, want) {
		t.Fatalf("alarms after restore\n%+v\nwant\n%+v", got, want)
	}
	for _, a := range e.Alarms(all) {
		_, want, _ := e.Alarm(a.ID)
		if _, got, _ := e2.Alarm(a.ID); !reflect.DeepEqual(got, want) {
			t.Errorf("%s trail after restore\n%+v\nwant\n%+v", a.ID, got, want)
		}
	}
	camera(e2, "cam9", wire.StatusOffline)
	if as := e2.Alarms(alarm.Filter{Device: "cam9"}); len(as) != 1 || as[0].ID != "A6" {
		t.Errorf("new alarm after restore: %+v, want A6", as)
	}
}

func TestOpenMigratesEmptyDatabase(t *testing.T) { eachBackend(t, testOpenMigratesEmptyDatabase) }

func testOpenMigratesEmptyDatabase(t *testing.T, path string) {
	sqlite := !schema.IsPostgres(path)
	if sqlite {
		if err := os.WriteFile(path, nil, 0o600); err != nil { // an empty file is an empty database
			t.Fatal(err)
		}
	}
	for range 2 { // the second open finds the schema current
		s := open(t, path)
		var v, n int
		if err := s.db.QueryRow(`SELECT MAX(version), COUNT(*) FROM schema_version`).Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if v != len(migrations) || n != len(migrations) {
			t.Errorf("schema version %d with %d rows, want %d", v, n, len(migrations))
		}
		if sqlite {
			var mode string
			if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode %q (%v), want wal", mode, err)
			}
		}
		s.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not SQLite\n", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]func(t *testing.T) string{
		"garbage":   func(*testing.T) string { return garbage },
		"directory": func(*testing.T) string { return dir },
		"no parent": func(*testing.T) string { return filepath.Join(dir, "missing", "alarms.db") },
		"postgres unreachable": func(t *testing.T) string {
			return fmt.Sprintf("postgres://postgres:secret@127.0.0.1:%d/alarms", testenv.FreePort(t))
		},
		"postgres newer schema": func(t *testing.T) string {
			db := testenv.Postgres(t)
			open(t, db).Close()
			c, err := sql.Open("pgx", db)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Exec(`INSERT INTO schema_version (version) VALUES ($1)`, len(migrations)+1); err != nil {
				t.Fatal(err)
			}
			return db
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := path(t)
			s, err := Open(path, slog.Default())
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), schema.Redact(path)) || strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q does not name the path without its password", err)
			}
		})
	}
}

func TestRecordDropsWhenFull(t *testing.T) { eachBackend(t, testRecordDropsWhenFull) }

func testRecordDropsWhenFull(t *testing.T, path string) {
	s := open(t, path)
	defer s.Close()
	s.queue = make(chan entry, 2) // no Run: nothing drains it
	a, tr := sample(1, 1)
	got := []bool{s.Record(a, tr), s.Record(a, tr), s.Record(a, tr)}
	if !reflect.DeepEqual(got, []bool{true, true, false}) || s.Dropped() != 1 {
		t.Errorf("Record = %v, dropped %d; want the third dropped and counted", got, s.Dropped())
	}
}

// TestMain runs the crash victim of TestCrash when re-executed with
// ALARMSTORE_CRASH_DB set, and the tests otherwise.
func TestMain(m *testing.M) {
	if path := os.Getenv("ALARMSTORE_CRASH_DB"); path != "" {
		crashVictim(path)
	}
	os.Exit(m.Run())
}

// crashVictim is the hub in TestCrash: it records transitions as fast as
// it can and prints how many are committed, until it is killed.
func crashVictim(path string) {
	s, err := Open(path, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	go s.Run(context.Background()) //nolint:errcheck // killed before it returns
	go func() {
		for {
			fmt.Printf("written %d\n", s.Written())
			time.Sleep(time.Millisecond)
		}
	}()
	for j := 1; ; j++ {
		for i := 1; i <= 100; i++ {
			a, tr := sample(i, j)
			for !s.Record(a, tr) {
				time.Sleep(time.Millisecond) // keep the record gap-free
			}
		}
	}
}

func TestCrash(t *testing.T) { eachBackend(t, testCrash) }

func testCrash(t *testing.T, path string) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ALARMSTORE_CRASH_DB="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() && acked < 20_000 {
		if n, ok := strings.CutPrefix(sc.Text(), "written "); ok {
			acked, _ = strconv.ParseUint(n, 10, 64)
		}
	}
	// Mid-stream: the child is still recording and writing.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out) //nolint:errcheck // only draining
	cmd.Wait()               //nolint:errcheck // killed, as intended
	if acked < 20_000 {
		t.Fatalf("helper stopped after %d transitions", acked)
	}

	s := open(t, path)
	defer s.Close()
	var n uint64
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM transitions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < acked {
		t.Errorf("%d transitions in the database, %d were acknowledged as written", n, acked)
	}
	if !schema.IsPostgres(path) {
		if err := s.db.QueryRow(`PRAGMA integrity_check`).Scan(new(string)); err != nil {
			t.Fatal(err)
		}
	}
	// Whole batches only: the transitions are exactly the first n recorded,
	// and every alarm row is as of its last stored transition.
	alarms, trails, _, err := s.Load(0)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, a := range alarms {
		tr := trails[a.ID]
		total += len(tr)
		i, _ := strconv.Atoi(strings.TrimPrefix(a.ID, "A"))
		if len(tr) != a.Count || tr[len(tr)-1].Note != fmt.Sprintf("%d/%d", i, a.Count) {
			t.Errorf("%s: row says count %d, %d transitions stored", a.ID, a.Count, len(tr))
		}
	}
	if uint64(total) != n {
		t.Errorf("%d transitions belong to loaded alarms, %d stored", total, n)
	}
	// Recorded in order j-major: the first n are complete rounds plus the
	// first alarms of the next round.
	for _, a := range alarms {
		i, _ := strconv.Atoi(strings.TrimPrefix(a.ID, "A"))
		want := int(n) / 100
		if i <= int(n)%100 {
			want++
		}
		if a.Count != want {
			t.Errorf("%s has %d transitions, want %d of %d in order", a.ID, a.Count, want, n)
		}
	}
}
