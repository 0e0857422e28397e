package uplink

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// resumeStore is paho's memory store, adapted to how paho resends the
// messages a dropped connection left unacknowledged ("resume"). The hub
// accepts a seq below the highest it has seen (late messages from the
// backlog) but rejects one it has seen, and rebuilds the timeline from the
// order of the seqs, so resent messages keep their order and go out before
// anything of the new connection. This dates from a hub that rejected any
// seq not above the highest; with the window it is no longer needed for
// acceptance, only for order, and it is kept because it is cheap and
// proven:
//
//   - Resume sends stored messages in the order the store lists them; the
//     memory store lists a map in random order, so this store lists them
//     in the order they were stored.
//   - The birth message of the new connection must follow the resent
//     messages (it has a higher seq), so the store tells when resume has
//     listed them and when the last one is acknowledged.
//   - Resume marks each stored PUBLISH as a duplicate in place, while a
//     Publish call blocked across the reconnect may be writing the same
//     packet (paho issue #703, a data race). Put keeps a copy, so resume
//     marks its own.
type resumeStore struct {
	*paho.MemoryStore
	listings atomic.Uint64
	changed  func() // called after a listing or a deletion

	mu    sync.Mutex
	order map[string]uint64 // key → when it was stored
	next  uint64
}

// outboundPrefix is how paho's store keys messages it sent and awaits an
// acknowledgement for.
const outboundPrefix = "o."

func newResumeStore() *resumeStore {
	return &resumeStore{MemoryStore: paho.NewMemoryStore(), order: make(map[string]uint64), changed: func() {}}
}

func (s *resumeStore) Put(key string, m packets.ControlPacket) {
	if pub, ok := m.(*packets.PublishPacket); ok {
		cp := *pub // the payload is shared, and never written
		m = &cp
	}
	s.mu.Lock()
	s.next++
	s.order[key] = s.next
	s.mu.Unlock()
	s.MemoryStore.Put(key, m)
}

func (s *resumeStore) All() []string {
	keys := s.MemoryStore.All()
	s.mu.Lock()
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(s.order[a], s.order[b]) })
	s.mu.Unlock()
	s.listings.Add(1)
	s.changed()
	return keys
}

func (s *resumeStore) Del(key string) {
	s.MemoryStore.Del(key)
	s.mu.Lock()
	delete(s.order, key)
	s.mu.Unlock()
	s.changed()
}

func (s *resumeStore) Reset() {
	s.MemoryStore.Reset()
	s.mu.Lock()
	clear(s.order)
	s.mu.Unlock()
}

// unacknowledged reports whether any sent message awaits its ack.
func (s *resumeStore) unacknowledged() bool {
	for _, k := range s.MemoryStore.All() {
		if strings.HasPrefix(k, outboundPrefix) {
			return true
		}
	}
	return false
}
