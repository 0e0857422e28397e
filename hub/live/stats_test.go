package live

import (
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// The stream's health is judged from packet times, given here: fps and
// bitrate, sequence gaps, freezes while watched, a stall, and the stats
// point of an interval.
func TestStreamHealth(t *testing.T) {
	stats := &fakeStats{}
	s, err := New(Config{StallTimeout: 5 * time.Second}, Deps{Metrics: metrics.NewRegistry(), Fleet: newFleet(t), Commands: newFakeAgent(t), Store: stats, Audit: &recordingAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	u := newUpstream(s, fleet.Device{ID: "cam-1", Agent: agentID, Site: "site-1", District: "Riverside"}, rtph264.H264, nil)
	t0 := u.started
	u.viewers[&viewer{}] = struct{}{} // watched
	src := newStream()
	at := t0
	send := func(frames int, nals ...[]byte) {
		for range frames {
			for _, p := range src.frame(nals...) {
				u.forward(p, at)
			}
			at = at.Add(time.Second / 25)
		}
	}
	send(1, testSPS, testPPS, testIDR)
	u.check(at, true) // the rates' first second starts
	send(25, testNonIDR)
	if e := u.check(at, true); e != nil {
		t.Fatalf("a healthy stream ended: %+v", e)
	}
	st := u.describe()
	if st.FPS != 25 || st.BitrateKbps <= 0 || st.State != "running" || st.Frozen || st.Freezes != 0 {
		t.Fatalf("after a second of 25 fps: %+v", st)
	}

	// Lost packets are gaps in the sequence; a late one is not lost.
	p := src.frame(testNonIDR)
	src.frame(testNonIDR) // never arrives
	q := src.frame(testNonIDR)
	u.forward(p[0], at)
	u.forward(q[0], at)
	if got := u.describe().PacketsLost; got != 1 {
		t.Fatalf("lost %d, want 1", got)
	}

	// No frame for over a second while watched is one freeze, however
	// long it lasts; five seconds without packets with the connection up
	// end the stream for the camera's fault.
	at = at.Add(1500 * time.Millisecond)
	u.check(at, true)
	u.check(at.Add(time.Second), true)
	if st := u.describe(); !st.Frozen || st.Freezes != 1 {
		t.Fatalf("after 1.5 s without a frame: %+v", st)
	}
	if e := u.check(at.Add(4*time.Second), false); e != nil {
		t.Fatalf("a stall with the connection down blamed on the camera: %+v", e)
	}
	e := u.check(at.Add(4*time.Second), true)
	if e == nil || e.reason != wire.ReasonNoStream || !e.fault || !e.failed {
		t.Fatalf("stall = %+v", e)
	}
	send(1, testNonIDR)
	u.check(at, true)
	if u.describe().Frozen {
		t.Fatal("still frozen after a frame")
	}

	u.joined(80 * time.Millisecond)
	u.joined(120 * time.Millisecond)
	u.report(t0.Add(10*time.Second), "", "")
	pt, _ := stats.last("cam-1")
	if pt.State != "running" || pt.Viewers != 1 || pt.Joins != 2 || pt.TTFFMillis != 120 || pt.PacketsLost != 1 ||
		pt.LossPct <= 0 || pt.Freezes != 1 || pt.FPS <= 0 || pt.Site != "site-1" || pt.District != "Riverside" {
		t.Fatalf("stats point %+v", pt)
	}
	u.report(t0.Add(20*time.Second), "stopped", wire.ReasonLiveStopped)
	pt, _ = stats.last("cam-1")
	if pt.State != "stopped" || pt.Reason != "stopped" || pt.Joins != 0 || pt.PacketsLost != 0 || pt.Freezes != 0 {
		t.Fatalf("the next interval's point %+v", pt)
	}
}
