package fleet

import (
	"cmp"
	"iter"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"github.com/citywatch/citywatch/wire"
)

// index keeps every device in id order and, per status, kind, district and
// site, the set of their ranks (positions in that order), so that a query
// costs a few bitmap operations and its page rather than a pass over the
// fleet. Status changes and attribute changes update the sets in place
// (count and setStatus call in); a device added or removed changes every
// rank after it, so that marks the index stale (Registry.sortedOK) and the
// next read rebuilds it, by merging rather than re-sorting the fleet.
type index struct {
	sorted    []*device
	statuses  [numStatuses]rankSet
	kinds     map[wire.DeviceKind]*rankSet
	districts map[string]*rankSet
	sites     map[string]*rankSet
	acc, dim  []uint64 // a query's scratch bitmaps
	// corpus is every device's haystack in rank order, each ended by a
	// NUL, and offsets[rank] where it starts (offsets[len(sorted)] is the
	// end): one string a search runs through at memory speed instead of
	// 100,000 small ones, and the only copy of the haystacks. Built by the
	// first search after a change of order or of a device's searched
	// fields, which drops it; a fleet nobody searches keeps none. Offsets
	// are 32 bits, half an int: a corpus of more than 4 GiB is not built.
	corpus   string
	offsets  []uint32
	corpusOK bool
}

// rankSet is a set of ranks: a sorted list while it holds few of the
// fleet, a bitmap over every rank once it holds many. Either way a
// dimension (status, kind, district, site) costs at most 12 bytes per
// device, however many districts or sites the fleet has: lists take 4
// bytes a member, and a bitmap (an eighth of a byte per device) is kept
// only by a set holding at least 1/64 of the devices, of which a
// dimension has at most 64.
type rankSet struct {
	n    int
	bits []uint64 // non-nil: the set is this bitmap
	list []int32  // sorted, while bits is nil
}

func words(size int) int { return (size + 63) / 64 }

// dense reports whether a set of n of size devices is kept as a bitmap;
// sparse whether a bitmap should become a list again. The gap between the
// two keeps a set near the line from flipping at every change.
func dense(n, size int) bool  { return n > size/32 }
func sparse(n, size int) bool { return n < size/64 }

func (s *rankSet) add(r int32, size int) {
	s.n++
	if s.bits != nil {
		s.bits[r>>6] |= 1 << (r & 63)
		return
	}
	i, _ := slices.BinarySearch(s.list, r)
	s.list = slices.Insert(s.list, i, r)
	if dense(s.n, size) {
		s.toBits(size)
	}
}

func (s *rankSet) remove(r int32, size int) {
	s.n--
	if s.bits == nil {
		if i, ok := slices.BinarySearch(s.list, r); ok {
			s.list = slices.Delete(s.list, i, i+1)
		}
		return
	}
	s.bits[r>>6] &^= 1 << (r & 63)
	if sparse(s.n, size) {
		s.toList()
	}
}

func (s *rankSet) toList() {
	s.list = make([]int32, 0, s.n)
	for i := nextSet(s.bits, 0, 0); i >= 0; i = nextSet(s.bits, i+1, 0) {
		s.list = append(s.list, int32(i))
	}
	s.bits = nil
}

func (s *rankSet) toBits(size int) {
	s.bits = make([]uint64, words(size))
	for _, r := range s.list {
		s.bits[r>>6] |= 1 << (r & 63)
	}
	s.list = nil
}

// or adds the set's members to the bitmap dst.
func (s *rankSet) or(dst []uint64) {
	if s.bits != nil {
		for i, w := range s.bits {
			dst[i] |= w
		}
		return
	}
	for _, r := range s.list {
		dst[r>>6] |= 1 << (r & 63)
	}
}

// nextSet returns the rank of the set bit of b that follows k others at
// or after from, or -1: nextSet(b, from, 0) is the first at or after from.
// Whole words are skipped by their population count, so an offset into a
// large set costs words, not members.
func nextSet(b []uint64, from, k int) int {
	w := from >> 6
	if from < 0 || w >= len(b) {
		return -1
	}
	word := b[w] &^ (1<<(from&63) - 1)
	for {
		if n := bits.OnesCount64(word); k >= n {
			k -= n
		} else {
			for ; k > 0; k-- {
				word &= word - 1
			}
			return w<<6 + bits.TrailingZeros64(word)
		}
		if w++; w >= len(b) {
			return -1
		}
		word = b[w]
	}
}

// searched is what a search looks in: a device's id, name, site and site
// name, and the device's and site's names in other languages.
type searched struct {
	id, name, site, siteName string
	names                    *Localised
}

func searchedOf(v *Device) searched {
	return searched{v.ID, v.Name, v.Site, v.SiteName, v.Localised}
}

