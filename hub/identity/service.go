// Package identity is who may use the hub: people's accounts (argon2id
// passwords under a policy, lockout after failures, TOTP as the second
// factor), their server-side sessions, API tokens for other systems,
// short-lived viewing links for WHEP players, and the credentials agents
// present to the MQTT broker. Service implements auth.Authenticator from
// an in-memory copy of the store, so the gate's check on every request
// touches no disk; every change is written through a Store first, and
// changes another process (the command line) makes to the same store are
// noticed within a poll and acted on: sessions of a disabled account end,
// a revoked agent is reported. Only hashes of secrets are stored; secrets
// are shown once, when made. Every security-relevant act goes to the
// audit trail through the Auditor the hub passes in.
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/metrics"
)

// Auditor appends to the audit trail.
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// Cameras finds a camera's place in the city, for viewing links.
type Cameras interface {
	Camera(id string) (district, site string, ok bool)
}

// Deps are the service's collaborators.
type Deps struct {
	Store   Store // required; the caller opens and closes it
	Log     *slog.Logger
	Metrics *metrics.Registry
	Audit   Auditor
	// Cameras is needed to make viewing links; without it every camera is
	// unknown.
	Cameras Cameras
	// Now is the clock every expiry is measured with; time.Now if nil.
	Now func() time.Time
	// OnSessionsEnded is told the ids (Principal.Session) of sessions that
	// ended: logout, disable, password change or reset, expiry, or any of
	// these done by another process. The hub closes their websockets and
	// video at once. It must not block for long. Optional.
	OnSessionsEnded func(ids []string)
	// OnAgentRevoked is told of an agent whose credential was revoked or
	// replaced, here or by another process: the hub ends its MQTT session.
	// It must not block for long. Optional.
	OnAgentRevoked func(agentID string)
}

// Actor is who does something, for the audit trail: an account (ActorOf a
// principal) or the command line (Name "cli:USER", Remote "local").
type Actor struct {
	Name    string
	Role    string
	Session string
	Remote  string
}

// ActorOf is the actor behind a principal.
func ActorOf(p *auth.Principal) Actor {
	if p == nil {
		return Actor{Name: "anonymous"}
	}
	return Actor{Name: p.Name, Role: string(p.Role), Session: p.Session, Remote: p.Remote}
}

// Service is the identity service. Its methods are safe for concurrent
// use; Run must run once for expiry, persistence and change polling.
type Service struct {
	cfg     Config
	store   Store
	log     *slog.Logger
	audit   Auditor
	cameras Cameras
	now     func() time.Time

	onSessionsEnded func([]string)
	onAgentRevoked  func(string)

	hashSem   chan struct{}
	dummyHash string
	limiter   *rateLimiter
	misses    *rateLimiter // one bucket: lookUp's looks in the store

	// writeMu serialises every write to the store with the change of
	// memory that mirrors it, and reloads, so that a reload cannot bring
	// back what a concurrent write just replaced. Held before mu.
	writeMu sync.Mutex
	mu      sync.RWMutex // guards st; writers also hold writeMu
	st      *state
	// What a reload found ended, reported once writeMu is released;
	// guarded by writeMu.
	pendingEnded, pendingRevoked []string

	agentMu    sync.Mutex // guards agentCache
	agentCache map[string]agentVerified

	m serviceMetrics
}

type serviceMetrics struct {
	logins      *metrics.Vec[metrics.Counter]
	lockouts    *metrics.Vec[metrics.Counter]
	tokensUsed  *metrics.Counter
	linksUsed   *metrics.Counter
	agentChecks *metrics.Vec[metrics.Counter]
	refused     *metrics.Vec[metrics.Counter]
	failures    *metrics.Vec[metrics.Counter]
	ended       *metrics.Vec[metrics.Counter]
}

