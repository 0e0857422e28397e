package live

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// accessUnits depacketizes a viewer's packets of codec as a WebRTC
// receiver does: in sequence order, duplicates (retransmissions) dropped.
// It returns the access units in Annex B by timestamp, in order, and an
// error for a gap in the sequence. An H.265 access unit counts once its
// last packet (the marker bit) came.
func accessUnits(codec rtph264.Codec, pkts []*rtp.Packet) (ts []uint32, aus map[uint32][]byte, err error) {
	aus = map[uint32][]byte{}
	if len(pkts) == 0 {
		return nil, aus, nil
	}
	bySeq := map[int]*rtp.Packet{}
	for _, p := range pkts {
		bySeq[int(int16(p.SequenceNumber-pkts[0].SequenceNumber))] = p
	}
	seqs := slices.Sorted(maps.Keys(bySeq))
	depack := h264Depacketizer()
	if codec == rtph264.H265 {
		depack = h265Depacketizer()
	}
	for i, s := range seqs {
		if i > 0 && s != seqs[i-1]+1 {
			return nil, nil, fmt.Errorf("sequence gap after packet %d", bySeq[seqs[i-1]].SequenceNumber)
		}
		p := bySeq[s]
		b, err := depack(p)
		if err != nil {
			return nil, nil, fmt.Errorf("packet %d: %w", p.SequenceNumber, err)
		}
		if b == nil {
			continue
		}
		if len(ts) == 0 || ts[len(ts)-1] != p.Timestamp {
			ts = append(ts, p.Timestamp)
		}
		aus[p.Timestamp] = append(aus[p.Timestamp], b...)
	}
	return ts, aus, nil
}

// h264Depacketizer returns the Annex B bytes of each packet.
func h264Depacketizer() func(*rtp.Packet) ([]byte, error) {
	var depack codecs.H264Packet
	return func(p *rtp.Packet) ([]byte, error) { return depack.Unmarshal(p.Payload) }
}

// h265Depacketizer returns an access unit in Annex B at each one's last
// packet, nil before.
func h265Depacketizer() func(*rtp.Packet) ([]byte, error) {
	var dec rtph265.Decoder
	err := dec.Init()
	return func(p *rtp.Packet) ([]byte, error) {
		if err != nil {
			return nil, err
		}
		au, err := dec.Decode(p)
		if errors.Is(err, rtph265.ErrMorePacketsNeeded) {
			return nil, nil
		}
		return annexB(au...), err
	}
}

// sameFrames checks that a viewer got n or more consecutive access units of
// the camera's, from its first, whole and byte for byte. The last access
// unit may still be arriving and is not counted.
func sameFrames(c *whepClient, cam *fakeCamera, n int) error {
	c.mu.Lock()
	pkts := slices.Clone(c.all)
	c.mu.Unlock()
	ts, aus, err := accessUnits(cam.codec, pkts)
	if err != nil {
		return err
	}
	if len(ts) < n+1 {
		return fmt.Errorf("%d access units received", len(ts))
	}
	cam.mu.Lock()
	defer cam.mu.Unlock()
	for _, t := range ts[:len(ts)-1] {
		want, ok := cam.sent[t]
		if !ok {
			return fmt.Errorf("access unit %d was never sent", t)
		}
		if !bytes.Equal(aus[t], want) {
			return fmt.Errorf("access unit %d: %d bytes received, %d sent, or different bytes", t, len(aus[t]), len(want))
		}
	}
	// Every access unit the camera sent in between arrived.
	first, last := ts[0], ts[len(ts)-2]
	sent := 0
	for t := range cam.sent {
		if int32(t-first) >= 0 && int32(last-t) >= 0 {
			sent++
		}
	}
	if sent != len(ts)-1 {
		return fmt.Errorf("%d access units sent, %d received", sent, len(ts)-1)
	}
	return nil
}

