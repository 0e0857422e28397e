package identity

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
)

// Config is the identity policy. Start from DefaultConfig; zero durations
// and counts are mistakes except where a field says what 0 means.
type Config struct {
	Password PasswordPolicy
	Argon2   Argon2Params
	// HashWorkers bounds how many argon2 hashes run at once, each taking
	// Argon2.Memory: a burst of logins queues behind them instead of
	// exhausting memory and CPU. 2.
	HashWorkers int
	Lockout     LockoutPolicy
	// LoginRate refills each source address's login allowance, in attempts
	// per second, up to LoginBurst. 1 and 10.
	LoginRate  float64
	LoginBurst int
	// TOTPRoles must sign in with a second factor: a session of an account
	// of such a role without TOTP can only enrol it. admin,
	// security_admin, auditor.
	TOTPRoles []auth.Role
	// TOTPIssuer names the hub in authenticator apps. "citywatch".
	TOTPIssuer string
	// SessionIdle ends a session unused this long. 30 min.
	SessionIdle time.Duration
	// SessionLifetime ends a session this long after login, however busy.
	// 12 h.
	SessionLifetime time.Duration
	// SecureCookies is set when the console is served over TLS: the
	// cookie is then __Host-citywatch_session with Secure.
	SecureCookies bool
	// MaxTokenLifetime bounds an API token's expiry. 365 days.
	MaxTokenLifetime time.Duration
	// LinkTTL is a viewing link's lifetime when its maker names none;
	// MaxLinkTTL bounds it. 10 min and 1 h.
	LinkTTL    time.Duration
	MaxLinkTTL time.Duration
	// MaxAgents caps enrolled (unrevoked) agents. 20,000.
	MaxAgents int
	// AgentCacheTTL is how long a verified agent secret is remembered, so
	// a reconnect storm does not hash every CONNECT. A revoked or rotated
	// credential fails at once regardless. 5 min.
	AgentCacheTTL time.Duration
	// PollInterval is how often the store is asked whether another
	// process (the command line) changed it. 1 s.
	PollInterval time.Duration
	// SweepInterval is how often expired sessions end, activity is
	// persisted and old failures and links are pruned. 30 s.
	SweepInterval time.Duration
}

// PasswordPolicy is what a chosen password must satisfy.
type PasswordPolicy struct {
	MinLength  int // characters; 12
	MinClasses int // of lower case, upper case, digits, other; 3
	// MaxAge forces a change this long after the last one; 0 never. 90
	// days.
	MaxAge time.Duration
	// History refuses the last this many passwords of the account; 0
	// refuses none. 5.
	History int
}

// Argon2Params are argon2id's costs for new hashes; existing hashes keep
// the costs written in them.
type Argon2Params struct {
	Memory  uint32 // KiB; 64 MiB
	Time    uint32 // passes; 1
	Threads uint8  // lanes; 2
}

// LockoutPolicy handles login failures.
type LockoutPolicy struct {
	// Threshold failures for one account name (existing or not) within
	// Window lock the name for Duration. 5, 15 min, 15 min.
	Threshold int
	Window    time.Duration
	Duration  time.Duration
	// AddressThreshold failures from one source address within Window
	// lock the address for Duration. 20.
	AddressThreshold int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Password:         PasswordPolicy{MinLength: 12, MinClasses: 3, MaxAge: 90 * 24 * time.Hour, History: 5},
		Argon2:           Argon2Params{Memory: 64 << 10, Time: 1, Threads: 2},
		HashWorkers:      2,
		Lockout:          LockoutPolicy{Threshold: 5, Window: 15 * time.Minute, Duration: 15 * time.Minute, AddressThreshold: 20},
		LoginRate:        1,
		LoginBurst:       10,
		TOTPRoles:        []auth.Role{auth.Admin, auth.SecurityAdmin, auth.Auditor},
		TOTPIssuer:       "citywatch",
		SessionIdle:      30 * time.Minute,
		SessionLifetime:  12 * time.Hour,
		MaxTokenLifetime: 365 * 24 * time.Hour,
		LinkTTL:          10 * time.Minute,
		MaxLinkTTL:       time.Hour,
		MaxAgents:        20_000,
		AgentCacheTTL:    5 * time.Minute,
		PollInterval:     time.Second,
		SweepInterval:    30 * time.Second,
	}
}