// New checks cfg and deps and loads the store; it starts nothing.
func New(cfg Config, deps Deps) (*Service, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name    string
		missing bool
	}{{"Store", deps.Store == nil}, {"Log", deps.Log == nil}, {"Metrics", deps.Metrics == nil}, {"Audit", deps.Audit == nil}} {
		if d.missing {
			errs = append(errs, fmt.Errorf("identity: Deps.%s is required", d.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, store: deps.Store, log: deps.Log.With("component", "identity"), audit: deps.Audit,
		cameras: deps.Cameras, now: deps.Now, onSessionsEnded: deps.OnSessionsEnded, onAgentRevoked: deps.OnAgentRevoked,
		hashSem: make(chan struct{}, cfg.HashWorkers), agentCache: map[string]agentVerified{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.dummyHash = unmatchableHash(cfg.Argon2)
	s.limiter = newRateLimiter(cfg.LoginRate, cfg.LoginBurst)
	s.misses = newRateLimiter(missSyncs, missSyncs)
	ctx := context.Background()
	// The baseline first: a change between it and Load only causes one
	// needless reload.
	if _, err := s.store.Changed(ctx); err != nil {
		return nil, err
	}
	snap, err := s.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	s.st = s.build(snap)
	reg := deps.Metrics
	s.m = serviceMetrics{
		logins: reg.CounterVec("citywatch_identity_logins_total",
			"Login attempts by outcome: success, bad_password, unknown_account, bad_totp, totp_required, locked, disabled, rate_limited, error.", "outcome"),
		lockouts:   reg.CounterVec("citywatch_identity_lockouts_total", "Lockouts started, by kind: account or address.", "kind"),
		tokensUsed: reg.Counter("citywatch_identity_token_uses_total", "Requests authenticated with an API token."),
		linksUsed:  reg.Counter("citywatch_identity_link_uses_total", "Requests authenticated with a viewing link."),
		agentChecks: reg.CounterVec("citywatch_identity_agent_checks_total",
			"Agent credential checks by outcome: ok, cached, bad_secret, unknown, revoked.", "outcome"),
		refused: reg.CounterVec("citywatch_identity_refused_total",
			"Identity API requests refused, by error code (bad_request, password_policy, not_found…).", "code"),
		failures: reg.CounterVec("citywatch_identity_errors_total",
			"Internal failures by operation: store writes, reloads, audit appends.", "op"),
		ended: reg.CounterVec("citywatch_identity_sessions_ended_total",
			"Sessions ended, by reason: logout, logout_all, disabled, password, expired, elsewhere.", "reason"),
	}
	reg.GaugeFunc("citywatch_identity_sessions_active", "Login sessions in memory now.", func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.st.sessions))
	})
	return s, nil
}

// Run polls the store for other processes' changes, ends expired
// sessions, persists activity and prunes old records until ctx ends, then
// persists activity once more. Failures are logged and counted, and the
// next round tries again.
func (s *Service) Run(ctx context.Context) error {
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			s.persistActivity(context.WithoutCancel(ctx))
			return nil
		case <-poll.C:
			s.poll(ctx)
		case <-sweep.C:
			s.sweep(ctx)
		}
	}
}

// poll loads what another process changed, if anything.
func (s *Service) poll(ctx context.Context) {
	unlock := s.lockWrite(ctx)
	unlock()
}

// lockWrite takes writeMu with memory in step with the store: what another
// process changed since the last look is loaded first, so that what the
// caller computes and writes starts from the latest state. The unlock it
// returns releases writeMu and then reports what the reload found ended.
func (s *Service) lockWrite(ctx context.Context) (unlock func()) {
	s.writeMu.Lock()
	s.sync(ctx)
	return s.unlockWrite
}

func (s *Service) unlockWrite() {
	ended, revoked := s.pendingEnded, s.pendingRevoked
	s.pendingEnded, s.pendingRevoked = nil, nil
	s.writeMu.Unlock()
	s.sessionsEnded("elsewhere", ended)
	s.agentsRevoked(revoked)
}

