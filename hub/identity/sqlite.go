package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/internal/schema"
)

// migrations[i] brings the schema from version i to i+1. Append, never
// edit: a database records the versions it has run. Times are Unix
// nanoseconds, 0 for none.
var migrations = []string{
	`CREATE TABLE accounts (
		name                 TEXT PRIMARY KEY,
		display_name         TEXT NOT NULL,
		role                 TEXT NOT NULL,
		grants               TEXT NOT NULL, -- comma-separated permissions
		scope                TEXT NOT NULL, -- auth.Scope.String()
		disabled             INTEGER NOT NULL,
		must_change_password INTEGER NOT NULL,
		password_hash        TEXT NOT NULL,
		password_changed_at  INTEGER NOT NULL,
		totp_secret          TEXT NOT NULL,
		totp_pending         TEXT NOT NULL,
		totp_last_step       INTEGER NOT NULL,
		created_at           INTEGER NOT NULL,
		created_by           TEXT NOT NULL,
		last_login_at        INTEGER NOT NULL,
		last_login_from      TEXT NOT NULL
	);
	CREATE TABLE password_history (
		account TEXT NOT NULL REFERENCES accounts (name),
		hash    TEXT NOT NULL,
		set_at  INTEGER NOT NULL
	);
	CREATE INDEX password_history_account ON password_history (account, set_at);
	CREATE TABLE recovery_codes (
		account TEXT NOT NULL REFERENCES accounts (name),
		hash    TEXT NOT NULL,
		used_at INTEGER NOT NULL,
		PRIMARY KEY (account, hash)
	);
	CREATE TABLE sessions (
		hash       TEXT PRIMARY KEY,
		account    TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		remote     TEXT NOT NULL,
		user_agent TEXT NOT NULL
	);
	CREATE INDEX sessions_account ON sessions (account);
	CREATE TABLE api_tokens (
		id           TEXT PRIMARY KEY,
		name         TEXT NOT NULL UNIQUE,
		hash         TEXT NOT NULL UNIQUE,
		role         TEXT NOT NULL,
		grants       TEXT NOT NULL,
		scope        TEXT NOT NULL,
		created_by   TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		expires_at   INTEGER NOT NULL,
		last_used_at INTEGER NOT NULL,
		revoked_at   INTEGER NOT NULL,
		revoked_by   TEXT NOT NULL
	);
	CREATE TABLE view_links (
		id         TEXT PRIMARY KEY,
		hash       TEXT NOT NULL UNIQUE,
		camera     TEXT NOT NULL,
		account    TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE agent_credentials (
		agent      TEXT PRIMARY KEY,
		hash       TEXT NOT NULL, -- Mosquitto $7$
		created_at INTEGER NOT NULL,
		created_by TEXT NOT NULL,
		revoked_at INTEGER NOT NULL,
		revoked_by TEXT NOT NULL
	);
	CREATE TABLE login_failures (
		kind         TEXT NOT NULL, -- account or address
		key          TEXT NOT NULL,
		count        INTEGER NOT NULL,
		first_at     INTEGER NOT NULL,
		last_at      INTEGER NOT NULL,
		locked_until INTEGER NOT NULL,
		PRIMARY KEY (kind, key)
	);`,
}

// SQLiteStore is the Store in one SQLite file (modernc.org/sqlite, no cgo)
// in WAL mode with synchronous=NORMAL: a committed change survives the
// process being killed. The hub and the command line may open the same
// file at once; each sees the other's commits through Changed, which reads
// PRAGMA data_version (it changes only for commits of other connections).
type SQLiteStore struct {
	db *sql.DB
	// version is data_version at the previous Changed; -1 before the
	// first.
	version atomic.Int64
}

// OpenSQLite opens or creates the database at path (mode 0600: it holds
// password hashes) and brings its schema up to date.
func OpenSQLite(path string) (*SQLiteStore, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: open %s: %w", path, err)
	}
	f.Close()
	// One connection: the service serialises its writes anyway, and
	// data_version is per connection, so a single one sees exactly the
	// other processes' commits. The command line and the hub write the
	// same file: the busy timeout waits for the other's transaction.
	db, err := schema.Open(path, migrations, "foreign_keys(ON)")
	if err != nil {
		return nil, fmt.Errorf("identity: open %s: %w", path, err)
	}
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	s := &SQLiteStore{db: db}
	s.version.Store(-1)
	return s, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("identity: close: %w", err)
	}
	return nil
}

// Changed implements Store.
func (s *SQLiteStore) Changed(ctx context.Context) (bool, error) {
	v, err := dataVersion(ctx, s.db)
	if err != nil {
		return false, err
	}
	old := s.version.Swap(v)
	return old >= 0 && v != old, nil
}

func dataVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var v int64
	if err := q.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("identity: data version: %w", err)
	}
	return v, nil
}

// Update implements Store. The transaction starts IMMEDIATE, holding the
// write lock, so no other process can commit between its check of
// data_version and its own commit.
func (s *SQLiteStore) Update(ctx context.Context, fn func(Tx) error) error {
	base := s.version.Load()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("identity: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if base >= 0 {
		v, err := dataVersion(ctx, tx)
		if err != nil {
			return err
		}
		if v != base {
			return ErrStale
		}
	}
	if err := fn(&sqliteTx{ctx: ctx, tx: tx}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	return nil
}

const (
	accountColumns = `name, display_name, role, grants, scope, disabled, must_change_password, password_hash,
		password_changed_at, totp_secret, totp_pending, totp_last_step, created_at, created_by, last_login_at, last_login_from`
	sessionColumns = `hash, account, created_at, last_seen, expires_at, remote, user_agent`
	tokenColumns   = `id, name, hash, role, grants, scope, created_by, created_at, expires_at, last_used_at, revoked_at, revoked_by`
	linkColumns    = `id, hash, camera, account, created_at, expires_at`
	agentColumns   = `agent, hash, created_at, created_by, revoked_at, revoked_by`
	failureColumns = `kind, key, count, first_at, last_at, locked_until`
)

// Load implements Store.
func (s *SQLiteStore) Load(ctx context.Context) (*Snapshot, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("identity: load: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var snap Snapshot
	load := func(what, query string, scan func(*sql.Rows) error) {
		if err != nil {
			return
		}
		var rows *sql.Rows
		if rows, err = tx.QueryContext(ctx, query); err != nil {
			err = fmt.Errorf("identity: load %s: %w", what, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			if err = scan(rows); err != nil {
				err = fmt.Errorf("identity: load %s: %w", what, err)
				return
			}
		}
		if err = rows.Err(); err != nil {
			err = fmt.Errorf("identity: load %s: %w", what, err)
		}
	}
	load("accounts", `SELECT `+accountColumns+` FROM accounts ORDER BY name`, func(rows *sql.Rows) error {
		a, err := scanAccount(rows)
		snap.Accounts = append(snap.Accounts, a)
		return err
	})
	load("sessions", `SELECT `+sessionColumns+` FROM sessions`, func(rows *sql.Rows) error {
		var r SessionRecord
		var created, seen, expires int64
		err := rows.Scan(&r.Hash, &r.Account, &created, &seen, &expires, &r.Remote, &r.UserAgent)
		r.CreatedAt, r.LastSeen, r.ExpiresAt = tm(created), tm(seen), tm(expires)
		snap.Sessions = append(snap.Sessions, r)
		return err
	})
	load("tokens", `SELECT `+tokenColumns+` FROM api_tokens ORDER BY name`, func(rows *sql.Rows) error {
		t, err := scanToken(rows)
		snap.Tokens = append(snap.Tokens, t)
		return err
	})
	load("links", `SELECT `+linkColumns+` FROM view_links`, func(rows *sql.Rows) error {
		var l LinkRecord
		var created, expires int64
		err := rows.Scan(&l.ID, &l.Hash, &l.Camera, &l.Account, &created, &expires)
		l.CreatedAt, l.ExpiresAt = tm(created), tm(expires)
		snap.Links = append(snap.Links, l)
		return err
	})
	load("agents", `SELECT `+agentColumns+` FROM agent_credentials ORDER BY agent`, func(rows *sql.Rows) error {
		var a AgentCredential
		var created, revoked int64
		err := rows.Scan(&a.Agent, &a.Hash, &created, &a.CreatedBy, &revoked, &a.RevokedBy)
		a.CreatedAt, a.RevokedAt = tm(created), tm(revoked)
		snap.Agents = append(snap.Agents, a)
		return err
	})
	load("failures", `SELECT `+failureColumns+` FROM login_failures`, func(rows *sql.Rows) error {
		var f FailureRecord
		var first, last, locked int64
		err := rows.Scan(&f.Kind, &f.Key, &f.Count, &first, &last, &locked)
		f.FirstAt, f.LastAt, f.LockedUntil = tm(first), tm(last), tm(locked)
		snap.Failures = append(snap.Failures, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &snap, nil
}

func scanAccount(rows *sql.Rows) (AccountRecord, error) {
	var (
		a                                AccountRecord
		role, grants, scope              string
		changed, created, login          int64
		disabled, mustChange             bool
		hash, secret, pending, loginFrom string
		lastStep                         int64
		name, display, createdBy         string
	)
	if err := rows.Scan(&name, &display, &role, &grants, &scope, &disabled, &mustChange, &hash, &changed,
		&secret, &pending, &lastStep, &created, &createdBy, &login, &loginFrom); err != nil {
		return a, err
	}
	sc, err := decodeScope(scope)
	if err != nil {
		return a, fmt.Errorf("account %s: %w", name, err)
	}
	a.Account = Account{
		Name: name, DisplayName: display, Role: auth.Role(role), Grants: decodeGrants(grants), Scope: sc,
		Disabled: disabled, MustChangePassword: mustChange, TOTPEnabled: secret != "",
		PasswordChangedAt: tm(changed), CreatedAt: tm(created), CreatedBy: createdBy,
		LastLoginAt: tm(login), LastLoginFrom: loginFrom,
	}
	a.PasswordHash, a.TOTPSecret, a.TOTPPending, a.TOTPLastStep = hash, secret, pending, lastStep
	return a, nil
}

func scanToken(rows *sql.Rows) (TokenRecord, error) {
	var (
		t                               TokenRecord
		role, grants, scope             string
		created, expires, used, revoked int64
	)
	if err := rows.Scan(&t.ID, &t.Name, &t.Hash, &role, &grants, &scope, &t.CreatedBy, &created, &expires,
		&used, &revoked, &t.RevokedBy); err != nil {
		return t, err
	}
	sc, err := decodeScope(scope)
	if err != nil {
		return t, fmt.Errorf("token %s: %w", t.Name, err)
	}
	t.Role, t.Grants, t.Scope = auth.Role(role), decodeGrants(grants), sc
	t.CreatedAt, t.ExpiresAt, t.LastUsedAt, t.RevokedAt = tm(created), tm(expires), tm(used), tm(revoked)
	return t, nil
}

// sqliteTx implements Tx.
type sqliteTx struct {
	ctx context.Context
	tx  *sql.Tx
}

func (t *sqliteTx) exec(what, query string, args ...any) (sql.Result, error) {
	res, err := t.tx.ExecContext(t.ctx, query, args...)
	if err != nil {
		var se *sqlite.Error
		if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return nil, fmt.Errorf("identity: %s: %w", what, ErrExists)
		}
		return nil, fmt.Errorf("identity: %s: %w", what, err)
	}
	return res, nil
}

// execOne is exec for a statement that must change exactly one row.
func (t *sqliteTx) execOne(what, query string, args ...any) error {
	res, err := t.exec(what, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("identity: %s: %w", what, err)
	} else if n == 0 {
		return fmt.Errorf("identity: %s: %w", what, ErrNotFound)
	}
	return nil
}

func accountArgs(a AccountRecord) []any {
	return []any{a.Name, a.DisplayName, string(a.Role), encodeGrants(a.Grants), encodeScope(a.Scope), a.Disabled,
		a.MustChangePassword, a.PasswordHash, ns(a.PasswordChangedAt), a.TOTPSecret, a.TOTPPending, a.TOTPLastStep,
		ns(a.CreatedAt), a.CreatedBy, ns(a.LastLoginAt), a.LastLoginFrom}
}

func (t *sqliteTx) InsertAccount(a AccountRecord) error {
	_, err := t.exec("insert account "+a.Name, `INSERT INTO accounts (`+accountColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, accountArgs(a)...)
	return err
}

func (t *sqliteTx) UpdateAccount(a AccountRecord) error {
	args := accountArgs(a)
	return t.execOne("update account "+a.Name, `UPDATE accounts SET display_name = ?, role = ?, grants = ?, scope = ?,
		disabled = ?, must_change_password = ?, password_hash = ?, password_changed_at = ?, totp_secret = ?,
		totp_pending = ?, totp_last_step = ?, created_at = ?, created_by = ?, last_login_at = ?, last_login_from = ?
		WHERE name = ?`, append(args[1:], a.Name)...)
}

func (t *sqliteTx) PasswordHistory(account string) ([]string, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT hash FROM password_history WHERE account = ? ORDER BY set_at DESC, rowid DESC`, account)
	if err != nil {
		return nil, fmt.Errorf("identity: password history of %s: %w", account, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("identity: password history of %s: %w", account, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("identity: password history of %s: %w", account, err)
	}
	return out, nil
}

func (t *sqliteTx) AddPasswordHistory(account, hash string, at time.Time, keep int) error {
	if _, err := t.exec("password history of "+account, `INSERT INTO password_history (account, hash, set_at) VALUES (?, ?, ?)`,
		account, hash, ns(at)); err != nil {
		return err
	}
	_, err := t.exec("prune password history of "+account, `DELETE FROM password_history WHERE account = ?1 AND rowid NOT IN
		(SELECT rowid FROM password_history WHERE account = ?1 ORDER BY set_at DESC, rowid DESC LIMIT ?2)`, account, keep)
	return err
}

func (t *sqliteTx) ReplaceRecoveryCodes(account string, hashes []string) error {
	if _, err := t.exec("recovery codes of "+account, `DELETE FROM recovery_codes WHERE account = ?`, account); err != nil {
		return err
	}
	for _, h := range hashes {
		if _, err := t.exec("recovery codes of "+account, `INSERT INTO recovery_codes (account, hash, used_at) VALUES (?, ?, 0)`,
			account, h); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqliteTx) UseRecoveryCode(account, hash string, at time.Time) (bool, error) {
	err := t.execOne("use recovery code", `UPDATE recovery_codes SET used_at = ? WHERE account = ? AND hash = ? AND used_at = 0`,
		ns(at), account, hash)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (t *sqliteTx) InsertSession(r SessionRecord) error {
	_, err := t.exec("insert session", `INSERT INTO sessions (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.Hash, r.Account, ns(r.CreatedAt), ns(r.LastSeen), ns(r.ExpiresAt), r.Remote, r.UserAgent)
	return err
}

func (t *sqliteTx) DeleteSessions(hashes []string) error {
	for _, h := range hashes {
		if _, err := t.exec("delete session", `DELETE FROM sessions WHERE hash = ?`, h); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqliteTx) TouchSessions(seen map[string]time.Time) error {
	for h, at := range seen {
		if _, err := t.exec("touch session", `UPDATE sessions SET last_seen = MAX(last_seen, ?) WHERE hash = ?`, ns(at), h); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqliteTx) InsertToken(r TokenRecord) error {
	_, err := t.exec("insert token "+r.Name, `INSERT INTO api_tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Name, r.Hash, string(r.Role), encodeGrants(r.Grants), encodeScope(r.Scope), r.CreatedBy, ns(r.CreatedAt),
		ns(r.ExpiresAt), ns(r.LastUsedAt), ns(r.RevokedAt), r.RevokedBy)
	return err
}

func (t *sqliteTx) RevokeToken(id string, at time.Time, by string) error {
	return t.execOne("revoke token "+id, `UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?`, ns(at), by, id)
}

func (t *sqliteTx) TouchTokens(used map[string]time.Time) error {
	for id, at := range used {
		if _, err := t.exec("touch token", `UPDATE api_tokens SET last_used_at = MAX(last_used_at, ?) WHERE id = ?`, ns(at), id); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqliteTx) InsertLink(l LinkRecord) error {
	_, err := t.exec("insert link", `INSERT INTO view_links (`+linkColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		l.ID, l.Hash, l.Camera, l.Account, ns(l.CreatedAt), ns(l.ExpiresAt))
	return err
}

func (t *sqliteTx) DeleteLinks(ids []string) error {
	for _, id := range ids {
		if _, err := t.exec("delete link", `DELETE FROM view_links WHERE id = ?`, id); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqliteTx) PutAgent(a AgentCredential) error {
	_, err := t.exec("put agent "+a.Agent, `INSERT OR REPLACE INTO agent_credentials (`+agentColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		a.Agent, a.Hash, ns(a.CreatedAt), a.CreatedBy, ns(a.RevokedAt), a.RevokedBy)
	return err
}

func (t *sqliteTx) PutFailure(f FailureRecord) error {
	_, err := t.exec("put failure", `INSERT OR REPLACE INTO login_failures (`+failureColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		string(f.Kind), f.Key, f.Count, ns(f.FirstAt), ns(f.LastAt), ns(f.LockedUntil))
	return err
}

func (t *sqliteTx) DeleteFailure(kind FailureKind, key string) error {
	_, err := t.exec("delete failure", `DELETE FROM login_failures WHERE kind = ? AND key = ?`, string(kind), key)
	return err
}

func encodeGrants(g []auth.Permission) string {
	s := make([]string, len(g))
	for i, p := range g {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

func decodeGrants(s string) []auth.Permission {
	if s == "" {
		return nil
	}
	var out []auth.Permission
	for p := range strings.SplitSeq(s, ",") {
		out = append(out, auth.Permission(p))
	}
	return out
}

func encodeScope(s auth.Scope) string { return s.String() }

// decodeScope reads what encodeScope wrote; the empty string is the empty
// scope, which sees nothing.
func decodeScope(s string) (auth.Scope, error) {
	if s == "" {
		return auth.Scope{}, nil
	}
	return auth.ParseScope(s)
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
