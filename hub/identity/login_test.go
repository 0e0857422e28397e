package identity

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

var north = auth.Scope{Districts: []string{"north"}}

func TestLoginOutcomes(t *testing.T) {
	e := newEnv(t)
	pw := e.add("olga", auth.Operator, north)
	e.add("dora", auth.Operator, north)
	if _, err := e.svc.UpdateAccount(context.Background(), cli, "dora", AccountPatch{Disabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.SetPassword(context.Background(), cli, "dora", "Other-Pass-2026!"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		what, name, password string
		status               int
		code, auditDetail    string
	}{
		{"unknown name", "nobody", pw, 401, "invalid_credentials", "unknown account"},
		{"wrong password", "olga", pw + "x", 401, "invalid_credentials", "bad password"},
		{"disabled, right password", "dora", "Other-Pass-2026!", 403, "disabled", "disabled"},
		{"disabled, wrong password says nothing", "dora", "nope", 401, "invalid_credentials", "bad password"},
		{"right", "olga", pw, 200, "", ""},
		{"name in upper case is the same account", "OLGA", pw, 200, "", ""},
	} {
		t.Run(tt.what, func(t *testing.T) {
			c := e.client("127.0.0.2")
			r := c.login(tt.name, tt.password, nil)
			want(t, tt.what, r, tt.status, tt.code)
			if tt.status != 200 {
				recs := e.audit.find("auth.login", audit.Failure)
				recs = append(recs, e.audit.find("auth.login", audit.Denied)...)
				if !slices.ContainsFunc(recs, func(r audit.Record) bool {
					return r.Actor == strings.ToLower(tt.name) && r.Detail == tt.auditDetail && r.Remote == "127.0.0.2"
				}) {
					t.Errorf("no auth.login failure for %s with detail %q in %+v", tt.name, tt.auditDetail, recs)
				}
				return
			}
			var ok struct {
				Account Me
				CSRF    string
			}
			r.decode(t, &ok)
			if ok.Account.Name != "olga" || ok.Account.Restricted != "password_change" || ok.CSRF == "" || c.cookie() == "" {
				t.Errorf("login answer %s: want olga restricted to password_change, a csrf and a cookie", r.body)
			}
			if setCookie := r.header.Get("Set-Cookie"); !strings.Contains(setCookie, "HttpOnly") ||
				!strings.Contains(setCookie, "SameSite=Strict") || !strings.Contains(setCookie, "Path=/") {
				t.Errorf("cookie %q lacks HttpOnly, SameSite=Strict or Path=/", setCookie)
			}
		})
	}
	if n := len(e.audit.find("auth.login", audit.Success)); n != 2 {
		t.Errorf("%d successful logins in the trail, want 2", n)
	}
	for _, r := range e.audit.recs {
		if strings.Contains(r.Detail, pw) || strings.Contains(r.Detail, "Other-Pass") {
			t.Errorf("audit record %+v holds a password", r)
		}
	}
}

// TestRestrictedUntilPasswordChanged: a new account's session can do
// nothing but its own business until it has a password of its own.
func TestRestrictedUntilPasswordChanged(t *testing.T) {
	e := newEnv(t)
	pw := e.add("olga", auth.Operator, north)
	c := e.client("")
	want(t, "login", c.login("olga", pw, nil), 200, "")
	want(t, "status before the change", c.do("GET", "/api/test/status", nil), 403, "restricted")
	want(t, "me works", c.do("GET", "/api/auth/me", nil), 200, "")

	r := c.do("POST", "/api/auth/password", map[string]string{"current": pw, "new": "olga"})
	want(t, "weak password", r, 400, "password_policy")
	var pe struct{ Problems []string }
	r.decode(t, &pe)
	if len(pe.Problems) != 3 {
		t.Errorf("problems %q: want length, classes and name at once", pe.Problems)
	}
	want(t, "wrong current", c.do("POST", "/api/auth/password", map[string]string{"current": "x", "new": "Brand-New-Pass-1"}), 403, "wrong_password")
	if n := len(e.audit.find("auth.password_change", audit.Failure)); n != 2 {
		t.Errorf("%d failed password changes audited, want the weak one and the wrong one", n)
	}
	want(t, "same as before", c.do("POST", "/api/auth/password", map[string]string{"current": pw, "new": pw}), 400, "password_policy")
	want(t, "change", c.do("POST", "/api/auth/password", map[string]string{"current": pw, "new": "Brand-New-Pass-1"}), 204, "")
	want(t, "status after the change", c.do("GET", "/api/test/status", nil), 200, "")

	// A password past its age restricts again.
	e.clock.Add(91 * 24 * time.Hour)
	c2 := e.client("")
	want(t, "login after 91 days", c2.login("olga", "Brand-New-Pass-1", nil), 200, "")
	want(t, "status with an expired password", c2.do("GET", "/api/test/status", nil), 403, "restricted")
	var me Me
	c2.do("GET", "/api/auth/me", nil).decode(t, &me)
	if me.Restricted != "password_change" || !me.PasswordExpiresAt.Before(e.clock.Now()) {
		t.Errorf("me %+v: want restricted to password_change with the expiry passed", me)
	}
}

func TestPasswordHistory(t *testing.T) {
	e := newEnv(t)
	c := e.ready("olga", auth.Operator, north)
	first := c.password
	passwords := []string{"Second-Pass-22", "Third-Pass-333", "Fourth-Pass-44"}
	for _, p := range passwords {
		want(t, "change to "+p, c.do("POST", "/api/auth/password", map[string]string{"current": c.password, "new": p}), 204, "")
		c.password = p
	}
	r := c.do("POST", "/api/auth/password", map[string]string{"current": c.password, "new": first})
	want(t, "reuse of a recent password", r, 400, "password_policy")
	if !strings.Contains(string(r.body), "last 5 passwords") {
		t.Errorf("refusal %s does not name the history rule", r.body)
	}
}

func TestLockoutPerAccount(t *testing.T) {
	e := newEnv(t)
	pw := e.add("olga", auth.Operator, north)
	c := e.client("127.0.0.2")
	for i := range 5 {
		want(t, fmt.Sprintf("failure %d", i+1), c.login("olga", "wrong", nil), 401, "invalid_credentials")
	}
	locked := c.login("olga", pw, nil)
	want(t, "right password while locked", locked, 403, "locked")
	if !strings.Contains(string(locked.body), "try again after "+start.Add(15*time.Minute).Local().Format("15:04 MST")) {
		t.Errorf("lockout message %s does not say when", locked.body)
	}
	// An unknown name locks the same way and reads the same.
	for range 5 {
		c.login("ghost", "wrong", nil)
	}
	ghost := c.login("ghost", "wrong", nil)
	want(t, "unknown name while locked", ghost, 403, "locked")
	if string(ghost.body) != string(locked.body) {
		t.Errorf("lockout of an unknown name reads %s, of an account %s", ghost.body, locked.body)
	}
	if n := len(e.audit.find("auth.lockout", audit.Success)); n != 2 {
		t.Errorf("%d lockouts audited, want 2", n)
	}
	var acct Account
	var err error
	if acct, err = e.svc.Account(context.Background(), "olga"); err != nil || !acct.LockedUntil.Equal(start.Add(15*time.Minute)) {
		t.Errorf("account %+v, %v: want locked until 09:15", acct, err)
	}

	e.clock.Add(15 * time.Minute)
	want(t, "after the lockout", c.login("olga", pw, nil), 200, "")
	// Success cleared the name's count: four more failures do not lock.
	for range 4 {
		c.login("olga", "wrong", nil)
	}
	want(t, "four failures after success", c.login("olga", pw, nil), 200, "")
}

func TestLockoutPerAddress(t *testing.T) {
	e := newEnv(t)
	pw := e.add("olga", auth.Operator, north)
	admin := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	attacker := e.client("127.0.0.66")
	for i := range 20 {
		want(t, "guess", attacker.login(fmt.Sprintf("user%d", i), "guess", nil), 401, "invalid_credentials")
	}
	want(t, "right password from the locked address", attacker.login("olga", pw, nil), 403, "locked")
	want(t, "from another address", e.client("127.0.0.3").login("olga", pw, nil), 200, "")

	r := admin.do("GET", "/api/lockouts", nil)
	want(t, "lockouts", r, 200, "")
	var l struct{ Lockouts []Lockout }
	r.decode(t, &l)
	if len(l.Lockouts) != 1 || l.Lockouts[0].Key != "127.0.0.66" || l.Lockouts[0].Failures != 20 || l.Lockouts[0].Kind != FailAddress {
		t.Fatalf("lockouts %+v: want the address with 20 failures", l.Lockouts)
	}
	want(t, "clear", admin.do("DELETE", "/api/lockouts/addresses/127.0.0.66", nil), 204, "")
	want(t, "after clearing", attacker.login("olga", pw, nil), 200, "")
	want(t, "clear again", admin.do("DELETE", "/api/lockouts/addresses/127.0.0.66", nil), 404, "not_found")
}

func TestUnlockAccount(t *testing.T) {
	e := newEnv(t)
	pw := e.add("olga", auth.Operator, north)
	admin := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	c := e.client("127.0.0.5")
	for range 5 {
		c.login("olga", "wrong", nil)
	}
	want(t, "locked", c.login("olga", pw, nil), 403, "locked")
	r := admin.do("POST", "/api/accounts/olga/unlock", nil)
	want(t, "unlock", r, 200, "")
	var a Account
	r.decode(t, &a)
	if !a.LockedUntil.IsZero() {
		t.Errorf("unlocked account %+v still shows a lockout", a)
	}
	want(t, "after unlock", c.login("olga", pw, nil), 200, "")
	if len(e.audit.find("account.unlock", audit.Success)) != 1 {
		t.Error("unlock not audited")
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LoginBurst = 3 })
	pw := e.add("olga", auth.Operator, north)
	c := e.client("127.0.0.7")
	for range 3 {
		want(t, "within the burst", c.login("olga", pw, nil), 200, "")
	}
	r := c.login("olga", pw, nil)
	want(t, "over the burst", r, 429, "rate_limited")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	want(t, "another address", e.client("127.0.0.8").login("olga", pw, nil), 200, "")
	e.clock.Add(time.Second)
	want(t, "a second later", c.login("olga", pw, nil), 200, "")
}

func TestLoginBodyLimits(t *testing.T) {
	e := newEnv(t)
	c := e.client("")
	for _, tt := range []struct {
		what   string
		body   any
		status int
		code   string
	}{
		{"unknown field", map[string]string{"username": "a", "password": "b", "admin": "yes"}, 400, "bad_request"},
		{"not an object", []string{"a"}, 400, "bad_request"},
		{"too large", map[string]string{"username": "a", "password": strings.Repeat("x", 20<<10)}, 413, "too_large"},
	} {
		want(t, tt.what, c.do("POST", "/api/auth/login", tt.body), tt.status, tt.code)
	}
}

// TestLoginBurst: 200 concurrent failed logins for random names from one
// address neither stop another account from signing in and working nor
// end in anything but a refusal.
func TestLoginBurst(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Argon2 = Argon2Params{Memory: 1024, Time: 1, Threads: 1}
	})
	pw := e.add("olga", auth.Operator, north)
	statuses := make(chan string, 200)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			c := e.client("127.0.0.66")
			r := c.do("POST", "/api/auth/login", map[string]string{"username": fmt.Sprintf("guess%d", i), "password": "guess"})
			statuses <- fmt.Sprintf("%d %s", r.status, r.code())
		})
	}
	c := e.client("127.0.0.3")
	want(t, "login during the burst", c.login("olga", pw, nil), 200, "")
	want(t, "me during the burst", c.do("GET", "/api/auth/me", nil), 200, "")
	wg.Wait()
	close(statuses)
	count := map[string]int{}
	for s := range statuses {
		count[s]++
	}
	if len(count) > 2 || count["401 invalid_credentials"] < 20 || count["403 locked"] < 1 ||
		count["401 invalid_credentials"]+count["403 locked"] != 200 {
		t.Fatalf("outcomes %v: want only refusals, at least 20 failures and then lockouts", count)
	}
	if n := len(e.audit.find("auth.lockout", audit.Success)); n != 1 {
		t.Errorf("%d lockouts audited, want the address once", n)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	c := e.ready("ada", auth.Admin, auth.Everything)
	csrf := c.csrf
	c.csrf = ""
	want(t, "POST without the header", c.do("POST", "/api/test/clear", nil), 403, "csrf")
	c.csrf = "wrong"
	want(t, "POST with a wrong token", c.do("POST", "/api/test/clear", nil), 403, "csrf")
	c.csrf = csrf
	want(t, "POST with the token", c.do("POST", "/api/test/clear", nil), 200, "")
	var me Me
	c.do("GET", "/api/auth/me", nil).decode(t, &me)
	if me.CSRF != csrf {
		t.Errorf("me's csrf %q, login's %q", me.CSRF, csrf)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	c := e.ready("olga", auth.Operator, north)
	var me Me
	c.do("GET", "/api/auth/me", nil).decode(t, &me)

	// Idle: 29 minutes keep it, 30 end it.
	e.clock.Add(29 * time.Minute)
	want(t, "after 29 idle minutes", c.do("GET", "/api/test/status", nil), 200, "")
	e.clock.Add(30 * time.Minute)
	want(t, "after 30 idle minutes", c.do("GET", "/api/test/status", nil), 401, "invalid_credentials")
	e.svc.sweep(context.Background())
	if ids := receive(t, e.ended, "expiry"); !slices.Contains(ids, me.Session.ID) {
		t.Errorf("ended %v, want %s", ids, me.Session.ID)
	}

	// Absolute: busy for 12 hours, then over.
	c2 := e.client("")
	want(t, "login", c2.login("olga", c.password, nil), 200, "")
	for range 12 * 3 {
		want(t, "busy", c2.do("GET", "/api/test/status", nil), 200, "")
		e.clock.Add(20 * time.Minute)
	}
	r := c2.do("GET", "/api/test/status", nil)
	want(t, "after 12 hours", r, 401, "invalid_credentials")
	if !strings.Contains(string(r.body), "session expired") {
		t.Errorf("refusal %s does not say the session expired", r.body)
	}
}

func TestSessionSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	c := e.ready("olga", auth.Operator, north)
	e.clock.Add(10 * time.Minute)
	want(t, "status", c.do("GET", "/api/test/status", nil), 200, "")
	e.svc.persistActivity(context.Background())

	// A new service on the same file, as after a restart, knows the
	// session and when it was last used.
	svc, _ := e.open(testConfig(), nil, nil)
	e.clock.Add(25 * time.Minute) // 35 minutes after login, 25 after the last use
	req, _ := http.NewRequest("GET", "/api/test/status", nil)
	req.AddCookie(&http.Cookie{Name: "citywatch_session", Value: c.cookie()})
	p, err := svc.Authenticate(req, false)
	if err != nil || p.Name != "olga" || p.CSRF != c.csrf {
		t.Fatalf("after restart: %+v, %v", p, err)
	}
}

