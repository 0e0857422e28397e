package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/param"
)

// maxBody bounds every request body.
const maxBody = 16 << 10

// Routes are the identity API's endpoints, each with its permission.
func (s *Service) Routes() []auth.Route {
	route := func(method, path string, perm auth.Permission, fn apiFunc) auth.Route {
		return auth.Route{Method: method, Path: path, Perm: perm, Handler: s.api(fn)}
	}
	const get, post, patch, del = http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
	return []auth.Route{
		{Method: post, Path: "/api/auth/login", Perm: auth.Public, Handler: http.HandlerFunc(s.handleLogin)},
		route(post, "/api/auth/logout", auth.Self, s.handleLogout),
		route(post, "/api/auth/logout-all", auth.Self, s.handleLogoutAll),
		route(get, "/api/auth/me", auth.Self, s.handleMe),
		route(post, "/api/auth/password", auth.Self, s.handlePassword),
		route(post, "/api/auth/totp/setup", auth.Self, s.handleTOTPSetup),
		route(post, "/api/auth/totp/confirm", auth.Self, s.handleTOTPConfirm),
		route(post, "/api/auth/recovery-codes", auth.Self, s.handleRecoveryCodes),

		route(get, "/api/accounts", auth.AccountManage, s.handleAccounts),
		route(post, "/api/accounts", auth.AccountManage, s.handleAddAccount),
		route(get, "/api/accounts/{name}", auth.AccountManage, s.handleAccount),
		route(patch, "/api/accounts/{name}", auth.AccountManage, s.handleUpdateAccount),
		route(post, "/api/accounts/{name}/password", auth.AccountManage, s.handleResetPassword),
		route(post, "/api/accounts/{name}/unlock", auth.AccountManage, s.handleUnlock),
		route(post, "/api/accounts/{name}/reset-totp", auth.AccountManage, s.handleResetTOTP),
		route(post, "/api/accounts/{name}/logout", auth.AccountManage, s.handleLogoutAccount),
		route(get, "/api/lockouts", auth.AccountManage, s.handleLockouts),
		route(del, "/api/lockouts/addresses/{addr}", auth.AccountManage, s.handleUnlockAddress),

		route(get, "/api/tokens", auth.TokenManage, s.handleTokens),
		route(post, "/api/tokens", auth.TokenManage, s.handleAddToken),
		route(del, "/api/tokens/{id}", auth.TokenManage, s.handleRevokeToken),

		route(post, "/api/cameras/{id}/link", auth.LiveLink, s.handleLink),

		route(get, "/api/agent-credentials", auth.AgentManage, s.handleAgents),
		route(post, "/api/agent-credentials", auth.AgentManage, s.handleEnrollAgent),
		route(del, "/api/agent-credentials/{agent}", auth.AgentManage, s.handleRevokeAgent),
	}
}

// apiFunc handles a request for the principal the gate admitted and
// returns the status and the body to answer with, or an error.
type apiFunc func(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error)

// api serves fn. No identity endpoint takes query parameters: any is
// refused, so a typo never goes unnoticed.
func (s *Service) api(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := param.None(r.URL.RawQuery); err != nil {
			s.writeErr(w, &Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: err.Error()})
			return
		}
		status, body, err := fn(w, r, auth.From(r.Context()))
		if err != nil {
			s.writeErr(w, err)
			return
		}
		writeJSON(w, status, body)
	})
}

// writeErr answers with a refusal's status and code, or 500 for an
// internal error, which is logged and not shown.
func (s *Service) writeErr(w http.ResponseWriter, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
		s.m.refused.With(e.Code).Inc()
		if e.Problems != nil {
			writeJSON(w, e.Status, struct {
				auth.ErrorBody
				Problems []string `json:"problems"`
			}{auth.ErrorBody{Error: e.Msg, Code: e.Code}, e.Problems})
			return
		}
		auth.WriteError(w, e.Status, e.Code, e.Msg)
	case errors.Is(err, context.Canceled):
		// The client has gone; there is no one to answer.
		s.m.refused.With("canceled").Inc()
	default:
		s.fail("request", err)
		auth.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil { // our own types, which always encode
		auth.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // the client went away
}

// readBody decodes a request's JSON body into v: at most maxBody bytes,
// one object, no unknown fields.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return refusal(http.StatusRequestEntityTooLarge, "too_large", "the body is larger than %d KiB", maxBody>>10)
		}
		return badRequest("reading the body: %v", err)
	}
	return decodeJSON(data, v)
}

