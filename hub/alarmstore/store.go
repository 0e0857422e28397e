// Package alarmstore keeps alarms, their trails and shelving in a
// database, so that a hub killed with SIGKILL restarts with the alarms it
// had: an SQLite file (modernc.org/sqlite, no cgo) for a single hub, or a
// PostgreSQL database (pgx) that the hubs of a cluster share. One Store
// runs the same statements on both; only what the engines spell
// differently is rewritten. The engine hands every transition to Record,
// which only enqueues; Run writes the queue in batches, each batch one
// transaction that upserts the alarm rows and appends the transitions, so
// the database always holds whole batches. At start-up Load returns what
// alarm.Engine.Restore takes.
//
// In a cluster every hub writes the alarms of the partitions it owns (an
// alarm's partition comes from Options.Partition) with ids of its own
// prefix, whose sequence NextID returns; LoadPartitions gives a hub taking
// partitions over their open alarms, LoadOpen and Alarm what a hub shows
// of the others'. (Hubs learn of each other's changes over NATS, from
// hub/alarmview, as they happen rather than at commit.)
//
// Durability: SQLite runs in WAL mode with synchronous=NORMAL. A
// committed transaction is in the WAL file before Commit returns, so it
// survives the process being killed; only an operating-system crash or power
// loss can lose the last transactions before a checkpoint. FULL would fsync
// every batch to close that gap at a large cost during alarm storms; the
// hub's failure we design for is the process dying, not the machine.
// PostgreSQL's durability is the server's configuration.
package alarmstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync/atomic"

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
	db        *sql.DB
	rdb       *sql.DB // readers (Shift, loads), beside the writer; db itself on PostgreSQL
	dialect   schema.Dialect
	partition func(alarm.Alarm) int
	log       *slog.Logger
	queue     chan entry
	written   atomic.Uint64
	dropped   atomic.Uint64
}

type entry struct {
	a alarm.Alarm
	t alarm.Transition
}

// Options are what a Store takes beside its database.
type Options struct {
	Logger *slog.Logger // nil discards
	// Partition is the cluster partition an alarm belongs to (0 to N-1
	// for its agent's; any int is stored), set on every write for
	// LoadPartitions. Run calls it. Nil puts every alarm in partition 0,
	// as on a single hub.
	Partition func(alarm.Alarm) int
}

// Open opens or creates the database at path and brings its schema up to
// date: OpenWith with a logger only, every alarm in partition 0.
func Open(path string, logger *slog.Logger) (*Store, error) {
	return OpenWith(path, Options{Logger: logger})
}

// OpenWith opens an alarm database and brings its schema up to date. dsn
// is an SQLite file's path, created if missing, or a postgres:// (or
// postgresql://) URL of an existing database, which hubs starting
// together may migrate at once. A file or database that is not a
// citywatch alarm database is an error.
func OpenWith(dsn string, opts Options) (*Store, error) {
	s := &Store{partition: opts.Partition, log: opts.Logger, queue: make(chan entry, queueSize)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.partition == nil {
		s.partition = func(alarm.Alarm) int { return 0 }
	}
	var err error
	if schema.IsPostgres(dsn) {
		s.dialect = schema.Postgres
		s.db, err = schema.OpenPostgres(dsn, migrations, postgres)
		s.rdb = s.db
	} else {
		s.db, s.rdb, err = openSQLite(dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("alarmstore: open %s: %w", schema.Redact(dsn), err)
	}
	return s, nil
}

// openSQLite opens the writer and the readers of the file at path.
func openSQLite(path string) (db, rdb *sql.DB, err error) {
	// One writer (Run): one connection means no lock contention between
	// batches. Reports read through connections of their own, which see
	// committed batches (WAL) and never write.
	db, err = schema.Open(path, migrations)
	if err != nil {
		return nil, nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	rdb, err = sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, nil, errors.Join(err, db.Close())
	}
	rdb.SetMaxOpenConns(2)
	return db, rdb, nil
}

// Close closes the database. Call it after Run has returned.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.rdb != s.db {
		err = errors.Join(s.rdb.Close(), err)
	}
	if err != nil {
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
// as it is after its last transition in the batch, and raises the id
// sequence of each prefix in it.
func (s *Store) write(ctx context.Context, batch []entry) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("alarmstore: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	last := map[string]alarm.Alarm{}
	next := map[string]uint64{} // by id prefix
	insert := s.dialect.SQL(insertTransition)
	for _, e := range batch {
		t := e.t
		if _, err := tx.ExecContext(ctx, insert, e.a.ID, ns(t.At), t.Who, string(t.Action), string(t.From), string(t.To), t.Note); err != nil {
			return fmt.Errorf("alarmstore: insert transition of %s: %w", e.a.ID, err)
		}
		last[e.a.ID] = e.a
		if prefix, n, ok := splitID(e.a.ID); ok {
			next[prefix] = max(next[prefix], n+1)
		}
	}
	// Rows in a fixed order: two hubs writing the same rows (one taking
	// over from the other) then lock them in the same order, never in a
	// deadlock.
	ids := slices.Sorted(maps.Keys(last))
	upsert := s.dialect.SQL(upsertAlarm)
	for _, id := range ids {
		a := last[id]
		if _, err := tx.ExecContext(ctx, upsert, alarmArgs(a, s.partition(a))...); err != nil {
			return fmt.Errorf("alarmstore: upsert alarm %s: %w", id, err)
		}
	}
	raise := s.dialect.SQL(raiseNextSeq)
	for _, prefix := range slices.Sorted(maps.Keys(next)) {
		if _, err := tx.ExecContext(ctx, raise, prefix, next[prefix]); err != nil {
			return fmt.Errorf("alarmstore: next id of %s: %w", prefix, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("alarmstore: commit: %w", err)
	}
	return nil
}

// Times are stored as Unix nanoseconds (schema.Nanos).
var ns, tm = schema.Nanos, schema.FromNanos
