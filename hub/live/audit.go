package live

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// Session is one viewing session as the audit log keeps it: who watched
// which camera, from where, when, and how much video they received. A
// session that never got a picture (the stream failed to start) is kept
// too, with its end reason.
type Session struct {
	ID        string    `json:"id"`
	Who       string    `json:"who"` // "anonymous" until the hub has accounts
	Camera    string    `json:"camera"`
	Agent     string    `json:"agent"`
	Remote    string    `json:"remote"` // the HTTP client's address
	UserAgent string    `json:"user_agent,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end,omitzero"` // zero while the session lasts
	EndReason string    `json:"end_reason,omitempty"`
	TTFF      float64   `json:"ttff_ms,omitempty"` // request to first packet sent, milliseconds
	Bytes     uint64    `json:"bytes"`
	Packets   uint64    `json:"packets"`
	Dropped   uint64    `json:"dropped,omitempty"` // packets lost because the viewer fell behind
}

// record is a Session in the log. The counters change on the viewer's
// writer goroutine and are read atomically; the other mutable fields
// belong to the log's mutex.
type record struct {
	s                       Session
	bytes, packets, dropped atomic.Uint64
}

// auditLog keeps the last sessions in a ring. SQLite persistence comes
// with the alarm store; until then the log lives as long as the process.
type auditLog struct {
	mu   sync.Mutex
	ring []*record
	next int // where the next record goes
	full bool
}

func newAuditLog(size int) *auditLog { return &auditLog{ring: make([]*record, size)} }

// add starts recording s.
func (a *auditLog) add(s Session) *record {
	r := &record{s: s}
	a.mu.Lock()
	a.ring[a.next] = r
	a.next = (a.next + 1) % len(a.ring)
	a.full = a.full || a.next == 0
	a.mu.Unlock()
	return r
}

// end closes r's session; only the first call counts.
func (a *auditLog) end(r *record, at time.Time, reason string) {
	a.mu.Lock()
	if r.s.End.IsZero() {
		r.s.End, r.s.EndReason = at, reason
	}
	a.mu.Unlock()
}

// setTTFF records the time to first frame.
func (a *auditLog) setTTFF(r *record, d time.Duration) {
	a.mu.Lock()
	r.s.TTFF = float64(d.Microseconds()) / 1000
	a.mu.Unlock()
}

// list returns up to limit sessions, newest first, of camera (or of every
// camera when it is empty), and how many matched in all.
func (a *auditLog) list(camera string, limit int) (out []Session, total int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.next
	if a.full {
		n = len(a.ring)
	}
	out = []Session{}
	for i := range n {
		r := a.ring[(a.next-1-i+len(a.ring))%len(a.ring)]
		if camera != "" && r.s.Camera != camera {
			continue
		}
		total++
		if len(out) < limit {
			s := r.s
			s.Bytes, s.Packets, s.Dropped = r.bytes.Load(), r.packets.Load(), r.dropped.Load()
			out = append(out, s)
		}
	}
	return out, total
}

// Who is recorded as the viewer until the hub has accounts.
const anonymous = "anonymous"

// userHeader names the viewer for the audit log. It is a placeholder that
// any client can set; accounts will replace it.
const userHeader = "X-Citywatch-User"

// sanitizeWho keeps a user name safe to log and show: at most 64 of
// letters, digits and ". _ - @", anything else dropped.
func sanitizeWho(s string) string {
	s = clean(s, 64, func(r rune) bool {
		return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-@", r))
	})
	if s == "" {
		return anonymous
	}
	return s
}

// sanitizeUA keeps a user agent to 256 printable ASCII characters.
func sanitizeUA(s string) string {
	return clean(s, 256, func(r rune) bool { return r >= ' ' && r < unicode.MaxASCII })
}

func clean(s string, n int, keep func(rune) bool) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == n {
			break
		}
		if keep(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}
