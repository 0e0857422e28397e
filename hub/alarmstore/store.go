// Package alarmstore keeps alarms, their trails and shelving in SQLite
// (modernc.org/sqlite, no cgo), so that a hub killed with SIGKILL restarts
// with the alarms it had. The engine hands every transition to Record,
// which only enqueues; Run writes the queue in batches, each batch one
// transaction that upserts the alarm rows and appends the transitions, so
// the database always holds whole batches. At start-up Load returns what
// alarm.Engine.Restore takes.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. A
// committed transaction is in the WAL file before Commit returns, so it
// survives the process being killed; only an operating-system crash or power
// loss can lose the last transactions before a checkpoint. FULL would fsync
// every batch to close that gap at a large cost during alarm storms; the
// hub's failure we design for is the process dying, not the machine.
package alarmstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/internal/schema"
)

const (
	// queueSize bounds what waits for Run. A full queue drops transitions,
	// which is data loss, so it is sized for the worst storm: 100k entries
	// (a few tens of MB) while a batch writes hundreds of rows in
	// milliseconds.
	queueSize = 100_000
	// maxBatch bounds one transaction, so a long backlog is written in
	// steps and a batch's locks are short.
	maxBatch = 500
)

// Store is an open alarm database. Record is safe for concurrent use; Run
// must run at most once.
type Store struct {
	db      *sql.DB
	rdb     *sql.DB // readers (Shift), beside the writer
	log     *slog.Logger
	queue   chan entry
	written atomic.Uint64
	dropped atomic.Uint64
}

type entry struct {
	a alarm.Alarm
	t alarm.Transition
}

