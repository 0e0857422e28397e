package identity

import (
	"context"
	"errors"
	"time"
)

// Store keeps accounts, sessions, tokens, links, agent credentials and
// login failures. The service holds all of it in memory and writes through
// the store; another process (the command line) may write to the same
// store, which Changed reveals. SQLiteStore is the one engine so far;
// another (PostgreSQL) implements the same interface and runs the same
// tests.
type Store interface {
	// Load reads everything the service keeps in memory, as one
	// consistent snapshot.
	Load(ctx context.Context) (*Snapshot, error)
	// Changed reports whether another process or connection committed a
	// change since the previous call. The first call sets the baseline
	// and reports false.
	Changed(ctx context.Context) (bool, error)
	// Update runs fn in one transaction: all of its writes or none. When
	// another process has committed since the last Changed, it runs
	// nothing and returns ErrStale, so that nothing computed from older
	// data overwrites newer (a login's last-login time must not undo a
	// disable made on the command line a moment before).
	Update(ctx context.Context, fn func(Tx) error) error
}

// Tx is a store transaction. Secrets never reach it: only their hashes.
type Tx interface {
	InsertAccount(AccountRecord) error // ErrExists
	UpdateAccount(AccountRecord) error // ErrNotFound
	// PasswordHistory returns the account's previous password hashes,
	// newest first.
	PasswordHistory(account string) ([]string, error)
	// AddPasswordHistory records hash and keeps the newest keep entries.
	AddPasswordHistory(account, hash string, at time.Time, keep int) error
	// ReplaceRecoveryCodes discards the account's codes for these.
	ReplaceRecoveryCodes(account string, hashes []string) error
	// UseRecoveryCode marks the code used and reports whether it was an
	// unused code of the account.
	UseRecoveryCode(account, hash string, at time.Time) (bool, error)

	InsertSession(SessionRecord) error
	DeleteSessions(hashes []string) error
	// TouchSessions persists last-seen times, by session hash.
	TouchSessions(seen map[string]time.Time) error

	InsertToken(TokenRecord) error                        // ErrExists for a name or hash in use
	RevokeToken(id string, at time.Time, by string) error // ErrNotFound
	// TouchTokens persists last-use times, by token id.
	TouchTokens(used map[string]time.Time) error

	InsertLink(LinkRecord) error
	DeleteLinks(ids []string) error

	PutAgent(AgentCredential) error // insert or replace

	PutFailure(FailureRecord) error // insert or replace
	DeleteFailure(kind FailureKind, key string) error
}

// Store errors.
var (
	ErrExists   = errors.New("identity: already exists")
	ErrNotFound = errors.New("identity: not found")
	ErrStale    = errors.New("identity: the store changed since it was last read")
)

// Snapshot is everything Load returns.
type Snapshot struct {
	Accounts []AccountRecord
	Sessions []SessionRecord
	Tokens   []TokenRecord
	Links    []LinkRecord
	Agents   []AgentCredential
	Failures []FailureRecord
}

// AccountRecord is an account with its secrets' hashes.
type AccountRecord struct {
	Account
	PasswordHash string // argon2id PHC string
	// TOTPSecret is the confirmed base32 TOTP key; TOTPPending one set up
	// but not yet confirmed. TOTP needs the key itself to check codes.
	TOTPSecret  string
	TOTPPending string
	// TOTPLastStep is the time step of the last accepted code, so no code
	// is accepted twice.
	TOTPLastStep int64
}

// SessionRecord is a login session. Hash is the hex SHA-256 of the cookie
// value; the value itself is never stored.
type SessionRecord struct {
	Hash      string
	Account   string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute end
	Remote    string
	UserAgent string
}

// TokenRecord is an API token with the hex SHA-256 of its secret.
type TokenRecord struct {
	Token
	Hash string
}

// LinkRecord is a viewing link with the hex SHA-256 of its token.
type LinkRecord struct {
	ID        string
	Hash      string
	Camera    string
	Account   string // who made it
	CreatedAt time.Time
	ExpiresAt time.Time
}

// FailureKind says what a failure counter counts.
type FailureKind string

// Failure kinds.
const (
	FailAccount FailureKind = "account" // an account name, existing or not
	FailAddress FailureKind = "address" // a source address
)

// FailureRecord counts login failures of one account name or address
// since FirstAt, and the lockout they caused.
type FailureRecord struct {
	Kind        FailureKind
	Key         string
	Count       int
	FirstAt     time.Time
	LastAt      time.Time
	LockedUntil time.Time
}
