package live

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// fakeWriter is a track binding's stream that records what is written,
// and when.
type fakeWriter struct {
	seqs []uint16
	ssrc []uint32
	at   []time.Time
}

func (w *fakeWriter) WriteRTP(h *rtp.Header, _ []byte) (int, error) {
	w.seqs = append(w.seqs, h.SequenceNumber)
	w.ssrc = append(w.ssrc, h.SSRC)
	w.at = append(w.at, time.Now())
	return 0, nil
}

func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestResendCapped checks the viewer's answers to NACKs: a packet sent
// lately goes again, under the sequence number the viewer knows, at most
// maxResends times however often it is asked for; a packet never sent, or
// gone from the history, does not.
func TestResendCapped(t *testing.T) {
	s, err := New(Config{}, Deps{Metrics: metrics.NewRegistry(), Fleet: newFleet(t), Commands: newFakeAgent(t), Audit: &recordingAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWriter{}
	v := &viewer{s: s, seqOffset: 100, rec: &record{}, up: newUpstream(s, fleet.Device{ID: "cam-1", Agent: agentID}, rtph264.H264, nil),
		out: w, ssrc: 0xbeef, pt: 102}
	for seq := range uint16(sentHistory + 10) {
		if !v.send(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 65500 + seq, SSRC: 1}, Payload: []byte{0x41}}) {
			t.Fatal("send failed")
		}
	}
	base := uint16(65500)
	base += v.seqOffset
	first, last := base+10, base+sentHistory+9 // the history's oldest and newest
	w.seqs, w.ssrc = nil, nil
	for range 5 {
		v.resend([]uint16{last, first, first - 1, last + 1})
	}
	want := []uint16{last, first, last, first}
	if !slices.Equal(w.seqs, want) {
		t.Errorf("resent %v, want %v", w.seqs, want)
	}
	for _, ssrc := range w.ssrc {
		if ssrc != 0xbeef {
			t.Errorf("resent with SSRC %x, not the viewer's", ssrc)
		}
	}
	if got := s.m.resent.Value(); got != 4 {
		t.Errorf("resent counter %v, want 4", got)
	}
}

// TestPacing sends a viewer a keyframe of about a hundred packets and the
// picture after it: the keyframe leaves in parts, paceBurst packets at
// once and then paceRate a millisecond, the picture whole; every packet
// leaves once, in order. A NACK that comes while the writer waits is
// answered at once, between two parts. A viewer whose queue is half full
// is sent everything at once.
func TestPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{}, Deps{Metrics: metrics.NewRegistry(), Fleet: newFleet(t), Commands: newFakeAgent(t), Audit: &recordingAuditor{}})
		if err != nil {
			t.Fatal(err)
		}
		w := &fakeWriter{}
		v := &viewer{s: s, rec: &record{}, up: newUpstream(s, fleet.Device{ID: "cam-1", Agent: agentID}, rtph264.H264, nil),
			out: w, ssrc: 0xbeef, pt: 102,
			queue: make(chan []*rtp.Packet, viewerQueue), nacks: make(chan []uint16, 16), done: make(chan struct{})}
		src := newStream()
		key := src.frame(testSPS, testPPS, append([]byte{0x65, 0x88}, bytes.Repeat([]byte{0xab}, 115_000)...))
		pic := src.frame(benchFrame)
		if len(key) < 90 || len(pic) > paceBurst {
			t.Fatalf("a keyframe of %d packets and a picture of %d: the test needs about 100 and fewer than %d", len(key), len(pic), paceBurst)
		}

		// A NACK for a packet of the first part, there when the writer
		// first waits.
		v.nacks <- []uint16{key[3].SequenceNumber}
		if !v.sendPaced(key) {
			t.Fatal("sendPaced failed")
		}
		if len(w.seqs) != len(key)+1 || w.seqs[paceBurst] != key[3].SequenceNumber || !w.at[paceBurst].Equal(w.at[0]) {
			t.Fatalf("a NACK while waiting: sent %v, want %d resent right after the first %d", w.seqs, key[3].SequenceNumber, paceBurst)
		}
		w.seqs = slices.Delete(w.seqs, paceBurst, paceBurst+1)
		w.at = slices.Delete(w.at, paceBurst, paceBurst+1)
		time.Sleep(40 * time.Millisecond) // the next picture
		if !v.sendPaced(pic) {
			t.Fatal("sendPaced failed")
		}

		if want := seqs(slices.Concat(key, pic)); !slices.Equal(w.seqs, want) {
			t.Fatalf("sent %v, want %v", w.seqs, want)
		}
		parts := partsByTime(w.at)
		keyParts, picParts := parts[:len(parts)-1], parts[len(parts)-1:]
		for i, n := range keyParts {
			switch {
			case i == 0 && n != paceBurst,
				i > 0 && i < len(keyParts)-1 && n != paceRate,
				i == len(keyParts)-1 && (n < 1 || n > paceRate):
				t.Errorf("the keyframe left in parts of %v packets, want %d, then %d each", keyParts, paceBurst, paceRate)
			}
		}
		if picParts[0] != len(pic) {
			t.Errorf("the picture after the keyframe left in parts of %v, want one", parts[len(keyParts):])
		}

		// Behind: no pacing.
		for range viewerQueue / 2 {
			v.queue <- pic
		}
		w.seqs, w.at = nil, nil
		if !v.sendPaced(key) || len(w.seqs) != len(key) || len(partsByTime(w.at)) != 1 {
			t.Errorf("a viewer half a queue behind was sent %d of %d packets in parts of %v", len(w.seqs), len(key), partsByTime(w.at))
		}
	})
}