// sync reloads memory if another process changed the store. The caller
// holds writeMu. A failure is logged and counted; the next look retries.
func (s *Service) sync(ctx context.Context) {
	changed, err := s.store.Changed(ctx)
	if err != nil {
		s.fail("poll", err)
		return
	}
	if !changed {
		return
	}
	if err := s.reloadLocked(ctx); err != nil {
		s.fail("reload", err)
	}
}

// fail logs and counts a failure nobody can be told of.
func (s *Service) fail(op string, err error) {
	s.m.failures.With(op).Inc()
	s.log.Error("identity "+op+" failed", "err", err)
}

// state is the in-memory copy of the store. Values reached through it are
// replaced, never changed in place (except activity times: atomic, and
// persisted under writeMu), so a reader may keep using what it found
// after releasing mu.
type state struct {
	accounts   map[string]*account
	sessions   map[[32]byte]*session
	sessionIDs map[string]*session
	tokens     map[[32]byte]*apiToken
	tokenIDs   map[string]*apiToken
	links      map[[32]byte]*LinkRecord
	agents     map[string]AgentCredential
	failures   map[failureKey]FailureRecord
}

type account struct {
	AccountRecord
	perms auth.Set
}

func newAccount(r AccountRecord) *account {
	r.TOTPEnabled = r.TOTPSecret != ""
	return &account{AccountRecord: r, perms: auth.NewSet(r.Role, r.Grants)}
}

type session struct {
	SessionRecord
	key      [32]byte
	id       string       // public: Principal.Session
	lastSeen atomic.Int64 // Unix ns
	// persisted is the last-seen time in the store; guarded by writeMu.
	persisted int64
}

type apiToken struct {
	TokenRecord
	perms     auth.Set
	lastUsed  atomic.Int64 // Unix ns
	persisted int64        // guarded by writeMu
}

type failureKey struct {
	kind FailureKind
	key  string
}

// build makes the memory state from a snapshot. Rows whose hash is not
// hex SHA-256 cannot match any secret and are logged and left out.
func (s *Service) build(snap *Snapshot) *state {
	st := &state{
		accounts: map[string]*account{}, sessions: map[[32]byte]*session{}, sessionIDs: map[string]*session{},
		tokens: map[[32]byte]*apiToken{}, tokenIDs: map[string]*apiToken{}, links: map[[32]byte]*LinkRecord{},
		agents: map[string]AgentCredential{}, failures: map[failureKey]FailureRecord{},
	}
	for _, a := range snap.Accounts {
		st.accounts[a.Name] = newAccount(a)
	}
	for _, r := range snap.Sessions {
		k, ok := unhex(r.Hash)
		if !ok {
			s.fail("load", fmt.Errorf("session of %s has a malformed hash", r.Account))
			continue
		}
		st.addSession(newSession(r, k))
	}
	for _, r := range snap.Tokens {
		k, ok := unhex(r.Hash)
		if !ok {
			s.fail("load", fmt.Errorf("token %s has a malformed hash", r.Name))
			continue
		}
		st.addToken(k, newToken(r))
	}
	for _, r := range snap.Links {
		if k, ok := unhex(r.Hash); ok {
			st.links[k] = &r
		}
	}
	for _, a := range snap.Agents {
		st.agents[a.Agent] = a
	}
	for _, f := range snap.Failures {
		st.failures[failureKey{f.Kind, f.Key}] = f
	}
	return st
}

func newSession(r SessionRecord, k [32]byte) *session {
	se := &session{SessionRecord: r, key: k, id: sessionID(k), persisted: ns(r.LastSeen)}
	se.lastSeen.Store(ns(r.LastSeen))
	return se
}

func newToken(r TokenRecord) *apiToken {
	t := &apiToken{TokenRecord: r, perms: auth.NewSet(r.Role, r.Grants), persisted: ns(r.LastUsedAt)}
	t.lastUsed.Store(ns(r.LastUsedAt))
	return t
}

func (st *state) addSession(se *session) {
	st.sessions[se.key] = se
	st.sessionIDs[se.id] = se
}

