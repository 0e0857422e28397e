package coverage

import (
	"hash/maphash"
	"math/rand/v2"
	"testing"
)

// The table finds what a map would, through adds and removals that grow
// and shrink it, in runs that wrap around its end; the records it indexes
// are where it says.
func TestTable(t *testing.T) {
	var keys []CellID // a record is its key; a freed one is 0
	var free []int32
	tab := newTable(hashCell(maphash.MakeSeed()), func(p int32) CellID { return keys[p] })
	want := map[CellID]int32{}
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(step int) {
		t.Helper()
		if tab.n != len(want) {
			t.Fatalf("step %d: %d keys, want %d", step, tab.n, len(want))
		}
		for i := range int32(60) {
			for j := range int32(50) {
				k := cellID(i-30, j-25)
				p, ok := tab.get(k)
				if w, in := want[k]; ok != in || ok && p != w {
					t.Fatalf("step %d: %v at %d (%v), want %d (%v)", step, k, p, ok, w, in)
				}
			}
		}
	}
	for step := range 30_000 {
		k := cellID(rng.Int32N(60)-30, rng.Int32N(50)-25)
		_, in := want[k]
		switch add := rng.IntN(4) > 0; {
		case add == (step < 15_000) && !in:
			var p int32
			if n := len(free); n > 0 {
				p, free = free[n-1], free[:n-1]
				keys[p] = k
			} else {
				p = int32(len(keys))
				keys = append(keys, k)
			}
			tab.put(k, p)
			want[k] = p
		case add != (step < 15_000) && in:
			p := want[k]
			tab.remove(k)
			delete(want, k)
			keys[p] = 0
			free = append(free, p)
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	for k := range want {
		tab.remove(k)
		delete(want, k)
	}
	check(-1)
	if len(tab.slots) > 16 {
		t.Errorf("an empty table keeps %d slots", len(tab.slots))
	}
}
