// Package schema brings a hub database up to date: a list of numbered
// migrations, each run once, in order, in its own transaction with the
// row that records it. The alarm, identity and audit databases all use
// it, so a database records its version the same way whichever it is,
// and two processes opening one new database (the hub and its command
// line, or a cluster's hubs) run each migration once. The stores a
// cluster's hubs share live in PostgreSQL (OpenPostgres), where the same
// migrations and statements run rewritten (Dialect).
package schema

import (
	"database/sql"
	"fmt"
	"net/url"
	"time"
)

// Migrate runs the migrations db has not had: migrations[i] brings the
// schema from version i to i+1. Append to the list, never edit it: a
// database records the versions it has run. db must begin its
// transactions with BEGIN IMMEDIATE (modernc's _txlock=immediate), so
// that the version is read under the write lock.
func Migrate(db *sql.DB, migrations []string) error {
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	for next := 1; next <= len(migrations); next++ {
		if err := migrateTo(db, migrations, next); err != nil {
			return fmt.Errorf("migrate to %d: %w", next, err)
		}
	}
	return nil
}

func migrateTo(db *sql.DB, migrations []string, version int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var v int
	if err := tx.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this hub knows (%d)", v, len(migrations))
	}
	if v >= version {
		return nil
	}
	if _, err := tx.Exec(migrations[version-1]); err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO schema_version (version) VALUES (?)`, version); err != nil {
		return err
	}
	return tx.Commit()
}

// Open opens the SQLite database at path as the hub's single-writer
// stores do — WAL, synchronous NORMAL, a 5 s busy timeout (another process,
// the command line or an operator's sqlite3 shell, may hold the lock for a
// moment), write transactions that take the lock first, one connection —
// with pragmas added (e.g. "foreign_keys(ON)"), and runs its migrations.
func Open(path string, migrations []string, pragmas ...string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range append([]string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(5000)"}, pragmas...) {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := Migrate(db, migrations); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Nanos is how the stores keep a time: Unix nanoseconds in an INTEGER
// column, the zero time (unset) as 0.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNanos reads what Nanos stored, in UTC.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
