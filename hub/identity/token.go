package identity

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
)

// Token is an API token for another system, without its secret. It acts
// as "token:NAME" with its own role and scope.
type Token struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Role       auth.Role         `json:"role"`
	Grants     []auth.Permission `json:"grants,omitempty"`
	Scope      auth.Scope        `json:"scope"`
	CreatedBy  string            `json:"created_by"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	LastUsedAt time.Time         `json:"last_used_at,omitzero"`
	RevokedAt  time.Time         `json:"revoked_at,omitzero"`
	RevokedBy  string            `json:"revoked_by,omitempty"`
}

// TokenSpec is a new token. ExpiresAt is required.
type TokenSpec struct {
	Name      string            `json:"name"`
	Role      auth.Role         `json:"role"`
	Grants    []auth.Permission `json:"grants"`
	Scope     auth.Scope        `json:"scope"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// Secret prefixes say what a secret is when one turns up in a log or a
// repository, so scanners can find it.
const (
	tokenPrefix = "cwt_"
	linkPrefix  = "cwv_"
	agentPrefix = "cwa_"
)

// minRegisteredSecret bounds a secret given to RegisterToken from below.
const minRegisteredSecret = 16

// AddToken makes an API token and returns its secret: the only time it is
// shown.
func (s *Service) AddToken(ctx context.Context, actor Actor, spec TokenSpec) (Token, string, error) {
	secret := randSecret(tokenPrefix)
	t, err := s.addToken(ctx, actor, spec, secret)
	if err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
}

// RegisterToken makes an API token with a given secret of at least 16
// characters (the demo's CITYWATCH_DEMO_TOKEN). Registering the same name
// and secret again returns the token as it is, so a restarted demo can
// register its token each time.
func (s *Service) RegisterToken(ctx context.Context, actor Actor, spec TokenSpec, secret string) (Token, error) {
	if len(secret) < minRegisteredSecret || len(secret) > maxPasswordLen {
		err := badRequest("a token secret needs %d to %d characters", minRegisteredSecret, maxPasswordLen)
		s.outcome(ctx, actor, "token.create", "token/"+clip(spec.Name), err, "")
		return Token{}, err
	}
	k := digest(secret)
	s.mu.RLock()
	t := s.st.tokens[k]
	s.mu.RUnlock()
	if t != nil && t.Name == spec.Name && t.RevokedAt.IsZero() {
		return t.view(), nil
	}
	return s.addToken(ctx, actor, spec, secret)
}

func (s *Service) addToken(ctx context.Context, actor Actor, spec TokenSpec, secret string) (Token, error) {
	now := s.now()
	rec, err := s.checkToken(spec, now)
	if err == nil {
		k := digest(secret)
		rec.ID, rec.Hash, rec.CreatedBy, rec.CreatedAt = randID("tk-"), hex.EncodeToString(k[:]), actor.Name, now
		unlock := s.lockWrite(ctx)
		err = s.update(ctx, func(tx Tx) error { return tx.InsertToken(rec) }, func(st *state) { st.addToken(k, newToken(rec)) })
		unlock()
		if errors.Is(err, ErrExists) {
			err = conflict("a token named %q exists, or the secret is in use", spec.Name)
		}
	}
	s.outcome(ctx, actor, "token.create", "token/"+clip(spec.Name), err,
		fmt.Sprintf("role %s, scope %s, expires %s", clip(string(spec.Role)), rec.Scope, spec.ExpiresAt.Format(time.RFC3339)))
	if err != nil {
		return Token{}, err
	}
	return rec.Token, nil
}

// checkToken validates a spec. A token cannot be a security admin:
// administering people, tokens and agents takes a person with a second
// factor, never a stored secret.
func (s *Service) checkToken(spec TokenSpec, now time.Time) (TokenRecord, error) {
	var bad []string
	if e := checkName("token", spec.Name); e != nil {
		bad = append(bad, e.Msg)
	}
	if spec.Role == auth.SecurityAdmin {
		bad = append(bad, "a token cannot have the security_admin role")
	}
	grants, scope, e := checkAccess(spec.Role, spec.Grants, spec.Scope)
	if e != nil {
		bad = append(bad, e.Msg)
	}
	switch {
	case spec.ExpiresAt.IsZero():
		bad = append(bad, "a token needs an expiry")
	case !spec.ExpiresAt.After(now):
		bad = append(bad, "the expiry is in the past")
	case spec.ExpiresAt.Sub(now) > s.cfg.MaxTokenLifetime:
		bad = append(bad, fmt.Sprintf("the expiry is more than %v away", s.cfg.MaxTokenLifetime))
	}
	if len(bad) > 0 {
		return TokenRecord{}, badRequest("%s", strings.Join(bad, "; "))
	}
	return TokenRecord{Token: Token{Name: spec.Name, Role: spec.Role, Grants: grants, Scope: scope, ExpiresAt: spec.ExpiresAt.UTC()}}, nil
}

func (t *apiToken) view() Token {
	v := t.Token
	v.Grants = slices.Clone(v.Grants)
	if u := t.lastUsed.Load(); u > 0 {
		v.LastUsedAt = tm(u)
	}
	return v
}

// Tokens lists every token, revoked and expired ones too, by name.
func (s *Service) Tokens(ctx context.Context) ([]Token, error) {
	s.mu.RLock()
	out := make([]Token, 0, len(s.st.tokens))
	for _, t := range s.st.tokens {
		out = append(out, t.view())
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
	return out, ctx.Err()
}

// RevokeToken ends a token at once. It is kept, for the record.
func (s *Service) RevokeToken(ctx context.Context, actor Actor, id string) (Token, error) {
	unlock := s.lockWrite(ctx)
	t := s.st.tokenIDs[id]
	var err error
	switch {
	case t == nil:
		err = notFound("no token %q", clip(id))
	case !t.RevokedAt.IsZero():
		v := t.view()
		unlock()
		return v, nil
	default:
		rec := t.TokenRecord
		rec.RevokedAt, rec.RevokedBy = s.now(), actor.Name
		k, _ := unhex(rec.Hash)
		nt := newToken(rec)
		nt.lastUsed.Store(t.lastUsed.Load())
		err = s.update(ctx, func(tx Tx) error { return tx.RevokeToken(rec.ID, rec.RevokedAt, rec.RevokedBy) },
			func(st *state) { st.addToken(k, nt) })
		t = nt
	}
	unlock()
	name := clip(id)
	if t != nil {
		name = t.Name
	}
	s.outcome(ctx, actor, "token.revoke", "token/"+name, err, "")
	if err != nil {
		return Token{}, err
	}
	return t.view(), nil
}
