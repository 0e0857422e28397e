package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/citywatch/citywatch/hub/internal/schema"
	"github.com/citywatch/citywatch/hub/metrics"
)

const (
	// busyTimeoutMS is how long a writer waits for another process's
	// transaction (the command line, a retention run over millions of
	// records) before the append fails; failing loses evidence, waiting
	// only delays a caller.
	busyTimeoutMS = 30_000
	// maxBatch bounds one group commit, so a backlog is written in steps
	// and no transaction holds the lock for long.
	maxBatch = 1000
	// readConns lets a long export or verification run while pages are
	// read; WAL readers never block the writer.
	readConns = 4
	// pruneEvery is how often Run applies retention.
	pruneEvery = 24 * time.Hour
)

// Options configure a Log.
type Options struct {
	// KeyFile holds the chain key as 64 hex digits. It is created (mode
	// 0600) when missing; a malformed file, or a key other than the one
	// the database was started with, is refused.
	KeyFile string
	// Retention is how long records are kept; Run deletes older ones once
	// a day. 0 keeps them forever.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Deps are the Log's collaborators.
type Deps struct {
	Log *slog.Logger
	// Metrics receives the log's counters; nil (command-line use) means
	// none are exported.
	Metrics *metrics.Registry
}

// Log is an open audit database. Append, Query, Export, Verify, Head and
// Prune are safe for concurrent use, also by other processes on the same
// file; Run runs at most once at a time.
type Log struct {
	w       *sql.DB // one connection: this process's writes go one at a time
	r       *sql.DB // reads, never writes (w itself on PostgreSQL)
	dialect schema.Dialect
	key     []byte
	fp      string
	log     *slog.Logger

	now       func() time.Time
	retention time.Duration

	// mu guards the group commit: whether Run is there to take appends,
	// and the appends waiting for it.
	mu      sync.Mutex
	running bool
	pending []*request
	wake    chan struct{}

	healthMu  sync.Mutex
	healthy   bool
	lastError string
	since     time.Time

	records   *metrics.Counter
	commits   *metrics.Counter
	failures  *metrics.Vec[metrics.Counter]
	truncated *metrics.Counter
}

// request is one Append waiting for Run's next commit.
type request struct {
	rec  Record
	done chan result // buffered: Run never waits for a caller that gave up
}

type result struct {
	rec Record
	err error
}

// Open opens or creates the audit database at path — an SQLite file, or
// a postgres:// URL of the database a cluster's hubs share, whose chain
// they all append to — brings its schema up to date and loads the chain
// key. It starts nothing.
func Open(path string, opts Options, deps Deps) (*Log, error) {
	switch {
	case deps.Log == nil:
		return nil, errors.New("audit: Deps.Log is required")
	case opts.KeyFile == "":
		return nil, errors.New("audit: Options.KeyFile is required")
	case opts.Retention < 0:
		return nil, fmt.Errorf("audit: retention %s is negative", opts.Retention)
	}
	logger := deps.Log.With("component", "audit")
	key, created, err := loadKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(opts.KeyFile); err == nil && info.Mode().Perm()&0o077 != 0 {
		logger.Warn("audit key file is readable by other users; whoever reads it can rewrite the chain",
			"file", opts.KeyFile, "mode", info.Mode().Perm().String())
	}
	var (
		w, r    *sql.DB
		dialect schema.Dialect
	)
	if schema.IsPostgres(path) {
		dialect = schema.Postgres
		w, err = openPostgres(path)
		r = w
	} else {
		w, r, err = openSQLite(path)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", schema.Redact(path), err)
	}
	fp := fingerprint(key)
	if err := checkKey(w, dialect, fp); err != nil {
		errors.Join(r.Close(), w.Close()) //nolint:errcheck // the key's error is the one to report
		hint := ""
		if created {
			hint = " (the key file was missing and a new key was made; restore the old key file)"
		}
		return nil, fmt.Errorf("audit: open %s with key %s: %w%s", schema.Redact(path), opts.KeyFile, err, hint)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	reg := deps.Metrics
	if reg == nil {
		reg = metrics.NewRegistry() // nobody scrapes it
	}
	l := &Log{
		w: w, r: r, dialect: dialect, key: key, fp: fp, log: logger, now: now, retention: opts.Retention,
		wake: make(chan struct{}, 1), healthy: true, since: now(),
		records: reg.Counter("citywatch_audit_records_total", "Audit records appended."),
		commits: reg.Counter("citywatch_audit_commits_total",
			"Transactions that appended audit records; records_total / commits_total is the group-commit batch size."),
		failures: reg.CounterVec("citywatch_audit_failures_total",
			"Audit records lost or operations failed, by reason: invalid (refused record), write (commit failed), prune.", "reason"),
		truncated: reg.Counter("citywatch_audit_truncated_total",
			"Audit records stored with a field cut to its bound."),
	}
	if created {
		logger.Info("audit key created", "file", opts.KeyFile, "fingerprint", fp)
	}
	return l, nil
}

// openSQLite opens the writer and the readers of the file at path,
// creating it if missing, with its schema up to date.
func openSQLite(path string) (w, r *sql.DB, err error) {
	// The trail names people and their addresses: a new database is
	// readable by the hub's user only (SQLite gives its WAL the same mode).
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, nil, err
	}
	if w, err = sql.Open("sqlite", dsn(path, true)); err != nil {
		return nil, nil, err
	}
	w.SetMaxOpenConns(1)
	if err := schema.Migrate(w, migrations); err != nil {
		return nil, nil, errors.Join(err, w.Close())
	}
	if r, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		return nil, nil, errors.Join(err, w.Close())
	}
	r.SetMaxOpenConns(readConns)
	return w, r, nil
}