// awaitSameFrames waits until sameFrames holds, and fails with what it
// last found otherwise.
func awaitSameFrames(t *testing.T, c *whepClient, cam *fakeCamera, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	err := sameFrames(c, cam, n)
	for ; err != nil && time.Now().Before(deadline); err = sameFrames(c, cam, n) {
		time.Sleep(20 * time.Millisecond) // packets arrive over the network
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestOlderAgentsLargePackets has the relay carry a stream an older agent
// sends as the camera packetized it, 1,432- and 1,462-byte packets, to
// viewers that read datagrams of at most 1,200 bytes: a viewer from the
// start and one that joins the running stream, whose first packets are
// the GOP cache's. Both decode every access unit, byte for byte, because
// the upstream splits the packets once for all of them.
func TestOlderAgentsLargePackets(t *testing.T) {
	e := newEnv(t, testConfig())
	e.agent.packetSize = 1462
	e.agent.record = true
	e.agent.frame = append([]byte{0x41, 0x9a, 0x02}, bytes.Repeat([]byte{0xcd}, 1417)...) // one 1,432-byte packet

	watch := func() *whepClient {
		c, offer := newWHEPClient(t, false)
		c.keepAll = true
		res, body := e.post("cam-1", offer, nil)
		if res.StatusCode != 201 {
			t.Fatalf("POST whep: %d %s", res.StatusCode, body)
		}
		c.accept(res, body)
		return c
	}
	first := watch()
	awaitSameFrames(t, first, e.agent.camera("cam-1"), 45) // over a GOP: the camera's keyframes come once a second
	second := watch()
	awaitSameFrames(t, second, e.agent.camera("cam-1"), 15)
	awaitSameFrames(t, first, e.agent.camera("cam-1"), 60)

	cam := e.agent.camera("cam-1")
	cam.mu.Lock()
	largest := cam.largest
	cam.mu.Unlock()
	if largest < 1400 {
		t.Fatalf("the agent's largest packet had %d bytes: the test proves nothing", largest)
	}
	e.packetsFit(t, first, second)
}

// TestGOPCacheHoldsSplitPackets feeds an upstream an older agent's
// keyframe: the GOP a joining viewer is sent is the split packets, within
// the WebRTC packet size and numbered without gaps.
func TestGOPCacheHoldsSplitPackets(t *testing.T) {
	s, err := New(Config{}, Deps{Metrics: metrics.NewRegistry(), Fleet: newFleet(t), Commands: newFakeAgent(t), Audit: &recordingAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	u := newUpstream(s, fleet.Device{ID: "cam-1", Agent: agentID}, rtph264.H264, nil)
	pk := rtp.NewPacketizer(1462, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1000), 90000)
	var large int
	for _, f := range [][]byte{annexB(testSPS, testPPS, testIDR), annexB(testNonIDR)} {
		for _, p := range pk.Packetize(f, 3000) {
			if p.MarshalSize() > rtph264.HeaderSize+rtph264.MaxPayloadSize {
				large++
			}
			u.forward(p, time.Now())
		}
	}
	if large == 0 {
		t.Fatal("the agent sent no packet too large for viewers: the test proves nothing")
	}
	g := u.gop.snapshot()
	for i, p := range g {
		if p.MarshalSize() > rtph264.HeaderSize+rtph264.MaxPayloadSize {
			t.Errorf("packet %d: %d bytes", i, p.MarshalSize())
		}
	}
	ts, aus, err := accessUnits(rtph264.H264, g)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || !bytes.Equal(aus[ts[0]], annexB(testSPS, testPPS, testIDR)) || !bytes.Equal(aus[ts[1]], annexB(testNonIDR)) {
		t.Fatal("the GOP does not depacketize to the frames sent")
	}
}

// packetsFit checks that every packet the viewers received fits the MTU
// budget with the SRTP tag and extensions, and that the relay split every
// packet it had to.
func (e *env) packetsFit(t *testing.T, viewers ...*whepClient) {
	t.Helper()
	for _, c := range viewers {
		c.mu.Lock()
		for _, p := range c.all {
			if size := p.MarshalSize() + rtph264.SRTPOverhead + rtph264.ExtensionBudget; size > rtph264.MaxPacketSize {
				t.Errorf("a %d-byte packet with the SRTP tag and extension budget", size)
			}
		}
		c.mu.Unlock()
	}
	if n := e.metric("citywatch_live_packets_unsplit_total"); n != 0 {
		t.Errorf("%v packets not split", n)
	}
}
