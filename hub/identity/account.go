package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

// Account is a person's account as the console shows it, without secrets.
// Accounts are never deleted, since the audit trail names them: they are
// disabled.
type Account struct {
	Name               string            `json:"name"`
	DisplayName        string            `json:"display_name,omitempty"`
	Role               auth.Role         `json:"role"`
	Grants             []auth.Permission `json:"grants,omitempty"`
	Scope              auth.Scope        `json:"scope"`
	Disabled           bool              `json:"disabled"`
	MustChangePassword bool              `json:"must_change_password"`
	TOTPEnabled        bool              `json:"totp_enabled"`
	PasswordChangedAt  time.Time         `json:"password_changed_at,omitzero"`
	CreatedAt          time.Time         `json:"created_at,omitzero"`
	CreatedBy          string            `json:"created_by,omitempty"`
	LastLoginAt        time.Time         `json:"last_login_at,omitzero"`
	LastLoginFrom      string            `json:"last_login_from,omitempty"`
	// LockedUntil is when a lockout of the name ends, if one is in force.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	Sessions    int       `json:"sessions"` // open now
}

// AccountSpec is a new account.
type AccountSpec struct {
	Name        string            `json:"name"`
	DisplayName string            `json:"display_name"`
	Role        auth.Role         `json:"role"`
	Grants      []auth.Permission `json:"grants"`
	Scope       auth.Scope        `json:"scope"`
	// Password is the initial password; empty makes one, returned once.
	// Either way it must be changed at the first login, unless OwnPassword.
	Password string `json:"password"`
	// OwnPassword says Password was chosen by the account's own holder
	// (the first administrator at the hub's command line, the demo), so no
	// change is forced. The HTTP API never sets it: a password a security
	// administrator typed is known to two people.
	OwnPassword bool `json:"-"`
}

// AccountPatch changes an account; nil fields stay as they are.
type AccountPatch struct {
	DisplayName *string            `json:"display_name"`
	Role        *auth.Role         `json:"role"`
	Grants      *[]auth.Permission `json:"grants"`
	Scope       *auth.Scope        `json:"scope"`
	Disabled    *bool              `json:"disabled"`
}

// reservedNames are what the audit trail and the broker use for things
// that are not people.
var reservedNames = []string{"system", "anonymous", "hub", "root"}

// checkName checks an account or token name: 2–32 characters of lower-case
// ASCII letters, digits and . _ - starting with a letter or digit. Nothing
// else, so no name can look like another or hide characters.
func checkName(kind, name string) *Error {
	if len(name) < 2 || len(name) > 32 {
		return badRequest("%s name %q: want 2 to 32 characters", kind, clip(name))
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return badRequest("%s name %q: only lower-case letters a-z, digits and . _ - (not first) are allowed", kind, clip(name))
		}
	}
	return nil
}

func checkAccountName(name string) *Error {
	if err := checkName("account", name); err != nil {
		return err
	}
	if slices.Contains(reservedNames, name) || strings.HasPrefix(name, "token") || strings.HasPrefix(name, "agent") {
		return badRequest("account name %q is reserved", name)
	}
	return nil
}

// checkDisplayName refuses control and format characters (bidirectional
// overrides, zero-width characters), which could make one name pass for
// another on screen.
func checkDisplayName(s string) *Error {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 64 {
		return badRequest("display name: want at most 64 characters of UTF-8 text")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return badRequest("display name: control and invisible characters are not allowed")
		}
	}
	return nil
}

// checkAccess validates a role with its grants and scope and returns them
// normalised. The security admin and the auditor see everything and hold
// no grants, so their duties stay apart from operations; other roles need
// a scope.
func checkAccess(role auth.Role, grants []auth.Permission, scope auth.Scope) ([]auth.Permission, auth.Scope, *Error) {
	if _, err := auth.ParseRole(string(role)); err != nil {
		return nil, scope, badRequest("%v", err)
	}
	if err := auth.CheckGrants(grants); err != nil {
		return nil, scope, badRequest("%v", err)
	}
	grants = auth.NewSet("", grants).List()
	if role == auth.SecurityAdmin || role == auth.Auditor {
		if len(grants) > 0 {
			return nil, scope, badRequest("the %s role takes no grants", role)
		}
		return nil, auth.Everything, nil
	}
	scope = scope.Normal()
	if err := scope.Check(); err != nil {
		return nil, scope, badRequest("%v", err)
	}
	if !scope.All && len(scope.Districts) == 0 && len(scope.Sites) == 0 {
		return nil, scope, badRequest("the %s role needs a scope: all, or districts and sites", role)
	}
	return grants, scope, nil
}

