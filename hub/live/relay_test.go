package live

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// The upstream hands its viewers whole access units: a viewer watching
// gets each one as one batch, a viewer that joins while one is being
// gathered gets the rest of it after the GOP it was sent (nothing twice,
// nothing missing), and a viewer that joined before any keyframe gets the
// GOP once one starts.
func TestViewersGetWholeAccessUnits(t *testing.T) {
	s, err := New(Config{}, Deps{Metrics: metrics.NewRegistry(), Fleet: newFleet(t), Commands: newFakeAgent(t), Audit: &recordingAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	u := newUpstream(s, fleet.Device{ID: "cam-1", Agent: agentID}, rtph264.H264, nil)
	newViewer := func() *viewer {
		return &viewer{s: s, rec: &record{}, queue: make(chan []*rtp.Packet, viewerQueue)}
	}
	received := func(v *viewer, first []*rtp.Packet) []*rtp.Packet {
		got := first
		for {
			select {
			case b := <-v.queue:
				got = append(got, b...)
			default:
				return got
			}
		}
	}
	src := newStream()
	big := append([]byte{0x41, 0x9a}, bytes.Repeat([]byte{0xcd}, 4000)...) // a P picture in FU-A fragments
	early := newViewer()
	if g := u.subscribe(early); g != nil {
		t.Fatalf("a GOP before any packet: %d packets", len(g))
	}
	p0 := src.frame(big) // before the first keyframe: nobody gets it
	key := src.frame(testSPS, testPPS, testIDR)
	p1 := src.frame(big)
	if len(key) < 2 || len(p1) < 4 {
		t.Fatalf("frames of %d and %d packets: the test needs several", len(key), len(p1))
	}
	now := time.Now()
	for _, p := range slices.Concat(p0, key, p1[:2]) {
		u.forward(p, now)
	}
	watching := newViewer()
	gop := u.subscribe(watching)
	for _, p := range p1[2:] {
		u.forward(p, now)
	}
	p2 := src.frame(big)
	for _, p := range p2 {
		u.forward(p, now)
	}

	// The GOP holds every packet relayed since the keyframe, as the
	// viewers are to get them.
	want := u.gop.snapshot()
	if got := received(watching, gop); !slices.Equal(got, want) {
		t.Errorf("the viewer that joined mid-picture got %d packets, want %d: %v", len(got), len(want), seqs(got))
	}
	if got := received(early, nil); !slices.Equal(got, want) {
		t.Errorf("the viewer waiting for a keyframe got %d packets, want %d: %v", len(got), len(want), seqs(got))
	}
	// A batch is one access unit.
	late := newViewer()
	u.subscribe(late)
	p3 := src.frame(big)
	for _, p := range p3 {
		u.forward(p, now)
	}
	want = u.gop.snapshot()[len(want):]
	if b := <-late.queue; !slices.Equal(b, want) || len(late.queue) != 0 {
		t.Errorf("batches: %v then %d more, want one: %v", seqs(b), len(late.queue), seqs(want))
	}
}

func seqs(pkts []*rtp.Packet) []uint16 {
	out := make([]uint16, len(pkts))
	for i, p := range pkts {
		out[i] = p.SequenceNumber
	}
	return out
}
