package handover

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/internal/schema"
)

// migrations are the handover database's schema, in order; append only.
// scope_key is auth.Scope.Key, so the next shift's window can start where
// the last handover of the same scope ended.
var migrations = []string{
	`CREATE TABLE handovers (
		id          INTEGER PRIMARY KEY,
		from_ns     INTEGER NOT NULL,
		to_ns       INTEGER NOT NULL,
		scope       TEXT NOT NULL,
		scope_key   TEXT NOT NULL,
		outgoing    TEXT NOT NULL,
		written_ns  INTEGER NOT NULL,
		notes       TEXT NOT NULL,
		incoming    TEXT NOT NULL,
		accepted_ns INTEGER NOT NULL,
		accept_note TEXT NOT NULL,
		report      TEXT NOT NULL
	);
	CREATE INDEX handovers_scope ON handovers (scope_key, to_ns);`,
}

// Store keeps handovers in SQLite; each is committed before it is
// answered, so a handover survives kill -9.
type Store struct {
	db *sql.DB
}

// OpenStore opens or creates the handover database at path.
func OpenStore(path string) (*Store, error) {
	db, err := schema.Open(path, migrations)
	if err != nil {
		return nil, fmt.Errorf("handover: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) insert(ctx context.Context, h Handover) (int64, error) {
	scope, err := json.Marshal(h.Scope)
	if err != nil {
		return 0, err
	}
	report, err := json.Marshal(h.Report)
	if err != nil {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO handovers (from_ns, to_ns, scope, scope_key, outgoing, written_ns, notes,
		incoming, accepted_ns, accept_note, report) VALUES (?, ?, ?, ?, ?, ?, ?, '', 0, '', ?)`,
		h.From.UnixNano(), h.To.UnixNano(), string(scope), h.Scope.Key(), h.Outgoing, h.WrittenAt.UnixNano(), h.Notes, string(report))
	if err != nil {
		return 0, fmt.Errorf("handover: insert: %w", err)
	}
	return res.LastInsertId()
}

// accept records the acceptance unless someone did first.
func (s *Store) accept(ctx context.Context, id int64, who, note string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE handovers SET incoming = ?, accepted_ns = ?, accept_note = ?
		WHERE id = ? AND accepted_ns = 0`, who, at.UnixNano(), note, id)
	if err != nil {
		return fmt.Errorf("handover: accept: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%w: accepted already", ErrConflict)
	}
	return nil
}

// LastEnd is where the latest handover of exactly this scope ended; the
// zero time when there is none.
func (s *Store) LastEnd(ctx context.Context, scope auth.Scope) (time.Time, error) {
	var n sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(to_ns) FROM handovers WHERE scope_key = ?`, scope.Key()).Scan(&n); err != nil {
		return time.Time{}, fmt.Errorf("handover: last: %w", err)
	}
	if !n.Valid {
		return time.Time{}, nil
	}
	return time.Unix(0, n.Int64).UTC(), nil
}

const columns = `id, from_ns, to_ns, scope, outgoing, written_ns, notes, incoming, accepted_ns, accept_note`

func (s *Store) get(ctx context.Context, id int64) (Handover, error) {
	var report string
	h, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+`, report FROM handovers WHERE id = ?`, id), &report)
	if errors.Is(err, sql.ErrNoRows) {
		return Handover{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return Handover{}, fmt.Errorf("handover: get %d: %w", id, err)
	}
	h.Report = new(Report)
	if err := json.Unmarshal([]byte(report), h.Report); err != nil {
		return Handover{}, fmt.Errorf("handover: %d: report: %w", id, err)
	}
	return h, nil
}

// list returns the newest handovers keep accepts, at most limit.
func (s *Store) list(ctx context.Context, keep func(auth.Scope) bool, limit int) ([]Handover, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM handovers ORDER BY id DESC`)
	if err != nil {
		return nil, fmt.Errorf("handover: list: %w", err)
	}
	defer rows.Close()
	out := []Handover{}
	for rows.Next() && len(out) < limit {
		h, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("handover: list: %w", err)
		}
		if keep(h.Scope) {
			out = append(out, h)
		}
	}
	return out, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scan(r scanner, more ...any) (Handover, error) {
	var (
		h                           Handover
		scope                       string
		from, to, written, accepted int64
	)
	err := r.Scan(append([]any{&h.ID, &from, &to, &scope, &h.Outgoing, &written, &h.Notes, &h.Incoming, &accepted, &h.AcceptNote}, more...)...)
	if err != nil {
		return h, err
	}
	h.From, h.To, h.WrittenAt = time.Unix(0, from).UTC(), time.Unix(0, to).UTC(), time.Unix(0, written).UTC()
	if accepted != 0 {
		h.AcceptedAt = time.Unix(0, accepted).UTC()
	}
	return h, json.Unmarshal([]byte(scope), &h.Scope)
}
