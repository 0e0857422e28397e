package fleet

import (
	"math/rand/v2"
	"testing"
)

// TestWindowAgainstASet: the window answers like a plain set of the seqs
// added, for every seq above the floor, and keeps its spans sorted,
// disjoint, non-adjacent and bounded; whatever it gave up lies at or
// below the floor.
func TestWindowAgainstASet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var w window
		w.reset(1000)
		set := map[uint64]bool{1000: true}
		for range 300 {
			seq := 900 + rng.Uint64N(400)
			if w.has(seq) {
				if !set[seq] && seq > w.floor {
					t.Fatalf("round %d: has(%d) without adding it", round, seq)
				}
				continue
			}
			if set[seq] {
				t.Fatalf("round %d: lost %d above the floor %d", round, seq, w.floor)
			}
			w.add(seq)
			set[seq] = true
			if len(w.spans) > maxSpans {
				t.Fatalf("round %d: %d spans", round, len(w.spans))
			}
			prev := w.floor
			for i, s := range w.spans {
				if s.lo > s.hi || s.lo <= prev+1 && (i > 0 || s.lo <= w.floor+1) {
					t.Fatalf("round %d: span %d %+v after %d (floor %d) is not sorted, disjoint and apart", round, i, s, prev, w.floor)
				}
				prev = s.hi
			}
		}
		for seq := range set {
			if !w.has(seq) {
				t.Fatalf("round %d: added %d, has says no", round, seq)
			}
		}
	}
}
