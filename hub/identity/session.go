package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

// What Authenticate tells a client whose credentials do not hold. Short,
// and never whether an account exists.
var (
	errSessionEnded   = errors.New("session ended; sign in again")
	errSessionExpired = errors.New("session expired; sign in again")
	errDisabled       = errors.New("account disabled")
	errBadAuthHeader  = errors.New("the Authorization header must be Bearer <token>")
	errTokenInvalid   = errors.New("invalid token")
	errTokenRevoked   = errors.New("token revoked")
	errTokenExpired   = errors.New("token expired")
	errLinkInvalid    = errors.New("invalid viewing link")
	errLinkExpired    = errors.New("viewing link expired")
	errLinkRevoked    = errors.New("viewing link revoked: its maker may no longer make links")
	errLinkCamera     = errors.New("viewing link is for another camera")
)

var _ auth.Authenticator = (*Service)(nil)

// linkPerms is all a viewing link allows. Shared: principals' sets are
// read only.
var linkPerms = auth.NewSet("", []auth.Permission{auth.LiveView})

// Authenticate implements auth.Authenticator: a viewing link's ?token= where
// queryToken allows it, else an Authorization: Bearer API token, else the
// session cookie. It reads memory, and the store only for a credential
// memory lacks (lookUp).
func (s *Service) Authenticate(r *http.Request, queryToken bool) (*auth.Principal, error) {
	if queryToken {
		if tok := r.URL.Query().Get("token"); tok != "" {
			return s.linkPrincipal(r, tok)
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return nil, errBadAuthHeader
		}
		return s.tokenPrincipal(r.Context(), strings.TrimSpace(tok))
	}
	if c, err := r.Cookie(s.cfg.cookieName()); err == nil && c.Value != "" {
		return s.sessionPrincipal(r.Context(), c.Value)
	}
	return nil, auth.ErrNoCredentials
}

// missSyncs bounds how often credentials memory lacks make the service
// look in the store (a burst, then this many a second): garbage cookies
// cost memory lookups, not the store's time.
const missSyncs = 10

// lookUp runs look under the read lock; when it finds nothing, it loads
// what another hub or the command line committed since the last poll
// (within missSyncs) and looks again, so that a session begun on one hub
// of a cluster works on the others at once.
func (s *Service) lookUp(ctx context.Context, look func(*state) bool) {
	s.mu.RLock()
	found := look(s.st)
	s.mu.RUnlock()
	if found {
		return
	}
	if ok, _ := s.misses.allow("", s.now()); !ok {
		return
	}
	unlock := s.lockWrite(ctx)
	unlock()
	s.mu.RLock()
	look(s.st)
	s.mu.RUnlock()
}

func (s *Service) sessionPrincipal(ctx context.Context, token string) (*auth.Principal, error) {
	k := digest(token)
	var se *session
	var a *account
	s.lookUp(ctx, func(st *state) bool {
		if se = st.sessions[k]; se != nil {
			a = st.accounts[se.Account]
		}
		return se != nil
	})
	now := s.now()
	switch {
	case se == nil:
		return nil, errSessionEnded
	case s.sessionExpired(se, now):
		return nil, errSessionExpired
	case a == nil || a.Disabled:
		return nil, errDisabled
	}
	se.lastSeen.Store(now.UnixNano())
	return &auth.Principal{
		Name: a.Name, Role: a.Role, Perms: a.perms, Scope: a.Scope, Via: auth.ViaSession,
		Session: se.id, Expires: se.ExpiresAt, CSRF: csrfOf(token), Restricted: s.restriction(a, now),
	}, nil
}

func (s *Service) tokenPrincipal(ctx context.Context, secret string) (*auth.Principal, error) {
	k := digest(secret)
	var t *apiToken
	s.lookUp(ctx, func(st *state) bool {
		t = st.tokens[k]
		return t != nil
	})
	now := s.now()
	switch {
	case t == nil:
		return nil, errTokenInvalid
	case !t.RevokedAt.IsZero():
		return nil, errTokenRevoked
	case !now.Before(t.ExpiresAt):
		return nil, errTokenExpired
	}
	t.lastUsed.Store(now.UnixNano())
	s.m.tokensUsed.Inc()
	return &auth.Principal{
		Name: "token:" + t.Name, Role: t.Role, Perms: t.perms, Scope: t.Scope, Via: auth.ViaToken,
		Session: t.ID, Expires: t.ExpiresAt,
	}, nil
}