func TestLogoutAll(t *testing.T) {
	e := newEnv(t)
	a := e.ready("olga", auth.Operator, north)
	b := e.client("")
	want(t, "second session", b.login("olga", a.password, nil), 200, "")
	var meA, meB Me
	a.do("GET", "/api/auth/me", nil).decode(t, &meA)
	b.do("GET", "/api/auth/me", nil).decode(t, &meB)
	drain(e.ended)

	want(t, "logout-all", a.do("POST", "/api/auth/logout-all", nil), 204, "")
	ids := receive(t, e.ended, "logout-all")
	slices.Sort(ids)
	wantIDs := []string{meA.Session.ID, meB.Session.ID}
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("ended %v, want %v", ids, wantIDs)
	}
	want(t, "other session", b.do("GET", "/api/test/status", nil), 401, "invalid_credentials")
	want(t, "this session, its cookie cleared", a.do("GET", "/api/test/status", nil), 401, "unauthenticated")
	if e.svc.SessionActive(meB.Session.ID) {
		t.Error("SessionActive true after logout-all")
	}

	c := e.client("")
	want(t, "login", c.login("olga", a.password, nil), 200, "")
	want(t, "logout", c.do("POST", "/api/auth/logout", nil), 204, "")
	if c.cookie() != "" {
		t.Error("logout left the cookie")
	}
	if len(receive(t, e.ended, "logout")) != 1 || len(e.audit.find("auth.logout", audit.Success)) != 1 {
		t.Error("logout not reported or not audited")
	}
}

