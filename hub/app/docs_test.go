package app

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/citywatch/citywatch/hub/auth"
)

// routesOf builds a hub without running it and returns its routes.
func routesOf(t *testing.T) []auth.Route {
	t.Helper()
	hub, err := New(testConfig(t), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	return hub.Routes()
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml in step with the router:
// every route is documented with its method, the permission it needs
// (x-permission) and a security requirement (none for public routes), and
// the spec documents nothing the hub does not serve.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Components struct {
			SecuritySchemes map[string]any `yaml:"securitySchemes"`
		} `yaml:"components"`
		Paths map[string]map[string]struct {
			Security   []map[string][]string `yaml:"security"`
			Permission string                `yaml:"x-permission"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	for _, s := range []string{"session", "csrf", "bearer", "viewLink"} {
		if spec.Components.SecuritySchemes[s] == nil {
			t.Errorf("security scheme %s is not declared", s)
		}
	}
	served := map[string]bool{}
	for _, rt := range routesOf(t) {
		if rt.Path == "/" {
			continue // the console's files
		}
		method := strings.ToLower(rt.Method)
		served[rt.Path+" "+method] = true
		op, ok := spec.Paths[rt.Path][method]
		if !ok {
			t.Errorf("%s is not in docs/openapi.yaml", rt.Pattern())
			continue
		}
		if op.Permission != string(rt.Perm) {
			t.Errorf("%s: x-permission %q, the route needs %q", rt.Pattern(), op.Permission, rt.Perm)
		}
		var schemes []string
		for _, req := range op.Security {
			for name := range req {
				schemes = append(schemes, name)
			}
		}
		switch {
		case rt.Perm == auth.Public && len(schemes) > 0:
			t.Errorf("%s is public but documents security %v", rt.Pattern(), schemes)
		case rt.Perm != auth.Public && !slices.Contains(schemes, "bearer") && !slices.Contains(schemes, "session"):
			t.Errorf("%s documents no way to authenticate: %v", rt.Pattern(), op.Security)
		case rt.QueryToken && !slices.Contains(schemes, "viewLink"):
			t.Errorf("%s takes viewing links but does not say so", rt.Pattern())
		}
	}
	for path, ops := range spec.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if !served[path+" "+method] {
				t.Errorf("docs/openapi.yaml documents %s %s, which the hub does not serve", strings.ToUpper(method), path)
			}
		}
	}
}

// TestSecurityDocRoleTable keeps the roles × permissions table of
// docs/security.md equal to the code.
func TestSecurityDocRoleTable(t *testing.T) {
	raw, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	got := map[auth.Permission][]string{}
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case strings.HasPrefix(line, "| permission |"):
			roles = cells[1:]
		case roles != nil && strings.HasPrefix(line, "| `"):
			perm := auth.Permission(strings.Trim(cells[0], "`"))
			for i, c := range cells[1:] {
				if c == "✓" && i < len(roles) {
					got[perm] = append(got[perm], roles[i])
				}
			}
		case roles != nil && len(got) > 0 && !strings.HasPrefix(line, "|"):
			roles = roles[:0:0] // the table ended
		}
	}
	var want []string
	for _, r := range auth.Roles {
		want = append(want, string(r))
	}
	if !slices.Equal(roles, want) && len(got) == 0 {
		t.Fatalf("no table headed | permission | %s | in docs/security.md", strings.Join(want, " | "))
	}
	for _, p := range auth.Permissions {
		var holders []string
		for _, r := range auth.Roles {
			if auth.NewSet(r, nil).Has(p) {
				holders = append(holders, string(r))
			}
		}
		if !slices.Equal(got[p], holders) {
			t.Errorf("docs/security.md: %s held by %v; the code says %v", p, got[p], holders)
		}
	}
	if len(got) > len(auth.Permissions) {
		t.Errorf("docs/security.md lists %d permissions, the code %d", len(got), len(auth.Permissions))
	}
}
