package fleet

import (
	"iter"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// DeviceFilter selects devices. Within a field the values are
// alternatives; the fields set must all match; an empty field matches
// every device.
type DeviceFilter struct {
	Districts []string
	Sites     []string
	Agents    []string
	Kinds     []wire.DeviceKind
	Statuses  []wire.Status
	// Search is a substring of the id, name, site or site name, or of a
	// name of the device or its site in another language, compared in
	// lower case.
	Search string
	// Since keeps the devices whose status changed at or after it; zero
	// keeps all.
	Since time.Time
	// Within, when set, keeps only the devices in that part of the city:
	// an account's scope.
	Within *Area
}

// Area is a part of the city: the devices whose district is one of
// Districts or whose site is one of Sites. Empty names match nothing.
type Area struct {
	Districts []string
	Sites     []string
}

// Contains reports whether a device in district and site is in the area.
func (a *Area) Contains(district, site string) bool {
	return district != "" && slices.Contains(a.Districts, district) || site != "" && slices.Contains(a.Sites, site)
}

// Match reports whether d passes the filter. It is the definition of what
// QueryDevices returns, for callers holding snapshots.
func (f *DeviceFilter) Match(d *Device) bool {
	return anyOf(f.Districts, d.District) && anyOf(f.Sites, d.Site) && anyOf(f.Agents, d.Agent) &&
		anyOf(f.Kinds, d.Kind) && anyOf(f.Statuses, d.Status) && !d.Since.Before(f.Since) &&
		(f.Within == nil || f.Within.Contains(d.District, d.Site)) &&
		(f.Search == "" || searchFields(searchedOf(d), strings.ToLower(f.Search)))
}

func anyOf[T comparable](want []T, v T) bool { return len(want) == 0 || slices.Contains(want, v) }

func searchFields(s searched, needle string) bool {
	for f := range s.fields() {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

// DeviceQuery is a filter and a page of its matches in id order.
type DeviceQuery struct {
	DeviceFilter
	// After starts the page after this id (keyset paging: pass the last
	// page's Next). The id need not exist any more.
	After string
	// Offset skips that many matches (after After, if set).
	Offset int
	// Limit is the most devices returned; 0 returns every match.
	Limit int
	// NoTotal skips counting every match, which a search or Since filter
	// pays for with a pass over the devices the other fields leave.
	NoTotal bool
}

// DevicePage is an answer to a DeviceQuery.
type DevicePage struct {
	// Devices are the page, sorted by id; see Devices about shared fields.
	Devices []Device
	// Total counts every match, on whatever page (0 with NoTotal).
	Total int
	// Next is the After of the following page; empty when there are no
	// further matches.
	Next string
}

// QueryDevices answers q from the registry's indexes: the cost is the
// page plus, per filter field set, a pass over a bitmap of an eighth of a
// byte per device; Search and Since also look at each device the other
// fields leave, until the page is full (and on to the end to count Total,
// unless NoTotal). Only the page is copied.
func (r *Registry) QueryDevices(q DeviceQuery) DevicePage {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index()
	x := &r.idx
	q.Offset = max(q.Offset, 0)
	c := r.candidates(&q.DeviceFilter)
	start := 0
	if q.After != "" {
		start = sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i].id() > q.After })
	}
	var p DevicePage
	full := func() bool { return q.Limit > 0 && len(p.Devices) == q.Limit }
	if q.Search == "" && q.Since.IsZero() {
		// The candidates are the matches: count them by words, skip the
		// offset by words, copy the page.
		if !q.NoTotal {
			p.Total = c.count()
		}
		n := c.count()
		if q.Limit > 0 {
			n = min(n, q.Limit)
		}
		p.Devices = make([]Device, 0, n)
		for i := c.next(start, q.Offset); i >= 0; i = c.next(i+1, 0) {
			if full() {
				p.Next = p.Devices[len(p.Devices)-1].ID
				break
			}
			p.Devices = append(p.Devices, r.snapshot(x.sorted[i]))
		}
		return p
	}
	from, skip := start, q.Offset
	if !q.NoTotal {
		from = 0
	}
	for i := range r.matches(c, &q.DeviceFilter, from) {
		p.Total++
		switch {
		case i < start:
		case skip > 0:
			skip--
		case !full():
			p.Devices = append(p.Devices, r.snapshot(x.sorted[i]))
		case p.Next == "":
			p.Next = p.Devices[len(p.Devices)-1].ID
			if q.NoTotal {
				return DevicePage{Devices: p.Devices, Next: p.Next}
			}
		}
	}
	if q.NoTotal {
		p.Total = 0
	}
	return p
}