func (d *device) searched() searched {
	at := d.attrs
	return searched{d.id(), d.name(), at.site.id, at.site.name, at.names}
}

// fields yields the searched fields, the names in the order of their
// language tags, so that the same names make the same haystack.
func (s *searched) fields() iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, f := range [...]string{s.id, s.name, s.site, s.siteName} {
			if !yield(f) {
				return
			}
		}
		if l := s.names; l != nil {
			for _, names := range [...]wire.Names{l.Names, l.SiteNames} {
				for _, tag := range slices.Sorted(maps.Keys(names)) {
					if !yield(names[tag]) {
						return
					}
				}
			}
		}
	}
}

// appendHaystack appends the text Search looks in: the searched fields
// lower-cased, separated by NUL bytes so that a needle without one cannot
// match across two fields.
func (s *searched) appendHaystack(b []byte) []byte {
	first := true
	for f := range s.fields() {
		if !first {
			b = append(b, 0)
		}
		first = false
		b = append(b, strings.ToLower(f)...)
	}
	return b
}

// indexCount is count's hook: d joins (n = 1) or leaves (n = -1) the
// sets of its current status, kind, district and site. Attribute changes
// are a leave and a join around setAttrs, inside one lock, so counted
// tells a present device from a removed one when the index is rebuilt.
func (r *Registry) indexCount(d *device, n int) {
	d.set(counted, n > 0)
	if n > 0 && !d.is(ranked) {
		r.sortedOK = false // a new device: every rank after it moves
	}
	if !r.sortedOK {
		return
	}
	x, size, rank := &r.idx, len(r.idx.sorted), d.rank
	kindName, districtName, siteName := d.attrs.kind, d.attrs.district, d.attrs.site.id
	st := &x.statuses[d.status]
	kind, district, site := member(&x.kinds, kindName), member(&x.districts, districtName), member(&x.sites, siteName)
	if n > 0 {
		if x.corpusOK {
			text := d.searched()
			if string(text.appendHaystack(nil)) != x.haystack(int(rank)) {
				x.dropCorpus()
			}
		}
		for _, s := range []*rankSet{st, kind, district, site} {
			s.add(rank, size)
		}
		return
	}
	for _, s := range []*rankSet{st, kind, district, site} {
		s.remove(rank, size)
	}
	drop(x.kinds, kindName)
	drop(x.districts, districtName)
	drop(x.sites, siteName)
}

// member returns the set of key in *m, creating it if need be.
func member[K comparable](m *map[K]*rankSet, key K) *rankSet {
	s := (*m)[key]
	if s == nil {
		if *m == nil {
			*m = make(map[K]*rankSet)
		}
		s = new(rankSet)
		(*m)[key] = s
	}
	return s
}

// drop forgets the set of key once it is empty, so a fleet that renames
// its districts does not keep the old names.
func drop[K comparable](m map[K]*rankSet, key K) {
	if s := m[key]; s != nil && s.n == 0 {
		delete(m, key)
	}
}

// indexStatus is setStatus's hook.
func (r *Registry) indexStatus(d *device, from, to int) {
	if !r.sortedOK || from == to {
		return
	}
	size := len(r.idx.sorted)
	r.idx.statuses[from].remove(d.rank, size)
	r.idx.statuses[to].add(d.rank, size)
}

