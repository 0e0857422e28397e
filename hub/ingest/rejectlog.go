package ingest

import (
	"log/slog"
	"sync"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// A broken or hostile agent can send thousands of bad messages a second;
// the counters have the numbers, the log gets a sample and a summary.
const (
	rejectLogLimit  = 10 // lines per reason per window
	rejectLogWindow = time.Minute
	clipLen         = 160 // untrusted text in a log line
)

type rejectLog struct {
	log        *slog.Logger
	mu         sync.Mutex
	logged     map[wire.RejectReason]int // in this window
	suppressed map[wire.RejectReason]int
}

func newRejectLog(log *slog.Logger) *rejectLog {
	return &rejectLog{log: log, logged: map[wire.RejectReason]int{}, suppressed: map[wire.RejectReason]int{}}
}

func (l *rejectLog) reject(agent string, reason wire.RejectReason, msg string) {
	l.mu.Lock()
	if l.logged[reason] >= rejectLogLimit {
		l.suppressed[reason]++
		l.mu.Unlock()
		return
	}
	l.logged[reason]++
	l.mu.Unlock()
	l.log.Warn("message rejected", "agent", clip(agent), "reason", string(reason), "err", clip(msg))
}

// flush ends a window: it reports what was suppressed in it.
func (l *rejectLog) flush() {
	l.mu.Lock()
	suppressed := l.suppressed
	l.suppressed = map[wire.RejectReason]int{}
	clear(l.logged)
	l.mu.Unlock()
	for _, r := range wire.RejectReasons {
		if n := suppressed[r]; n > 0 {
			l.log.Warn("more messages rejected; log lines suppressed", "reason", string(r), "suppressed", n, "window", rejectLogWindow)
		}
	}
}

// run flushes every window until done.
func (l *rejectLog) run(done <-chan struct{}) {
	t := time.NewTicker(rejectLogWindow)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.flush()
		case <-done:
			return
		}
	}
}

func clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	return s[:clipLen] + "…"
}