// TestPasswordChangeEndsOtherSessions: this session stays, the others end.
func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	e := newEnv(t)
	a := e.ready("olga", auth.Operator, north)
	b := e.client("")
	want(t, "second session", b.login("olga", a.password, nil), 200, "")
	want(t, "change", a.do("POST", "/api/auth/password", map[string]string{"current": a.password, "new": "Another-Pass-77"}), 204, "")
	want(t, "this session", a.do("GET", "/api/test/status", nil), 200, "")
	want(t, "other session", b.do("GET", "/api/test/status", nil), 401, "invalid_credentials")
}

func TestAccountChangesTakeEffectAtOnce(t *testing.T) {
	e := newEnv(t)
	admin := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	op := e.ready("olga", auth.Operator, north)
	want(t, "operator clears", op.do("POST", "/api/test/clear", nil), 403, "forbidden")

	r := admin.do("PATCH", "/api/accounts/olga", map[string]any{"role": "supervisor", "scope": map[string]any{"sites": []string{"s1"}}})
	want(t, "promote", r, 200, "")
	var a Account
	r.decode(t, &a)
	if a.Role != auth.Supervisor || a.Scope.String() != "site:s1" {
		t.Errorf("after patch %+v", a)
	}
	r = op.do("POST", "/api/test/clear", nil)
	want(t, "supervisor clears", r, 200, "")
	var p auth.Principal
	r.decode(t, &p)
	if p.Role != auth.Supervisor || p.Scope.String() != "site:s1" {
		t.Errorf("principal %+v: want the new role and scope", p)
	}
	if recs := e.audit.find("account.update", audit.Success); len(recs) != 1 || !strings.Contains(recs[0].Detail, "role operator → supervisor") {
		t.Errorf("account.update records %+v", recs)
	}

	want(t, "disable", admin.do("PATCH", "/api/accounts/olga", map[string]any{"disabled": true}), 200, "")
	want(t, "disabled account's session", op.do("GET", "/api/test/status", nil), 401, "invalid_credentials")
	if len(e.audit.find("account.disable", audit.Success)) != 1 {
		t.Error("disable not audited")
	}
	want(t, "enable", admin.do("PATCH", "/api/accounts/olga", map[string]any{"disabled": false}), 200, "")
	want(t, "login after enable", e.client("").login("olga", op.password, nil), 200, "")

	// Reset: sessions end, the next login must change the password.
	r = admin.do("POST", "/api/accounts/olga/password", nil)
	want(t, "reset", r, 200, "")
	var reset struct {
		Account  Account
		Password string
	}
	r.decode(t, &reset)
	if !reset.Account.MustChangePassword || reset.Password == "" || reset.Account.Sessions != 0 {
		t.Errorf("reset answer %s", r.body)
	}
	c := e.client("")
	want(t, "login with the reset password", c.login("olga", reset.Password, nil), 200, "")
	want(t, "restricted after reset", c.do("GET", "/api/test/status", nil), 403, "restricted")
}

