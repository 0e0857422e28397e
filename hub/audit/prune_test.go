package audit

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func appendAt(t testing.TB, l *Log, ats ...time.Time) []Record {
	t.Helper()
	out := make([]Record, len(ats))
	for i, at := range ats {
		r := sample(i + 1)
		r.At = at
		var err error
		if out[i], err = l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func pruneRecords(t testing.TB, l *Log) []Record {
	t.Helper()
	p, err := l.Query(context.Background(), Filter{Action: PruneAction})
	if err != nil {
		t.Fatal(err)
	}
	return p.Records
}

func TestPrune(t *testing.T) {
	e := newEnv(t)
	c := &clock{t: t0.Add(time.Hour)}
	l := e.open(t, Options{Now: c.Now}, Deps{})
	ctx := context.Background()
	var ats []time.Time
	for i := range 10 {
		ats = append(ats, t0.Add(time.Duration(i)*time.Hour))
	}
	recs := appendAt(t, l, ats...)

	n, err := l.Prune(ctx, t0.Add(5*time.Hour))
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want 5", n, err)
	}
	rep := mustVerify(t, l)
	if !rep.OK || rep.AnchorSeq != 5 || rep.Records != 6 || rep.HeadSeq != 11 {
		t.Fatalf("Verify after prune = %+v", rep)
	}
	prunes := pruneRecords(t, l)
	if len(prunes) != 1 {
		t.Fatalf("prune records: %+v", prunes)
	}
	if p := prunes[0]; p.Seq != 11 || p.Actor != "system" || p.Outcome != Success || !p.At.Equal(c.Now()) ||
		!strings.Contains(p.Detail, "deleted 5 records up to seq 5") {
		t.Fatalf("prune record %+v", p)
	}
	page, err := l.Query(ctx, Filter{})
	if err != nil || len(page.Records) != 6 || page.Records[5].Seq != 6 || page.Records[5].Hash != recs[5].Hash {
		t.Fatalf("records left: %+v, %v", page.Records, err)
	}

	if n, err := l.Prune(ctx, t0.Add(5*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v; want 0", n, err)
	}
	if len(pruneRecords(t, l)) != 1 {
		t.Fatal("a prune that deleted nothing was recorded")
	}
	// The guard is closed again once Prune is done.
	if _, err := e.attacker(t).Exec(`DELETE FROM records WHERE seq = 6`); err == nil {
		t.Fatal("delete allowed after prune")
	}

	// Everything goes, the prune record with it; the next one chains to
	// the anchor.
	if n, err := l.Prune(ctx, t0.Add(1000*time.Hour)); err != nil || n != 6 {
		t.Fatalf("Prune all = %d, %v; want 6", n, err)
	}
	appendN(t, l, 1)
	rep = mustVerify(t, l)
	if !rep.OK || rep.AnchorSeq != 11 || rep.Records != 2 || rep.HeadSeq != 13 {
		t.Fatalf("Verify after pruning everything = %+v", rep)
	}
}

// TestPruneKeepsSeqOrder deletes only a prefix of the chain: a record
// older than its predecessor waits for it.
func TestPruneKeepsSeqOrder(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, Options{}, Deps{})
	appendAt(t, l, t0, t0.Add(10*time.Hour), t0.Add(time.Hour), t0.Add(2*time.Hour))
	n, err := l.Prune(context.Background(), t0.Add(5*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	if rep := mustVerify(t, l); !rep.OK || rep.AnchorSeq != 1 {
		t.Fatalf("Verify = %+v", rep)
	}
}

func TestRunPrunesDaily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		l := e.open(t, Options{Retention: 48 * time.Hour}, Deps{})
		start := time.Now()
		appendAt(t, l, start.Add(-72*time.Hour), start.Add(-time.Hour))
		run(t, l)
		anchor := func() uint64 {
			rep := mustVerify(t, l)
			if !rep.OK {
				t.Fatalf("Verify: %+v", rep.FirstBroken)
			}
			return rep.AnchorSeq
		}

		synctest.Wait() // Run prunes when it starts
		if a, p := anchor(), len(pruneRecords(t, l)); a != 1 || p != 1 {
			t.Fatalf("at start: anchor %d, %d prune records; want 1, 1", a, p)
		}
		time.Sleep(pruneEvery)
		synctest.Wait()
		if a, p := anchor(), len(pruneRecords(t, l)); a != 1 || p != 1 {
			t.Fatalf("a day later: anchor %d, %d prune records; want nothing new", a, p)
		}
		time.Sleep(pruneEvery)
		synctest.Wait()
		// The second record is now 49 hours old; the first prune record,
		// 48, stays.
		if a, p := anchor(), len(pruneRecords(t, l)); a != 2 || p != 2 {
			t.Fatalf("two days later: anchor %d, %d prune records; want 2, 2", a, p)
		}
	})
}