// Open opens or creates the database at path and brings its schema up to
// date. A file that is not a citywatch alarm database is an error.
func Open(path string, logger *slog.Logger) (*Store, error) {
	// One writer (Run): one connection means no lock contention between
	// batches. Reports read through connections of their own, which see
	// committed batches (WAL) and never write.
	db, err := schema.Open(path, migrations)
	if err != nil {
		return nil, fmt.Errorf("alarmstore: open %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("alarmstore: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(2)
	return &Store{db: db, rdb: rdb, log: logger, queue: make(chan entry, queueSize)}, nil
}

// Close closes the database. Call it after Run has returned.
func (s *Store) Close() error {
	if err := errors.Join(s.rdb.Close(), s.db.Close()); err != nil {
		return fmt.Errorf("alarmstore: close: %w", err)
	}
	return nil
}

// Record queues one transition and the alarm after it for writing; it
// never blocks, so it can be alarm.Options.OnTransition. It reports false
// when the queue was full and the transition is lost.
func (s *Store) Record(a alarm.Alarm, t alarm.Transition) bool {
	select {
	case s.queue <- entry{a, t}:
		return true
	default:
		s.dropped.Add(1)
		return false
	}
}

// Written is how many transitions have been committed.
func (s *Store) Written() uint64 { return s.written.Load() }

// Dropped is how many transitions were lost: queue full or a failed write.
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Run writes queued transitions until ctx ends, then writes what is still
// queued and returns. It writes as soon as anything is queued, taking up
// to maxBatch entries per transaction, so a quiet hub commits each
// transition at once and a storm is written in large batches. Stop the
// engine before ending ctx, or its last transitions stay in the queue.
func (s *Store) Run(ctx context.Context) error {
	batch := make([]entry, 0, maxBatch)
	var reported uint64
	for {
		select {
		case <-ctx.Done():
			for len(s.queue) > 0 {
				s.flush(s.fill(batch[:0]))
			}
			return nil
		case e := <-s.queue:
			s.flush(s.fill(append(batch[:0], e)))
		}
		// One log line per batch at most, however many were lost.
		if d := s.dropped.Load(); d != reported {
			s.log.Error("alarm transitions lost", "component", "alarmstore", "dropped_total", d, "new", d-reported)
			reported = d
		}
	}
}

// fill adds queued entries to batch without waiting, up to maxBatch.
func (s *Store) fill(batch []entry) []entry {
	for len(batch) < maxBatch {
		select {
		case e := <-s.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// flush writes a batch already taken from the queue. It is not cancelled
// with Run's ctx: that would throw the batch away.
func (s *Store) flush(batch []entry) {
	if err := s.write(context.Background(), batch); err != nil {
		// Run has no one to return a write error to while the hub runs:
		// count the loss and keep going, the next batch may succeed.
		s.dropped.Add(uint64(len(batch)))
		s.log.Error("alarm batch not written", "component", "alarmstore", "transitions", len(batch), "err", err)
		return
	}
	s.written.Add(uint64(len(batch)))
}

// write commits one batch: every transition, and each alarm's row once,
// as it is after its last transition in the batch.
func (s *Store) write(ctx context.Context, batch []entry) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("alarmstore: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	last := map[string]alarm.Alarm{}
	var next uint64
	for _, e := range batch {
		t := e.t
		if _, err := tx.ExecContext(ctx, insertTransition, e.a.ID, ns(t.At), t.Who, string(t.Action), string(t.From), string(t.To), t.Note); err != nil {
			return fmt.Errorf("alarmstore: insert transition of %s: %w", e.a.ID, err)
		}
		last[e.a.ID] = e.a
		if n, ok := alarm.IDSeq(e.a.ID); ok {
			next = max(next, n+1)
		}
	}
	for _, a := range last {
		if _, err := tx.ExecContext(ctx, upsertAlarm, alarmArgs(a)...); err != nil {
			return fmt.Errorf("alarmstore: upsert alarm %s: %w", a.ID, err)
		}
	}
	if next > 0 {
		if _, err := tx.ExecContext(ctx, raiseNextID, next); err != nil {
			return fmt.Errorf("alarmstore: next id: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("alarmstore: commit: %w", err)
	}
	return nil
}

// Load returns the alarms to restore: every open one and the closed most
// recent closed ones, with their trails, and the sequence number of the
// next alarm id. Closed alarms beyond that stay in the database as history.
func (s *Store) Load(closed int) (alarms []alarm.Alarm, trails map[string][]alarm.Transition, next uint64, err error) {
	ctx := context.Background()
	rows, err := s.db.QueryContext(ctx, selectAlarms, closed)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("alarmstore: load alarms: %w", err)
	}
	for rows.Next() {
		a, err := scanAlarm(rows)
		if err != nil {
			rows.Close()
			return nil, nil, 0, fmt.Errorf("alarmstore: load alarms: %w", err)
		}
		alarms = append(alarms, a)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, nil, 0, fmt.Errorf("alarmstore: load alarms: %w", err)
	}

	trails = make(map[string][]alarm.Transition, len(alarms))
	rows, err = s.db.QueryContext(ctx, selectTransitions, closed)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("alarmstore: load transitions: %w", err)
	}
	for rows.Next() {
		var (
			id, who, act, from, to, note string
			at                           int64
		)
		if err := rows.Scan(&id, &at, &who, &act, &from, &to, &note); err != nil {
			rows.Close()
			return nil, nil, 0, fmt.Errorf("alarmstore: load transitions: %w", err)
		}
		trails[id] = append(trails[id], alarm.Transition{
			At: tm(at), Who: who, Action: alarm.Action(act), From: alarm.State(from), To: alarm.State(to), Note: note,
		})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, nil, 0, fmt.Errorf("alarmstore: load transitions: %w", err)
	}

	var n int64
	switch err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'next_id'`).Scan(&n); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, nil, 0, fmt.Errorf("alarmstore: load next id: %w", err)
	}
	return alarms, trails, uint64(n), nil
}

// ns stores a time as Unix nanoseconds; the zero time (unset) is 0.
func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// tm reads what ns stored, in UTC.
func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