// view is the account as shown, with its lockout and sessions now. The
// caller holds mu or writeMu.
func (s *Service) view(st *state, a *account, now time.Time) Account {
	v := a.Account
	v.Grants = slices.Clone(v.Grants)
	if f, ok := st.failures[failureKey{FailAccount, a.Name}]; ok && now.Before(f.LockedUntil) {
		v.LockedUntil = f.LockedUntil
	}
	v.Sessions = len(st.sessionsOf(a.Name))
	return v
}

// Accounts lists every account by name.
func (s *Service) Accounts(ctx context.Context) ([]Account, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Account, 0, len(s.st.accounts))
	for _, a := range s.st.accounts {
		out = append(out, s.view(s.st, a, now))
	}
	slices.SortFunc(out, func(a, b Account) int { return strings.Compare(a.Name, b.Name) })
	return out, ctx.Err()
}

// Account returns one account.
func (s *Service) Account(ctx context.Context, name string) (Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.st.accounts[name]
	if a == nil {
		return Account{}, notFound("no account %q", clip(name))
	}
	return s.view(s.st, a, s.now()), ctx.Err()
}

// AddAccount creates an account that must change its password at the first
// login. Without a password in spec one is generated and returned: the
// only time it is shown.
func (s *Service) AddAccount(ctx context.Context, actor Actor, spec AccountSpec) (Account, string, error) {
	acct, pw, err := s.addAccount(ctx, actor, spec)
	s.outcome(ctx, actor, "account.create", "account/"+clip(spec.Name), err,
		fmt.Sprintf("role %s, scope %s", clip(string(spec.Role)), acct.Scope))
	return acct, pw, err
}

func (s *Service) addAccount(ctx context.Context, actor Actor, spec AccountSpec) (Account, string, error) {
	var bad []string
	note := func(e *Error) {
		if e != nil {
			bad = append(bad, e.Msg)
		}
	}
	note(checkAccountName(spec.Name))
	note(checkDisplayName(spec.DisplayName))
	grants, scope, e := checkAccess(spec.Role, spec.Grants, spec.Scope)
	note(e)
	if len(bad) > 0 {
		return Account{}, "", badRequest("%s", strings.Join(bad, "; "))
	}
	pw, generated := spec.Password, ""
	if pw == "" {
		pw = s.cfg.Password.generate(spec.Name)
		generated = pw
	} else if problems := s.cfg.Password.check(spec.Name, pw); problems != nil {
		return Account{}, "", policyError(problems)
	}
	var hash string
	if err := s.hashWork(ctx, func() { hash = hashPassword(s.cfg.Argon2, pw) }); err != nil {
		return Account{}, "", err
	}
	now := s.now()
	rec := AccountRecord{
		Account: Account{
			Name: spec.Name, DisplayName: spec.DisplayName, Role: spec.Role, Grants: grants, Scope: scope,
			MustChangePassword: !(spec.OwnPassword && spec.Password != ""), PasswordChangedAt: now, CreatedAt: now, CreatedBy: actor.Name,
		},
		PasswordHash: hash,
	}
	unlock := s.lockWrite(ctx)
	defer unlock()
	err := s.update(ctx, func(tx Tx) error {
		if err := tx.InsertAccount(rec); err != nil {
			return err
		}
		return tx.AddPasswordHistory(rec.Name, hash, now, s.cfg.Password.History)
	}, func(st *state) { st.accounts[rec.Name] = newAccount(rec) })
	if errors.Is(err, ErrExists) {
		return Account{}, "", conflict("account %q exists", spec.Name)
	}
	if err != nil {
		return Account{}, "", err
	}
	return s.view(s.st, s.st.accounts[rec.Name], now), generated, nil
}

