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
		{"VerifyHead", TestVerifyHead}, {"TriggersRefuse", TestTriggersRefuse}, {"Tamper", testPostgresTamper},
	} {
		t.Run(tt.name, tt.test)
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