// linkPrincipal admits a viewing link for its camera only, which the route
// names as {id}, while its maker still may make links and see the camera.
func (s *Service) linkPrincipal(r *http.Request, token string) (*auth.Principal, error) {
	k := digest(token)
	var l *LinkRecord
	var a *account
	s.lookUp(r.Context(), func(st *state) bool {
		if l = st.links[k]; l != nil {
			a = st.accounts[l.Account]
		}
		return l != nil
	})
	switch {
	case l == nil:
		return nil, errLinkInvalid
	case !s.now().Before(l.ExpiresAt):
		return nil, errLinkExpired
	case a == nil || a.Disabled || !a.perms.Has(auth.LiveLink):
		return nil, errLinkRevoked
	case r.PathValue("id") != l.Camera:
		return nil, errLinkCamera
	}
	if !s.cameraVisible(a.Scope, l.Camera) {
		return nil, errLinkRevoked
	}
	s.m.linksUsed.Inc()
	return &auth.Principal{
		Name: a.Name, Role: a.Role, Perms: linkPerms, Scope: a.Scope, Via: auth.ViaLink,
		Session: l.ID, Expires: l.ExpiresAt, Camera: l.Camera,
	}, nil
}

func (s *Service) cameraVisible(scope auth.Scope, camera string) bool {
	if s.cameras == nil {
		return false
	}
	district, site, ok := s.cameras.Camera(camera)
	return ok && scope.Allows(district, site)
}

func (s *Service) sessionExpired(se *session, now time.Time) bool {
	return !now.Before(se.ExpiresAt) || now.Sub(time.Unix(0, se.lastSeen.Load())) >= s.cfg.SessionIdle
}

// restriction is what an account must do before anything but its own
// business: change its password (new, reset or expired), then enrol TOTP
// if its role needs it. Worked out on every request, so it lifts as soon
// as the account has done it.
func (s *Service) restriction(a *account, now time.Time) string {
	switch {
	case a.MustChangePassword:
		return "password_change"
	case s.cfg.Password.MaxAge > 0 && !now.Before(s.passwordExpiresAt(a)):
		return "password_change"
	case s.cfg.totpRequired(a.Role) && a.TOTPSecret == "":
		return "totp_enrollment"
	}
	return ""
}

func (s *Service) passwordExpiresAt(a *account) time.Time {
	if s.cfg.Password.MaxAge <= 0 {
		return time.Time{}
	}
	return a.PasswordChangedAt.Add(s.cfg.Password.MaxAge)
}

// SessionActive reports whether the session with this id
// (Principal.Session) is still open, for holders of long connections.
func (s *Service) SessionActive(id string) bool {
	s.mu.RLock()
	se := s.st.sessionIDs[id]
	var a *account
	if se != nil {
		a = s.st.accounts[se.Account]
	}
	s.mu.RUnlock()
	return se != nil && a != nil && !a.Disabled && !s.sessionExpired(se, s.now())
}

