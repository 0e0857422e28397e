package history

import "sync"

// place is where a device stood and what it was, from some transition on:
// what reports group by and scopes filter on. Stored once per distinct
// place (places table), referenced by id.
type place struct {
	Agent, District, Site, Kind, Vendor string
}

// catalog maps device names and places to the small ids the database and
// the day records use. Only the writer adds to it, and only while it
// holds mu around the commit that stores the new rows, so a reader that
// takes a view after its read transaction began knows every id that
// transaction can see. Ids are dense, from 1; slot 0 is unused.
type catalog struct {
	mu       sync.RWMutex
	ids      map[string]int32
	names    []string
	placeIDs map[place]uint32
	places   []place
}

func newCatalog() *catalog {
	return &catalog{ids: map[string]int32{}, names: []string{""}, placeIDs: map[place]uint32{}, places: []place{{}}}
}

// catView is what a query reads of the catalog: append-only slices, so a
// view stays valid while the writer adds.
type catView struct {
	names  []string
	places []place
}

func (c *catalog) view() catView {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return catView{names: c.names, places: c.places}
}

// lookup finds the ids of device names, leaving out those never recorded.
func (c *catalog) lookup(names []string) map[int32]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[int32]string, len(names))
	for _, n := range names {
		if id, ok := c.ids[n]; ok {
			out[id] = n
		}
	}
	return out
}

// pending are the ids a batch assigns before its commit publishes them.
// Only the writer uses it, under History.wmu, so it may read the
// catalog's maps without c.mu: nobody else changes them.
type pending struct {
	c      *catalog
	ids    map[string]int32
	names  []string
	pids   map[place]uint32
	places []place
}

func (c *catalog) pending() *pending {
	return &pending{c: c, ids: map[string]int32{}, pids: map[place]uint32{}}
}

// device is name's id, assigning a new one when create is set; 0 when
// the device is unknown and create is not.
func (p *pending) device(name string, create bool) int32 {
	if id, ok := p.c.ids[name]; ok {
		return id
	}
	if id, ok := p.ids[name]; ok {
		return id
	}
	if !create {
		return 0
	}
	id := int32(len(p.c.names) + len(p.names))
	p.ids[name] = id
	p.names = append(p.names, name)
	return id
}

func (p *pending) place(pl place) uint32 {
	if id, ok := p.c.placeIDs[pl]; ok {
		return id
	}
	if id, ok := p.pids[pl]; ok {
		return id
	}
	id := uint32(len(p.c.places) + len(p.places))
	p.pids[pl] = id
	p.places = append(p.places, pl)
	return id
}

// publish adds what the batch assigned; the caller holds c.mu.
func (p *pending) publish() {
	for i, n := range p.names {
		p.c.ids[n] = int32(len(p.c.names) + i)
	}
	p.c.names = append(p.c.names, p.names...)
	for i, pl := range p.places {
		p.c.placeIDs[pl] = uint32(len(p.c.places) + i)
	}
	p.c.places = append(p.c.places, p.places...)
}