// cands are the ranks a query's indexed fields leave: bits, or every rank
// below size when bits is nil.
type cands struct {
	bits []uint64
	size int
	none bool
}

// next returns the rank that follows k candidates at or after from, or -1.
func (c cands) next(from, k int) int {
	switch {
	case c.none:
		return -1
	case c.bits == nil:
		if i := from + k; i < c.size {
			return i
		}
		return -1
	}
	return nextSet(c.bits, from, k)
}

func (c cands) has(rank int) bool {
	switch {
	case c.none:
		return false
	case c.bits == nil:
		return rank < c.size
	}
	return c.bits[rank>>6]&(1<<(rank&63)) != 0
}

func (c cands) count() int {
	switch {
	case c.none:
		return 0
	case c.bits == nil:
		return c.size
	}
	n := 0
	for _, w := range c.bits {
		n += bits.OnesCount64(w)
	}
	return n
}

// candidates intersects the sets of the filter's indexed fields (status,
// kind, district, site, agent, area), each the union of its values, in
// the registry's scratch bitmaps.
func (r *Registry) candidates(f *DeviceFilter) cands {
	x := &r.idx
	c := cands{size: len(x.sorted)}
	w := words(c.size)
	narrow := func(fill func(dim []uint64)) {
		if c.none {
			return
		}
		x.dim = slices.Grow(x.dim[:0], w)[:w]
		clear(x.dim)
		fill(x.dim)
		if c.bits == nil {
			x.acc = slices.Grow(x.acc[:0], w)[:w]
			copy(x.acc, x.dim)
			c.bits = x.acc
		} else {
			for i := range c.bits {
				c.bits[i] &= x.dim[i]
			}
		}
		c.none = !slices.ContainsFunc(c.bits, func(w uint64) bool { return w != 0 })
	}
	byName := func(m map[string]*rankSet, names []string) func([]uint64) {
		return func(dim []uint64) {
			for _, n := range names {
				if s := m[n]; s != nil {
					s.or(dim)
				}
			}
		}
	}
	if len(f.Statuses) > 0 {
		narrow(func(dim []uint64) {
			for _, s := range f.Statuses {
				if i := statusIndex(s); statuses[i] == s {
					x.statuses[i].or(dim)
				}
			}
		})
	}
	if len(f.Kinds) > 0 {
		narrow(func(dim []uint64) {
			for _, k := range f.Kinds {
				if s := x.kinds[k]; s != nil {
					s.or(dim)
				}
			}
		})
	}
	if len(f.Districts) > 0 {
		narrow(byName(x.districts, f.Districts))
	}
	if len(f.Sites) > 0 {
		narrow(byName(x.sites, f.Sites))
	}
	if len(f.Agents) > 0 {
		narrow(func(dim []uint64) {
			for _, id := range f.Agents {
				if a := r.agents[id]; a != nil {
					for _, d := range a.devices {
						dim[d.rank>>6] |= 1 << (d.rank & 63)
					}
				}
			}
		})
	}
	if a := f.Within; a != nil {
		narrow(func(dim []uint64) {
			byName(x.districts, nonEmpty(a.Districts))(dim)
			byName(x.sites, nonEmpty(a.Sites))(dim)
		})
	}
	return c
}

func nonEmpty(names []string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == "" })
}

// matches yields in order the candidates from rank from on that pass
// the filter's unindexed fields (Search, Since). A search looks in the
// index's corpus, one string of every device's text: over many
// candidates it runs through the corpus, over few it looks at each one's
// part.
func (r *Registry) matches(c cands, f *DeviceFilter, from int) iter.Seq[int] {
	x := &r.idx
	needle := strings.ToLower(f.Search)
	since := func(rank int) bool { return !r.timeOf(x.sorted[rank].since).Before(f.Since) }
	return func(yield func(int) bool) {
		// The haystacks separate fields by NUL, so a needle holding one
		// is matched field by field; so is any in a fleet too large for a
		// corpus.
		byField := strings.Contains(needle, "\x00") || needle != "" && !x.buildCorpus()
		if needle == "" || byField || c.count() < c.size/8 {
			for i := c.next(from, 0); i >= 0; i = c.next(i+1, 0) {
				if needle != "" && (byField && !searchFields(x.sorted[i].searched(), needle) || !byField && !strings.Contains(x.haystack(i), needle)) {
					continue
				}
				if since(i) && !yield(i) {
					return
				}
			}
			return
		}
		x.searchCorpus(needle, from, func(i int) bool {
			return !c.has(i) || !since(i) || yield(i)
		})
	}
}