// startSession opens a session for an account that has just proved who it
// is, in the same transaction as the account's own changes (last login,
// TOTP step) and the clearing of its name's failures. extra runs first in
// that transaction and can refuse. The caller holds writeMu.
func (s *Service) startSession(ctx context.Context, rec AccountRecord, remote, userAgent string, now time.Time, extra func(Tx) error) (string, error) {
	token := randSecret("")
	k := digest(token)
	se := newSession(SessionRecord{
		Hash: hex.EncodeToString(k[:]), Account: rec.Name, CreatedAt: now, LastSeen: now,
		ExpiresAt: now.Add(s.cfg.SessionLifetime), Remote: remote, UserAgent: clipTo(userAgent, 256),
	}, k)
	rec.LastLoginAt, rec.LastLoginFrom = now, remote
	_, failed := s.st.failures[failureKey{FailAccount, rec.Name}]
	err := s.update(ctx, func(tx Tx) error {
		if extra != nil {
			if err := extra(tx); err != nil {
				return err
			}
		}
		if err := tx.UpdateAccount(rec); err != nil {
			return err
		}
		if failed {
			// The address keeps its count: one good account must not hide
			// guessing at others.
			if err := tx.DeleteFailure(FailAccount, rec.Name); err != nil {
				return err
			}
		}
		return tx.InsertSession(se.SessionRecord)
	}, func(st *state) {
		st.accounts[rec.Name] = newAccount(rec)
		delete(st.failures, failureKey{FailAccount, rec.Name})
		st.addSession(se)
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// logout ends the principal's session.
func (s *Service) logout(ctx context.Context, p *auth.Principal) error {
	if p.Via != auth.ViaSession {
		return badRequest("only a session can log out; revoke a token instead")
	}
	unlock := s.lockWrite(ctx)
	se := s.st.sessionIDs[p.Session]
	var err error
	if se != nil {
		err = s.update(ctx, func(tx Tx) error { return tx.DeleteSessions([]string{se.Hash}) },
			func(st *state) { st.removeSession(se) })
	}
	unlock()
	if err != nil {
		return err
	}
	s.record(ctx, ActorOf(p), "auth.logout", "account/"+p.Name, audit.Success, "")
	if se != nil {
		s.sessionsEnded("logout", []string{se.id})
	}
	return nil
}

// Me is what the console knows of who is signed in.
type Me struct {
	Name               string            `json:"name"`
	DisplayName        string            `json:"display_name,omitempty"`
	Role               auth.Role         `json:"role"`
	Permissions        []auth.Permission `json:"permissions"`
	Scope              auth.Scope        `json:"scope"`
	Via                auth.Via          `json:"via"`
	TOTPEnabled        bool              `json:"totp_enabled"`
	TOTPRequired       bool              `json:"totp_required"`
	MustChangePassword bool              `json:"must_change_password"`
	Restricted         string            `json:"restricted,omitempty"`
	PasswordExpiresAt  time.Time         `json:"password_expires_at,omitzero"`
	Session            *MeSession        `json:"session,omitempty"`
	CSRF               string            `json:"csrf,omitempty"`
}

// MeSession is the current login session.
type MeSession struct {
	ID           string    `json:"id"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	IdleTimeoutS int       `json:"idle_timeout_s"`
}

func (s *Service) me(p *auth.Principal) Me {
	m := Me{
		Name: p.Name, Role: p.Role, Permissions: p.Perms.List(), Scope: p.Scope, Via: p.Via,
		Restricted: p.Restricted, CSRF: p.CSRF, TOTPRequired: s.cfg.totpRequired(p.Role),
	}
	if p.Via != auth.ViaSession {
		return m
	}
	s.mu.RLock()
	a := s.st.accounts[p.Name]
	se := s.st.sessionIDs[p.Session]
	s.mu.RUnlock()
	if a != nil {
		m.DisplayName, m.TOTPEnabled, m.MustChangePassword = a.DisplayName, a.TOTPEnabled, a.MustChangePassword
		m.PasswordExpiresAt = s.passwordExpiresAt(a)
	}
	if se != nil {
		m.Session = &MeSession{ID: se.id, Created: se.CreatedAt, Expires: se.ExpiresAt, IdleTimeoutS: int(s.cfg.SessionIdle / time.Second)}
	}
	return m
}

// csrfOf derives a session's CSRF token from its cookie value, so it need
// not be stored and cannot be computed from what the store holds.
func csrfOf(token string) string {
	sum := sha256.Sum256([]byte("citywatch csrf\x00" + token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randSecret is prefix and 256 random bits in base64url: 43 characters.
func randSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// randID is a non-secret identifier: prefix and 48 random bits in hex.
func randID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
