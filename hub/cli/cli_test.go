package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// hubCLI runs command lines against one data directory.
type hubCLI struct {
	t   *testing.T
	dir string
	env map[string]string
}

func newCLI(t *testing.T) *hubCLI {
	return &hubCLI{t: t, dir: t.TempDir(), env: map[string]string{}}
}

// run runs a command line with stdin and returns the exit code and what it
// wrote.
func (c *hubCLI) run(stdin string, args ...string) (code int, out, errOut string) {
	c.t.Helper()
	var o, e bytes.Buffer
	env := func(k string) (string, bool) {
		if k == "CITYWATCH_DATA_DIR" {
			return c.dir, true
		}
		v, ok := c.env[k]
		return v, ok
	}
	code = Main(context.Background(), args, IO{In: strings.NewReader(stdin), Out: &o, Err: &e, Env: env})
	return code, o.String(), e.String()
}

func (c *hubCLI) must(stdin string, args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// TestFirstAdministrator makes the first accounts: there is no default
// account, so this is how a hub gets its administrator.
func TestFirstAdministrator(t *testing.T) {
	c := newCLI(t)
	out := c.must("Chosen-By-Her-2026\n", "users", "add", "-role", "admin", "-password-stdin", "-display", "Alice Wu", "alice")
	if !strings.Contains(out, "account alice (admin, scope all) created") || strings.Contains(out, "initial password") {
		t.Errorf("add with a chosen password:\n%s", out)
	}
	if !strings.Contains(out, "second factor") {
		t.Errorf("an admin is not told about the second factor:\n%s", out)
	}
	out = c.must("", "users", "add", "bob", "-role", "operator", "-scope", "district:north,site:s-7")
	m := regexp.MustCompile(`initial password \(shown once; it must be changed at first login\): (\S+)`).FindStringSubmatch(out)
	if m == nil || len(m[1]) < 12 {
		t.Fatalf("a made password is not shown once:\n%s", out)
	}
	list := c.must("", "users", "list")
	for _, want := range []string{"alice", "admin", "bob", "district:north,site:s-7", "must change password"} {
		if !strings.Contains(list, want) {
			t.Errorf("users list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, m[1]) {
		t.Error("the list shows a password")
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"users", "add", "-role", "wizard", "carol"}, 2, "not one of"},
		{[]string{"users", "add", "-role", "operator", "-scope", "zone:x", "carol"}, 2, "district:ID"},
		{[]string{"users", "add", "-role", "operator", "Bad Name"}, 1, ""},
		{[]string{"users", "add", "-role", "operator", "system"}, 1, ""},
		{[]string{"users", "add", "-role", "operator", "bob"}, 1, "exists"},
		{[]string{"users", "add", "-role", "auditor", "-grant", "account.manage", "dave"}, 2, "cannot be granted"},
		{[]string{"users"}, 2, "citywatch-hub users add"},
		{[]string{"nonsense", "x"}, 2, "citywatch-hub users add"},
	} {
		code, _, errOut := c.run("", tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d %q, want %d containing %q", tt.args, code, errOut, tt.code, tt.want)
		}
	}
	// A weak chosen password is refused with the rules it breaks.
	code, _, errOut := c.run("short\n", "users", "add", "-role", "analyst", "-password-stdin", "erin")
	if code != 1 || !strings.Contains(errOut, "12") {
		t.Errorf("weak password: exit %d %q", code, errOut)
	}
	// Every act is in the trail, as the command line's user.
	c.must("", "audit", "verify")
	var buf bytes.Buffer
	code = Main(context.Background(), []string{"audit", "export", "-format", "csv"}, IO{Out: &buf, Err: &bytes.Buffer{},
		Env: func(k string) (string, bool) { return c.dir, k == "CITYWATCH_DATA_DIR" }})
	if code != 0 {
		t.Fatal("export failed")
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	creates := 0
	for _, r := range rows {
		if strings.Join(r, ",") != "" && strings.Contains(strings.Join(r, ","), "account.create") && strings.Contains(strings.Join(r, ","), "cli:") {
			creates++
		}
	}
	if creates < 2 {
		t.Errorf("%d account creations in the export, want at least 2:\n%v", creates, rows)
	}
}

// TestAuditVerifyCatchesAnEditedRow edits one record directly in SQLite,
// as someone with the file would, and sees verify fail naming it; a head
// written down earlier catches the newest records being removed.
func TestAuditVerifyCatchesAnEditedRow(t *testing.T) {
	c := newCLI(t)
	for _, name := range []string{"ann", "ben", "cai"} {
		c.must("", "users", "add", "-role", "operator", name)
	}
	out := c.must("", "audit", "verify")
	if !strings.Contains(out, "audit trail OK") {
		t.Fatalf("verify of an intact trail:\n%s", out)
	}
	head := strings.TrimSpace(c.must("", "audit", "head"))
	if !regexp.MustCompile(`^\d+:[0-9a-f]{64}$`).MatchString(head) {
		t.Fatalf("head %q", head)
	}

	db, err := sql.Open("sqlite", filepath.Join(c.dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var triggers []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	if len(triggers) == 0 {
		t.Fatal("the trail has no protecting triggers")
	}
	// Through the triggers an edit is refused…
	if _, err := db.Exec(`UPDATE records SET detail = 'nothing happened' WHERE seq = 2`); err == nil {
		t.Fatal("an UPDATE of a record went through the triggers")
	}
	// …so an attacker drops them first.
	for _, n := range triggers {
		if _, err := db.Exec(`DROP TRIGGER "` + n + `"`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE records SET detail = 'nothing happened' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run("", "audit", "verify")
	if code != 1 || !strings.Contains(errOut, "BROKEN at record 2") {
		t.Fatalf("verify after an edit: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "audit.key")); err != nil {
		t.Fatal("no key file beside the trail")
	}
}

// TestAuditHeadCatchesTruncation removes the newest records and sees only
// a verification against a head written down earlier notice.
func TestAuditHeadCatchesTruncation(t *testing.T) {
	c := newCLI(t)
	c.must("", "users", "add", "-role", "operator", "ann")
	head := strings.TrimSpace(c.must("", "audit", "head"))
	c.must("", "users", "add", "-role", "operator", "ben")
	db, err := sql.Open("sqlite", filepath.Join(c.dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, _ := db.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	var triggers []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, n := range triggers {
		db.Exec(`DROP TRIGGER "` + n + `"`)
	}
	seq := strings.SplitN(head, ":", 2)[0]
	if _, err := db.Exec(`DELETE FROM records WHERE seq >= ` + seq); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := c.run("", "audit", "verify"); code != 0 {
		t.Fatalf("plain verify of a truncated trail: exit %d %s %s (it cannot know)", code, out, errOut)
	}
	code, _, errOut := c.run("", "audit", "verify", "-head", head)
	if code != 1 || !strings.Contains(errOut, "BROKEN") {
		t.Fatalf("verify against the earlier head: exit %d %q", code, errOut)
	}
}

// TestAgentsAndMosquittoFiles enrols agents, writes the files an external
// Mosquitto needs and revokes one.
func TestAgentsAndMosquittoFiles(t *testing.T) {
	c := newCLI(t)
	secret := strings.TrimSpace(c.must("", "agents", "enroll", "site-01"))
	if !strings.HasPrefix(secret, "cwa_") {
		t.Fatalf("secret %q", secret)
	}
	c.must("", "agents", "enroll", "site-02")
	passwd, acl := filepath.Join(c.dir, "passwd"), filepath.Join(c.dir, "acl")
	if code, _, errOut := c.run("", "agents", "mosquitto", "-passwd", passwd, "-acl", acl); code != 2 || !strings.Contains(errOut, "mqtt.username") {
		t.Errorf("without the hub's login: exit %d %q", code, errOut)
	}
	c.env["CITYWATCH_MQTT_USERNAME"], c.env["CITYWATCH_MQTT_PASSWORD"] = "citywatch-hub@site", "a-long-hub-password"
	c.must("", "agents", "mosquitto", "-passwd", passwd, "-acl", acl)
	pw, _ := os.ReadFile(passwd)
	for _, want := range []string{"site-01:$7$", "site-02:$7$", "citywatch-hub@site:$7$"} {
		if !strings.Contains(string(pw), want) {
			t.Errorf("password file lacks %q:\n%s", want, pw)
		}
	}
	if strings.Contains(string(pw), secret) {
		t.Error("the password file holds a secret in clear")
	}
	if a, _ := os.ReadFile(acl); !strings.Contains(string(a), "pattern write citywatch/v1/agents/%u/state") {
		t.Errorf("ACL:\n%s", a)
	}
	c.must("", "agents", "revoke", "site-01")
	list := c.must("", "agents", "list")
	if !regexp.MustCompile(`site-01\s.*revoked`).MatchString(list) || !regexp.MustCompile(`site-02\s.*active`).MatchString(list) {
		t.Errorf("agents list:\n%s", list)
	}
	c.must("", "agents", "mosquitto", "-passwd", passwd, "-acl", acl)
	if pw, _ := os.ReadFile(passwd); strings.Contains(string(pw), "site-01:") {
		t.Error("a revoked agent stays in the password file")
	}
	// Tokens for other systems.
	tok := strings.TrimSpace(c.must("", "tokens", "add", "-role", "analyst", "-expires", "24h", "dashboards"))
	if !strings.HasPrefix(tok, "cwt_") {
		t.Fatalf("token %q", tok)
	}
	if code, _, errOut := c.run("", "tokens", "add", "-role", "analyst", "forever"); code != 2 || !strings.Contains(errOut, "-expires") {
		t.Errorf("a token without expiry: exit %d %q", code, errOut)
	}
	if l := c.must("", "tokens", "list"); !strings.Contains(l, "dashboards") || strings.Contains(l, tok) {
		t.Errorf("tokens list:\n%s", l)
	}
}
