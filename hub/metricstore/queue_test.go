package metricstore

import (
	"bytes"
	"testing"
)

// TestQueueKeepsOneBufferSizedToABatch: batches delivered in a burst leave
// one buffer for the next batch, not one per batch that was in flight
// (idle buffers are live heap, which the collector's target grows by half
// again), and a buffer made afresh is as large as the last full batch, so
// filling it does not grow it by copies.
func TestQueueKeepsOneBufferSizedToABatch(t *testing.T) {
	const batchSize = 200
	line := bytes.Repeat([]byte("x"), 399) // 80 KB a batch: more than a first buffer, less than the 512 bytes a point recycle allows
	line = append(line, '\n')
	q := newQueue(batchSize, 100*batchSize)
	points := func(n int) func([]byte) ([]byte, int) {
		return func(b []byte) ([]byte, int) {
			for range n {
				b = append(b, line...)
			}
			return b, n
		}
	}
	// A burst: six full batches sealed before any is delivered.
	for range 6 {
		if res, _ := q.add(points(batchSize)); res != enqueued {
			t.Fatalf("add: %v", res)
		}
	}
	var burst []*batch
	for b := q.pop(); b != nil; b = q.pop() {
		burst = append(burst, b)
	}
	if len(burst) != 6 {
		t.Fatalf("sealed %d batches, want 6", len(burst))
	}
	for _, b := range burst {
		q.recycle(b)
	}
	if n := len(q.free); n != 1 {
		t.Errorf("%d idle buffers kept after the burst, want 1", n)
	}
	// The kept one, then one made afresh: both hold a full batch without
	// growing.
	want := batchSize * len(line)
	for i := range 2 {
		buf := q.buffer()
		if cap(buf) < want {
			t.Errorf("buffer %d has room for %d bytes, want a full batch's %d", i, cap(buf), want)
		}
	}
}
