// Package announce is how a hub of a cluster tells the others what it
// changed (alarms, work orders) on a core NATS subject: Put queues an
// announcement without ever blocking whoever made the change, and Run
// sends the queue in order. An announcement that cannot be queued or sent
// is counted and logged at once (one line per batch, however many): the
// shared store still has the change, which the other hubs read later.
package announce

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Queue is one kind of announcement waiting for NATS.
type Queue[T any] struct {
	subject string
	lost    string // the log line of a drop
	log     *slog.Logger
	ch      chan T

	sent, dropped atomic.Uint64
}

// New makes a queue of size announcements sent to subject; lost is the
// line logged when some are dropped, saying what the other hubs miss
// (e.g. "alarm announcements lost; other hubs show these alarms as the
// shared store has them").
func New[T any](subject string, size int, log *slog.Logger, lost string) *Queue[T] {
	return &Queue[T]{subject: subject, lost: lost, log: log, ch: make(chan T, size)}
}

// Put queues v; it never blocks, and reports false (counted) when the
// queue is full.
func (q *Queue[T]) Put(v T) bool {
	select {
	case q.ch <- v:
		return true
	default:
		q.dropped.Add(1)
		return false
	}
}

// Sent is how many announcements NATS took.
func (q *Queue[T]) Sent() uint64 { return q.sent.Load() }

// Dropped is how many were lost: the queue full or NATS refusing them.
func (q *Queue[T]) Dropped() uint64 { return q.dropped.Load() }

// Run sends the queue on nc until ctx ends, then what is still queued,
// and flushes.
func (q *Queue[T]) Run(ctx context.Context, nc *nats.Conn) {
	var reported uint64
	for {
		select {
		case <-ctx.Done():
			for len(q.ch) > 0 {
				q.send(nc, <-q.ch)
			}
			if err := nc.Flush(); err != nil {
				q.log.Warn("the last announcements may not have left", "subject", q.subject, "err", err)
			}
			return
		case v := <-q.ch:
			q.send(nc, v)
		}
		if d := q.dropped.Load(); d != reported {
			q.log.Error(q.lost, "dropped_total", d, "new", d-reported)
			reported = d
		}
	}
}

func (q *Queue[T]) send(nc *nats.Conn, v T) {
	b, err := json.Marshal(v)
	if err == nil {
		err = nc.Publish(q.subject, b)
	}
	if err != nil {
		q.dropped.Add(1)
		return
	}
	q.sent.Add(1)
}