func decodeJSON(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return badRequest("the body must be one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %s", clip(err.Error()))
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body must be one JSON object, nothing after it")
	}
	return nil
}

// accountActor is the actor of a request that must come from a session:
// passwords and second factors belong to accounts, not tokens.
func accountActor(p *auth.Principal) (Actor, error) {
	if p.Via != auth.ViaSession {
		return Actor{}, forbidden("only a person's session can do this, not a token")
	}
	return ActorOf(p), nil
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	remote := auth.RemoteHost(r)
	if ok, wait := s.limiter.allow(remote, s.now()); !ok {
		s.m.logins.With("rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		s.writeErr(w, refusal(http.StatusTooManyRequests, "rate_limited", "too many login attempts from your address; wait a moment"))
		return
	}
	var req loginRequest
	if err := s.readBody(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	token, err := s.login(r.Context(), req, remote, r.UserAgent())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	p, err := s.sessionPrincipal(r.Context(), token)
	if err != nil { // ended in the same instant by an administrator
		s.writeErr(w, refusal(http.StatusUnauthorized, "invalid_credentials", "%v", err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.cookieName(), Value: token, Path: "/", HttpOnly: true, Secure: s.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusOK, struct {
		Account Me     `json:"account"`
		CSRF    string `json:"csrf"`
	}{s.me(p), p.CSRF})
}

func (s *Service) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.cookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	if err := s.logout(r.Context(), p); err != nil {
		return 0, nil, err
	}
	s.clearCookie(w)
	return http.StatusNoContent, nil, nil
}

func (s *Service) handleLogoutAll(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	actor, err := accountActor(p)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.LogoutAccount(r.Context(), actor, p.Name); err != nil {
		return 0, nil, err
	}
	s.clearCookie(w)
	return http.StatusNoContent, nil, nil
}

func (s *Service) handleMe(_ http.ResponseWriter, _ *http.Request, p *auth.Principal) (int, any, error) {
	return http.StatusOK, s.me(p), nil
}

func (s *Service) handlePassword(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var req struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := s.readBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	actor, err := accountActor(p)
	if err != nil {
		return 0, nil, err
	}
	if err := s.changePassword(r.Context(), actor, req.Current, req.New, p.Session); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Service) handleTOTPSetup(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	actor, err := accountActor(p)
	if err != nil {
		return 0, nil, err
	}
	setup, err := s.totpSetup(r.Context(), actor)
	return http.StatusOK, setup, err
}

type codeRequest struct {
	Code string `json:"code"`
}

type recoveryCodes struct {
	Codes []string `json:"recovery_codes"`
}

func (s *Service) handleTOTPConfirm(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	return s.withCode(w, r, p, s.totpConfirm)
}

func (s *Service) handleRecoveryCodes(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	return s.withCode(w, r, p, s.renewRecoveryCodes)
}

// withCode reads a TOTP code from the body and answers with the recovery
// codes do makes with it.
func (s *Service) withCode(w http.ResponseWriter, r *http.Request, p *auth.Principal,
	do func(ctx context.Context, actor Actor, code string) ([]string, error)) (int, any, error) {
	var req codeRequest
	if err := s.readBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	actor, err := accountActor(p)
	if err != nil {
		return 0, nil, err
	}
	codes, err := do(r.Context(), actor, req.Code)
	return http.StatusOK, recoveryCodes{codes}, err
}

func (s *Service) handleAccounts(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) (int, any, error) {
	list, err := s.Accounts(r.Context())
	return http.StatusOK, struct {
		Accounts []Account `json:"accounts"`
	}{list}, err
}

// withPassword is an account with the password made for it, shown once.
type withPassword struct {
	Account  Account `json:"account"`
	Password string  `json:"password,omitempty"`
}

func (s *Service) handleAddAccount(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var spec AccountSpec
	if err := s.readBody(w, r, &spec); err != nil {
		return 0, nil, err
	}
	a, pw, err := s.AddAccount(r.Context(), ActorOf(p), spec)
	return http.StatusCreated, withPassword{a, pw}, err
}

func (s *Service) handleAccount(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) (int, any, error) {
	a, err := s.Account(r.Context(), r.PathValue("name"))
	return http.StatusOK, a, err
}

func (s *Service) handleUpdateAccount(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var patch AccountPatch
	if err := s.readBody(w, r, &patch); err != nil {
		return 0, nil, err
	}
	a, err := s.UpdateAccount(r.Context(), ActorOf(p), r.PathValue("name"), patch)
	return http.StatusOK, a, err
}

func (s *Service) handleResetPassword(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var req struct {
		Password string `json:"password"`
	}
	if err := s.readOptionalBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	a, pw, err := s.SetPassword(r.Context(), ActorOf(p), r.PathValue("name"), req.Password)
	return http.StatusOK, withPassword{a, pw}, err
}

// readOptionalBody is readBody for a request whose body may be empty.
func (s *Service) readOptionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return s.readBody(w, r, v)
}

func (s *Service) handleUnlock(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	a, err := s.Unlock(r.Context(), ActorOf(p), r.PathValue("name"))
	return http.StatusOK, a, err
}

func (s *Service) handleResetTOTP(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	a, err := s.ResetTOTP(r.Context(), ActorOf(p), r.PathValue("name"))
	return http.StatusOK, a, err
}

func (s *Service) handleLogoutAccount(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	a, err := s.LogoutAccount(r.Context(), ActorOf(p), r.PathValue("name"))
	return http.StatusOK, a, err
}

func (s *Service) handleLockouts(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) (int, any, error) {
	list, err := s.Lockouts(r.Context())
	if list == nil {
		list = []Lockout{} // an empty list, not null, as every other list
	}
	return http.StatusOK, struct {
		Lockouts []Lockout `json:"lockouts"`
	}{list}, err
}

func (s *Service) handleUnlockAddress(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	return http.StatusNoContent, nil, s.UnlockAddress(r.Context(), ActorOf(p), r.PathValue("addr"))
}

func (s *Service) handleTokens(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) (int, any, error) {
	list, err := s.Tokens(r.Context())
	return http.StatusOK, struct {
		Tokens []Token `json:"tokens"`
	}{list}, err
}

func (s *Service) handleAddToken(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var req struct {
		TokenSpec
		// TTL is an alternative to ExpiresAt: "720h", or days as "90d".
		TTL string `json:"ttl"`
	}
	if err := s.readBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	if req.TTL != "" {
		ttl, err := parseTTL(req.TTL)
		if err != nil || !req.ExpiresAt.IsZero() {
			return 0, nil, badRequest("give expires_at or a ttl such as \"720h\" or \"90d\", not both")
		}
		req.ExpiresAt = s.now().Add(ttl)
	}
	t, secret, err := s.AddToken(r.Context(), ActorOf(p), req.TokenSpec)
	return http.StatusCreated, struct {
		Token  Token  `json:"token"`
		Secret string `json:"secret"`
	}{t, secret}, err
}

// parseTTL reads a Go duration or a whole number of days ("90d").
func parseTTL(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 100_000 {
			return 0, errors.New("bad days")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = errors.New("not positive")
	}
	return d, err
}

func (s *Service) handleRevokeToken(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	t, err := s.RevokeToken(r.Context(), ActorOf(p), r.PathValue("id"))
	return http.StatusOK, t, err
}

func (s *Service) handleLink(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var req struct {
		TTL string `json:"ttl"`
	}
	if err := s.readOptionalBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return 0, nil, badRequest("ttl %q: want a duration such as \"10m\"", clip(req.TTL))
		}
	}
	l, err := s.CreateLink(r.Context(), p, r.PathValue("id"), ttl)
	return http.StatusCreated, l, err
}

func (s *Service) handleAgents(_ http.ResponseWriter, r *http.Request, _ *auth.Principal) (int, any, error) {
	list, err := s.AgentCredentials(r.Context())
	return http.StatusOK, struct {
		Agents []AgentCredential `json:"agents"`
	}{list}, err
}

func (s *Service) handleEnrollAgent(w http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	var req struct {
		Agent string `json:"agent"`
	}
	if err := s.readBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	secret, err := s.EnrollAgent(r.Context(), ActorOf(p), req.Agent)
	if err != nil {
		return 0, nil, err
	}
	a, _ := s.agentCredential(req.Agent)
	return http.StatusCreated, struct {
		Agent  AgentCredential `json:"agent"`
		Secret string          `json:"secret"`
	}{a, secret}, nil
}

func (s *Service) handleRevokeAgent(_ http.ResponseWriter, r *http.Request, p *auth.Principal) (int, any, error) {
	id := r.PathValue("agent")
	if err := s.RevokeAgent(r.Context(), ActorOf(p), id); err != nil {
		return 0, nil, err
	}
	a, _ := s.agentCredential(id)
	return http.StatusOK, a, nil
}
