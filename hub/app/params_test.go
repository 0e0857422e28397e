package app

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/auth"
)

// TestUnknownParametersRefused calls every GET route of the API with a
// parameter no route knows, as an account allowed to use it, and wants
// 400 naming the parameter: docs/api.md promises that a typo in a filter
// never quietly returns everything.
func TestUnknownParametersRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.TOTPRoles = nil
	hub := run(t, cfg)
	sessions := map[auth.Role]*session{}
	sessionFor := func(perm auth.Permission) *session {
		for _, r := range auth.Roles {
			if !slices.Contains(r.Permissions(), perm) {
				continue
			}
			if sessions[r] == nil {
				sessions[r] = signIn(t, hub, "u-"+strings.ReplaceAll(string(r), "_", "-"), r)
			}
			return sessions[r]
		}
		return nil
	}
	wildcard := regexp.MustCompile(`\{[^}]+\}`)
	checked := 0
	for _, rt := range hub.Routes() {
		if rt.Method != http.MethodGet || rt.Path == "/" || rt.Path == "/api/events" {
			continue // the console's files; the websocket
		}
		s := &session{hc: &http.Client{}}
		if rt.Perm != auth.Public {
			if s = sessionFor(rt.Perm); s == nil {
				t.Errorf("%s: no role has %s", rt.Pattern(), rt.Perm)
				continue
			}
		}
		path := strings.TrimPrefix(wildcard.ReplaceAllString(rt.Path, "none"), "/") + "?bogus_param=1"
		res, body := s.do(t, hub, http.MethodGet, path, "")
		checked++
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "bogus_param") {
			t.Errorf("GET /%s: %d %.120s, want 400 naming the parameter", path, res.StatusCode, body)
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d routes", checked)
	}
}
