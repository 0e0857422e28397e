package uplink

import (
	"sync"
	"time"
)

// kind is what a queued item carries; it picks the topic and decides what
// is dropped first.
type kind uint8

const (
	kindHealth kind = iota + 1
	kindEvent
	// kindLive is live video signalling: kept and dropped like an event,
	// but never spooled, since its session does not outlive the
	// connection.
	kindLive
	// kindSnapshot is a camera's picture on request, kept and dropped
	// like an event, and discarded once too old to answer the request.
	kindSnapshot
)

func (k kind) String() string {
	switch k {
	case kindHealth:
		return "health report"
	case kindEvent:
		return "event"
	case kindLive:
		return "live message"
	case kindSnapshot:
		return "snapshot"
	}
	return "unknown"
}

// spooled reports whether items of kind k may wait in the spool.
func (k kind) spooled() bool { return k == kindHealth || k == kindEvent || k == kindSnapshot }

// part is one message, stamped and encoded when the report was made.
type part struct {
	seq  uint64
	data []byte
}

// item is a report waiting to be published: one message, or a health
// report in parts that each fit one message (with consecutive seqs).
type item struct {
	kind  kind
	made  time.Time
	epoch uint32 // connection epoch when made, for live messages
	parts []part
	tries uint8 // failed publishes on a live connection (see publishFailed)
}

// queue is the bounded FIFO between callers and the sender: the fresh
// lane. Items are in seq order. When full, the oldest health report goes
// first (a newer one supersedes it); events go only when nothing else is
// left. What no longer fits is handed back to the caller, who spools or
// counts it.
type queue struct {
	maxItems  int // all items
	maxHealth int // health reports, which are large

	mu      sync.Mutex
	items   []item
	nHealth int

	wake chan struct{} // signalled on push; capacity 1
}

func newQueue(maxItems, maxHealth int) *queue {
	return &queue{maxItems: maxItems, maxHealth: maxHealth, wake: make(chan struct{}, 1)}
}

// push adds it and returns what had to make room for it, if anything: the
// oldest health report, it itself (a report when only events are queued),
// or the oldest event.
func (q *queue) push(it item) (out item, full bool) {
	q.mu.Lock()
	isFull := len(q.items) >= q.maxItems
	oldest := q.oldestHealth()
	switch {
	case (isFull || (it.kind == kindHealth && q.nHealth >= q.maxHealth)) && oldest >= 0:
		out, full = q.items[oldest], true
		q.items = append(q.items[:oldest], q.items[oldest+1:]...)
		q.nHealth--
	case isFull && it.kind == kindHealth:
		// Only events are queued: they matter more than this report.
		q.mu.Unlock()
		return it, true
	case isFull:
		out, full = q.items[0], true
		q.items[0] = item{}
		q.items = q.items[1:]
	}
	q.items = append(q.items, it)
	if it.kind == kindHealth {
		q.nHealth++
	}
	q.mu.Unlock()
	q.signal()
	return out, full
}

// oldestHealth is the index of the oldest health report, -1 if none.
func (q *queue) oldestHealth() int {
	if q.nHealth == 0 {
		return -1
	}
	for i, it := range q.items {
		if it.kind == kindHealth {
			return i
		}
	}
	return -1
}

// pushFront puts back an item just popped, so it stays the oldest.
func (q *queue) pushFront(it item) {
	q.mu.Lock()
	q.items = append([]item{it}, q.items...)
	if it.kind == kindHealth {
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
	if it.kind == kindHealth {
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

// len returns the number of queued items.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
