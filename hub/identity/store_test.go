package identity

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/internal/testenv"
)

func TestSQLiteStore(t *testing.T) {
	storeContract(t, func(t *testing.T) (Store, Store) {
		path := filepath.Join(t.TempDir(), "identity.db")
		open := func() Store {
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open()
	})
}

// The same contract on PostgreSQL, the store a cluster's hubs share: two
// handles on one database of the test's own, as two hubs have.
func TestPostgresStore(t *testing.T) {
	storeContract(t, func(t *testing.T) (Store, Store) {
		dsn := testenv.Postgres(t)
		open := func() Store {
			s, err := Open(dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open()
	})
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("a database from a newer hub was opened")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "identity.db")); err == nil {
		t.Fatal("a path in a missing directory was opened")
	}
	if err := os.WriteFile(path+"x", []byte("not a database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path + "x"); err == nil {
		t.Fatal("a file that is not a database was opened")
	}
}

// storeContract is what every Store engine must do. open returns two
// handles on one empty store, as two processes would have.
func storeContract(t *testing.T, open func(t *testing.T) (Store, Store)) {
	ctx := context.Background()
	at := start
	update := func(t *testing.T, s Store, fn func(Tx) error) {
		t.Helper()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	load := func(t *testing.T, s Store) *Snapshot {
		t.Helper()
		snap, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	account := AccountRecord{
		Account: Account{
			Name: "olga", DisplayName: "Olga O.", Role: auth.Maintainer, Grants: []auth.Permission{auth.LiveView},
			Scope: auth.Scope{Districts: []string{"north"}, Sites: []string{"s1"}}, MustChangePassword: true,
			PasswordChangedAt: at, CreatedAt: at, CreatedBy: "cli:root",
		},
		PasswordHash: "$argon2id$x", TOTPSecret: "SECRET", TOTPLastStep: 42,
	}

	t.Run("accounts", func(t *testing.T) {
		a, _ := open(t)
		update(t, a, func(tx Tx) error { return tx.InsertAccount(account) })
		if err := a.Update(ctx, func(tx Tx) error { return tx.InsertAccount(account) }); !errors.Is(err, ErrExists) {
			t.Errorf("second insert: %v", err)
		}
		changed := account
		changed.Disabled, changed.LastLoginAt, changed.LastLoginFrom = true, at.Add(time.Hour), "127.0.0.1"
		update(t, a, func(tx Tx) error { return tx.UpdateAccount(changed) })
		ghost := account
		ghost.Name = "ghost"
		if err := a.Update(ctx, func(tx Tx) error { return tx.UpdateAccount(ghost) }); !errors.Is(err, ErrNotFound) {
			t.Errorf("update of a missing account: %v", err)
		}
		snap := load(t, a)
		if len(snap.Accounts) != 1 {
			t.Fatalf("accounts %+v", snap.Accounts)
		}
		got := snap.Accounts[0]
		if got.Name != "olga" || !got.Disabled || got.Scope.String() != "district:north,site:s1" || !slices.Equal(got.Grants, changed.Grants) ||
			!got.LastLoginAt.Equal(changed.LastLoginAt) || got.TOTPSecret != "SECRET" || !got.TOTPEnabled || got.TOTPLastStep != 42 {
			t.Errorf("loaded %+v, want %+v", got, changed)
		}
	})

	t.Run("a failed transaction writes nothing", func(t *testing.T) {
		a, _ := open(t)
		boom := errors.New("boom")
		err := a.Update(ctx, func(tx Tx) error {
			if err := tx.InsertAccount(account); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) || len(load(t, a).Accounts) != 0 {
			t.Errorf("err %v, accounts %v", err, load(t, a).Accounts)
		}
	})

	t.Run("password history", func(t *testing.T) {
		a, _ := open(t)
		update(t, a, func(tx Tx) error { return tx.InsertAccount(account) })
		for i, h := range []string{"h1", "h2", "h3", "h4"} {
			update(t, a, func(tx Tx) error { return tx.AddPasswordHistory("olga", h, at.Add(time.Duration(i)*time.Hour), 3) })
		}
		var got []string
		update(t, a, func(tx Tx) (err error) { got, err = tx.PasswordHistory("olga"); return err })
		if !slices.Equal(got, []string{"h4", "h3", "h2"}) {
			t.Errorf("history %v, want the newest 3 first", got)
		}
	})

	t.Run("recovery codes", func(t *testing.T) {
		a, _ := open(t)
		update(t, a, func(tx Tx) error { return tx.InsertAccount(account) })
		update(t, a, func(tx Tx) error { return tx.ReplaceRecoveryCodes("olga", []string{"c1", "c2"}) })
		use := func(code string) bool {
			var ok bool
			update(t, a, func(tx Tx) (err error) { ok, err = tx.UseRecoveryCode("olga", code, at); return err })
			return ok
		}
		if !use("c1") || use("c1") || use("nope") {
			t.Error("a code works other than once")
		}
		update(t, a, func(tx Tx) error { return tx.ReplaceRecoveryCodes("olga", []string{"c3"}) })
		if use("c2") || !use("c3") {
			t.Error("replaced codes still work, or new ones do not")
		}
	})

	t.Run("sessions, tokens, links, agents, failures", func(t *testing.T) {
		a, _ := open(t)
		se := SessionRecord{Hash: "aa", Account: "olga", CreatedAt: at, LastSeen: at, ExpiresAt: at.Add(time.Hour), Remote: "r", UserAgent: "ua"}
		tok := TokenRecord{Token: Token{ID: "tk-1", Name: "erp", Role: auth.Analyst, Scope: auth.Everything, CreatedBy: "sam", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}, Hash: "bb"}
		link := LinkRecord{ID: "lk-1", Hash: "cc", Camera: "cam-1", Account: "olga", CreatedAt: at, ExpiresAt: at.Add(time.Minute)}
		agent := AgentCredential{Agent: "a1", Hash: "$7$x", CreatedAt: at, CreatedBy: "sam"}
		fail := FailureRecord{Kind: FailAddress, Key: "127.0.0.1", Count: 3, FirstAt: at, LastAt: at, LockedUntil: at.Add(time.Minute)}
		update(t, a, func(tx Tx) error {
			return errors.Join(tx.InsertSession(se), tx.InsertToken(tok), tx.InsertLink(link), tx.PutAgent(agent), tx.PutFailure(fail))
		})
		dup := tok
		dup.ID = "tk-2"
		if err := a.Update(ctx, func(tx Tx) error { return tx.InsertToken(dup) }); !errors.Is(err, ErrExists) {
			t.Errorf("token with a name in use: %v", err)
		}
		update(t, a, func(tx Tx) error {
			return errors.Join(
				tx.TouchSessions(map[string]time.Time{"aa": at.Add(time.Minute)}),
				tx.TouchSessions(map[string]time.Time{"aa": at.Add(time.Second)}), // older: kept the later
				tx.TouchTokens(map[string]time.Time{"tk-1": at.Add(time.Minute)}),
				tx.RevokeToken("tk-1", at.Add(2*time.Minute), "sam"),
			)
		})
		if err := a.Update(ctx, func(tx Tx) error { return tx.RevokeToken("tk-9", at, "sam") }); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoke a missing token: %v", err)
		}
		revoked := agent
		revoked.RevokedAt, revoked.RevokedBy = at, "sam"
		update(t, a, func(tx Tx) error { return tx.PutAgent(revoked) })
		snap := load(t, a)
		switch {
		case len(snap.Sessions) != 1 || !snap.Sessions[0].LastSeen.Equal(at.Add(time.Minute)) || snap.Sessions[0].UserAgent != "ua":
			t.Errorf("sessions %+v", snap.Sessions)
		case len(snap.Tokens) != 1 || !snap.Tokens[0].LastUsedAt.Equal(at.Add(time.Minute)) || snap.Tokens[0].RevokedBy != "sam" || snap.Tokens[0].Hash != "bb":
			t.Errorf("tokens %+v", snap.Tokens)
		case len(snap.Links) != 1 || snap.Links[0] != link:
			t.Errorf("links %+v", snap.Links)
		case len(snap.Agents) != 1 || snap.Agents[0].Active() || snap.Agents[0].Hash != "$7$x":
			t.Errorf("agents %+v", snap.Agents)
		case len(snap.Failures) != 1 || snap.Failures[0] != fail:
			t.Errorf("failures %+v", snap.Failures)
		}
		update(t, a, func(tx Tx) error {
			return errors.Join(tx.DeleteSessions([]string{"aa"}), tx.DeleteLinks([]string{"lk-1"}), tx.DeleteFailure(FailAddress, "127.0.0.1"))
		})
		if snap := load(t, a); len(snap.Sessions)+len(snap.Links)+len(snap.Failures) != 0 {
			t.Errorf("after deleting: %+v", snap)
		}
	})

	t.Run("changes by another handle", func(t *testing.T) {
		a, b := open(t)
		if changed, err := a.Changed(ctx); err != nil || changed {
			t.Fatalf("first Changed: %v, %v", changed, err)
		}
		update(t, a, func(tx Tx) error { return tx.InsertAccount(account) })
		if changed, _ := a.Changed(ctx); changed {
			t.Error("a's own write counts as a change by another")
		}
		b.Changed(ctx)
		agent := AgentCredential{Agent: "a1", Hash: "$7$x", CreatedAt: at}
		update(t, b, func(tx Tx) error { return tx.PutAgent(agent) })

		// a has not looked since b wrote: its write is refused, unrun.
		ran := false
		err := a.Update(ctx, func(tx Tx) error { ran = true; return nil })
		if !errors.Is(err, ErrStale) || ran {
			t.Errorf("write over an unseen change: %v, ran %v", err, ran)
		}
		if changed, err := a.Changed(ctx); err != nil || !changed {
			t.Errorf("Changed after b's write: %v, %v", changed, err)
		}
		update(t, a, func(tx Tx) error { return nil })
		if snap := load(t, a); len(snap.Agents) != 1 {
			t.Errorf("a does not see b's agent: %+v", snap.Agents)
		}
	})
}

// Two hubs of a cluster share one identity store in PostgreSQL: a session
// begun on one works on the other at once, though the other has not
// polled (it looks in the store for a cookie it lacks), and a logout on
// one ends the session on the other at its next poll.
func TestHubsShareIdentityInPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	// Only what lookUp and the writes load reaches memory.
	noPoll := func(c *Config) { c.PollInterval = time.Hour }
	a, b := newEnvOn(t, dsn, noPoll), newEnvOn(t, dsn, noPoll)
	onA := a.ready("olga", auth.Maintainer, auth.Scope{Districts: []string{"north"}})
	onB := b.client("127.0.0.2")
	onB.hc, onB.csrf = onA.hc, onA.csrf // the same browser (cookies are per host, not port)

	var p auth.Principal
	r := onB.do(http.MethodGet, "/api/test/status", nil)
	want(t, "hub-b, with hub-a's session", r, http.StatusOK, "")
	if r.decode(t, &p); p.Name != "olga" || p.Via != auth.ViaSession {
		t.Fatalf("hub-b took the session for %+v", p)
	}
	// A token made on hub-b works on hub-a.
	_, secret, err := b.svc.AddToken(context.Background(), cli, TokenSpec{Name: "wall", Role: auth.Analyst,
		Scope: auth.Scope{Districts: []string{"north"}}, ExpiresAt: b.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	bearer := a.client("127.0.0.3")
	bearer.bearer = secret
	want(t, "hub-a, with hub-b's token", bearer.do(http.MethodGet, "/api/test/status", nil), http.StatusOK, "")

	want(t, "logout on hub-b", onB.do(http.MethodPost, "/api/auth/logout", nil), http.StatusNoContent, "")
	a.svc.poll(context.Background())
	want(t, "hub-a, after the logout on hub-b", onA.do(http.MethodGet, "/api/test/status", nil), http.StatusUnauthorized, "")
}