// Validate lists every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	p := c.Password
	if p.MinLength < 8 || p.MinLength > maxPasswordLen {
		bad("password min length %d: want 8 to %d", p.MinLength, maxPasswordLen)
	}
	if p.MinClasses < 1 || p.MinClasses > 4 {
		bad("password min classes %d: want 1 to 4", p.MinClasses)
	}
	if p.MaxAge < 0 {
		bad("password max age %v is negative (0 means passwords never expire)", p.MaxAge)
	}
	if p.History < 0 || p.History > 24 {
		bad("password history %d: want 0 to 24", p.History)
	}
	a := c.Argon2
	if a.Time < 1 || a.Threads < 1 || a.Memory < 8*uint32(a.Threads) || a.Memory > maxArgonMemory {
		bad("argon2 parameters m=%d KiB, t=%d, p=%d: want t ≥ 1, p ≥ 1, 8·p ≤ m ≤ %d", a.Memory, a.Time, a.Threads, maxArgonMemory)
	}
	if c.HashWorkers < 1 {
		bad("hash workers %d: want at least 1", c.HashWorkers)
	}
	l := c.Lockout
	if l.Threshold < 1 || l.AddressThreshold < 1 {
		bad("lockout thresholds %d (account) and %d (address): want at least 1", l.Threshold, l.AddressThreshold)
	}
	if l.Window <= 0 || l.Duration <= 0 {
		bad("lockout window %v and duration %v: want both positive", l.Window, l.Duration)
	}
	if c.LoginRate <= 0 || c.LoginBurst < 1 {
		bad("login rate %v/s burst %d: want a positive rate and a burst of at least 1", c.LoginRate, c.LoginBurst)
	}
	for _, r := range c.TOTPRoles {
		if !r.Valid() {
			bad("TOTP role %q is not a role", r)
		}
	}
	if c.TOTPIssuer == "" {
		bad("TOTP issuer is empty")
	}
	if c.SessionIdle <= 0 || c.SessionLifetime <= 0 {
		bad("session idle timeout %v and lifetime %v: want both positive", c.SessionIdle, c.SessionLifetime)
	} else if c.SessionIdle > c.SessionLifetime {
		bad("session idle timeout %v is longer than the lifetime %v", c.SessionIdle, c.SessionLifetime)
	}
	if c.MaxTokenLifetime <= 0 {
		bad("max token lifetime %v: want positive", c.MaxTokenLifetime)
	}
	if c.LinkTTL <= 0 || c.MaxLinkTTL < c.LinkTTL {
		bad("link TTL %v and max %v: want 0 < TTL ≤ max", c.LinkTTL, c.MaxLinkTTL)
	}
	if c.MaxAgents < 1 {
		bad("max agents %d: want at least 1", c.MaxAgents)
	}
	if c.AgentCacheTTL < 0 {
		bad("agent cache TTL %v is negative (0 disables the cache)", c.AgentCacheTTL)
	}
	if c.PollInterval <= 0 || c.SweepInterval <= 0 {
		bad("poll interval %v and sweep interval %v: want both positive", c.PollInterval, c.SweepInterval)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("identity: config: %w", err)
	}
	return nil
}

func (c Config) totpRequired(r auth.Role) bool { return slices.Contains(c.TOTPRoles, r) }

// cookieName is the session cookie's name: with Secure, the __Host-
// prefix makes browsers refuse it from a subdomain or without TLS.
func (c Config) cookieName() string {
	if c.SecureCookies {
		return "__Host-citywatch_session"
	}
	return "citywatch_session"
}
