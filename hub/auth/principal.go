package auth

import (
	"context"
	"time"
)

// Via says how a caller proved who it is.
type Via string

// Ways in.
const (
	ViaSession Via = "session" // the console's cookie; state-changing requests need the CSRF token too
	ViaToken   Via = "token"   // Authorization: Bearer, for other systems
	ViaLink    Via = "link"    // a viewing link's ?token=, for one camera's WHEP only
)

// Principal is an authenticated caller, as the Authenticator found it for
// one request. Values are snapshots.
type Principal struct {
	// Name is who acts, as alarm trails and the audit log record it: the
	// account name, "token:NAME" for an API token, or for a viewing link
	// the account that made it.
	Name  string `json:"name"`
	Role  Role   `json:"role"`
	Perms Set    `json:"-"`
	Scope Scope  `json:"scope"`
	Via   Via    `json:"via"`
	// Session identifies the login session, token or link (never its
	// secret), so the audit log can tell two sessions of one account apart
	// and a logout can end the connections made with it.
	Session string    `json:"session"`
	Expires time.Time `json:"expires,omitzero"` // when the session, token or link ends at the latest
	// CSRF is the token a session's state-changing requests must carry in
	// the X-CSRF-Token header; empty for other ways in.
	CSRF string `json:"-"`
	// Restricted, when set, confines a session to Self routes until the
	// account does what it names: "password_change" or "totp_enrollment".
	Restricted string `json:"restricted,omitempty"`
	// Camera confines a viewing link to one camera.
	Camera string `json:"camera,omitempty"`
	Remote string `json:"remote"` // the client's address, as the gate saw it
}

// Can reports whether the principal holds permission p. Public is always
// allowed; a restricted session can use only Self.
func (p *Principal) Can(perm Permission) bool {
	switch {
	case p == nil:
		return perm == Public
	case perm == Public:
		return true
	case p.Restricted != "" && perm != Self:
		return false
	}
	return p.Perms.Has(perm)
}

// Sees reports whether the principal's scope covers district and site.
func (p *Principal) Sees(district, site string) bool {
	return p != nil && p.Scope.Allows(district, site)
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal the gate put in ctx, or nil on a public route.
func From(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}
