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

	"github.com/jackc/pgx/v5/pgconn"
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
	// version counts the commits of every hub and command line: each
	// sees the others' through Changed (SQLite's data_version would, but
	// only for one file; hubs sharing PostgreSQL need the count).
	`CREATE TABLE identity_version (v INTEGER NOT NULL);
	INSERT INTO identity_version (v) VALUES (0);`,
}

// postgres is how the identity store shares a cluster's PostgreSQL
// database: migrations under an advisory lock of its own ("cwident"),
// its version in a table of its own, and two connections a hub (the
// service serialises its writes).
var postgres = schema.PostgresOptions{Lock: 0x6377_6964_656e_74, VersionTable: "identity_schema_version", MaxConns: 2}

// DBStore is the Store in an SQL database: one SQLite file
// (modernc.org/sqlite, no cgo) in WAL mode with synchronous=NORMAL, where
// a committed change survives the process being killed, or the
// PostgreSQL database a cluster's hubs share. The hubs and the command
// line may open the same database at once; each sees the others'
// commits through Changed, which reads a count every Update raises.
type DBStore struct {
	db      *sql.DB
	dialect schema.Dialect
	// version is the count at the previous Changed, or after this
	// store's own last commit; -1 before the first Changed.
	version atomic.Int64
}

// Open opens the identity database: dsn is an SQLite file's path,
// created if missing, or a postgres:// URL of an existing database
// (cluster.postgres_url), which hubs starting together may migrate at
// once. The schema is brought up to date.
func Open(dsn string) (*DBStore, error) {
	if !schema.IsPostgres(dsn) {
		return openSQLite(dsn)
	}
	db, err := schema.OpenPostgres(dsn, migrations, postgres)
	if err != nil {
		return nil, fmt.Errorf("identity: open %s: %w", schema.Redact(dsn), err)
	}
	s := &DBStore{db: db, dialect: schema.Postgres}
	s.version.Store(-1)
	return s, nil
}

// openSQLite opens or creates the database at path (mode 0600: it holds
// password hashes).
func openSQLite(path string) (*DBStore, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: open %s: %w", path, err)
	}
	f.Close()
	// One connection: the service serialises its writes anyway. The
	// command line and the hub write the same file: the busy timeout
	// waits for the other's transaction.
	db, err := schema.Open(path, migrations, "foreign_keys(ON)")
	if err != nil {
		return nil, fmt.Errorf("identity: open %s: %w", path, err)
	}
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	s := &DBStore{db: db}
	s.version.Store(-1)
	return s, nil
}

// Close closes the database.
func (s *DBStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("identity: close: %w", err)
	}
	return nil
}

// Changed implements Store.
func (s *DBStore) Changed(ctx context.Context) (bool, error) {
	v, err := s.count(ctx, s.db, "")
	if err != nil {
		return false, err
	}
	old := s.version.Swap(v)
	return old >= 0 && v != old, nil
}

// count reads the commit count, with lock appended to the query.
func (s *DBStore) count(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, lock string) (int64, error) {
	var v int64
	if err := q.QueryRowContext(ctx, `SELECT v FROM identity_version`+lock).Scan(&v); err != nil {
		return 0, fmt.Errorf("identity: commit count: %w", err)
	}
	return v, nil
}

