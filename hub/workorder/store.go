package workorder

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/citywatch/citywatch/hub/internal/schema"
)

// migrations are the work-order database's schema, in order; append only.
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
}

// SQLiteStore keeps work orders in a SQLite database: every change is
// committed before the Manager announces it, so an order survives kill -9.
type SQLiteStore struct {
	db *sql.DB
}

// OpenSQLite opens or creates the work-order database at path.
func OpenSQLite(path string) (*SQLiteStore, error) {
	db, err := schema.Open(path, migrations)
	if err != nil {
		return nil, fmt.Errorf("workorder: open %s: %w", path, err)
	}
	return &SQLiteStore{db: db}, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() error { return s.db.Close() }

// Save implements Store.
func (s *SQLiteStore) Save(o Order, trail []Transition) error {
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
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO orders (id, num, state, site, updated, body) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, site = excluded.site, updated = excluded.updated, body = excluded.body`,
		o.ID, num, string(o.State), o.Site, o.Updated.UTC().Format("2006-01-02T15:04:05.000000000Z"), body); err != nil {
		return err
	}
	for _, tr := range trail {
		b, err := json.Marshal(tr)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO trail (order_id, n, body) VALUES (?, (SELECT COALESCE(MAX(n), 0) + 1 FROM trail WHERE order_id = ?), ?)`,
			o.ID, o.ID, b); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Load implements Store.
func (s *SQLiteStore) Load() ([]Order, map[string][]Transition, uint64, error) {
	var orders []Order
	var next uint64
	rows, err := s.db.Query(`SELECT num, body FROM orders ORDER BY num`)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var num uint64
		var body []byte
		if err := rows.Scan(&num, &body); err != nil {
			return nil, nil, 0, err
		}
		var o Order
		if err := json.Unmarshal(body, &o); err != nil {
			return nil, nil, 0, fmt.Errorf("order %d: %w", num, err)
		}
		orders = append(orders, o)
		next = max(next, num)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, err
	}
	trails := map[string][]Transition{}
	trows, err := s.db.Query(`SELECT order_id, body FROM trail ORDER BY order_id, n`)
	if err != nil {
		return nil, nil, 0, err
	}
	defer trows.Close()
	for trows.Next() {
		var id string
		var body []byte
		if err := trows.Scan(&id, &body); err != nil {
			return nil, nil, 0, err
		}
		var tr Transition
		if err := json.Unmarshal(body, &tr); err != nil {
			return nil, nil, 0, fmt.Errorf("trail of %s: %w", id, err)
		}
		trails[id] = append(trails[id], tr)
	}
	return orders, trails, next, trows.Err()
}
