package identity

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
)

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestPasswordPolicy(t *testing.T) {
	p := DefaultConfig().Password
	for _, tt := range []struct {
		name, password string
		want           []string // substrings, one per expected problem
	}{
		{"alice", "Correct-Horse-42", nil},
		{"alice", "correct horse battery 9", nil}, // lower, other, digit
		{"alice", "Ab1!", []string{"at least 12 characters"}},
		{"alice", "alllowercaseletters", []string{"at least 3 of"}},
		{"alice", "short", []string{"at least 12 characters", "at least 3 of"}},
		{"alice", "My-ALICE-password-1", []string{"account name"}},
		{"bob", "bob", []string{"at least 12 characters", "at least 3 of", "account name"}},
		{"carol", "Tab\there-is-bad-1", []string{"control characters"}},
		{"dave", strings.Repeat("Aa1-", 70), []string{"at most 256 bytes"}},
		{"erin", "Ünïcödé-Pässwörd-9", nil}, // letters beyond ASCII count as lower and upper case
	} {
		t.Run(tt.name+"/"+clip(tt.password), func(t *testing.T) {
			got := p.check(tt.name, tt.password)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d: %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}

func TestGeneratedPasswordsMeetPolicy(t *testing.T) {
	p := DefaultConfig().Password
	p.MinLength = 20
	seen := map[string]bool{}
	for range 50 {
		pw := p.generate("alice")
		if problems := p.check("alice", pw); problems != nil || len(pw) < 20 {
			t.Fatalf("generated %q breaks the policy: %q", pw, problems)
		}
		if seen[pw] {
			t.Fatalf("generated %q twice", pw)
		}
		seen[pw] = true
	}
}

func TestPasswordHash(t *testing.T) {
	params := Argon2Params{Memory: 64, Time: 2, Threads: 1}
	h := hashPassword(params, "Correct-Horse-42")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=2,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string with the costs", h)
	}
	if u := unmatchableHash(params); !strings.HasPrefix(u, "$argon2id$v=19$m=64,t=2,p=1$") || len(u) != len(h) {
		t.Errorf("stand-in hash %q is not shaped like %q", u, h)
	}
	if h2 := hashPassword(params, "Correct-Horse-42"); h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, tt := range []struct {
		hash, password string
		ok, bad        bool
	}{
		{h, "Correct-Horse-42", true, false},
		{h, "correct-Horse-42", false, false},
		{h, "", false, false},
		{strings.Replace(h, "argon2id", "argon2i", 1), "Correct-Horse-42", false, true},
		{strings.Replace(h, "m=64", "m=4194304", 1), "Correct-Horse-42", false, true}, // 4 GiB: refused, not run
		{strings.Replace(h, "t=2", "t=x", 1), "Correct-Horse-42", false, true},
		{"$7$1000$abc$def", "Correct-Horse-42", false, true},
		{"", "", false, true},
		// The stand-in for a missing account: well formed with the same
		// costs, so checking it runs Argon2 like a real hash; matches nothing.
		{unmatchableHash(params), "Correct-Horse-42", false, false},
		{unmatchableHash(params), "", false, false},
	} {
		ok, err := verifyPassword(tt.hash, tt.password)
		if ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("verify(%.40q, %q) = %v, %v; want %v, error %v", tt.hash, tt.password, ok, err, tt.ok, tt.bad)
		}
	}
}

func TestAccountNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"alice", true}, {"a1", true}, {"j.doe-2_x", true}, {strings.Repeat("a", 32), true},
		{"a", false}, {strings.Repeat("a", 33), false}, {"Alice", false}, {"-alice", false}, {".a", false},
		{"al ice", false}, {"аlice", false} /* Cyrillic а */, {"ali\u200bce", false}, {"alice:x", false},
		{"system", false}, {"anonymous", false}, {"hub", false}, {"root", false},
		{"token", false}, {"tokens", false}, {"agent", false}, {"agent-7", false}, {"roots", true},
	} {
		if err := checkAccountName(tt.name); (err == nil) != tt.ok {
			t.Errorf("checkAccountName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestAccessRules(t *testing.T) {
	north := auth.Scope{Districts: []string{"north"}}
	for _, tt := range []struct {
		what      string
		role      auth.Role
		grants    []auth.Permission
		scope     auth.Scope
		wantScope string
		bad       bool
	}{
		{"operator in a district", auth.Operator, nil, north, "district:north", false},
		{"grants are sorted and deduplicated", auth.Maintainer, []auth.Permission{auth.LiveView, auth.StatusRead, auth.LiveView}, north, "district:north", false},
		{"operational role without scope", auth.Operator, nil, auth.Scope{}, "", true},
		{"security admin sees everything", auth.SecurityAdmin, nil, north, "all", false},
		{"auditor sees everything", auth.Auditor, nil, auth.Scope{}, "all", false},
		{"security admin takes no grants", auth.SecurityAdmin, []auth.Permission{auth.LiveView}, north, "", true},
		{"ungrantable permission", auth.Operator, []auth.Permission{auth.AccountManage}, north, "", true},
		{"unknown role", "king", nil, north, "", true},
		{"bad scope id", auth.Operator, nil, auth.Scope{Sites: []string{"a/b"}}, "", true},
	} {
		t.Run(tt.what, func(t *testing.T) {
			grants, scope, err := checkAccess(tt.role, tt.grants, tt.scope)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want error %v", err, tt.bad)
			}
			if !tt.bad && scope.String() != tt.wantScope {
				t.Errorf("scope %s, want %s", scope, tt.wantScope)
			}
			if len(tt.grants) == 3 && !slices.Equal(grants, []auth.Permission{auth.StatusRead, auth.LiveView}) {
				t.Errorf("grants %v, want [status.read live.view]", grants)
			}
		})
	}
}

func TestConfigValidateListsEveryProblem(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cfg := DefaultConfig()
	cfg.Password.MinLength = 4
	cfg.Argon2.Threads = 0
	cfg.SessionIdle = 24 * time.Hour
	cfg.TOTPRoles = append(cfg.TOTPRoles, "king")
	cfg.PollInterval = 0
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, w := range []string{"min length 4", "argon2", "idle timeout", `"king"`, "poll interval"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "Deps.Store") {
		t.Errorf("New with bad config and no deps: %v", err)
	}
}

// TestHashWorkersBoundConcurrency: however many ask, no more than
// HashWorkers hash at once; the rest wait their turn.
func TestHashWorkersBoundConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Service{hashSem: make(chan struct{}, 2)}
		var inside atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				s.hashWork(context.Background(), func() {
					inside.Add(1)
					<-release
					inside.Add(-1)
				})
			})
		}
		synctest.Wait() // every goroutine is hashing or queued
		if n := inside.Load(); n != 2 {
			t.Fatalf("%d hashes run at once, want 2", n)
		}
		close(release)
		wg.Wait()

		// A caller that gives up while queued leaves without hashing.
		s.hashSem <- struct{}{}
		s.hashSem <- struct{}{}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		if err := s.hashWork(ctx, func() { ran = true }); err == nil || ran {
			t.Fatalf("hashWork with an ended context: err %v, ran %v", err, ran)
		}
	})
}

// TestOwnPassword spares the holder of a password they chose themselves a
// forced change; every other initial password must be changed.
func TestOwnPassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	north := auth.Scope{Districts: []string{"north"}}
	for _, tt := range []struct {
		spec AccountSpec
		must bool
	}{
		{AccountSpec{Name: "chose", Role: auth.Operator, Scope: north, Password: "Own-Choice-2026", OwnPassword: true}, false},
		{AccountSpec{Name: "typed", Role: auth.Operator, Scope: north, Password: "Given-By-Admin-26"}, true},
		{AccountSpec{Name: "made", Role: auth.Operator, Scope: north, OwnPassword: true}, true}, // a generated one is not chosen
	} {
		a, _, err := e.svc.AddAccount(ctx, cli, tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if a.MustChangePassword != tt.must {
			t.Errorf("%s: must change password = %v, want %v", tt.spec.Name, a.MustChangePassword, tt.must)
		}
	}
}
