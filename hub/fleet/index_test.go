package fleet

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRankSetForms adds and removes ranks at random and checks the set
// against a map through both of its forms and the moves between them.
func TestRankSetForms(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 63, 64, 65, 1000, 5000} {
		var s rankSet
		want := map[int32]bool{}
		var forms [2]int // lists, bitmaps seen
		for step := range 20 * size {
			r := int32(rnd.IntN(size))
			// Grow, then shrink, then wander, so the set crosses both lines.
			grow := step < 5*size || step >= 10*size && rnd.IntN(2) == 0
			switch {
			case grow && !want[r]:
				s.add(r, size)
				want[r] = true
			case !grow && want[r]:
				s.remove(r, size)
				delete(want, r)
			}
			if s.bits != nil {
				forms[1]++
			} else {
				forms[0]++
			}
			if step%97 != 0 {
				continue
			}
			bits := make([]uint64, words(size))
			s.or(bits)
			var got []int32
			for i := nextSet(bits, 0, 0); i >= 0; i = nextSet(bits, i+1, 0) {
				got = append(got, int32(i))
			}
			var members []int32
			for r := range want {
				members = append(members, r)
			}
			slices.Sort(members)
			if s.n != len(want) || !slices.Equal(got, members) {
				t.Fatalf("size %d step %d: n %d, members %v, want %v", size, step, s.n, got, members)
			}
		}
		if size >= 64 && (forms[0] == 0 || forms[1] == 0) {
			t.Errorf("size %d: steps as list/bitmap %v, want both", size, forms)
		}
	}
}

func TestNextSet(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		b := make([]uint64, 1+rnd.IntN(5))
		var members []int
		for i := range len(b) * 64 {
			if rnd.IntN(1+rnd.IntN(8)) == 0 {
				b[i>>6] |= 1 << (i & 63)
				members = append(members, i)
			}
		}
		for range 50 {
			from, k := rnd.IntN(len(b)*64+2)-1, rnd.IntN(40)
			want := -1
			if from >= 0 {
				i, _ := slices.BinarySearch(members, from)
				if i+k < len(members) {
					want = members[i+k]
				}
			}
			if got := nextSet(b, from, k); got != want {
				t.Fatalf("nextSet(%x, %d, %d) = %d, want %d", b, from, k, got, want)
			}
		}
	}
}