// UpdateAccount changes an account's display name, role, grants, scope or
// state. A change of role or scope holds from the account's next request;
// disabling ends its sessions at once. Nobody may change their own role,
// grants or scope, nor disable themselves.
func (s *Service) UpdateAccount(ctx context.Context, actor Actor, name string, patch AccountPatch) (Account, error) {
	unlock := s.lockWrite(ctx)
	cur := s.st.accounts[name]
	if cur == nil {
		unlock()
		err := notFound("no account %q", clip(name))
		s.outcome(ctx, actor, "account.update", "account/"+clip(name), err, "")
		return Account{}, err
	}
	next := cur.AccountRecord
	next.Grants = slices.Clone(next.Grants)
	var changes []string
	if d := patch.DisplayName; d != nil && *d != next.DisplayName {
		changes = append(changes, fmt.Sprintf("display name %q → %q", next.DisplayName, *d))
		next.DisplayName = *d
	}
	if r := patch.Role; r != nil && *r != next.Role {
		changes = append(changes, fmt.Sprintf("role %s → %s", next.Role, clip(string(*r))))
		next.Role = *r
		if patch.Grants == nil && (next.Role == auth.SecurityAdmin || next.Role == auth.Auditor) {
			next.Grants = nil // their roles take no grants
		}
	}
	if g := patch.Grants; g != nil && !slices.Equal(auth.NewSet("", *g).List(), next.Grants) {
		changes = append(changes, fmt.Sprintf("grants %s → %s", encodeGrants(next.Grants), clip(encodeGrants(*g))))
		next.Grants = *g
	}
	if sc := patch.Scope; sc != nil && sc.Normal().String() != next.Scope.String() {
		changes = append(changes, fmt.Sprintf("scope %s → %s", next.Scope, clip(sc.Normal().String())))
		next.Scope = *sc
	}
	disable := patch.Disabled != nil && *patch.Disabled != next.Disabled
	var err error
	switch {
	case actor.Name == name && (disable || next.Role != cur.Role || next.Scope.String() != cur.Scope.String() || !slices.Equal(next.Grants, cur.Grants)):
		err = forbidden("you may not change your own role, grants or scope, nor disable yourself; ask another security admin")
	case patch.DisplayName != nil:
		if e := checkDisplayName(next.DisplayName); e != nil {
			err = e
		}
	}
	if err == nil {
		var e *Error
		if next.Grants, next.Scope, e = checkAccess(next.Role, next.Grants, next.Scope); e != nil {
			err = e
		}
	}
	if err != nil {
		unlock()
		s.outcome(ctx, actor, "account.update", "account/"+name, err, strings.Join(changes, "; "))
		return Account{}, err
	}
	if disable {
		next.Disabled = *patch.Disabled
	}
	var ended []*session
	if next.Disabled {
		ended = s.st.sessionsOf(name)
	}
	if len(changes) > 0 || disable {
		err = s.update(ctx, func(tx Tx) error {
			if err := tx.UpdateAccount(next); err != nil {
				return err
			}
			return tx.DeleteSessions(hashesOf(ended))
		}, func(st *state) {
			st.accounts[name] = newAccount(next)
			for _, se := range ended {
				st.removeSession(se)
			}
		})
	}
	var v Account
	if err == nil {
		v = s.view(s.st, s.st.accounts[name], s.now())
	}
	unlock()
	if err != nil {
		s.outcome(ctx, actor, "account.update", "account/"+name, err, strings.Join(changes, "; "))
		return Account{}, err
	}
	if len(changes) > 0 {
		s.record(ctx, actor, "account.update", "account/"+name, audit.Success, strings.Join(changes, "; "))
	}
	if disable && next.Disabled {
		s.record(ctx, actor, "account.disable", "account/"+name, audit.Success, fmt.Sprintf("%d sessions ended", len(ended)))
		s.sessionsEnded("disabled", idsOf(ended))
	} else if disable {
		s.record(ctx, actor, "account.enable", "account/"+name, audit.Success, "")
	}
	return v, nil
}