// index makes r.idx current: the devices kept in order are merged with
// those added since the last build (sorted among themselves), which
// costs the fleet once plus sorting what is new, and then every set is
// rebuilt from the ranks.
func (r *Registry) index() {
	if r.sortedOK {
		return
	}
	x := &r.idx
	// Sorted with their ids beside them: comparing through the device
	// pointers would miss the cache twice per comparison.
	type keyed struct {
		id string
		d  *device
	}
	keys := make([]keyed, 0, max(0, r.devices.len()-len(x.sorted)))
	for d := range r.devices.all() {
		if !d.is(ranked) {
			keys = append(keys, keyed{d.id(), d})
		}
	}
	slices.SortFunc(keys, func(a, b keyed) int { return cmp.Compare(a.id, b.id) })
	fresh := make([]*device, len(keys))
	for i, k := range keys {
		fresh[i] = k.d
	}
	byID := func(a, b *device) int { return cmp.Compare(a.id(), b.id()) }
	merged := make([]*device, 0, r.devices.len())
	old := x.sorted
	for i, j := 0, 0; i < len(old) || j < len(fresh); {
		switch {
		case i < len(old) && !old[i].is(counted): // removed
			i++
		case j == len(fresh) || i < len(old) && byID(old[i], fresh[j]) < 0:
			merged = append(merged, old[i])
			i++
		default:
			merged = append(merged, fresh[j])
			j++
		}
	}
	x.sorted = merged

	size := len(merged)
	x.dropCorpus()
	// Statuses and kinds are few and large: they start as bitmaps,
	// districts and sites as lists; each takes its form at the end.
	for i := range x.statuses {
		x.statuses[i] = rankSet{bits: make([]uint64, words(size))}
	}
	x.kinds = make(map[wire.DeviceKind]*rankSet)
	x.districts = make(map[string]*rankSet)
	x.sites = make(map[string]*rankSet)
	var kind, district, site *rankSet // neighbours by id usually share all three
	var prev *attrs
	for i, d := range merged {
		rank := int32(i)
		d.rank = rank
		d.set(ranked, true)
		st := &x.statuses[d.status]
		st.n++
		st.bits[rank>>6] |= 1 << (rank & 63)
		if at := d.attrs; at != prev {
			if prev == nil || at.kind != prev.kind {
				if kind = x.kinds[at.kind]; kind == nil {
					kind = &rankSet{bits: make([]uint64, words(size))}
					x.kinds[at.kind] = kind
				}
			}
			if prev == nil || at.district != prev.district {
				district = member(&x.districts, at.district)
			}
			if prev == nil || at.site.id != prev.site.id {
				site = member(&x.sites, at.site.id)
			}
			prev = at
		}
		kind.n++
		kind.bits[rank>>6] |= 1 << (rank & 63)
		appendRank(district, rank)
		appendRank(site, rank)
	}
	for i := range x.statuses {
		x.statuses[i].settle(size)
	}
	for _, s := range x.kinds {
		s.settle(size)
	}
	for _, m := range []map[string]*rankSet{x.districts, x.sites} {
		for _, s := range m {
			s.settle(size)
		}
	}
	r.sortedOK = true
}

func appendRank(s *rankSet, r int32) {
	s.n++
	s.list = append(s.list, r)
}

// settle gives a newly built set the form its size calls for.
func (s *rankSet) settle(size int) {
	switch {
	case s.bits == nil && dense(s.n, size):
		s.toBits(size)
	case s.bits != nil && !dense(s.n, size):
		s.toList()
	}
}

// buildCorpus makes x.corpus current, measuring it first so that it is
// allocated once, at its size. It reports whether the corpus is there: a
// fleet of more than 4 GiB of searched text has none.
func (x *index) buildCorpus() bool {
	if x.corpusOK {
		return true
	}
	var hay []byte
	n := 0
	for _, d := range x.sorted {
		s := d.searched()
		hay = s.appendHaystack(hay[:0])
		n += len(hay) + 1
	}
	if n > math.MaxUint32 {
		return false
	}
	var b strings.Builder
	b.Grow(n)
	x.offsets = slices.Grow(x.offsets[:0], len(x.sorted)+1)
	for _, d := range x.sorted {
		x.offsets = append(x.offsets, uint32(b.Len()))
		s := d.searched()
		hay = s.appendHaystack(hay[:0])
		b.Write(hay)
		b.WriteByte(0)
	}
	x.offsets = append(x.offsets, uint32(b.Len()))
	x.corpus = b.String()
	x.corpusOK = true
	return true
}

// dropCorpus forgets the corpus once it no longer matches the devices.
func (x *index) dropCorpus() { x.corpus, x.corpusOK = "", false }

// haystack is the haystack of rank in the current corpus.
func (x *index) haystack(rank int) string {
	return x.corpus[x.offsets[rank] : x.offsets[rank+1]-1]
}

// searchCorpus calls yield with each rank from from on, in order, whose
// haystack in the built corpus holds needle (which holds no NUL), until
// yield returns false.
func (x *index) searchCorpus(needle string, from int, yield func(rank int) bool) {
	size := len(x.sorted)
	for r := from; r < size; r++ {
		i := strings.Index(x.corpus[x.offsets[r]:], needle)
		if i < 0 {
			return
		}
		r = rankAt(x.offsets, r, int(x.offsets[r])+i)
		if !yield(r) {
			return
		}
	}
}

// rankAt returns the rank whose haystack holds corpus position pos, at or
// after rank lo: galloping, so that a search matching device after device
// pays for each as little as one matching rarely.
func rankAt(offsets []uint32, lo, pos int) int {
	size := len(offsets) - 1
	step := 1
	hi := lo + step
	for hi < size && int(offsets[hi]) <= pos {
		lo = hi
		step *= 2
		hi = lo + step
	}
	hi = min(hi, size)
	// offsets[lo] <= pos < offsets[hi]
	return lo + sort.Search(hi-lo, func(i int) bool { return int(offsets[lo+i+1]) > pos })
}
