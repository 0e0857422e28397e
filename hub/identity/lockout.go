package identity

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
)

// lockedError refuses an attempt during a lockout. It reads the same for
// an account name that exists and one that does not. The time is the
// hub's local time, named, as people at the hub's site read clocks.
func lockedError(until time.Time) *Error {
	return refusal(http.StatusForbidden, "locked", "too many failed attempts; try again after %s", until.Local().Format("15:04 MST"))
}

// lockedOut refuses at once, before any hashing, an attempt for a locked
// account name or from a locked address.
func (s *Service) lockedOut(name, addr string, now time.Time) *Error {
	s.mu.RLock()
	until := s.st.failures[failureKey{FailAccount, name}].LockedUntil
	if u := s.st.failures[failureKey{FailAddress, addr}].LockedUntil; u.After(until) {
		until = u
	}
	s.mu.RUnlock()
	if now.Before(until) {
		return lockedError(until)
	}
	return nil
}

// loginFailed counts a failure against the account name (whether or not
// it exists) and the source address, and starts a lockout at a threshold.
func (s *Service) loginFailed(ctx context.Context, name, addr string) {
	now := s.now()
	unlock := s.lockWrite(ctx)
	var started []FailureRecord
	var changed []FailureRecord
	for _, c := range []struct {
		kind      FailureKind
		key       string
		threshold int
	}{{FailAccount, name, s.cfg.Lockout.Threshold}, {FailAddress, addr, s.cfg.Lockout.AddressThreshold}} {
		f, ok := s.st.failures[failureKey{c.kind, c.key}]
		if !ok || now.Sub(f.FirstAt) > s.cfg.Lockout.Window || (!f.LockedUntil.IsZero() && !now.Before(f.LockedUntil)) {
			f = FailureRecord{Kind: c.kind, Key: c.key, FirstAt: now}
		}
		f.Count++
		f.LastAt = now
		if f.Count >= c.threshold && f.LockedUntil.IsZero() {
			f.LockedUntil = now.Add(s.cfg.Lockout.Duration)
			started = append(started, f)
		}
		changed = append(changed, f)
	}
	err := s.update(ctx, func(tx Tx) error {
		for _, f := range changed {
			if err := tx.PutFailure(f); err != nil {
				return err
			}
		}
		return nil
	}, func(st *state) {
		for _, f := range changed {
			st.failures[failureKey{f.Kind, f.Key}] = f
		}
	})
	unlock()
	if err != nil {
		// The attempt was refused anyway; what is lost is one count.
		s.fail("count failure", err)
	}
	for _, f := range started {
		s.m.lockouts.With(string(f.Kind)).Inc()
		s.log.Warn("lockout started", "kind", f.Kind, "key", f.Key, "failures", f.Count, "until", f.LockedUntil)
		s.record(ctx, Actor{Name: "system", Remote: addr}, "auth.lockout", string(f.Kind)+"/"+f.Key, audit.Success,
			fmt.Sprintf("%d failed logins within %v; locked until %s", f.Count, s.cfg.Lockout.Window, f.LockedUntil.Format(time.RFC3339)))
	}
}

// Lockout is a lockout in force.
type Lockout struct {
	Kind     FailureKind `json:"kind"`
	Key      string      `json:"key"` // account name or address
	Until    time.Time   `json:"until"`
	Failures int         `json:"failures"`
	Since    time.Time   `json:"since"` // first failure counted
}

// Lockouts lists the account names and addresses locked now.
func (s *Service) Lockouts(ctx context.Context) ([]Lockout, error) {
	now := s.now()
	s.mu.RLock()
	var out []Lockout
	for _, f := range s.st.failures {
		if now.Before(f.LockedUntil) {
			out = append(out, Lockout{Kind: f.Kind, Key: f.Key, Until: f.LockedUntil, Failures: f.Count, Since: f.FirstAt})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Lockout) int {
		return strings.Compare(string(a.Kind)+"/"+a.Key, string(b.Kind)+"/"+b.Key)
	})
	return out, ctx.Err()
}

// Unlock clears an account's failures and lockout.
func (s *Service) Unlock(ctx context.Context, actor Actor, name string) (Account, error) {
	s.mu.RLock()
	exists := s.st.accounts[name] != nil
	s.mu.RUnlock()
	if !exists {
		err := notFound("no account %q", clip(name))
		s.outcome(ctx, actor, "account.unlock", "account/"+clip(name), err, "")
		return Account{}, err
	}
	err := s.clearLockout(ctx, FailAccount, name)
	s.outcome(ctx, actor, "account.unlock", "account/"+name, err, "")
	if err != nil {
		return Account{}, err
	}
	return s.Account(ctx, name)
}

// UnlockAddress clears a source address's failures and lockout.
func (s *Service) UnlockAddress(ctx context.Context, actor Actor, addr string) error {
	s.mu.RLock()
	_, ok := s.st.failures[failureKey{FailAddress, addr}]
	s.mu.RUnlock()
	var err error
	if !ok {
		err = notFound("no failures recorded for address %q", clip(addr))
	} else {
		err = s.clearLockout(ctx, FailAddress, addr)
	}
	s.outcome(ctx, actor, "account.unlock", "address/"+clip(addr), err, "")
	return err
}

func (s *Service) clearLockout(ctx context.Context, kind FailureKind, key string) error {
	unlock := s.lockWrite(ctx)
	defer unlock()
	return s.update(ctx, func(tx Tx) error { return tx.DeleteFailure(kind, key) },
		func(st *state) { delete(st.failures, failureKey{kind, key}) })
}

// rateLimiter is a token bucket per source address for login attempts,
// so that no address can keep the hash workers busy.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64
	mu    sync.Mutex
	b     map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), b: map[string]*bucket{}}
}

// allow takes one token for addr, or reports how long until one is there.
func (l *rateLimiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b[addr]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.b[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// prune forgets buckets that have refilled: they hold nothing a new
// bucket would not.
func (l *rateLimiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for addr, b := range l.b {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.b, addr)
		}
	}
}
