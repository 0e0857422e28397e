package schema

import (
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "modernc.org/sqlite"
)

func open(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var steps = []string{
	`CREATE TABLE a (x INTEGER)`,
	`ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z INTEGER)`,
}

// TestMigrate runs each step once, in order, also when several
// connections open a new database at once, and refuses a database newer
// than the steps it knows.
func TestMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	// The file exists, in WAL mode, before the race: switching a new file
	// to WAL is not what this tests.
	if err := open(t, path).Ping(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		db := open(t, path)
		wg.Go(func() { errs <- Migrate(db, steps) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db := open(t, path)
	var n, max int
	if err := db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&n, &max); err != nil || n != 2 || max != 2 {
		t.Fatalf("versions recorded: %d rows, max %d (%v); want 2 and 2", n, max, err)
	}
	if _, err := db.Exec(`INSERT INTO a (x, y) VALUES (1, 'y'); INSERT INTO b (z) VALUES (2)`); err != nil {
		t.Fatalf("the migrated schema: %v", err)
	}
	if err := Migrate(db, steps[:1]); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("an older hub on a newer database: %v", err)
	}
	if err := Migrate(open(t, filepath.Join(t.TempDir(), "bad")), []string{`NOT SQL`}); err == nil {
		t.Error("a failing step passed")
	}
}