func dsn(path string, write bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	if write {
		q.Add("_pragma", "journal_mode(WAL)")
		// Evidence: a record is on disk, not only in the WAL's page
		// cache, when Append returns; group commit pays for the fsync.
		q.Add("_pragma", "synchronous(FULL)")
		// The head is read inside the transaction that appends after it,
		// so the write lock must come first.
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return "file:" + path + "?" + q.Encode()
}

// checkKey records the key's fingerprint in a new database and refuses a
// database started with another key.
func checkKey(db *sql.DB, d schema.Dialect, fp string) error {
	if _, err := db.Exec(d.SQL(`INSERT INTO meta (name, value) VALUES ('key_fingerprint', ?) ON CONFLICT (name) DO NOTHING`), fp); err != nil {
		return fmt.Errorf("record key fingerprint: %w", err)
	}
	var want string
	if err := db.QueryRow(`SELECT value FROM meta WHERE name = 'key_fingerprint'`).Scan(&want); err != nil {
		return fmt.Errorf("read key fingerprint: %w", err)
	}
	if want != fp {
		return fmt.Errorf("the database was started with the key of fingerprint %s, this key's is %s; "+
			"records chained under a wrong key could never be verified", want, fp)
	}
	return nil
}

// Close closes the database. Call it after Run has returned.
func (l *Log) Close() error {
	err := l.w.Close()
	if l.r != l.w {
		err = errors.Join(l.r.Close(), err)
	}
	if err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}

// KeyFingerprint names the chain key without revealing it, so a backup of
// the key can be matched to the database and its exports.
func (l *Log) KeyFingerprint() string { return l.fp }

// Run group-commits appends until ctx ends, then commits what is still
// waiting and returns; appends made after that commit on their callers'
// goroutines. With a retention period it prunes at start and once a day.
func (l *Log) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return errors.New("audit: Run is already running")
	}
	l.running = true
	l.mu.Unlock()

	var prune <-chan time.Time
	if l.retention > 0 {
		l.pruneExpired(ctx)
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		prune = t.C
	}
	for {
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.running = false
			l.mu.Unlock()
			l.drain()
			return nil
		case <-l.wake:
			l.drain()
		case <-prune:
			l.pruneExpired(ctx)
		}
	}
}

// drain commits every waiting append, at most maxBatch per transaction.
// Appends arriving meanwhile wait for the next round, so the batch grows
// with the load while a quiet hub commits each record at once.
func (l *Log) drain() {
	for {
		l.mu.Lock()
		reqs := l.pending[:min(len(l.pending), maxBatch)]
		l.pending = l.pending[len(reqs):]
		l.mu.Unlock()
		if len(reqs) == 0 {
			return
		}
		recs := make([]Record, len(reqs))
		for i, q := range reqs {
			recs[i] = q.rec
		}
		// Not cancelled with Run's ctx: that would throw the batch away.
		err := l.commit(context.Background(), recs)
		for i, q := range reqs {
			if err != nil {
				q.done <- result{err: err}
			} else {
				q.done <- result{rec: recs[i]}
			}
		}
	}
}

// Append checks r, cleans its strings (see MaxField), and appends it to
// the chain. It returns r as stored, with Seq, At and Hash set, once it is
// committed. While Run runs, concurrent appends share a transaction.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	r, cut, err := prepare(r, l.now())
	if err != nil {
		l.failures.With("invalid").Inc()
		l.log.Error("audit record refused", "actor", clip(r.Actor), "action", clip(r.Action), "err", err)
		return Record{}, err
	}
	if len(cut) > 0 {
		l.truncated.Inc()
		l.log.Warn("audit record cut to bounds", "actor", r.Actor, "action", r.Action, "fields", strings.Join(cut, ","))
	}
	l.mu.Lock()
	if !l.running {
		l.mu.Unlock()
		recs := []Record{r}
		if err := l.commit(ctx, recs); err != nil {
			return Record{}, err
		}
		return recs[0], nil
	}
	q := &request{rec: r, done: make(chan result, 1)}
	l.pending = append(l.pending, q)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // Run is already told
	}
	select {
	case res := <-q.done:
		return res.rec, res.err
	case <-ctx.Done():
		return Record{}, fmt.Errorf("audit: append %s: %w (the record may still be committed)", r.Action, ctx.Err())
	}
}