func TestSecurityAdminCannotChangeThemselves(t *testing.T) {
	e := newEnv(t)
	sam := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	for _, patch := range []map[string]any{
		{"role": "admin"},
		{"disabled": true},
		{"scope": map[string]any{"districts": []string{"north"}}, "role": "operator"},
	} {
		want(t, fmt.Sprint(patch), sam.do("PATCH", "/api/accounts/sam", patch), 403, "forbidden")
	}
	want(t, "own display name", sam.do("PATCH", "/api/accounts/sam", map[string]any{"display_name": "Sam S."}), 200, "")
	want(t, "own reset", sam.do("POST", "/api/accounts/sam/password", nil), 403, "forbidden")
	if len(e.audit.find("account.update", audit.Denied)) != 3 {
		t.Errorf("denied self-changes not audited: %+v", e.audit.find("account.update", audit.Denied))
	}
}

func TestAccountAdministration(t *testing.T) {
	e := newEnv(t)
	sam := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	r := sam.do("POST", "/api/accounts", map[string]any{"name": "system", "role": "operator"})
	want(t, "reserved name, no scope", r, 400, "bad_request")
	if !strings.Contains(string(r.body), "reserved") || !strings.Contains(string(r.body), "needs a scope") {
		t.Errorf("refusal %s does not list both problems", r.body)
	}
	r = sam.do("POST", "/api/accounts", map[string]any{"name": "olga", "role": "operator", "scope": map[string]any{"districts": []string{"north"}}, "password": "short"})
	want(t, "weak initial password", r, 400, "password_policy")
	r = sam.do("POST", "/api/accounts", map[string]any{"name": "olga", "display_name": "Olga O.", "role": "operator", "scope": map[string]any{"districts": []string{"north"}}})
	want(t, "create", r, 201, "")
	var created struct {
		Account  Account
		Password string
	}
	r.decode(t, &created)
	if created.Password == "" || created.Account.CreatedBy != "sam" || !created.Account.MustChangePassword {
		t.Errorf("created %s", r.body)
	}
	want(t, "create again", sam.do("POST", "/api/accounts", map[string]any{"name": "olga", "role": "operator", "scope": map[string]any{"all": true}}), 409, "conflict")
	r = sam.do("GET", "/api/accounts", nil)
	var list struct{ Accounts []Account }
	r.decode(t, &list)
	if len(list.Accounts) != 2 || list.Accounts[0].Name != "olga" || list.Accounts[1].Sessions != 1 {
		t.Errorf("accounts %s", r.body)
	}
	if strings.Contains(string(r.body), "argon2") {
		t.Error("the account list shows password hashes")
	}
	want(t, "unknown account", sam.do("GET", "/api/accounts/nobody", nil), 404, "not_found")
	want(t, "operator may not", e.ready("otto", auth.Operator, north).do("GET", "/api/accounts", nil), 403, "forbidden")

	// Forced logout of someone else.
	o := e.client("")
	want(t, "olga logs in", o.login("olga", created.Password, nil), 200, "")
	want(t, "logout olga", sam.do("POST", "/api/accounts/olga/logout", nil), 200, "")
	want(t, "olga's session", o.do("GET", "/api/auth/me", nil), 401, "invalid_credentials")
}

