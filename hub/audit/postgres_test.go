package audit

import (
	"log/slog"
	"strings"
	"testing"
)

// The log on the PostgreSQL database a cluster's hubs share: the tests
// below run again on it — two Logs appending to one chain are two hubs
// (TwoWriters), a hub with another key is refused (KeyFile) — and its
// triggers refuse what SQLite's do.
func TestPostgres(t *testing.T) {
	onPostgres = true
	t.Cleanup(func() { onPostgres = false })
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"AppendVerifyRoundTrip", TestAppendVerifyRoundTrip}, {"AppendCleans", TestAppendCleans},
		{"OtherKey", testPostgresOtherKey}, {"GroupCommit", TestGroupCommit}, {"TwoWriters", TestTwoWriters},
		{"Prune", TestPrune}, {"PruneKeepsSeqOrder", TestPruneKeepsSeqOrder},
		{"QueryFilters", TestQueryFilters}, {"QueryPaging", TestQueryPaging}, {"ExportJSONL", TestExportJSONL},
		{"VerifyHead", TestVerifyHead}, {"TriggersRefuse", testPostgresTriggers}, {"Tamper", testPostgresTamper},
	} {
		t.Run(tt.name, tt.test)
	}
}

func testPostgresTriggers(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, Options{}, Deps{})
	recs := appendN(t, l, 5)
	db := e.attacker(t)
	for _, tt := range []struct{ stmt, want string }{
		{`UPDATE records SET detail = 'x' WHERE seq = 3`, "cannot be changed"},
		{`DELETE FROM records WHERE seq = 3`, "only be deleted by retention"},
		{`TRUNCATE records`, "only be deleted by retention"},
		{`INSERT INTO records SELECT 9, at, actor, role, session, remote, action, object, outcome, detail, hash FROM records WHERE seq = 5`,
			"appended in sequence"},
		{`INSERT INTO records SELECT seq, at, actor, role, session, remote, action, object, outcome, detail, hash FROM records WHERE seq = 5
			ON CONFLICT (seq) DO UPDATE SET detail = 'x'`, "appended in sequence"},
		{`UPDATE anchor SET seq = 3`, "moved by retention only"},
		{`DELETE FROM anchor`, "cannot be deleted"},
		{`UPDATE meta SET value = 'x'`, "cannot be changed"},
		{`DELETE FROM meta`, "cannot be deleted"},
	} {
		_, err := db.Exec(tt.stmt)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want refused: %s", tt.stmt, err, tt.want)
		}
	}
	if rep := mustVerify(t, l); !rep.OK || rep.Records != 5 || rep.HeadHash != recs[4].Hash {
		t.Fatalf("Verify = %+v", rep)
	}
}

// Someone who can drop the triggers changes a record: Verify names it.
func testPostgresTamper(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, Options{}, Deps{})
	appendN(t, l, 8)
	exec(t, e.attacker(t), `DROP TRIGGER records_no_update`, `UPDATE records SET detail = 'nothing happened' WHERE seq = 7`)
	rep, err := l.Verify(t.Context())
	if err != nil || rep.OK || rep.FirstBroken == nil || rep.FirstBroken.Seq != 7 {
		t.Fatalf("Verify after tampering = %+v, %v; want record 7 named", rep, err)
	}
}

// A hub whose key is not the chain's cannot open it: its records could
// never be verified with the others'.
func testPostgresOtherKey(t *testing.T) {
	e := newEnv(t)
	appendN(t, e.open(t, Options{}, Deps{}), 2)
	other := e
	other.key = e.key + ".other"
	_, err := Open(other.db, Options{KeyFile: other.key}, Deps{Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("a second hub with its own key: %v", err)
	}
	if l := e.open(t, Options{}, Deps{}); mustVerify(t, l).Records != 2 {
		t.Fatal("the chain after a refused key")
	}
}