// partsByTime returns how many of the times in a row are the same.
func partsByTime(at []time.Time) []int {
	var parts []int
	for i, t := range at {
		if i == 0 || !t.Equal(at[i-1]) {
			parts = append(parts, 0)
		}
		parts[len(parts)-1]++
	}
	return parts
}

// TestLongGOPReplay joins a viewer to a stream whose cached GOP is longer
// than the burst sent at once, so the rest is paced: it still gets the
// whole GOP, then the live frames, every access unit whole.
func TestLongGOPReplay(t *testing.T) {
	e := newEnv(t, testConfig())
	e.agent.record = true
	e.agent.frame = benchFrame // 7 packets a frame
	e.watch("cam-1").awaitPackets(1)
	var u *upstream
	eventually(t, "the upstream", func() bool { u = e.sfu.streams()[0]; return u != nil })
	gopLen := func() int {
		u.mu.Lock()
		defer u.mu.Unlock()
		return len(u.gop.pkts)
	}
	eventually(t, "a GOP longer than the burst", func() bool { return gopLen() > paceBurst+20 })
	// The camera holds still, so the GOP cannot start anew before the
	// viewer has it.
	cam := e.agent.camera("cam-1")
	cam.paused.Store(true)
	n := gopLen()

	c, offer := newWHEPClient(t, false)
	c.keepAll = true
	res, body := e.post("cam-1", offer, nil)
	if res.StatusCode != 201 {
		t.Fatalf("POST whep: %d %s", res.StatusCode, body)
	}
	c.accept(res, body)
	// A packet the loopback loses is asked for again and arrives late:
	// wait for the GOP's n packets by sequence number, not the first n
	// arrivals.
	var gop []*rtp.Packet
	eventually(t, fmt.Sprintf("the GOP's %d packets", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		gop = firstBySequence(c.all, n)
		return gop != nil
	})
	cam.paused.Store(false)
	ts, aus, err := accessUnits(rtph264.H264, gop)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(aus[ts[0]], testIDR) {
		t.Fatal("the replay does not start with the keyframe")
	}
	awaitSameFrames(t, c, cam, len(ts)+30)
}

// firstBySequence returns the n packets of pkts with the lowest sequence
// numbers (duplicates dropped), or nil unless all n have arrived without a
// gap.
func firstBySequence(pkts []*rtp.Packet, n int) []*rtp.Packet {
	if len(pkts) == 0 {
		return nil
	}
	bySeq := map[int]*rtp.Packet{}
	lowest := 0
	for _, p := range pkts {
		d := int(int16(p.SequenceNumber - pkts[0].SequenceNumber))
		bySeq[d] = p
		lowest = min(lowest, d)
	}
	out := make([]*rtp.Packet, 0, n)
	for d := lowest; d < lowest+n; d++ {
		p, ok := bySeq[d]
		if !ok {
			return nil
		}
		out = append(out, p)
	}
	return out
}
