package live

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestAuditLogRing(t *testing.T) {
	a := newAuditLog(3)
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var recs []*record
	for i := range 5 {
		cam := "cam-1"
		if i%2 == 1 {
			cam = "cam-2"
		}
		recs = append(recs, a.add(Session{ID: fmt.Sprint("s", i), Camera: cam, Start: t0.Add(time.Duration(i) * time.Second)}))
	}
	ids := func(ss []Session) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	if got, total := a.list("", 10); !slices.Equal(ids(got), []string{"s4", "s3", "s2"}) || total != 3 {
		t.Fatalf("list = %v (%d), want the last three, newest first", ids(got), total)
	}
	if got, total := a.list("cam-1", 1); !slices.Equal(ids(got), []string{"s4"}) || total != 2 {
		t.Fatalf("cam-1 limit 1 = %v (%d)", ids(got), total)
	}
	recs[4].bytes.Add(100)
	recs[4].packets.Add(2)
	a.setTTFF(recs[4], 120*time.Millisecond)
	a.end(recs[4], t0.Add(time.Minute), "ended by the viewer")
	a.end(recs[4], t0.Add(time.Hour), "later")
	got, _ := a.list("", 1)
	if s := got[0]; s.Bytes != 100 || s.Packets != 2 || s.TTFF != 120 || !s.End.Equal(t0.Add(time.Minute)) || s.EndReason != "ended by the viewer" {
		t.Fatalf("ended session = %+v", s)
	}
	if got, total := newAuditLog(2).list("", 5); got == nil || len(got) != 0 || total != 0 {
		t.Fatalf("empty log = %#v %d", got, total)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"":                          anonymous,
		"alice":                     "alice",
		"ops.bob@city-1_x":          "ops.bob@city-1_x",
		"<script>alert(1)</script>": "scriptalert1script",
		"名前":                        anonymous,
		string(make([]byte, 100)):   anonymous,
	} {
		if got := sanitizeWho(in); got != want {
			t.Errorf("sanitizeWho(%q) = %q, want %q", in, got, want)
		}
	}
	long := sanitizeWho(fmt.Sprintf("%0100d", 7))
	if len(long) != 64 {
		t.Errorf("who of %d characters", len(long))
	}
	if got := sanitizeUA("Mozilla/5.0 (X11)\x00\n\tmore"); got != "Mozilla/5.0 (X11)more" {
		t.Errorf("sanitizeUA = %q", got)
	}
}
