package fleet

import (
	"errors"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// errStaleRetained marks a retained message the hub already has: ignored,
// neither applied nor counted as a reject (every hub reconnect brings the
// whole retained set again).
var errStaleRetained = errors.New("stale retained message")

// maxSeqJump bounds how far ahead of the highest accepted seq a message of
// the same boot may be. An agent loses nothing near a million messages
// without restarting; a seq of 2^63 is a bug or a forgery, and believing
// it would refuse every real message after it.
const maxSeqJump = 1 << 20

// maxSpans bounds the holes the window remembers per agent. Beyond it the
// oldest hole is given up: a message that would fill it is refused as a
// replay (it stays counted as a gap).
const maxSpans = 32

// Resync: when nothing of an agent has been accepted for resyncIntervals
// health intervals while it kept sending at least resyncMessages live
// messages in a rising sequence of one boot, all refused as replays, the
// hub believes the sender and adopts its boot and seq. One message (a seq
// far ahead, a boot stamped by a clock briefly in the future) can then
// lock an agent out for two intervals at most, not until it restarts.
const (
	resyncIntervals = 2
	resyncMessages  = 3
)

// window is the set of sequence numbers of one boot the hub has accepted:
// every seq at or below floor, and spans above it. Messages may arrive
// late — an agent sends what it kept through an outage beside new reports
// — so a seq below the highest is news unless it is in the set.
type window struct {
	floor uint64
	spans []span // ascending, disjoint and not adjacent, all above floor
}

type span struct{ lo, hi uint64 }

func (w *window) reset(seq uint64) {
	w.floor, w.spans = 0, append(w.spans[:0], span{seq, seq})
}

func (w *window) highest() uint64 {
	if len(w.spans) == 0 {
		return w.floor
	}
	return w.spans[len(w.spans)-1].hi
}

func (w *window) has(seq uint64) bool {
	if seq <= w.floor {
		return true
	}
	for _, s := range w.spans {
		if seq >= s.lo && seq <= s.hi {
			return true
		}
	}
	return false
}

// add puts seq (not in the set) into it, merging neighbours and giving up
// the oldest hole when there are too many.
func (w *window) add(seq uint64) {
	i := 0
	for i < len(w.spans) && w.spans[i].hi < seq {
		i++
	}
	joinsLeft := i > 0 && w.spans[i-1].hi+1 == seq || i == 0 && w.floor+1 == seq
	joinsRight := i < len(w.spans) && w.spans[i].lo == seq+1
	switch {
	case joinsLeft && i == 0:
		w.floor = seq
		if joinsRight {
			w.floor = w.spans[0].hi
			w.spans = w.spans[1:]
		}
	case joinsLeft && joinsRight:
		w.spans[i-1].hi = w.spans[i].hi
		w.spans = append(w.spans[:i], w.spans[i+1:]...)
	case joinsLeft:
		w.spans[i-1].hi = seq
	case joinsRight:
		w.spans[i].lo = seq
	default:
		w.spans = append(w.spans, span{})
		copy(w.spans[i+1:], w.spans[i:])
		w.spans[i] = span{seq, seq}
	}
	if len(w.spans) > maxSpans {
		w.floor = w.spans[0].hi
		w.spans = w.spans[1:]
	}
}

// verdict is what checkSeq decided about a fresh message.
type verdict struct {
	gaps   uint64 // messages missed before it
	late   bool   // it fills a hole below the highest seq: sent late, not lost
	resync bool   // adopted after the agent was refused for too long
}

// checkSeq decides whether a message is fresh, how many messages were
// lost before it and whether it comes late (see the package doc).
func checkSeq(a *agent, h *wire.Header, s *wire.State, inventory, retained bool, now time.Time, interval time.Duration) (verdict, error) {
	if a == nil || a.view.Boot == 0 {
		return verdict{}, nil
	}
	v, err := judgeSeq(a, h, s, inventory, retained)
	var we *wire.Error
	if !errors.As(err, &we) || we.Reason != wire.RejectReplay || retained || s != nil && s.Will {
		return v, err
	}
	// A live message refused as a replay: evidence the hub may be the one
	// that is wrong.
	l := &a.lock
	if l.count == 0 || h.Boot != l.boot || h.Seq <= l.seq {
		*l = lockout{since: now, boot: h.Boot, seq: h.Seq, count: 1}
		return v, err
	}
	l.seq, l.count = h.Seq, l.count+1
	if l.count >= resyncMessages && now.Sub(l.since) >= resyncIntervals*interval {
		return verdict{resync: true}, nil
	}
	return v, err
}

func judgeSeq(a *agent, h *wire.Header, s *wire.State, inventory, retained bool) (verdict, error) {
	if h.Boot < a.view.Boot {
		// An edge box whose clock was corrected backwards restarts with a
		// smaller boot; its live birth is believed once the old incarnation
		// is gone, or the agent would be locked out until the hub restarts.
		if s != nil && !s.Will && s.State == wire.AgentOnline && !retained && a.view.Status != wire.StatusOnline {
			return verdict{}, nil
		}
		return verdict{}, reject(wire.RejectReplay, "boot %d is older than the current %d", h.Boot, a.view.Boot)
	}
	if s != nil && s.Will {
		if h.Boot == a.view.Boot && s.Conn < a.view.Conn {
			return verdict{}, reject(wire.RejectReplay, "will of connection %d, the current is %d", s.Conn, a.view.Conn)
		}
		return verdict{}, nil
	}
	if h.Boot > a.view.Boot || !a.seqValid {
		return verdict{}, nil
	}
	if retained {
		// The broker's memory of the current boot is news only if newer
		// than what this channel last said; channels are compared apart
		// because the broker hands out retained topics in any order.
		last := a.stateSeq
		if inventory {
			last = a.inventorySeq
		}
		if h.Seq <= last {
			return verdict{}, errStaleRetained
		}
		return verdict{}, nil
	}
	top := a.seen.highest()
	switch {
	case a.seen.has(h.Seq):
		return verdict{}, reject(wire.RejectReplay, "seq %d was already received (highest %d)", h.Seq, top)
	case h.Seq > top && h.Seq-top > maxSeqJump:
		return verdict{}, reject(wire.RejectInvalid, "seq %d jumps %d past the highest %d", h.Seq, h.Seq-top, top)
	case h.Seq > top && !a.live:
		return verdict{}, nil // the gap since a retained message is time the hub was not listening
	case h.Seq > top:
		return verdict{gaps: h.Seq - top - 1}, nil
	case h.TS.After(a.newest):
		// Below the highest seq yet stamped after everything accepted: the
		// present, behind a message whose seq ran ahead. Believing the seq
		// would file every real report as history.
		return verdict{}, nil
	case s != nil || inventory:
		// A birth or inventory is the agent's present; an older one is stale.
		return verdict{}, reject(wire.RejectReplay, "seq %d of a birth or inventory is below the highest %d", h.Seq, top)
	}
	return verdict{late: true}, nil
}

// lockout is the evidence gathered while an agent's live messages are
// refused as replays (see resyncIntervals).
type lockout struct {
	since time.Time // the first refusal
	boot  int64
	seq   uint64
	count int
}

// advance records the sequence position of an accepted message.
func (a *agent) advance(h *wire.Header, s *wire.State, inventory, retained bool, v verdict) {
	if h.Boot != a.view.Boot || v.resync {
		a.view.Boot, a.view.Conn, a.view.Seq, a.seqValid, a.live = h.Boot, 0, 0, false, false
		a.stateSeq, a.inventorySeq, a.newest = 0, 0, time.Time{}
		a.view.Dropped = wire.Dropped{}
	}
	if v.resync {
		a.view.Resyncs++
	}
	a.lock = lockout{}
	if s != nil && s.Will {
		a.view.Conn = max(a.view.Conn, s.Conn)
		return
	}
	switch {
	case !a.seqValid:
		a.seen.reset(h.Seq)
		a.seqValid = true
	case !a.seen.has(h.Seq):
		a.seen.add(h.Seq)
	}
	a.view.Seq = a.seen.highest()
	if !retained {
		if h.TS.After(a.newest) {
			a.newest = h.TS
		}
		a.view.Gaps += v.gaps
		if v.late {
			a.view.Late++
			if a.view.Gaps > 0 {
				a.view.Gaps-- // it was counted missing when the seqs jumped past it
			}
		}
		a.live = true
	}
	if inventory {
		a.inventorySeq = max(a.inventorySeq, h.Seq)
	}
	if s != nil {
		a.view.Conn = s.Conn
		a.stateSeq = max(a.stateSeq, h.Seq)
	}
}
