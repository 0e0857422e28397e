package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTamper changes the file as an attacker with access to it would,
// dropping the triggers first, and checks Verify names the record.
func TestTamper(t *testing.T) {
	tests := []struct {
		name   string
		attack func(t *testing.T, db *sql.DB, recs []Record)
		seq    uint64
		reason string
	}{
		{"detail changed", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_update`, `UPDATE records SET detail = 'nothing happened' WHERE seq = 7`)
		}, 7, "hash mismatch: the record or an earlier one was changed"},
		{"time changed", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_update`, `UPDATE records SET at = at + 1 WHERE seq = 2`)
		}, 2, "hash mismatch"},
		{"time made unreadable", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_update`, `UPDATE records SET at = 'yesterday' WHERE seq = 6`)
		}, 6, "unreadable record"},
		{"outcome and hash changed", func(t *testing.T, db *sql.DB, recs []Record) {
			// The attacker recomputes the hash, but with a key of their own.
			r := recs[4]
			r.Outcome = Denied
			forged := fmt.Sprintf("%x", newChain(make([]byte, 32)).sum(mustDecode(t, recs[3].Hash), &r))
			exec(t, db, `DROP TRIGGER records_no_update`,
				`UPDATE records SET outcome = 'denied', hash = '`+forged+`' WHERE seq = 5`)
		}, 5, "hash mismatch"},
		{"middle record deleted", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_delete`, `DELETE FROM records WHERE seq = 4`)
		}, 4, "sequence gap: record 4 missing"},
		{"records deleted", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_delete`, `DELETE FROM records WHERE seq BETWEEN 4 AND 6`)
		}, 4, "sequence gap: records 4–6 missing"},
		{"oldest records deleted", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_delete`, `DELETE FROM records WHERE seq <= 3`)
		}, 1, "sequence gap: records 1–3 missing"},
		{"oldest records deleted, anchor forged", func(t *testing.T, db *sql.DB, recs []Record) {
			exec(t, db, `DROP TRIGGER records_no_delete`, `DROP TRIGGER anchor_no_update`, `DELETE FROM records WHERE seq <= 3`,
				`UPDATE anchor SET seq = 3, hash = '`+recs[2].Hash+`', mac = '`+strings.Repeat("ab", 32)+`'`)
		}, 3, "anchor mismatch"},
		{"record inserted", func(t *testing.T, db *sql.DB, recs []Record) {
			exec(t, db, `DROP TRIGGER records_in_sequence`,
				`INSERT INTO records SELECT 11, at, actor, role, session, remote, action, object, outcome, 'again', hash FROM records WHERE seq = 10`)
		}, 11, "hash mismatch"},
		{"records swapped", func(t *testing.T, db *sql.DB, _ []Record) {
			exec(t, db, `DROP TRIGGER records_no_update`,
				`UPDATE records SET seq = -8 WHERE seq = 8`, `UPDATE records SET seq = 8 WHERE seq = 9`, `UPDATE records SET seq = 9 WHERE seq = -8`)
		}, 8, "hash mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			l := e.open(t, Options{}, Deps{})
			recs := appendN(t, l, 10)
			if rep := mustVerify(t, l); !rep.OK {
				t.Fatalf("before the attack: %+v", rep.FirstBroken)
			}
			tt.attack(t, e.attacker(t), recs)
			rep := mustVerify(t, l)
			if rep.OK || rep.FirstBroken == nil {
				t.Fatalf("Verify after the attack = %+v, want broken", rep)
			}
			if rep.FirstBroken.Seq != tt.seq || !strings.HasPrefix(rep.FirstBroken.Reason, tt.reason) {
				t.Fatalf("first broken = %+v, want seq %d: %s…", *rep.FirstBroken, tt.seq, tt.reason)
			}
			kinds := map[string]string{"hash": BrokenHash, "sequence": BrokenGap, "anchor": BrokenAnchor, "unreadable": BrokenUnreadable}
			if want := kinds[strings.Fields(tt.reason)[0]]; rep.FirstBroken.Kind != want {
				t.Fatalf("first broken kind = %q, want %q", rep.FirstBroken.Kind, want)
			}
		})
	}
}

