package auth

import (
	"bufio"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/citywatch/citywatch/hub/metrics"
)

// Route is one endpoint: a method and a ServeMux path pattern, the
// permission it takes and its handler. Every domain package declares its
// routes; Router serves them all through one gate.
type Route struct {
	// Method is GET (which serves HEAD too), POST, PATCH, DELETE or
	// OPTIONS; empty lets the handler take every method itself.
	Method  string
	Path    string // "/api/alarms/{id}/ack"
	Perm    Permission
	Handler http.Handler
	// QueryToken accepts a viewing link's ?token= on this route: WHEP,
	// whose players cannot send headers.
	QueryToken bool
}

// Pattern is the route's ServeMux pattern.
func (r Route) Pattern() string {
	if r.Method == "" {
		return r.Path
	}
	return r.Method + " " + r.Path
}

// ErrNoCredentials is what an Authenticator returns for a request that
// carries no credentials at all.
var ErrNoCredentials = errors.New("authentication required")

// Authenticator finds who sent a request: a session cookie, an
// Authorization: Bearer token, or where queryToken allows, a viewing
// link's ?token=. It returns ErrNoCredentials when there are none; any
// other error means the credentials are not valid (expired, revoked,
// unknown), and its text is shown to the client.
type Authenticator interface {
	Authenticate(r *http.Request, queryToken bool) (*Principal, error)
}

// Config is the gate's policy.
type Config struct {
	// AllowedHosts are the host names the hub answers to besides IP
	// addresses and localhost: a request naming any other Host is refused,
	// which defeats DNS rebinding (a hostile name resolving to the hub).
	AllowedHosts []string
	// AllowedOrigins are web origins ("https://wall.example.org") besides
	// the hub's own whose pages may act with a session and open the
	// websocket.
	AllowedOrigins []string
	// TLS says the hub is served over HTTPS: responses then carry HSTS.
	TLS bool
	// TrustedProxies are the addresses of reverse proxies in front of the
	// hub (nginx terminating TLS): for a request from one of them, the
	// client is the last address in X-Forwarded-For that is not a trusted
	// proxy, and the scheme is X-Forwarded-Proto. From anyone else those
	// headers are ignored, so no client can choose the address its failed
	// logins are counted against.
	TrustedProxies []netip.Prefix
}

// Deps are the gate's collaborators.
type Deps struct {
	Log           *slog.Logger
	Metrics       *metrics.Registry
	Authenticator Authenticator
	// Denied is told of every request refused for want of permission,
	// origin or CSRF token after its caller was authenticated, for the
	// audit log. Optional.
	Denied func(r *http.Request, p *Principal, route Route, reason string)
}

// Router collects routes and serves them through the gate.
type Router struct {
	cfg     Config
	log     *slog.Logger
	authn   Authenticator
	denied  func(*http.Request, *Principal, Route, string)
	hosts   map[string]bool
	origins map[string]bool
	routes  []Route

	requests *metrics.Vec[metrics.Counter]
	refused  *metrics.Vec[metrics.Counter]
}

// NewRouter checks cfg and deps.
func NewRouter(cfg Config, deps Deps) (*Router, error) {
	switch {
	case deps.Log == nil:
		return nil, errors.New("auth: Deps.Log is required")
	case deps.Metrics == nil:
		return nil, errors.New("auth: Deps.Metrics is required")
	case deps.Authenticator == nil:
		return nil, errors.New("auth: Deps.Authenticator is required")
	}
	rt := &Router{
		cfg: cfg, log: deps.Log.With("component", "auth"), authn: deps.Authenticator, denied: deps.Denied,
		hosts: map[string]bool{"localhost": true}, origins: map[string]bool{},
	}
	var errs []error
	for _, h := range cfg.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			errs = append(errs, fmt.Errorf("allowed host %q is not a host name", h))
			continue
		}
		rt.hosts[strings.ToLower(h)] = true
	}
	for _, o := range cfg.AllowedOrigins {
		norm, ok := NormalizeOrigin(o)
		if !ok {
			errs = append(errs, fmt.Errorf("allowed origin %q is not scheme://host[:port]", o))
			continue
		}
		rt.origins[norm] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	rt.requests = deps.Metrics.CounterVec("citywatch_http_requests_total",
		"HTTP requests served, by route pattern and status code.", "route", "code")
	rt.refused = deps.Metrics.CounterVec("citywatch_http_refused_total",
		"HTTP requests refused by the gate, by reason: host, unauthenticated, invalid_credentials, origin, csrf, restricted, forbidden.", "reason")
	return rt, nil
}