// SetPassword resets an account's password (an administrator's act, not
// one's own change): the account must change it at its next login and its
// sessions end. An empty password makes one, returned once.
func (s *Service) SetPassword(ctx context.Context, actor Actor, name, password string) (Account, string, error) {
	v, generated, ended, err := s.setPassword(ctx, actor, name, password)
	s.outcome(ctx, actor, "account.password_reset", "account/"+clip(name), err, fmt.Sprintf("%d sessions ended", len(ended)))
	s.sessionsEnded("password", ended)
	return v, generated, err
}

func (s *Service) setPassword(ctx context.Context, actor Actor, name, password string) (Account, string, []string, error) {
	if actor.Name == name {
		return Account{}, "", nil, forbidden("change your own password with your current one (POST /api/auth/password)")
	}
	s.mu.RLock()
	exists := s.st.accounts[name] != nil
	s.mu.RUnlock()
	if !exists {
		return Account{}, "", nil, notFound("no account %q", clip(name))
	}
	generated := ""
	if password == "" {
		password = s.cfg.Password.generate(name)
		generated = password
	} else if problems := s.cfg.Password.check(name, password); problems != nil {
		return Account{}, "", nil, policyError(problems)
	}
	var hash string
	if err := s.hashWork(ctx, func() { hash = hashPassword(s.cfg.Argon2, password) }); err != nil {
		return Account{}, "", nil, err
	}
	now := s.now()
	unlock := s.lockWrite(ctx)
	defer unlock()
	cur := s.st.accounts[name]
	next := cur.AccountRecord
	next.PasswordHash, next.PasswordChangedAt, next.MustChangePassword = hash, now, true
	ended := s.st.sessionsOf(name)
	err := s.storePassword(ctx, next, ended)
	if err != nil {
		return Account{}, "", nil, err
	}
	return s.view(s.st, s.st.accounts[name], now), generated, idsOf(ended), nil
}

// changePassword is an account changing its own password: the current one
// must be right (a wrong one counts towards lockout), the new one must
// meet the policy and not be one of the last few. The account's other
// sessions end; keep stays.
func (s *Service) changePassword(ctx context.Context, actor Actor, current, next, keep string) error {
	ended, err := s.changeOwnPassword(ctx, actor, current, next, keep)
	s.outcome(ctx, actor, "auth.password_change", "account/"+clip(actor.Name), err, fmt.Sprintf("%d other sessions ended", len(ended)))
	s.sessionsEnded("password", ended)
	return err
}

func (s *Service) changeOwnPassword(ctx context.Context, actor Actor, current, next, keep string) ([]string, error) {
	name := actor.Name
	s.mu.RLock()
	a := s.st.accounts[name]
	s.mu.RUnlock()
	if a == nil {
		return nil, forbidden("only accounts have passwords")
	}
	now := s.now()
	if err := s.lockedOut(name, actor.Remote, now); err != nil {
		return nil, err
	}
	var ok bool
	if err := s.hashWork(ctx, func() { ok, _ = verifyPassword(a.PasswordHash, current) }); err != nil {
		return nil, err
	}
	if !ok {
		s.loginFailed(ctx, name, actor.Remote)
		return nil, refusal(http.StatusForbidden, "wrong_password", "the current password is wrong")
	}
	problems := s.cfg.Password.check(name, next)
	if s.cfg.Password.History > 0 {
		var history []string
		unlock := s.lockWrite(ctx)
		err := s.update(ctx, func(tx Tx) (err error) { history, err = tx.PasswordHistory(name); return err }, nil)
		unlock()
		if err != nil {
			return nil, err
		}
		reused := false
		for _, h := range history[:min(len(history), s.cfg.Password.History)] {
			var same bool
			if err := s.hashWork(ctx, func() { same, _ = verifyPassword(h, next) }); err != nil {
				return nil, err
			}
			reused = reused || same
		}
		if reused {
			problems = append(problems, s.cfg.Password.historyProblem())
		}
	}
	if problems != nil {
		return nil, policyError(problems)
	}
	var hash string
	if err := s.hashWork(ctx, func() { hash = hashPassword(s.cfg.Argon2, next) }); err != nil {
		return nil, err
	}
	unlock := s.lockWrite(ctx)
	cur := s.st.accounts[name]
	switch {
	case cur.Disabled:
		unlock()
		return nil, forbidden("this account is disabled")
	case cur.PasswordHash != a.PasswordHash:
		unlock()
		return nil, conflict("the password was changed meanwhile; try again")
	}
	rec := cur.AccountRecord
	rec.PasswordHash, rec.PasswordChangedAt, rec.MustChangePassword = hash, now, false
	var ended []*session
	for _, se := range s.st.sessionsOf(name) {
		if se.id != keep {
			ended = append(ended, se)
		}
	}
	err := s.storePassword(ctx, rec, ended)
	unlock()
	if err != nil {
		return nil, err
	}
	return idsOf(ended), nil
}