func mustDecode(t *testing.T, h string) []byte {
	t.Helper()
	b, err := decodeHash(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTriggersRefuse changes the file without dropping the triggers.
func TestTriggersRefuse(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, Options{}, Deps{})
	recs := appendN(t, l, 5)
	db := e.attacker(t)
	// Each engine's own way to replace a record wholesale.
	replace := struct{ stmt, want string }{`INSERT OR REPLACE INTO records SELECT seq, at, actor, role, session, remote, action, object, outcome, 'x', hash FROM records WHERE seq = 3`,
		"appended in sequence"}
	if onPostgres {
		replace = struct{ stmt, want string }{`TRUNCATE records`, "only be deleted by retention"}
	}
	for _, tt := range []struct{ stmt, want string }{
		{`UPDATE records SET detail = 'x' WHERE seq = 3`, "cannot be changed"},
		{`DELETE FROM records WHERE seq = 3`, "only be deleted by retention"},
		{`DELETE FROM records`, "only be deleted by retention"},
		replace,
		{`INSERT INTO records SELECT 9, at, actor, role, session, remote, action, object, outcome, detail, hash FROM records WHERE seq = 5`,
			"appended in sequence"},
		{`INSERT INTO records (seq, at, actor, role, session, remote, action, object, outcome, detail, hash)
			SELECT seq, at, actor, role, session, remote, action, object, outcome, detail, hash FROM records WHERE seq = 5
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
	rep := mustVerify(t, l)
	if !rep.OK || rep.Records != 5 || rep.HeadHash != recs[4].Hash {
		t.Fatalf("Verify = %+v", rep)
	}
}

// TestVerifyHead checks a head written down earlier: a truncation the
// chain alone cannot show.
func TestVerifyHead(t *testing.T) {
	e := newEnv(t)
	c := &clock{t: t0}
	l := e.open(t, Options{Now: c.Now}, Deps{})
	recs := appendN(t, l, 10)
	ctx := context.Background()
	seq, hash, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	noted := Checkpoint{Seq: seq, Hash: hash}

	rep, err := l.VerifyHead(ctx, noted)
	if err != nil || !rep.OK || rep.Checkpoint != CheckpointMatched {
		t.Fatalf("VerifyHead(head) = %+v, %v", rep, err)
	}
	rep, _ = l.VerifyHead(ctx, Checkpoint{Seq: 6, Hash: recs[4].Hash})
	if rep.OK || rep.FirstBroken.Seq != 6 || rep.FirstBroken.Kind != BrokenCheckpoint || !strings.HasPrefix(rep.FirstBroken.Reason, "checkpoint mismatch") {
		t.Fatalf("VerifyHead(wrong hash) = %+v", rep)
	}
	if _, err := l.VerifyHead(ctx, Checkpoint{Seq: 3, Hash: "abc"}); err == nil {
		t.Fatal("VerifyHead took a malformed checkpoint")
	}

	exec(t, e.attacker(t), `DROP TRIGGER records_no_delete`, `DELETE FROM records WHERE seq >= 9`)
	if rep := mustVerify(t, l); !rep.OK || rep.HeadSeq != 8 {
		t.Fatalf("Verify after truncation = %+v; the chain alone cannot show it", rep)
	}
	rep, err = l.VerifyHead(ctx, noted)
	if err != nil || rep.OK || rep.FirstBroken.Seq != 9 || rep.FirstBroken.Kind != BrokenTruncated || !strings.HasPrefix(rep.FirstBroken.Reason, "truncated") ||
		!strings.Contains(rep.FirstBroken.Reason, "records 9–10 missing") {
		t.Fatalf("VerifyHead after truncation = %+v, %v", rep, err)
	}

	// A checkpoint retention has passed cannot be compared; the anchor's
	// own can.
	if _, err := l.Prune(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cp   Checkpoint
		want string
	}{
		{Checkpoint{Seq: 3, Hash: recs[2].Hash}, CheckpointPruned},
		{Checkpoint{Seq: 8, Hash: recs[7].Hash}, CheckpointMatched},
	} {
		rep, err := l.VerifyHead(ctx, tt.cp)
		if err != nil || !rep.OK || rep.AnchorSeq != 8 || rep.Checkpoint != tt.want {
			t.Errorf("VerifyHead(%d) after prune = %+v, %v; want %s", tt.cp.Seq, rep, err, tt.want)
		}
	}
}