// Handle adds routes. A route without a permission is a wiring bug and
// panics, as ServeMux does for a bad pattern: no route can exist without a
// policy.
func (rt *Router) Handle(routes ...Route) {
	for _, r := range routes {
		if r.Perm == "" || (r.Perm != Public && !slices.Contains(Permissions, r.Perm)) {
			panic(fmt.Sprintf("auth: route %s has no valid permission (%q)", r.Pattern(), r.Perm))
		}
		if r.Handler == nil {
			panic("auth: route " + r.Pattern() + " has no handler")
		}
		rt.routes = append(rt.routes, r)
	}
}

// Routes returns every route added, in order.
func (rt *Router) Routes() []Route { return slices.Clone(rt.routes) }

// Handler builds the hub's handler from the routes added so far. A path
// asked with a method it does not serve gets 405 with Allow, and unknown
// paths under /api/ get 404, both as JSON.
func (rt *Router) Handler() http.Handler {
	mux := http.NewServeMux()
	methods := map[string][]string{} // path → methods served
	anyMethod := map[string]bool{}
	for _, r := range rt.routes {
		mux.Handle(r.Pattern(), rt.gate(r))
		if r.Method == "" {
			anyMethod[r.Path] = true
			continue
		}
		methods[r.Path] = append(methods[r.Path], r.Method)
		if r.Method == http.MethodGet {
			methods[r.Path] = append(methods[r.Path], http.MethodHead)
		}
	}
	for path, ms := range methods {
		if anyMethod[path] {
			continue
		}
		allow := strings.Join(ms, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method "+clip(r.Method)+" not allowed; use "+allow)
		})
	}
	if !anyMethod["/api/"] && methods["/api/"] == nil {
		mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
			WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+clip(r.URL.Path))
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = rt.forwarded(r)
		rt.headers(w.Header())
		rec := &recorder{ResponseWriter: w}
		if !rt.hostAllowed(r.Host) {
			rt.refused.With("host").Inc()
			WriteError(rec, http.StatusMisdirectedRequest, "host",
				"this hub does not answer to host "+strconv.Quote(clip(r.Host))+"; an operator can add it to http.allowed_hosts")
		} else {
			mux.ServeHTTP(rec, r)
		}
		rt.requests.With(cmp.Or(r.Pattern, "none"), strconv.Itoa(cmp.Or(rec.code, http.StatusOK))).Inc()
	})
}

// ContentSecurityPolicy lets the console load only its own files and talk
// only to its own origin; nothing may frame it.
const ContentSecurityPolicy = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; " +
	"form-action 'self'; frame-ancestors 'none'"

