package uplink

import (
	"sync"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// item is a message waiting to be published. Its header is filled at send
// time, so sequence numbers follow the order of the wire.
type item struct {
	ts    time.Time // when the agent made the report
	event *wire.Event
	// live is a live video signalling message; the queue keeps and drops
	// it like an event.
	live *wire.Live
	// snapshot is a camera's picture on request, kept and dropped like an
	// event.
	snapshot *wire.Snapshot
	// health is a health report in parts that each fit one message; the
	// queue counts the report as one item.
	health [][]wire.DeviceHealth
}

// queue is the bounded FIFO between callers and the sender. Order is kept
// across health reports and events, so the hub never sees a health
// snapshot older than an event it has already applied. When full, the
// oldest health report goes first (a newer one supersedes it); events are
// dropped only when nothing else is left, and every drop is counted.
type queue struct {
	maxItems  int // all items
	maxHealth int // health reports, which are large

	mu            sync.Mutex
	items         []item
	nHealth       int
	droppedHealth uint64
	droppedEvents uint64

	wake chan struct{} // signalled on push; capacity 1
}

func newQueue(maxItems, maxHealth int) *queue {
	return &queue{maxItems: maxItems, maxHealth: maxHealth, wake: make(chan struct{}, 1)}
}

// push adds it and returns what had to be dropped for it, if anything.
func (q *queue) push(it item) (dropped *item) {
	q.mu.Lock()
	full := len(q.items) >= q.maxItems
	switch {
	case (full || (it.health != nil && q.nHealth >= q.maxHealth)) && q.nHealth > 0:
		dropped = q.removeOldestHealth()
	case full && it.health != nil:
		// Only events are queued: they matter more than this report.
		q.droppedHealth++
		q.mu.Unlock()
		return &it
	case full:
		d := q.items[0]
		q.items = q.items[1:]
		q.droppedEvents++
		dropped = &d
	}
	q.items = append(q.items, it)
	if it.health != nil {
		q.nHealth++
	}
	q.mu.Unlock()
	q.signal()
	return dropped
}

func (q *queue) removeOldestHealth() *item {
	for i, it := range q.items {
		if it.health != nil {
			q.items = append(q.items[:i], q.items[i+1:]...)
			q.nHealth--
			q.droppedHealth++
			return &it
		}
	}
	return nil
}

// pushFront puts back an item the sender could not hand to the client, so
// it goes out first after the reconnect.
func (q *queue) pushFront(it item) {
	q.mu.Lock()
	q.items = append([]item{it}, q.items...)
	if it.health != nil {
		q.nHealth++
	}
	q.mu.Unlock()
}

func (q *queue) pop() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return item{}, false
	}
	it := q.items[0]
	q.items[0] = item{} // let the report be collected
	q.items = q.items[1:]
	if it.health != nil {
		q.nHealth--
	}
	return it, true
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// counts returns the queue length and the drop counters.
func (q *queue) counts() (queued int, droppedHealth, droppedEvents uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.droppedHealth, q.droppedEvents
}
