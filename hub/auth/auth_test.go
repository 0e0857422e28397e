package auth

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/metrics"
)

// fakeAuthn finds principals by the Authorization header's bearer value
// and by a "sid" cookie; a test of this package only.
type fakeAuthn struct {
	byToken  map[string]*Principal
	byCookie map[string]*Principal
}

func (f fakeAuthn) Authenticate(r *http.Request, queryToken bool) (*Principal, error) {
	if c, err := r.Cookie("sid"); err == nil {
		if p, ok := f.byCookie[c.Value]; ok {
			cp := *p
			return &cp, nil
		}
		return nil, errors.New("session expired")
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && queryToken {
		tok, ok = r.URL.Query().Get("token"), r.URL.Query().Has("token")
	}
	if !ok {
		return nil, ErrNoCredentials
	}
	if p, ok := f.byToken[tok]; ok {
		cp := *p
		return &cp, nil
	}
	return nil, errors.New("token revoked")
}

func principal(role Role, via Via) *Principal {
	return &Principal{Name: string(role), Role: role, Perms: NewSet(role, nil), Scope: Everything, Via: via, CSRF: "csrf-" + string(role)}
}

type denial struct{ who, reason string }

func newTestRouter(t *testing.T, cfg Config) (*Router, *[]denial) {
	t.Helper()
	var denials []denial
	authn := fakeAuthn{byToken: map[string]*Principal{}, byCookie: map[string]*Principal{}}
	for _, r := range Roles {
		authn.byToken[string(r)] = principal(r, ViaToken)
		authn.byCookie[string(r)] = principal(r, ViaSession)
	}
	restricted := principal(Operator, ViaSession)
	restricted.Restricted = "password_change"
	authn.byCookie["restricted"] = restricted
	link := &Principal{Name: "alice", Role: Supervisor, Perms: Set{LiveView: {}}, Scope: Everything, Via: ViaLink, Camera: "cam-1"}
	authn.byToken["link"] = link

	rt, err := NewRouter(cfg, Deps{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.NewRegistry(), Authenticator: authn,
		Denied: func(_ *http.Request, p *Principal, _ Route, reason string) {
			denials = append(denials, denial{p.Name, reason})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	echo := func(w http.ResponseWriter, r *http.Request) {
		p := From(r.Context())
		name := "nobody"
		if p != nil {
			name = p.Name
		}
		io.WriteString(w, name)
	}
	rt.Handle(
		Route{Method: "GET", Path: "/api/devices", Perm: StatusRead, Handler: http.HandlerFunc(echo)},
		Route{Method: "POST", Path: "/api/alarms/{id}/clear", Perm: AlarmClear, Handler: http.HandlerFunc(echo)},
		Route{Method: "POST", Path: "/api/cameras/{id}/whep", Perm: LiveView, Handler: http.HandlerFunc(echo), QueryToken: true},
		Route{Method: "POST", Path: "/api/auth/password", Perm: Self, Handler: http.HandlerFunc(echo)},
		Route{Method: "GET", Path: "/api/events", Perm: StatusRead, Handler: http.HandlerFunc(echo)},
		Route{Method: "GET", Path: "/healthz", Perm: Public, Handler: http.HandlerFunc(echo)},
		Route{Path: "/", Perm: Public, Handler: http.HandlerFunc(echo)},
	)
	return rt, &denials
}

func TestGate(t *testing.T) {
	rt, denials := newTestRouter(t, Config{AllowedHosts: []string{"hub.example.org", "example.com"}, AllowedOrigins: []string{"https://wall.example.org"}})
	h := rt.Handler()
	for _, tt := range []struct {
		name     string
		method   string
		target   string
		host     string
		header   map[string]string
		cookie   string
		code     int
		body     string // substring
		denialBy string // reason recorded, "" for none
	}{
		{"public file", "GET", "/index.html", "", nil, "", 200, "nobody", ""},
		{"public health", "GET", "/healthz", "", nil, "", 200, "nobody", ""},
		{"anonymous api", "GET", "/api/devices", "", nil, "", 401, "unauthenticated", ""},
		{"anonymous websocket", "GET", "/api/events", "", map[string]string{"Upgrade": "websocket"}, "", 401, "unauthenticated", ""},
		{"bad token", "GET", "/api/devices", "", map[string]string{"Authorization": "Bearer nope"}, "", 401, "token revoked", ""},
		{"operator token reads", "GET", "/api/devices", "", map[string]string{"Authorization": "Bearer operator"}, "", 200, "operator", ""},
		{"auditor token cannot read status", "GET", "/api/devices", "", map[string]string{"Authorization": "Bearer auditor"}, "", 403, "forbidden", "forbidden"},
		{"operator cannot clear", "POST", "/api/alarms/A-1/clear", "", map[string]string{"Authorization": "Bearer operator"}, "", 403, "alarm.clear", "forbidden"},
		{"supervisor clears with token", "POST", "/api/alarms/A-1/clear", "", map[string]string{"Authorization": "Bearer supervisor"}, "", 200, "supervisor", ""},
		{"session without csrf", "POST", "/api/alarms/A-1/clear", "", nil, "supervisor", 403, "csrf", "csrf"},
		{"session with wrong csrf", "POST", "/api/alarms/A-1/clear", "", map[string]string{CSRFHeader: "csrf-operator"}, "supervisor", 403, "csrf", "csrf"},
		{"session with csrf", "POST", "/api/alarms/A-1/clear", "", map[string]string{CSRFHeader: "csrf-supervisor"}, "supervisor", 200, "supervisor", ""},
		{"session foreign origin", "POST", "/api/alarms/A-1/clear", "", map[string]string{CSRFHeader: "csrf-supervisor", "Origin": "http://evil.example"}, "supervisor", 403, "origin", "origin"},
		{"session own origin", "POST", "/api/alarms/A-1/clear", "", map[string]string{CSRFHeader: "csrf-supervisor", "Origin": "http://example.com"}, "supervisor", 200, "supervisor", ""},
		{"session allowed origin", "POST", "/api/alarms/A-1/clear", "", map[string]string{CSRFHeader: "csrf-supervisor", "Origin": "https://wall.example.org"}, "supervisor", 200, "supervisor", ""},
		{"websocket foreign origin", "GET", "/api/events", "", map[string]string{"Upgrade": "websocket", "Origin": "http://evil.example"}, "operator", 403, "origin", "origin"},
		{"websocket own origin", "GET", "/api/events", "", map[string]string{"Upgrade": "websocket", "Origin": "http://example.com"}, "operator", 200, "operator", ""},
		{"expired session", "GET", "/api/devices", "", nil, "gone", 401, "session expired", ""},
		{"restricted session", "GET", "/api/devices", "", nil, "restricted", 403, "change your password", "restricted"},
		{"restricted session may change password", "POST", "/api/auth/password", "", map[string]string{CSRFHeader: "csrf-operator"}, "restricted", 200, "operator", ""},
		{"link in query on whep", "POST", "/api/cameras/cam-1/whep?token=link", "", nil, "", 200, "alice", ""},
		{"link in query elsewhere", "GET", "/api/devices?token=link", "", nil, "", 401, "unauthenticated", ""},
		{"link cannot read status", "GET", "/api/devices", "", map[string]string{"Authorization": "Bearer link"}, "", 403, "forbidden", "forbidden"},
		{"rebinding host", "GET", "/api/devices", "evil.example:8080", map[string]string{"Authorization": "Bearer operator"}, "", 421, "allowed_hosts", ""},
		{"rebinding host on a file", "GET", "/index.html", "evil.example", nil, "", 421, "host", ""},
		{"configured host", "GET", "/api/devices", "HUB.example.org:443", map[string]string{"Authorization": "Bearer operator"}, "", 200, "operator", ""},
		{"ip host", "GET", "/api/devices", "10.1.2.3:8080", map[string]string{"Authorization": "Bearer operator"}, "", 200, "operator", ""},
		{"ipv6 host", "GET", "/api/devices", "[::1]:8080", map[string]string{"Authorization": "Bearer operator"}, "", 200, "operator", ""},
		{"wrong method", "DELETE", "/api/devices", "", nil, "", 405, "use GET, HEAD", ""},
		{"unknown api path", "GET", "/api/nope", "", nil, "", 404, "no such endpoint", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			*denials = nil
			req := httptest.NewRequest(tt.method, tt.target, nil)
			if tt.host == "" {
				req.Host = "example.com"
			} else {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.cookie != "" {
				req.AddCookie(&http.Cookie{Name: "sid", Value: tt.cookie})
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("%s %s: %d %q; want %d containing %q", tt.method, tt.target, rec.Code, rec.Body.String(), tt.code, tt.body)
			}
			if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("security headers missing")
			}
			if tt.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			var got string
			if len(*denials) > 0 {
				got = (*denials)[0].reason
			}
			if got != tt.denialBy {
				t.Errorf("denial recorded %q, want %q", got, tt.denialBy)
			}
		})
	}
}

func TestHandlePanicsWithoutPermission(t *testing.T) {
	rt, _ := newTestRouter(t, Config{})
	defer func() {
		if recover() == nil {
			t.Error("a route without a permission was accepted")
		}
	}()
	rt.Handle(Route{Method: "GET", Path: "/api/x", Handler: http.NotFoundHandler()})
}

func TestRoleSeparation(t *testing.T) {
	for _, r := range Roles {
		s := NewSet(r, Grantable)
		if s.Has(AccountManage) && s.Has(AuditRead) {
			t.Errorf("role %s with every grant both administers accounts and reads the audit trail", r)
		}
		if !s.Has(Self) {
			t.Errorf("role %s lacks self", r)
		}
	}
	if NewSet(Maintainer, nil).Has(LiveView) {
		t.Error("maintainers watch video without a grant")
	}
	if !NewSet(Maintainer, []Permission{LiveView}).Has(LiveView) {
		t.Error("a live.view grant does not take")
	}
	if NewSet(Analyst, nil).Has(AlarmAck) || NewSet(Analyst, nil).Has(LiveView) {
		t.Error("analysts act on alarms or watch video")
	}
	if err := CheckGrants([]Permission{AuditRead}); err == nil {
		t.Error("audit.read was grantable")
	}
	if NewSet(Operator, []Permission{AccountManage}).Has(AccountManage) {
		t.Error("NewSet took an ungrantable permission")
	}
	if got := NewSet(Auditor, nil).List(); !slices.Equal(got, []Permission{Self, AuditRead}) {
		t.Errorf("auditor holds %v", got)
	}
}

func TestScope(t *testing.T) {
	s, err := ParseScope("site:s-2, district:north,district:north")
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "district:north,site:s-2" {
		t.Errorf("normalised %q", s.String())
	}
	for _, tt := range []struct {
		district, site string
		want           bool
	}{{"north", "x", true}, {"south", "s-2", true}, {"south", "s-3", false}, {"", "", false}} {
		if got := s.Allows(tt.district, tt.site); got != tt.want {
			t.Errorf("Allows(%q, %q) = %v", tt.district, tt.site, got)
		}
	}
	if !Everything.Allows("", "") || Everything.Key() != "all" {
		t.Error("all does not see everything")
	}
	if s, err := ParseScope("district:Old Town,district:高新区"); err != nil || !s.Allows("Old Town", "") || !s.Allows("高新区", "") {
		t.Errorf("district names with spaces and Chinese: %+v %v", s, err)
	}
	for _, bad := range []string{"", "north", "district:", "site:a b", "zone:x", "district:a\x01b"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
	if (Scope{}).Allows("north", "s-1") {
		t.Error("the empty scope sees something")
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(2)
	r1, ok1 := l.Acquire("alice")
	_, ok2 := l.Acquire("alice")
	_, ok3 := l.Acquire("alice")
	_, okBob := l.Acquire("bob")
	if !ok1 || !ok2 || ok3 || !okBob {
		t.Fatalf("acquire: %v %v %v %v", ok1, ok2, ok3, okBob)
	}
	r1()
	r1() // twice is harmless
	if _, ok := l.Acquire("alice"); !ok {
		t.Error("a released slot was not given back")
	}
	if _, ok := l.Acquire("alice"); ok {
		t.Error("a double release gave back two slots")
	}
}

// TestTrustedProxies takes the client's address and scheme from a trusted
// proxy's headers, and from nobody else's.
func TestTrustedProxies(t *testing.T) {
	var got struct{ remote, scheme string }
	authn := fakeAuthn{byToken: map[string]*Principal{"op": principal(Operator, ViaToken)}}
	rt, err := NewRouter(Config{AllowedHosts: []string{"example.com"}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Deps{Log: slog.New(slog.DiscardHandler), Metrics: metrics.NewRegistry(), Authenticator: authn})
	if err != nil {
		t.Fatal(err)
	}
	rt.Handle(Route{Method: "GET", Path: "/api/x", Perm: StatusRead, Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got.remote, got.scheme = From(r.Context()).Remote, Scheme(r)
	})})
	h := rt.Handler()
	for _, tt := range []struct {
		from, xff, proto string
		remote, scheme   string
	}{
		{"10.1.1.1:5000", "203.0.113.9", "https", "203.0.113.9", "https"},
		{"10.1.1.1:5000", "198.51.100.1, 203.0.113.9, 10.2.2.2", "https", "203.0.113.9", "https"}, // the nearest untrusted hop
		{"10.1.1.1:5000", "", "", "10.1.1.1", "http"},
		{"10.1.1.1:5000", "not-an-ip", "", "10.1.1.1", "http"},
		{"192.0.2.7:5000", "203.0.113.9", "https", "192.0.2.7", "http"}, // not a proxy: its headers are ignored
	} {
		req := httptest.NewRequest("GET", "/api/x", nil)
		req.Host, req.RemoteAddr = "example.com", tt.from
		req.Header.Set("Authorization", "Bearer op")
		if tt.xff != "" {
			req.Header.Set("X-Forwarded-For", tt.xff)
		}
		if tt.proto != "" {
			req.Header.Set("X-Forwarded-Proto", tt.proto)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		if got.remote != tt.remote || got.scheme != tt.scheme {
			t.Errorf("from %s with %q %q: client %s %s, want %s %s", tt.from, tt.xff, tt.proto, got.remote, got.scheme, tt.remote, tt.scheme)
		}
	}
}
