package identity

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
)

// loginRequest is the body of POST /api/auth/login.
type loginRequest struct {
	Username     string `json:"username"`
	Password     string `json:"password"`
	TOTP         string `json:"totp,omitempty"`
	RecoveryCode string `json:"recovery_code,omitempty"`
}

var (
	// errInvalidCredentials is the same for an unknown name and a wrong
	// password.
	errInvalidCredentials = refusal(http.StatusUnauthorized, "invalid_credentials", "wrong account name or password")
	errTOTPRequired       = refusal(http.StatusUnauthorized, "totp_required", "enter the code from your authenticator app, or a recovery code")
	errTOTPInvalid        = refusal(http.StatusUnauthorized, "totp_invalid", "the code is wrong, used already or out of time")
	errAccountDisabled    = refusal(http.StatusForbidden, "disabled", "this account is disabled")
	errBadTOTP            = errors.New("totp code not valid")
	errBadRecovery        = errors.New("recovery code not valid")
)

// loginName is the name a login is counted and recorded under: account
// names are lower case, so "Bob" and "bob" share one failure count.
func loginName(s string) string {
	return clipTo(strings.ToValidUTF8(strings.ToLower(strings.TrimSpace(s)), "?"), 64)
}

// login checks a login and opens a session, returning its cookie value.
// A locked name or address is refused before any hashing; the password is
// checked against a dummy hash when the account does not exist, so both
// take the same time; a disabled account says so only to whoever knows its
// password.
func (s *Service) login(ctx context.Context, req loginRequest, remote, userAgent string) (string, error) {
	name := loginName(req.Username)
	actor := Actor{Name: name, Remote: remote}
	object := "account/" + name
	fail := func(outcome, reason string, err error) (string, error) {
		s.m.logins.With(outcome).Inc()
		result := audit.Failure
		if err == errAccountDisabled || outcome == "locked" {
			result = audit.Denied
		}
		s.record(ctx, actor, "auth.login", object, result, reason)
		return "", err
	}
	now := s.now()
	if err := s.lockedOut(name, remote, now); err != nil {
		return fail("locked", "locked", err)
	}
	s.mu.RLock()
	a := s.st.accounts[name]
	s.mu.RUnlock()
	hash := s.dummyHash
	if a != nil {
		hash = a.PasswordHash
	}
	ok := false
	var locked *Error
	if len(req.Password) <= maxPasswordLen {
		err := s.hashWork(ctx, func() {
			// Again, now that it is this attempt's turn: a lockout may
			// have started while it queued behind a burst.
			if locked = s.lockedOut(name, remote, s.now()); locked == nil {
				ok, _ = verifyPassword(hash, req.Password)
			}
		})
		if err != nil {
			s.m.logins.With("error").Inc()
			return "", err // the client has gone
		}
	}
	if locked != nil {
		return fail("locked", "locked", locked)
	}
	if !ok || a == nil {
		outcome, reason := "bad_password", "bad password"
		if a == nil {
			outcome, reason = "unknown_account", "unknown account"
		}
		s.loginFailed(ctx, name, remote)
		return fail(outcome, reason, errInvalidCredentials)
	}
	token, rec, err := s.secondStep(ctx, a, req, remote, userAgent, now)
	switch {
	case errors.Is(err, errBadTOTP):
		s.loginFailed(ctx, name, remote)
		return fail("bad_totp", "bad totp", errTOTPInvalid)
	case errors.Is(err, errBadRecovery):
		s.loginFailed(ctx, name, remote)
		return fail("bad_totp", "bad recovery code", errTOTPInvalid)
	case errors.Is(err, errAccountDisabled):
		return fail("disabled", "disabled", errAccountDisabled)
	case errors.Is(err, errTOTPRequired):
		// Not a failure: the password was right and the code comes next.
		s.m.logins.With("totp_required").Inc()
		return "", err
	case errors.Is(err, errInvalidCredentials):
		return fail("bad_password", "password changed meanwhile", err)
	case err != nil:
		s.m.logins.With("error").Inc()
		return "", err
	}
	if req.TOTP == "" && req.RecoveryCode != "" && rec.TOTPSecret != "" {
		s.record(ctx, actor, "auth.recovery_code_used", object, audit.Success, "")
	}
	s.m.logins.With("success").Inc()
	actor.Role, actor.Session = string(rec.Role), sessionID(digest(token))
	s.record(ctx, actor, "auth.login", object, audit.Success, "")
	return token, nil
}

// secondStep finishes a login whose password was right for the account
// as it was: under writeMu, with the account as it is now (reset or
// disabled meanwhile, here or elsewhere), it checks the second factor and
// opens the session.
func (s *Service) secondStep(ctx context.Context, before *account, req loginRequest, remote, userAgent string, now time.Time) (string, AccountRecord, error) {
	unlock := s.lockWrite(ctx)
	defer unlock()
	rec := s.st.accounts[before.Name].AccountRecord
	var extra func(Tx) error
	switch {
	case rec.PasswordHash != before.PasswordHash:
		return "", rec, errInvalidCredentials
	case rec.Disabled:
		return "", rec, errAccountDisabled
	case rec.TOTPSecret == "":
	case req.TOTP != "":
		step, ok := matchTOTP(rec.TOTPSecret, req.TOTP, now, rec.TOTPLastStep)
		if !ok {
			return "", rec, errBadTOTP
		}
		rec.TOTPLastStep = step
	case req.RecoveryCode != "":
		code := recoveryHash(rec.Name, req.RecoveryCode)
		extra = func(tx Tx) error {
			ok, err := tx.UseRecoveryCode(rec.Name, code, now)
			if err == nil && !ok {
				err = errBadRecovery
			}
			return err
		}
	default:
		return "", rec, errTOTPRequired
	}
	token, err := s.startSession(ctx, rec, remote, userAgent, now, extra)
	return token, rec, err
}
