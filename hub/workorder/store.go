package workorder

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/citywatch/citywatch/hub/internal/schema"
)

// migrations are the work-order database's schema, in order; append only.
// They are SQLite's; PostgreSQL runs them with schema.OpenPostgres's
// column types.
var migrations = []string{
	`CREATE TABLE orders (
		id TEXT PRIMARY KEY,
		num INTEGER NOT NULL,
		state TEXT NOT NULL,
		site TEXT NOT NULL,
		updated TEXT NOT NULL,
		body TEXT NOT NULL
	);
	CREATE TABLE trail (
		order_id TEXT NOT NULL,
		n INTEGER NOT NULL,
		body TEXT NOT NULL,
		PRIMARY KEY (order_id, n)
	);`,
	// Photos live in the database, so that every hub of a cluster serves
	// them whichever hub took them.
	`CREATE TABLE photos (
		sha TEXT PRIMARY KEY,
		type TEXT NOT NULL,
		data BLOB NOT NULL
	);`,
}

// postgres is how the work orders share a cluster's PostgreSQL database:
// an advisory lock of their own ("cwworko"), their own version table and
// two connections a hub (one hub writes at a time: the one that leads).
var postgres = schema.PostgresOptions{Lock: 0x6377_776f_726b_6f, VersionTable: "workorder_schema_version", MaxConns: 2}

// DBStore keeps work orders and their photos in a database — an SQLite
// file of one hub, or the PostgreSQL database a cluster's hubs share —
// with the same statements on both. Every change is committed before the
// Manager announces it, so an order survives kill -9.
type DBStore struct {
	db      *sql.DB
	dialect schema.Dialect
}

// OpenStore opens the work-order database: dsn is an SQLite file's path,
// created if missing, or a postgres:// URL of an existing database
// (cluster.postgres_url). The schema is brought up to date.
func OpenStore(dsn string) (*DBStore, error) {
	s := &DBStore{}
	var err error
	if schema.IsPostgres(dsn) {
		s.dialect = schema.Postgres
		s.db, err = schema.OpenPostgres(dsn, migrations, postgres)
	} else {
		s.db, err = schema.Open(dsn, migrations)
	}
	if err != nil {
		return nil, fmt.Errorf("workorder: open %s: %w", schema.Redact(dsn), err)
	}
	return s, nil
}

// Close closes the database.
func (s *DBStore) Close() error { return s.db.Close() }

// ErrTaken is the error of saving a new order under an id another hub
// already stored: two hubs led at once (one paused past its lease).
var ErrTaken = errors.New("workorder: the order id is taken (another hub opened it)")

// Save implements Store. An order's first save (its trail starts with
// ActOpen) inserts it and fails with ErrTaken if the id exists; later
// ones update it.
func (s *DBStore) Save(o Order, trail []Transition) error {
	body, err := json.Marshal(o)
	if err != nil {
		return err
	}
	num, err := strconv.ParseUint(strings.TrimPrefix(o.ID, "WO-"), 10, 64)
	if err != nil {
		return fmt.Errorf("workorder: order id %q: %w", o.ID, err)
	}
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	q := `INSERT INTO orders (id, num, state, site, updated, body) VALUES (?, ?, ?, ?, ?, ?)`
	fresh := len(trail) > 0 && trail[0].Action == ActOpen
	if !fresh {
		q += ` ON CONFLICT (id) DO UPDATE SET state = excluded.state, site = excluded.site, updated = excluded.updated, body = excluded.body`
	}
	if _, err := tx.Exec(s.dialect.SQL(q), o.ID, num, string(o.State), o.Site, o.Updated.UTC().Format("2006-01-02T15:04:05.000000000Z"), body); err != nil {
		if fresh {
			return fmt.Errorf("%w: %s: %v", ErrTaken, o.ID, err)
		}
		return err
	}
	add := s.dialect.SQL(`INSERT INTO trail (order_id, n, body) VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM trail WHERE order_id = ?1), ?2)`)
	for _, tr := range trail {
		b, err := json.Marshal(tr)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(add, o.ID, b); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Load implements Store.
func (s *DBStore) Load() ([]Order, map[string][]Transition, uint64, error) {
	var orders []Order
	var next uint64
	err := s.each(`SELECT num, body FROM orders ORDER BY num`, func(rows *sql.Rows) error {
		var num uint64
		var body []byte
		if err := rows.Scan(&num, &body); err != nil {
			return err
		}
		var o Order
		if err := json.Unmarshal(body, &o); err != nil {
			return fmt.Errorf("order %d: %w", num, err)
		}
		orders = append(orders, o)
		next = max(next, num)
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	trails := map[string][]Transition{}
	err = s.each(`SELECT order_id, body FROM trail ORDER BY order_id, n`, func(rows *sql.Rows) error {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return err
		}
		var tr Transition
		if err := json.Unmarshal(body, &tr); err != nil {
			return fmt.Errorf("trail of %s: %w", id, err)
		}
		trails[id] = append(trails[id], tr)
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return orders, trails, next, nil
}

// each runs query and scan on every row.
func (s *DBStore) each(query string, scan func(*sql.Rows) error) error {
	rows, err := s.db.Query(query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PutPhoto implements Store: the same picture twice is kept once.
func (s *DBStore) PutPhoto(sha, typ string, data []byte) error {
	_, err := s.db.Exec(s.dialect.SQL(`INSERT INTO photos (sha, type, data) VALUES (?, ?, ?) ON CONFLICT (sha) DO NOTHING`), sha, typ, data)
	return err
}

// Photo implements Store.
func (s *DBStore) Photo(sha string) ([]byte, error) {
	var data []byte
	err := s.db.QueryRow(s.dialect.SQL(`SELECT data FROM photos WHERE sha = ?`), sha).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return data, err
}

// ImportPhotos moves into the database the photos an earlier hub kept as
// files, dir/<2 hex>/<sha256>.jpg or .png, so that the orders naming them
// still show them; then it renames dir to dir.imported, so the next start
// does not read it again. A missing dir imports nothing. A file whose
// content is not its name's picture is left where it is and reported.
func (s *DBStore) ImportPhotos(dir string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "*"))
	if err != nil || len(files) == 0 {
		return 0, err
	}
	types := map[string]string{".jpg": "image/jpeg", ".png": "image/png"}
	var n int
	var errs []error
	for _, f := range files {
		ext := filepath.Ext(f)
		sha := strings.TrimSuffix(filepath.Base(f), ext)
		data, err := os.ReadFile(f)
		if err == nil {
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != sha || types[ext] == "" {
				err = errors.New("not the picture its name says")
			}
		}
		if err == nil {
			err = s.PutPhoto(sha, types[ext], data)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("workorder: import photos: %w", err)
	}
	return n, os.Rename(dir, dir+".imported")
}
