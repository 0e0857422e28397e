package metricstore

import (
	"sync"
)

// batch is line protocol for one write request.
type batch struct {
	buf []byte
	n   int     // points
	rec *record // where it came from in the spill; nil for fresh points
	id  uint64  // a fresh batch's number, in the order they were opened
}

// queue is the in-memory queue between the ingest path and the senders:
// producers encode their points outside the lock and append the bytes to
// the open batch under it, which is all the ingest path ever waits for.
// A batch is sealed when it holds batchSize points (or by the flush
// ticker) and waits in sealed until a sender or the spill takes it.
type queue struct {
	batchSize int
	cap       int // points in open and sealed at most

	mu      sync.Mutex
	open    *batch
	sealed  []*batch // oldest first
	points  int      // in open and sealed
	stopped bool

	ready chan struct{} // signalled when a batch is sealed
	high  chan struct{} // signalled when points pass half the capacity

	// Fresh batches are numbered as they open; unsettled holds those not
	// yet ended (stored, spilled, failed or dropped: recycled), and
	// settled is closed, and made again, whenever one ends (Stored).
	last      uint64
	unsettled map[uint64]bool
	settled   chan struct{}
	// free keeps one delivered batch's buffer for the next batch. One:
	// every buffer kept idle is live heap, which the collector's target
	// grows in proportion (at 40,000 devices reporting every 2 s the
	// queue's buffers were 5.5 MB of a 30 MB live heap with six kept, 1 MB
	// with one), while making one is a single allocation.
	free chan []byte
	// full is the size of the last batch sealed full: a new buffer is
	// made that large, not grown to it by appends that leave a quarter
	// of it unused.
	full int
}

func newQueue(batchSize, capacity int) *queue {
	return &queue{batchSize: batchSize, cap: capacity, ready: make(chan struct{}, 1), high: make(chan struct{}, 1),
		free: make(chan []byte, 1), unsettled: map[uint64]bool{}, settled: make(chan struct{})}
}

// scratch buffers for encoding outside the lock.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// enqueueResult says what became of the points of one add.
type enqueueResult int

const (
	enqueued enqueueResult = iota
	rejectedFull
	rejectedStopped
)

// add encodes points with encode, which appends lines to its argument and
// returns it with the number of lines, and queues them. It never blocks on
// anything but the queue's mutex; the points of one call are queued or
// rejected together.
func (q *queue) add(encode func([]byte) ([]byte, int)) (enqueueResult, int) {
	sp := scratchPool.Get().(*[]byte)
	buf, n := encode((*sp)[:0])
	defer func() {
		if cap(buf) <= 1<<20 {
			*sp = buf[:0]
			scratchPool.Put(sp)
		}
	}()
	if n == 0 {
		return enqueued, 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.stopped:
		return rejectedStopped, n
	case q.points+n > q.cap:
		return rejectedFull, n
	}
	if q.open == nil {
		q.last++
		q.open = &batch{buf: q.buffer(), id: q.last}
		q.unsettled[q.last] = true
	}
	q.open.buf = append(q.open.buf, buf...)
	q.open.n += n
	q.points += n
	if q.open.n >= q.batchSize {
		q.sealLocked()
	}
	if q.points > q.cap/2 {
		signal(q.high)
	}
	return enqueued, n
}

// buffer returns an empty buffer, reusing a delivered batch's.
func (q *queue) buffer() []byte {
	select {
	case b := <-q.free:
		return b[:0]
	default:
		return make([]byte, 0, max(64<<10, q.full+q.full/32))
	}
}

// recycle takes back an ended batch's buffer, and settles it.
func (q *queue) recycle(b *batch) {
	if b.rec == nil && cap(b.buf) <= 512*q.batchSize {
		select {
		case q.free <- b.buf[:0]:
		default:
		}
	}
	b.buf = nil
	if b.rec == nil {
		q.mu.Lock()
		delete(q.unsettled, b.id)
		close(q.settled)
		q.settled = make(chan struct{})
		q.mu.Unlock()
	}
}

// mark is the number of the batch the points queued so far are in, at
// most: they have all ended once no batch up to it is unsettled.
func (q *queue) mark() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.last
}

// settledTo reports whether every batch up to mark has ended, and if not
// a channel closed when one more does.
func (q *queue) settledTo(mark uint64) (bool, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id := range q.unsettled { // a few: those in flight
		if id <= mark {
			return false, q.settled
		}
	}
	return true, nil
}

func (q *queue) sealLocked() {
	if q.open == nil || q.open.n == 0 {
		return
	}
	if q.open.n >= q.batchSize {
		q.full = len(q.open.buf)
	}
	q.sealed = append(q.sealed, q.open)
	q.open = nil
	signal(q.ready)
}

// seal closes the open batch, if any, so it can be sent.
func (q *queue) seal() {
	q.mu.Lock()
	q.sealLocked()
	q.mu.Unlock()
}

// pop takes the oldest sealed batch, or nil.
func (q *queue) pop() *batch {
	return q.popAbove(-1)
}

// popAbove takes the oldest sealed batch if more than threshold points are
// queued, or returns nil.
func (q *queue) popAbove(threshold int) *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.sealed) == 0 || q.points <= threshold {
		return nil
	}
	b := q.sealed[0]
	q.sealed[0] = nil
	q.sealed = q.sealed[1:]
	q.points -= b.n
	if len(q.sealed) > 0 {
		signal(q.ready) // for the next idle sender
	}
	return b
}

// stop refuses further points and seals the open batch.
func (q *queue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.sealLocked()
	q.mu.Unlock()
}

// depth is the number of points queued.
func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.points
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
