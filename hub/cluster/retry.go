package cluster

import (
	"context"
	"math/rand/v2"
	"time"
)

// Bounds of the cluster's requests and retries.
const (
	// requestTimeout bounds each JetStream request: one sent while a NATS
	// node dies, or JetStream elects a leader, fails and is tried again
	// rather than waiting on an answer that never comes.
	requestTimeout = 5 * time.Second
	// fetchWait is how long one pull waits for messages.
	fetchWait = time.Second
	// retryFirst and retryLimit bound the wait between two attempts at
	// something that failed: a partition's consumer, the stream, the
	// lease buckets.
	retryFirst = 250 * time.Millisecond
	retryLimit = 5 * time.Second
	// failureLogEvery is how often a failure that keeps recurring is
	// logged again.
	failureLogEvery = 30 * time.Second
)

// bounded makes one JetStream request under requestTimeout.
func bounded[T any](ctx context.Context, request func(context.Context) (T, error)) (T, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return request(rctx)
}

// backoff spaces the attempts at something that fails: the wait doubles
// from retryFirst up to retryLimit, with some jitter so that the
// partitions of a hub do not all try again at once, and starts again
// from retryFirst once an attempt lasted retryLimit (it worked a while).
type backoff struct {
	next    time.Duration
	started time.Time
}

// attempt marks the start of an attempt.
func (b *backoff) attempt() { b.started = time.Now() }

// wait waits before the next attempt; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	if b.next == 0 || time.Since(b.started) >= retryLimit {
		b.next = retryFirst
	}
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, retryLimit)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