func (rt *Router) headers(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(self), payment=()")
	if rt.cfg.TLS {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// hostAllowed accepts IP addresses (a page cannot make a browser name the
// hub by address from another origin), localhost and the configured names.
func (rt *Router) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return rt.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
}

// gate wraps a route's handler with authentication and authorisation.
func (rt *Router) gate(route Route) http.Handler {
	if route.Perm == Public {
		return route.Handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := rt.authn.Authenticate(r, route.QueryToken)
		if err != nil {
			reason, code := "invalid_credentials", "invalid_credentials"
			if errors.Is(err, ErrNoCredentials) {
				reason, code = "unauthenticated", "unauthenticated"
			}
			rt.refused.With(reason).Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="citywatch"`)
			WriteError(w, http.StatusUnauthorized, code, err.Error())
			return
		}
		p.Remote = RemoteHost(r)
		refuse := func(status int, reason, msg string) {
			rt.refused.With(reason).Inc()
			if rt.denied != nil {
				rt.denied(r, p, route, reason)
			}
			WriteError(w, status, reason, msg)
		}
		// Cookies ride along with requests other pages make; the origin
		// and the CSRF token show the console itself sent this one.
		// Tokens and links are sent on purpose by their holder.
		if p.Via == ViaSession {
			if (unsafe(r.Method) || isWebsocket(r)) && !rt.OriginAllowed(r) {
				refuse(http.StatusForbidden, "origin", "origin "+strconv.Quote(clip(r.Header.Get("Origin")))+" not allowed")
				return
			}
			if unsafe(r.Method) && !csrfOK(r.Header.Get(CSRFHeader), p.CSRF) {
				refuse(http.StatusForbidden, "csrf", "missing or wrong "+CSRFHeader+" header")
				return
			}
		}
		if p.Restricted != "" && route.Perm != Self {
			refuse(http.StatusForbidden, "restricted", restrictedMessage(p.Restricted))
			return
		}
		if !p.Can(route.Perm) {
			refuse(http.StatusForbidden, "forbidden", "your role does not allow this ("+string(route.Perm)+")")
			return
		}
		route.Handler.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func restrictedMessage(what string) string {
	switch what {
	case "password_change":
		return "change your password first"
	case "totp_enrollment":
		return "enrol a second factor (TOTP) first"
	}
	return "finish signing in first (" + what + ")"
}

// CSRFHeader carries a session's CSRF token on state-changing requests.
const CSRFHeader = "X-CSRF-Token"

func csrfOK(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func unsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// OriginAllowed reports whether r comes from a page of the hub's own
// origin or of an allowed one. A request without Origin was not made by a
// page (browsers send it with every state-changing request and websocket).
// The Host has passed hostAllowed, so a page served under a hostile name
// cannot match it.
func (rt *Router) OriginAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	norm, ok := NormalizeOrigin(origin)
	if !ok {
		return false
	}
	return norm == Scheme(r)+"://"+strings.ToLower(r.Host) || rt.origins[norm]
}

type schemeKey struct{}

// Scheme is how the client reached the hub: "https" or "http", as a
// trusted proxy says or the connection shows.
func Scheme(r *http.Request) string {
	if s, ok := r.Context().Value(schemeKey{}).(string); ok {
		return s
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// forwarded returns r as its client sent it when it came through a trusted
// proxy: RemoteAddr the client's, and the scheme the proxy was reached by.
func (rt *Router) forwarded(r *http.Request) *http.Request {
	if len(rt.cfg.TrustedProxies) == 0 || !rt.trusted(RemoteHost(r)) {
		return r
	}
	client := ""
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(h); err != nil {
			break // a malformed hop: trust nothing before it
		}
		client = h
		if !rt.trusted(h) {
			break
		}
	}
	r2 := r.Clone(r.Context())
	if client != "" {
		r2.RemoteAddr = net.JoinHostPort(client, "0")
	}
	if p := strings.ToLower(r.Header.Get("X-Forwarded-Proto")); p == "https" || p == "http" {
		r2 = r2.WithContext(context.WithValue(r2.Context(), schemeKey{}, p))
	}
	return r2
}

func (rt *Router) trusted(host string) bool {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range rt.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// NormalizeOrigin lower-cases an origin and checks it has nothing beyond
// scheme and host, as browsers send it.
func NormalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), true
}

// RemoteHost is the client's address without the port.
func RemoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// ErrorBody is every JSON error answer: a message for people and a stable
// code for programs.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Fail answers with status and an ErrorBody whose code is the one every
// domain uses for that status: bad_request, not_found, conflict,
// too_large, unsupported_media_type, too_many, unavailable, internal…
func Fail(w http.ResponseWriter, status int, msg string) {
	code := "error"
	switch status {
	case http.StatusBadRequest:
		code = "bad_request"
	case http.StatusNotFound:
		code = "not_found"
	case http.StatusMethodNotAllowed:
		code = "method_not_allowed"
	case http.StatusConflict:
		code = "conflict"
	case http.StatusRequestEntityTooLarge:
		code = "too_large"
	case http.StatusUnsupportedMediaType:
		code = "unsupported_media_type"
	case http.StatusTooManyRequests:
		code = "too_many"
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		code = "unavailable"
	case http.StatusInternalServerError:
		code = "internal"
	}
	WriteError(w, status, code, msg)
}

// WriteJSON answers with status and v as JSON. v must encode (no NaN, no
// channels); a value that does not is a bug, answered 500.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // the client went away
}

// WriteError answers with status and an ErrorBody.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(ErrorBody{Error: msg, Code: code}) // two strings always encode
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// recorder remembers the status code. It passes Hijack through because
// gorilla/websocket asserts http.Hijacker directly.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.code = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (r *recorder) Flush() { http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