// LogoutAccount ends every session of an account.
func (s *Service) LogoutAccount(ctx context.Context, actor Actor, name string) (Account, error) {
	unlock := s.lockWrite(ctx)
	a := s.st.accounts[name]
	if a == nil {
		unlock()
		return Account{}, notFound("no account %q", clip(name))
	}
	ended := s.st.sessionsOf(name)
	err := s.update(ctx, func(tx Tx) error { return tx.DeleteSessions(hashesOf(ended)) }, func(st *state) {
		for _, se := range ended {
			st.removeSession(se)
		}
	})
	v := s.view(s.st, a, s.now())
	unlock()
	s.outcome(ctx, actor, "auth.logout_all", "account/"+name, err, fmt.Sprintf("%d sessions ended", len(ended)))
	if err != nil {
		return Account{}, err
	}
	s.sessionsEnded("logout_all", idsOf(ended))
	return v, nil
}

// modifyAccount changes an existing account under writeMu: change edits
// the record (or refuses), also writes more in the same transaction. It
// returns the account after.
func (s *Service) modifyAccount(ctx context.Context, name string, change func(*AccountRecord) error, also func(Tx) error) (Account, error) {
	unlock := s.lockWrite(ctx)
	defer unlock()
	cur := s.st.accounts[name]
	if cur == nil {
		return Account{}, notFound("no account %q", clip(name))
	}
	rec := cur.AccountRecord
	if err := change(&rec); err != nil {
		return Account{}, err
	}
	err := s.update(ctx, func(tx Tx) error {
		if err := tx.UpdateAccount(rec); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	}, func(st *state) { st.accounts[name] = newAccount(rec) })
	if err != nil {
		return Account{}, err
	}
	return s.view(s.st, s.st.accounts[name], s.now()), nil
}

// outcome records an act that may have failed: a refusal by policy as
// denied, another refusal as failed, with its message; an internal error
// as failed.
func (s *Service) outcome(ctx context.Context, actor Actor, action, object string, err error, detail string) {
	var e *Error
	switch {
	case err == nil:
		s.record(ctx, actor, action, object, audit.Success, detail)
	case errors.As(err, &e) && (e.Code == "forbidden" || e.Code == "locked"):
		s.record(ctx, actor, action, object, audit.Denied, e.Msg)
	case errors.As(err, &e):
		s.record(ctx, actor, action, object, audit.Failure, e.Msg)
	default:
		s.record(ctx, actor, action, object, audit.Failure, "internal error")
	}
}

func hashesOf(ss []*session) []string {
	out := make([]string, len(ss))
	for i, se := range ss {
		out[i] = se.Hash
	}
	return out
}

func idsOf(ss []*session) []string {
	out := make([]string, len(ss))
	for i, se := range ss {
		out[i] = se.id
	}
	return out
}

// storePassword writes an account whose password changed, adds the new
// hash to its history and ends the sessions given; s.mu is held for
// writing.
func (s *Service) storePassword(ctx context.Context, rec AccountRecord, ended []*session) error {
	return s.update(ctx, func(tx Tx) error {
		if err := tx.UpdateAccount(rec); err != nil {
			return err
		}
		if err := tx.AddPasswordHistory(rec.Name, rec.PasswordHash, rec.PasswordChangedAt, s.cfg.Password.History); err != nil {
			return err
		}
		return tx.DeleteSessions(hashesOf(ended))
	}, func(st *state) {
		st.accounts[rec.Name] = newAccount(rec)
		for _, se := range ended {
			st.removeSession(se)
		}
	})
}
