package coverage

import "hash/maphash"

// table finds a record of a slice by its key: open addressing over a
// power-of-two array of positions in the slice, probed linearly and kept
// between 1/8 and 3/4 full. The records hold their keys, so a slot is a
// position and a byte of the key's hash (which spares reading the records
// a probe passes): 6 to 13 bytes a record, where a Go map took 25 to 45
// with the key a second time beside the position. A city has a hundred
// thousand cameras and several times as many cells.
type table[K comparable] struct {
	slots []int32 // a position plus one; 0 is empty
	tags  []uint8 // the top byte of the hash of each slot's key
	n     int
	hash  func(K) uint64
	key   func(pos int32) K // the key of the record at pos
}

func newTable[K comparable](hash func(K) uint64, key func(int32) K) table[K] {
	return table[K]{hash: hash, key: key}
}

// hashString and hashCell are the hashes of the model's tables.
func hashString(seed maphash.Seed) func(string) uint64 {
	return func(s string) uint64 { return maphash.String(seed, s) }
}

func hashCell(seed maphash.Seed) func(CellID) uint64 {
	return func(c CellID) uint64 { return maphash.Comparable(seed, c) }
}

// find returns the slot of k, whose hash is h: where its position is, or
// the empty slot where it would go; -1 when the table has no slots.
func (t *table[K]) find(k K, h uint64) int {
	if len(t.slots) == 0 {
		return -1
	}
	mask, tag := len(t.slots)-1, uint8(h>>56)
	i := int(h) & mask
	for p := t.slots[i]; p != 0 && (t.tags[i] != tag || t.key(p-1) != k); p = t.slots[i] {
		i = (i + 1) & mask
	}
	return i
}

// get returns the position of k.
func (t *table[K]) get(k K) (int32, bool) {
	if i := t.find(k, t.hash(k)); i >= 0 && t.slots[i] != 0 {
		return t.slots[i] - 1, true
	}
	return -1, false
}

// put records that k, which the table lacks, is at pos.
func (t *table[K]) put(k K, pos int32) {
	if 4*(t.n+1) > 3*len(t.slots) {
		t.resize(max(16, 2*len(t.slots)))
	}
	h := t.hash(k)
	i := t.find(k, h)
	t.slots[i], t.tags[i] = pos+1, uint8(h>>56)
	t.n++
}

// remove forgets k, if present. The positions after it in its run move
// back, so that every key stays reachable from its home slot without
// tombstones.
func (t *table[K]) remove(k K) {
	i := t.find(k, t.hash(k))
	if i < 0 || t.slots[i] == 0 {
		return
	}
	mask := len(t.slots) - 1
	for j := i; ; {
		t.slots[i] = 0
		for {
			j = (j + 1) & mask
			p := t.slots[j]
			if p == 0 {
				t.n--
				if len(t.slots) > 16 && 8*t.n < len(t.slots) {
					t.resize(len(t.slots) / 2)
				}
				return
			}
			// The key at j may fill the hole at i unless its home lies
			// cyclically within (i, j]: then it would be before its home.
			if h := int(t.hash(t.key(p-1))) & mask; i <= j && (h <= i || h > j) || i > j && h <= i && h > j {
				break
			}
		}
		t.slots[i], t.tags[i] = t.slots[j], t.tags[j]
		i = j
	}
}

func (t *table[K]) resize(size int) {
	old := t.slots
	t.slots, t.tags = make([]int32, size), make([]uint8, size)
	for _, p := range old {
		if p != 0 {
			k := t.key(p - 1)
			h := t.hash(k)
			i := t.find(k, h)
			t.slots[i], t.tags[i] = p, uint8(h>>56)
		}
	}
}
