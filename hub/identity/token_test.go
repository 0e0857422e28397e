package identity

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

func TestAPITokens(t *testing.T) {
	e := newEnv(t)
	sam := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	for _, tt := range []struct {
		what string
		body map[string]any
	}{
		{"no expiry", map[string]any{"name": "erp", "role": "operator", "scope": map[string]any{"all": true}}},
		{"too long", map[string]any{"name": "erp", "role": "operator", "scope": map[string]any{"all": true}, "ttl": "400d"}},
		{"security admin", map[string]any{"name": "erp", "role": "security_admin", "ttl": "1h"}},
		{"bad name", map[string]any{"name": "ERP", "role": "operator", "scope": map[string]any{"all": true}, "ttl": "1h"}},
		{"both expiries", map[string]any{"name": "erp", "role": "operator", "scope": map[string]any{"all": true}, "ttl": "1h", "expires_at": start.Add(time.Hour)}},
	} {
		want(t, tt.what, sam.do("POST", "/api/tokens", tt.body), 400, "bad_request")
	}
	r := sam.do("POST", "/api/tokens", map[string]any{"name": "erp", "role": "operator", "scope": map[string]any{"districts": []string{"north"}}, "ttl": "30d"})
	want(t, "create", r, 201, "")
	var created struct {
		Token  Token
		Secret string
	}
	r.decode(t, &created)
	if !strings.HasPrefix(created.Secret, "cwt_") || len(created.Secret) != 4+43 || !created.Token.ExpiresAt.Equal(start.Add(30*24*time.Hour)) {
		t.Fatalf("created %s", r.body)
	}
	r = sam.do("GET", "/api/tokens", nil)
	if strings.Contains(string(r.body), created.Secret) || !strings.Contains(string(r.body), `"erp"`) {
		t.Errorf("token list %s: want erp without its secret", r.body)
	}
	want(t, "same name again", sam.do("POST", "/api/tokens", map[string]any{"name": "erp", "role": "operator", "scope": map[string]any{"all": true}, "ttl": "1h"}), 409, "conflict")

	erp := e.client("")
	erp.bearer = created.Secret
	r = erp.do("GET", "/api/test/status", nil)
	want(t, "token reads status", r, 200, "")
	var p auth.Principal
	r.decode(t, &p)
	if p.Name != "token:erp" || p.Via != auth.ViaToken || p.Session != created.Token.ID || p.Scope.String() != "district:north" {
		t.Errorf("principal %+v", p)
	}
	want(t, "token POST needs no CSRF token but the permission", erp.do("POST", "/api/test/clear", nil), 403, "forbidden")
	want(t, "token cannot change a password", erp.do("POST", "/api/auth/password", map[string]string{"current": "a", "new": "b"}), 403, "forbidden")
	erp.bearer = created.Secret + "x"
	want(t, "wrong secret", erp.do("GET", "/api/test/status", nil), 401, "invalid_credentials")
	erp.bearer = created.Secret

	e.clock.Add(time.Minute)
	want(t, "used", erp.do("GET", "/api/test/status", nil), 200, "")
	toks, _ := e.svc.Tokens(context.Background())
	if !toks[0].LastUsedAt.Equal(start.Add(time.Minute)) {
		t.Errorf("last used %v", toks[0].LastUsedAt)
	}

	r = sam.do("DELETE", "/api/tokens/"+created.Token.ID, nil)
	want(t, "revoke", r, 200, "")
	var revoked Token
	r.decode(t, &revoked)
	if revoked.RevokedBy != "sam" || revoked.RevokedAt.IsZero() {
		t.Errorf("revoked %s", r.body)
	}
	r = erp.do("GET", "/api/test/status", nil)
	want(t, "revoked token", r, 401, "invalid_credentials")
	if !strings.Contains(string(r.body), "token revoked") {
		t.Errorf("refusal %s", r.body)
	}
	want(t, "revoke unknown", sam.do("DELETE", "/api/tokens/tk-nope", nil), 404, "not_found")
	if len(e.audit.find("token.create", audit.Success)) != 1 || len(e.audit.find("token.revoke", audit.Success)) != 1 {
		t.Error("token create and revoke not audited")
	}
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	tok, secret, err := e.svc.AddToken(context.Background(), cli, TokenSpec{Name: "erp", Role: auth.Analyst, Scope: auth.Everything, ExpiresAt: start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client("")
	c.bearer = secret
	e.clock.Add(59 * time.Minute)
	want(t, "before expiry", c.do("GET", "/api/test/status", nil), 200, "")
	e.clock.Add(time.Minute)
	r := c.do("GET", "/api/test/status", nil)
	want(t, "at expiry", r, 401, "invalid_credentials")
	if !strings.Contains(string(r.body), "token expired") {
		t.Errorf("refusal %s", r.body)
	}
	if tok.CreatedBy != "cli:root" {
		t.Errorf("created by %q", tok.CreatedBy)
	}
}

func TestRegisterToken(t *testing.T) {
	e := newEnv(t)
	spec := TokenSpec{Name: "demo", Role: auth.Admin, Scope: auth.Everything, ExpiresAt: start.Add(24 * time.Hour)}
	if _, err := e.svc.RegisterToken(context.Background(), cli, spec, "short"); !isRefusal(err, "bad_request") {
		t.Errorf("short secret: %v", err)
	}
	const secret = "demo-token-0123456789"
	tok, err := e.svc.RegisterToken(context.Background(), cli, spec, secret)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.RegisterToken(context.Background(), cli, spec, secret)
	if err != nil || again.ID != tok.ID {
		t.Errorf("registering the same token again: %+v, %v", again, err)
	}
	if _, err := e.svc.RegisterToken(context.Background(), cli, TokenSpec{Name: "other", Role: auth.Admin, Scope: auth.Everything, ExpiresAt: spec.ExpiresAt}, secret); !isRefusal(err, "conflict") {
		t.Errorf("a second token with the same secret: %v", err)
	}
	c := e.client("")
	c.bearer = secret
	want(t, "registered token", c.do("POST", "/api/test/clear", nil), 200, "")
}

func TestViewingLinks(t *testing.T) {
	e := newEnv(t)
	sup := e.ready("vera", auth.Supervisor, north)
	op := e.ready("olga", auth.Operator, north)
	want(t, "operator may not", op.do("POST", "/api/cameras/cam-1/link", nil), 403, "forbidden")
	want(t, "camera outside the scope", sup.do("POST", "/api/cameras/cam-9/link", nil), 404, "not_found")
	want(t, "unknown camera", sup.do("POST", "/api/cameras/cam-404/link", nil), 404, "not_found")
	want(t, "too long", sup.do("POST", "/api/cameras/cam-1/link", map[string]string{"ttl": "2h"}), 400, "bad_request")
	r := sup.do("POST", "/api/cameras/cam-1/link", map[string]string{"ttl": "5m"})
	want(t, "create", r, 201, "")
	var l Link
	r.decode(t, &l)
	if !strings.HasPrefix(l.URL, "/api/cameras/cam-1/whep?token=cwv_") || !l.ExpiresAt.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("link %+v", l)
	}
	token := mustURL(l.URL).Query().Get("token")
	player := e.client("")
	r = player.do("GET", l.URL, nil)
	want(t, "player with the link", r, 200, "")
	var p auth.Principal
	r.decode(t, &p)
	if p.Name != "vera" || p.Via != auth.ViaLink || p.Camera != "cam-1" || p.Session != l.ID || p.Scope.String() != "district:north" {
		t.Errorf("link principal %+v", p)
	}
	want(t, "another camera", player.do("GET", "/api/cameras/cam-2/whep?token="+url.QueryEscape(token), nil), 401, "invalid_credentials")
	want(t, "a route without query tokens", player.do("GET", "/api/test/status?token="+url.QueryEscape(token), nil), 401, "unauthenticated")
	player.bearer = token
	want(t, "the link as a bearer token", player.do("GET", "/api/cameras/cam-1/whep", nil), 401, "invalid_credentials")
	player.bearer = ""

	// Its principal can do nothing but watch.
	req, _ := http.NewRequest("GET", l.URL, nil)
	req.SetPathValue("id", "cam-1")
	lp, err := e.svc.Authenticate(req, true)
	if err != nil || !lp.Can(auth.LiveView) || lp.Can(auth.StatusRead) || lp.Can(auth.LiveLink) || lp.Can(auth.Self) {
		t.Errorf("link principal permissions %v, %v", lp.Perms.List(), err)
	}

	e.clock.Add(5 * time.Minute)
	r = player.do("GET", l.URL, nil)
	want(t, "expired", r, 401, "invalid_credentials")
	if !strings.Contains(string(r.body), "expired") {
		t.Errorf("refusal %s", r.body)
	}
	if recs := e.audit.find("live.link", audit.Success); len(recs) != 1 || recs[0].Object != "camera/cam-1" || strings.Contains(recs[0].Detail, token) {
		t.Errorf("live.link records %+v", recs)
	}

	// A link dies with its maker's right to make links.
	r = sup.do("POST", "/api/cameras/cam-2/link", nil)
	r.decode(t, &l)
	sam := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	want(t, "demote", sam.do("PATCH", "/api/accounts/vera", map[string]any{"role": "operator"}), 200, "")
	want(t, "link of a demoted maker", player.do("GET", l.URL, nil), 401, "invalid_credentials")
}

// TestNoSecretInTheFile runs through every kind of secret and then reads
// the database files byte by byte: none of them may be there.
func TestNoSecretInTheFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	secrets := map[string]string{}
	sup := e.ready("vera", auth.Supervisor, north)
	secrets["password"] = sup.password
	secrets["cookie"] = sup.cookie()
	secrets["csrf"] = sup.csrf
	pw := e.add("ada", auth.Admin, auth.Everything)
	secrets["initial password"] = pw
	ada := e.client("")
	ada.login("ada", pw, nil)
	ada.do("POST", "/api/auth/password", map[string]string{"current": pw, "new": "Fresh-Secret-2026!"})
	for i, c := range ada.enrolTOTP() {
		secrets["recovery code "+string(rune('0'+i))] = strings.ReplaceAll(c, "-", "")
	}
	_, tok, err := e.svc.AddToken(ctx, cli, TokenSpec{Name: "erp", Role: auth.Analyst, Scope: auth.Everything, ExpiresAt: start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	secrets["token"] = tok
	var l Link
	sup.do("POST", "/api/cameras/cam-1/link", nil).decode(t, &l)
	secrets["link"] = mustURL(l.URL).Query().Get("token")
	agent, err := e.svc.EnrollAgent(ctx, cli, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	secrets["agent"] = agent
	e.svc.persistActivity(ctx)

	files, _ := filepath.Glob(e.path + "*")
	if len(files) < 2 {
		t.Fatalf("database files %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, secret := range secrets {
			if secret == "" {
				t.Fatalf("no %s to look for", what)
			}
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds the %s in clear", filepath.Base(f), what)
			}
		}
	}
	if fi, err := os.Stat(e.path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, %v: want 0600", fi.Mode(), err)
	}
}