func TestSecureCookie(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SecureCookies = true })
	pw := e.add("olga", auth.Operator, north)
	r := e.client("").login("olga", pw, nil)
	want(t, "login", r, 200, "")
	sc := r.header.Get("Set-Cookie")
	name, rest, _ := strings.Cut(sc, "=")
	if name != "__Host-citywatch_session" || !strings.Contains(rest, "Secure") || !strings.Contains(rest, "HttpOnly") ||
		!strings.Contains(rest, "SameSite=Strict") || !strings.Contains(rest, "Path=/") || strings.Contains(rest, "Domain") {
		t.Fatalf("cookie %q: want __Host- with Secure, HttpOnly, SameSite=Strict, Path=/ and no Domain", sc)
	}
	value, _, _ := strings.Cut(rest, ";")
	for _, tt := range []struct {
		cookie string
		ok     bool
	}{{"__Host-citywatch_session", true}, {"citywatch_session", false}} {
		req, _ := http.NewRequest("GET", "/api/test/status", nil)
		req.AddCookie(&http.Cookie{Name: tt.cookie, Value: value})
		if p, err := e.svc.Authenticate(req, false); (err == nil) != tt.ok || (tt.ok && p.Name != "olga") {
			t.Errorf("cookie %s: %+v, %v", tt.cookie, p, err)
		}
	}
}
