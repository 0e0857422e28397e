package live

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

// Session is one viewing session as GET /api/live/sessions shows it while
// it lasts: who watches which camera, from where, since when, and how much
// video they received. Its start and end go to the audit trail.
type Session struct {
	ID        string    `json:"id"`
	Who       string    `json:"who"`
	Via       auth.Via  `json:"via"` // session, token or link
	Camera    string    `json:"camera"`
	Agent     string    `json:"agent"`
	Remote    string    `json:"remote"` // the HTTP client's address
	UserAgent string    `json:"user_agent,omitempty"`
	Start     time.Time `json:"start"`
	TTFF      float64   `json:"ttff_ms,omitempty"` // request to first packet sent, milliseconds
	Bytes     uint64    `json:"bytes"`
	Packets   uint64    `json:"packets"`
	Dropped   uint64    `json:"dropped,omitempty"` // packets lost because the viewer fell behind
}

// record is a viewer's Session. The counters change on the viewer's
// writer goroutine and are read atomically; ttff is written once by it.
type record struct {
	s                       Session
	p                       *auth.Principal
	bytes, packets, dropped atomic.Uint64
	mu                      sync.Mutex
	ttff                    time.Duration
}

func (r *record) setTTFF(d time.Duration) {
	r.mu.Lock()
	r.ttff = d
	r.mu.Unlock()
}

// snapshot is the session with its counters now.
func (r *record) snapshot() Session {
	s := r.s
	r.mu.Lock()
	s.TTFF = float64(r.ttff.Microseconds()) / 1000
	r.mu.Unlock()
	s.Bytes, s.Packets, s.Dropped = r.bytes.Load(), r.packets.Load(), r.dropped.Load()
	return s
}

// Auditor records viewing sessions (hub/audit's Log).
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// auditStart records a session that started, or a request that did not
// get one (outcome failure, with why).
func (s *SFU) auditStart(p *auth.Principal, camera, session string, outcome audit.Outcome, why string) {
	detail := "session " + session + " via " + string(p.Via)
	if why != "" {
		detail = why
		if session != "" {
			detail = "session " + session + ": " + why
		}
	}
	s.record(audit.By(p, "live.start", "camera/"+camera, outcome, detail))
}

// auditEnd records how a session ended and what it carried.
func (s *SFU) auditEnd(r *record, at time.Time, reason string) {
	sn := r.snapshot()
	detail := fmt.Sprintf("session %s; %.1f s; %d bytes; %d packets; %d dropped; ttff %.0f ms; %s",
		sn.ID, at.Sub(sn.Start).Seconds(), sn.Bytes, sn.Packets, sn.Dropped, sn.TTFF, reason)
	s.record(audit.By(r.p, "live.end", "camera/"+sn.Camera, audit.Success, detail))
}

func (s *SFU) record(rec audit.Record) {
	if _, err := s.audit.Append(context.Background(), rec); err != nil {
		// The trail counts and reports its own failures.
		s.log.Error("viewing session not audited", "action", rec.Action, "object", rec.Object, "who", rec.Actor, "err", err)
	}
}

// sanitizeUA keeps a user agent to 256 printable ASCII characters.
func sanitizeUA(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == 256 {
			break
		}
		if r >= ' ' && r < unicode.MaxASCII {
			b.WriteRune(r)
		}
	}
	return b.String()
}