func (st *state) removeSession(se *session) {
	delete(st.sessions, se.key)
	delete(st.sessionIDs, se.id)
}

func (st *state) addToken(k [32]byte, t *apiToken) {
	st.tokens[k] = t
	st.tokenIDs[t.ID] = t
}

// sessionsOf lists the account's sessions.
func (st *state) sessionsOf(name string) []*session {
	var out []*session
	for _, se := range st.sessions {
		if se.Account == name {
			out = append(out, se)
		}
	}
	return out
}

// reloadLocked replaces memory with the store's content after another
// process changed it, keeping activity times not yet persisted, and notes
// the sessions that ended and the agents whose credential went away, for
// unlockWrite to report. The caller holds writeMu.
func (s *Service) reloadLocked(ctx context.Context) error {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return err
	}
	next := s.build(snap)
	s.mu.Lock()
	old := s.st
	var ended []string
	for k, se := range old.sessions {
		if n := next.sessions[k]; n != nil {
			n.lastSeen.Store(max(n.lastSeen.Load(), se.lastSeen.Load()))
		} else {
			ended = append(ended, se.id)
		}
	}
	for k, t := range old.tokens {
		if n := next.tokens[k]; n != nil {
			n.lastUsed.Store(max(n.lastUsed.Load(), t.lastUsed.Load()))
		}
	}
	var revoked []string
	for id, a := range old.agents {
		if n, ok := next.agents[id]; a.Active() && (!ok || !n.Active() || n.Hash != a.Hash) {
			revoked = append(revoked, id)
		}
	}
	s.st = next
	s.mu.Unlock()
	s.log.Info("identity store changed by another process; reloaded", "sessions_ended", len(ended), "agents_revoked", len(revoked))
	s.pendingEnded = append(s.pendingEnded, ended...)
	s.pendingRevoked = append(s.pendingRevoked, revoked...)
	return nil
}

// sessionsEnded counts and reports ended sessions. Call it without locks.
func (s *Service) sessionsEnded(reason string, ids []string) {
	if len(ids) == 0 {
		return
	}
	s.m.ended.With(reason).Add(uint64(len(ids)))
	if s.onSessionsEnded != nil {
		s.onSessionsEnded(ids)
	}
}

// agentsRevoked forgets the agents' verified secrets and reports them.
// Call it without locks.
func (s *Service) agentsRevoked(ids []string) {
	if len(ids) == 0 {
		return
	}
	s.agentMu.Lock()
	for _, id := range ids {
		delete(s.agentCache, id)
	}
	s.agentMu.Unlock()
	if s.onAgentRevoked != nil {
		for _, id := range ids {
			s.onAgentRevoked(id)
		}
	}
}

// update writes through the store: fn runs in one transaction and, when
// it commits, apply changes memory to match. The caller holds writeMu
// (lockWrite). Writes are not cancelled with the request that caused
// them: a failure count must not be lost because the client hung up. If
// another process committed between lockWrite's look and this
// transaction, nothing is written, memory is reloaded and the caller is
// told to try again.
func (s *Service) update(ctx context.Context, fn func(Tx) error, apply func(*state)) error {
	err := s.store.Update(context.WithoutCancel(ctx), fn)
	if errors.Is(err, ErrStale) {
		s.sync(ctx)
		return conflict("the same record was changed elsewhere at this moment; try again")
	}
	if err != nil {
		return err
	}
	if apply != nil {
		s.mu.Lock()
		apply(s.st)
		s.mu.Unlock()
	}
	return nil
}

