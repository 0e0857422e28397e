package fleet

import (
	"hash/maphash"
	"iter"
)

// deviceTable finds a device by its id: open addressing over a power-of-two
// array of pointers, probed linearly and kept between 1/8 and 3/4 full. A
// map[string]*device cost some 45 bytes a device, because its slots hold
// the key's string header beside the pointer; the key is already in the
// device, so a slot here is the pointer and a byte of the id's hash (which
// spares reading the devices a probe passes), 12 to 24 bytes a device.
type deviceTable struct {
	seed  maphash.Seed
	slots []*device // nil: empty
	tags  []uint8   // the top byte of the hash of each slot's id
	n     int
}

func newDeviceTable() deviceTable { return deviceTable{seed: maphash.MakeSeed()} }

func (t *deviceTable) len() int { return t.n }

func (t *deviceTable) hash(id string) uint64 { return maphash.String(t.seed, id) }

// find returns the slot of id, whose hash is h: where its device is, or
// the empty slot where it would go; -1 when the table has no slots.
func (t *deviceTable) find(id string, h uint64) int {
	if len(t.slots) == 0 {
		return -1
	}
	mask, tag := len(t.slots)-1, uint8(h>>56)
	i := int(h) & mask
	for d := t.slots[i]; d != nil && (t.tags[i] != tag || d.id() != id); d = t.slots[i] {
		i = (i + 1) & mask
	}
	return i
}

// get returns the device of id, or nil.
func (t *deviceTable) get(id string) *device {
	if i := t.find(id, t.hash(id)); i >= 0 {
		return t.slots[i]
	}
	return nil
}

// put adds d, or puts it in the place of the device of the same id.
func (t *deviceTable) put(d *device) {
	if 4*(t.n+1) > 3*len(t.slots) {
		t.resize(max(16, 2*len(t.slots)))
	}
	h := t.hash(d.id())
	i := t.find(d.id(), h)
	if t.slots[i] == nil {
		t.n++
	}
	t.slots[i], t.tags[i] = d, uint8(h>>56)
}

// remove forgets the device of id, if any. The devices after it in its
// run move back, so that every device stays reachable from its home slot
// without tombstones.
func (t *deviceTable) remove(id string) {
	i := t.find(id, t.hash(id))
	if i < 0 || t.slots[i] == nil {
		return
	}
	mask := len(t.slots) - 1
	for j := i; ; {
		t.slots[i] = nil
		for {
			j = (j + 1) & mask
			d := t.slots[j]
			if d == nil {
				t.n--
				if len(t.slots) > 16 && 8*t.n < len(t.slots) {
					t.resize(len(t.slots) / 2)
				}
				return
			}
			// d may fill the hole at i unless its home lies cyclically
			// within (i, j]: then it would be before its home.
			if h := int(t.hash(d.id())) & mask; i <= j && (h <= i || h > j) || i > j && h <= i && h > j {
				break
			}
		}
		t.slots[i], t.tags[i] = t.slots[j], t.tags[j]
		i = j
	}
}

func (t *deviceTable) resize(size int) {
	old := t.slots
	t.slots, t.tags = make([]*device, size), make([]uint8, size)
	for _, d := range old {
		if d != nil {
			h := t.hash(d.id())
			i := t.find(d.id(), h)
			t.slots[i], t.tags[i] = d, uint8(h>>56)
		}
	}
}

// all yields every device, in no particular order.
func (t *deviceTable) all() iter.Seq[*device] {
	return func(yield func(*device) bool) {
		for _, d := range t.slots {
			if d != nil && !yield(d) {
				return
			}
		}
	}
}
