package fleet

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The device table finds what a map would, through adds, replacements
// and removals that grow and shrink it, in runs that wrap around its end.
func TestDeviceTable(t *testing.T) {
	tab := newDeviceTable()
	want := map[string]*device{}
	dev := func(id string) *device { return &device{text: id, nameAt: uint8(len(id)), serialAt: uint8(len(id))} }
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(step int) {
		t.Helper()
		if tab.len() != len(want) {
			t.Fatalf("step %d: %d devices, want %d", step, tab.len(), len(want))
		}
		for i := range 3000 {
			id := fmt.Sprintf("cam-%d", i)
			if got := tab.get(id); got != want[id] {
				t.Fatalf("step %d: %s is %p, want %p", step, id, got, want[id])
			}
		}
		n := 0
		for d := range tab.all() {
			if want[d.id()] != d {
				t.Fatalf("step %d: all yields %s, not in the table", step, d.id())
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("step %d: all yields %d devices, want %d", step, n, len(want))
		}
	}
	for step := range 30_000 {
		id := fmt.Sprintf("cam-%d", rng.IntN(3000))
		// Adds outweigh removals for the first half, then the reverse.
		if add := rng.IntN(4) > 0; add == (step < 15_000) {
			d := dev(id)
			tab.put(d)
			want[id] = d
		} else {
			tab.remove(id)
			delete(want, id)
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	for id := range want {
		tab.remove(id)
		delete(want, id)
	}
	check(-1)
	if len(tab.slots) > 16 {
		t.Errorf("an empty table keeps %d slots", len(tab.slots))
	}
}