// Update implements Store. No other process can commit between its check
// of the count and its own commit: SQLite's transaction starts
// IMMEDIATE, holding the write lock; PostgreSQL's locks the count's row.
func (s *DBStore) Update(ctx context.Context, fn func(Tx) error) error {
	base := s.version.Load()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("identity: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	lock := ""
	if s.dialect == schema.Postgres {
		lock = " FOR UPDATE"
	}
	v, err := s.count(ctx, tx, lock)
	if err != nil {
		return err
	}
	if base >= 0 && v != base {
		return ErrStale
	}
	if err := fn(&dbTx{ctx: ctx, tx: tx, dialect: s.dialect}); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE identity_version SET v = v + 1`); err != nil {
		return fmt.Errorf("identity: commit count: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	// Its own commit is no news to this store.
	s.version.CompareAndSwap(base, v+1)
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
func (s *DBStore) Load(ctx context.Context) (*Snapshot, error) {
	var opts *sql.TxOptions
	if s.dialect == schema.Postgres {
		// One snapshot of every table (SQLite's read transaction is one).
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := s.db.BeginTx(ctx, opts)
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
		disabled, mustChange             int64 // 0 or 1: PostgreSQL has no boolean in INTEGER
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
		Disabled: disabled != 0, MustChangePassword: mustChange != 0, TOTPEnabled: secret != "",
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

// dbTx implements Tx. Its statements are SQLite's, in the syntax
// PostgreSQL shares; the dialect rewrites their placeholders.
type dbTx struct {
	ctx     context.Context
	tx      *sql.Tx
	dialect schema.Dialect
}

func (t *dbTx) exec(what, query string, args ...any) (sql.Result, error) {
	res, err := t.tx.ExecContext(t.ctx, t.dialect.SQL(query), args...)
	if err != nil {
		if duplicate(err) {
			return nil, fmt.Errorf("identity: %s: %w", what, ErrExists)
		}
		return nil, fmt.Errorf("identity: %s: %w", what, err)
	}
	return res, nil
}

// duplicate reports whether err is a primary key or unique constraint's.
func duplicate(err error) bool {
	var se *sqlite.Error
	var pe *pgconn.PgError
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) ||
		errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

// execOne is exec for a statement that must change exactly one row.
func (t *dbTx) execOne(what, query string, args ...any) error {
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
	return []any{a.Name, a.DisplayName, string(a.Role), encodeGrants(a.Grants), encodeScope(a.Scope), flag(a.Disabled),
		flag(a.MustChangePassword), a.PasswordHash, ns(a.PasswordChangedAt), a.TOTPSecret, a.TOTPPending, a.TOTPLastStep,
		ns(a.CreatedAt), a.CreatedBy, ns(a.LastLoginAt), a.LastLoginFrom}
}

func (t *dbTx) InsertAccount(a AccountRecord) error {
	_, err := t.exec("insert account "+a.Name, `INSERT INTO accounts (`+accountColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, accountArgs(a)...)
	return err
}

func (t *dbTx) UpdateAccount(a AccountRecord) error {
	args := accountArgs(a)
	return t.execOne("update account "+a.Name, `UPDATE accounts SET display_name = ?, role = ?, grants = ?, scope = ?,
		disabled = ?, must_change_password = ?, password_hash = ?, password_changed_at = ?, totp_secret = ?,
		totp_pending = ?, totp_last_step = ?, created_at = ?, created_by = ?, last_login_at = ?, last_login_from = ?
		WHERE name = ?`, append(args[1:], a.Name)...)
}

func (t *dbTx) PasswordHistory(account string) ([]string, error) {
	rows, err := t.tx.QueryContext(t.ctx, t.dialect.SQL(`SELECT hash FROM password_history WHERE account = ? ORDER BY set_at DESC`), account)
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

func (t *dbTx) AddPasswordHistory(account, hash string, at time.Time, keep int) error {
	if _, err := t.exec("password history of "+account, `INSERT INTO password_history (account, hash, set_at) VALUES (?, ?, ?)`,
		account, hash, ns(at)); err != nil {
		return err
	}
	if keep <= 0 {
		_, err := t.exec("prune password history of "+account, `DELETE FROM password_history WHERE account = ?`, account)
		return err
	}
	// Keeps the newest keep (their times are nanoseconds: none alike).
	_, err := t.exec("prune password history of "+account, `DELETE FROM password_history WHERE account = ?1 AND set_at <
		(SELECT MIN(set_at) FROM (SELECT set_at FROM password_history WHERE account = ?1 ORDER BY set_at DESC LIMIT ?2) AS kept)`,
		account, keep)
	return err
}

func (t *dbTx) ReplaceRecoveryCodes(account string, hashes []string) error {
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

func (t *dbTx) UseRecoveryCode(account, hash string, at time.Time) (bool, error) {
	err := t.execOne("use recovery code", `UPDATE recovery_codes SET used_at = ? WHERE account = ? AND hash = ? AND used_at = 0`,
		ns(at), account, hash)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (t *dbTx) InsertSession(r SessionRecord) error {
	_, err := t.exec("insert session", `INSERT INTO sessions (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.Hash, r.Account, ns(r.CreatedAt), ns(r.LastSeen), ns(r.ExpiresAt), r.Remote, r.UserAgent)
	return err
}

func (t *dbTx) DeleteSessions(hashes []string) error {
	return t.each("delete session", `DELETE FROM sessions WHERE hash = ?`, hashes)
}

// each runs query once for each key.
func (t *dbTx) each(what, query string, keys []string) error {
	for _, k := range keys {
		if _, err := t.exec(what, query, k); err != nil {
			return err
		}
	}
	return nil
}

func (t *dbTx) TouchSessions(seen map[string]time.Time) error {
	return t.touch("touch session", "sessions", "last_seen", "hash", seen)
}

// touch moves column forward to each key's time, never back.
func (t *dbTx) touch(what, table, column, key string, at map[string]time.Time) error {
	query := `UPDATE ` + table + ` SET ` + column + ` = CASE WHEN ` + column + ` > ?1 THEN ` + column + ` ELSE ?1 END WHERE ` + key + ` = ?2`
	for k, when := range at {
		if _, err := t.exec(what, query, ns(when), k); err != nil {
			return err
		}
	}
	return nil
}

func (t *dbTx) InsertToken(r TokenRecord) error {
	_, err := t.exec("insert token "+r.Name, `INSERT INTO api_tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Name, r.Hash, string(r.Role), encodeGrants(r.Grants), encodeScope(r.Scope), r.CreatedBy, ns(r.CreatedAt),
		ns(r.ExpiresAt), ns(r.LastUsedAt), ns(r.RevokedAt), r.RevokedBy)
	return err
}

func (t *dbTx) RevokeToken(id string, at time.Time, by string) error {
	return t.execOne("revoke token "+id, `UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?`, ns(at), by, id)
}

func (t *dbTx) TouchTokens(used map[string]time.Time) error {
	return t.touch("touch token", "api_tokens", "last_used_at", "id", used)
}

func (t *dbTx) InsertLink(l LinkRecord) error {
	_, err := t.exec("insert link", `INSERT INTO view_links (`+linkColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		l.ID, l.Hash, l.Camera, l.Account, ns(l.CreatedAt), ns(l.ExpiresAt))
	return err
}

func (t *dbTx) DeleteLinks(ids []string) error {
	return t.each("delete link", `DELETE FROM view_links WHERE id = ?`, ids)
}

func (t *dbTx) PutAgent(a AgentCredential) error {
	_, err := t.exec("put agent "+a.Agent, `INSERT INTO agent_credentials (`+agentColumns+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (agent) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at, created_by = excluded.created_by,
		revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by`,
		a.Agent, a.Hash, ns(a.CreatedAt), a.CreatedBy, ns(a.RevokedAt), a.RevokedBy)
	return err
}

func (t *dbTx) PutFailure(f FailureRecord) error {
	_, err := t.exec("put failure", `INSERT INTO login_failures (`+failureColumns+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, key) DO UPDATE SET count = excluded.count, first_at = excluded.first_at, last_at = excluded.last_at,
		locked_until = excluded.locked_until`,
		string(f.Kind), f.Key, f.Count, ns(f.FirstAt), ns(f.LastAt), ns(f.LockedUntil))
	return err
}

func (t *dbTx) DeleteFailure(kind FailureKind, key string) error {
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

// flag is a boolean as the INTEGER columns hold it.
func flag(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Times are stored as the stores store them (schema.Nanos).
var ns, tm = schema.Nanos, schema.FromNanos