// sweep ends expired sessions, persists activity, deletes expired links
// and forgets failures and rate limits no longer in force.
func (s *Service) sweep(ctx context.Context) {
	now := s.now()
	unlock := s.lockWrite(ctx)
	var expired []*session
	var ids, hashes []string
	for _, se := range s.st.sessions {
		if s.sessionExpired(se, now) {
			expired = append(expired, se)
			ids, hashes = append(ids, se.id), append(hashes, se.Hash)
		}
	}
	var links []string
	var linkKeys [][32]byte
	for k, l := range s.st.links {
		if !now.Before(l.ExpiresAt) {
			links, linkKeys = append(links, l.ID), append(linkKeys, k)
		}
	}
	var stale []failureKey
	for k, f := range s.st.failures {
		if !now.Before(f.LockedUntil) && now.Sub(f.LastAt) > s.cfg.Lockout.Window {
			stale = append(stale, k)
		}
	}
	var err error
	if len(hashes)+len(links)+len(stale) > 0 {
		err = s.update(ctx, func(tx Tx) error {
			if err := tx.DeleteSessions(hashes); err != nil {
				return err
			}
			if err := tx.DeleteLinks(links); err != nil {
				return err
			}
			for _, k := range stale {
				if err := tx.DeleteFailure(k.kind, k.key); err != nil {
					return err
				}
			}
			return nil
		}, func(st *state) {
			for _, se := range expired {
				st.removeSession(se)
			}
			for _, k := range linkKeys {
				delete(st.links, k)
			}
			for _, k := range stale {
				delete(st.failures, k)
			}
		})
	}
	unlock()
	if err != nil {
		s.fail("sweep", err)
		return
	}
	s.sessionsEnded("expired", ids)
	s.persistActivity(ctx)
	s.limiter.prune(now)
	s.agentMu.Lock()
	for id, v := range s.agentCache {
		if !now.Before(v.until) {
			delete(s.agentCache, id)
		}
	}
	s.agentMu.Unlock()
}

// persistActivity writes the sessions' last-seen and the tokens' last-use
// times that changed since the last write; they live in memory between.
func (s *Service) persistActivity(ctx context.Context) {
	unlock := s.lockWrite(ctx)
	defer unlock()
	seen, used := map[string]time.Time{}, map[string]time.Time{}
	var touched []*session
	var tokens []*apiToken
	s.mu.RLock()
	for _, se := range s.st.sessions {
		if v := se.lastSeen.Load(); v > se.persisted {
			seen[se.Hash] = tm(v)
			touched = append(touched, se)
		}
	}
	for _, t := range s.st.tokens {
		if v := t.lastUsed.Load(); v > t.persisted {
			used[t.ID] = tm(v)
			tokens = append(tokens, t)
		}
	}
	s.mu.RUnlock()
	if len(seen) == 0 && len(used) == 0 {
		return
	}
	err := s.update(ctx, func(tx Tx) error {
		if err := tx.TouchSessions(seen); err != nil {
			return err
		}
		return tx.TouchTokens(used)
	}, nil)
	if err != nil {
		s.fail("persist activity", err)
		return
	}
	for _, se := range touched {
		se.persisted = ns(seen[se.Hash])
	}
	for _, t := range tokens {
		t.persisted = ns(used[t.ID])
	}
}

// record appends to the audit trail. A failed append does not undo the
// act, which has happened; it is logged (the audit package counts it).
func (s *Service) record(ctx context.Context, a Actor, action, object string, outcome audit.Outcome, detail string) {
	r := audit.Record{
		At: s.now(), Actor: a.Name, Role: a.Role, Session: a.Session, Remote: a.Remote,
		Action: action, Object: object, Outcome: outcome, Detail: detail,
	}
	if _, err := s.audit.Append(context.WithoutCancel(ctx), r); err != nil {
		s.fail("audit", fmt.Errorf("append %s by %s: %w", action, a.Name, err))
	}
}

// digest is the SHA-256 of a secret, the key it is found by.
func digest(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// sessionID is a session's public id: the start of its hash, which names
// it in the audit trail without being of any use to an attacker.
func sessionID(k [32]byte) string { return hex.EncodeToString(k[:6]) }

func unhex(h string) ([32]byte, bool) {
	var k [32]byte
	if len(h) != 64 {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(h))
	return k, err == nil
}