// commit appends recs in one transaction, setting their Seq and Hash. A
// failure is counted, logged record by record (the hub's log is then the
// only trace of them) and shown by Health.
func (l *Log) commit(ctx context.Context, recs []Record) error {
	err := l.write(ctx, func(tx *sql.Tx) error { return l.appendTx(ctx, tx, recs) })
	l.setHealth(err)
	if err != nil {
		l.failures.With("write").Add(uint64(len(recs)))
		for _, r := range recs {
			l.log.Error("audit record not written", "at", r.At, "actor", r.Actor, "role", r.Role, "session", r.Session,
				"remote", r.Remote, "action", r.Action, "object", r.Object, "outcome", r.Outcome, "detail", r.Detail, "err", err)
		}
		return fmt.Errorf("audit: append: %w", err)
	}
	l.records.Add(uint64(len(recs)))
	l.commits.Inc()
	return nil
}

// write runs fn in a write transaction and commits it: BEGIN IMMEDIATE on
// SQLite, the chain's advisory lock on PostgreSQL, so that no other
// process (the command line, another hub) appends between the head fn
// reads and what it inserts.
func (l *Log) write(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if l.dialect == schema.Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgLock)); err != nil {
			return fmt.Errorf("lock the chain: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

const insertRecord = `INSERT INTO records (seq, at, actor, role, session, remote, action, object, outcome, detail, hash)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// appendTx chains recs after the head as this transaction sees it. The
// transaction holds the write lock, so no other process can append between
// reading the head and inserting.
func (l *Log) appendTx(ctx context.Context, tx *sql.Tx, recs []Record) error {
	seq, hash, err := head(ctx, tx)
	if err != nil {
		return err
	}
	prev, err := decodeHash(hash)
	if err != nil {
		return fmt.Errorf("head record %d: %w; run verify", seq, err)
	}
	stmt, err := tx.PrepareContext(ctx, l.dialect.SQL(insertRecord))
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer stmt.Close()
	c := newChain(l.key)
	for i := range recs {
		r := &recs[i]
		seq++
		r.Seq = seq
		prev = c.sum(prev, r)
		r.Hash = hex.EncodeToString(prev)
		if _, err := stmt.ExecContext(ctx, int64(r.Seq), r.At.UnixNano(), r.Actor, r.Role, r.Session, r.Remote,
			r.Action, r.Object, string(r.Outcome), r.Detail, r.Hash); err != nil {
			return fmt.Errorf("insert record %d: %w", r.Seq, err)
		}
	}
	return nil
}

// rowQuerier is what head reads through: a transaction.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// head returns the last record's seq and hash, or the anchor's when
// retention has removed every record (or none was ever appended).
func head(ctx context.Context, q rowQuerier) (seq uint64, hash string, err error) {
	err = q.QueryRowContext(ctx, `SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		err = q.QueryRowContext(ctx, `SELECT seq, hash FROM anchor`).Scan(&seq, &hash)
	}
	if err != nil {
		return 0, "", fmt.Errorf("read head: %w", err)
	}
	return seq, hash, nil
}

// Head returns the newest record's seq and hash. An auditor who writes
// them down can later detect, with VerifyHead, that records up to there
// were removed.
func (l *Log) Head(ctx context.Context) (seq uint64, hash string, err error) {
	tx, err := l.r.BeginTx(ctx, l.snapshot())
	if err != nil {
		return 0, "", fmt.Errorf("audit: head: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	seq, hash, err = head(ctx, tx)
	if err != nil {
		return 0, "", fmt.Errorf("audit: %w", err)
	}
	return seq, hash, nil
}

// snapshot is how reads that must see one state (the anchor and the
// records after it) begin: SQLite's read transaction is one snapshot;
// PostgreSQL's needs REPEATABLE READ.
func (l *Log) snapshot() *sql.TxOptions {
	if l.dialect == schema.Postgres {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return &sql.TxOptions{ReadOnly: true}
}

// setHealth records the outcome of a write.
func (l *Log) setHealth(err error) {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	if ok := err == nil; ok != l.healthy {
		l.healthy, l.since = ok, l.now()
	}
	if err != nil {
		l.lastError = err.Error()
	}
}

// Health reports whether the last write succeeded, the last write error
// (kept after recovery, for the record) and since when the current state
// holds. Refused records (ErrInvalid) are a caller's bug, not the log's
// health; they are counted in citywatch_audit_failures_total.
func (l *Log) Health() (ok bool, lastError string, since time.Time) {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	return l.healthy, l.lastError, l.since
}
