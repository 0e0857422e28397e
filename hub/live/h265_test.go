package live

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// client makes a WHEP client and its offer.
type client func(testing.TB) (*whepClient, string)

func h264Client(t testing.TB) (*whepClient, string) { return newWHEPClient(t, false) }

// watchWith posts a new client's offer for camera, wants 201 with an
// answer in mime, and keeps every packet the client gets.
func watchWith(t *testing.T, e *env, newClient client, camera, mime string) *whepClient {
	t.Helper()
	c, offer := newClient(t)
	c.keepAll = true
	res, body := e.post(camera, offer, nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST whep %s: %d %s", camera, res.StatusCode, body)
	}
	if !strings.Contains(body, strings.TrimPrefix(mime, "video/")+"/90000") {
		t.Fatalf("the answer has no %s:\n%s", mime, body)
	}
	c.accept(res, body)
	c.awaitPackets(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mime != mime {
		t.Fatalf("the viewer receives %s, want %s", c.mime, mime)
	}
	return c
}

// firstUnitTypes returns the NAL unit types of the first access unit a
// client got.
func firstUnitTypes(t *testing.T, c *whepClient, codec rtph264.Codec) []byte {
	t.Helper()
	c.mu.Lock()
	first := c.all[0].Timestamp
	var types []byte
	for _, p := range c.all {
		if p.Timestamp != first {
			break
		}
		codec.Units(p.Payload, func(nal []byte, _ bool) { types = append(types, codec.Type(nal)) })
	}
	c.mu.Unlock()
	return types
}

// TestH265Viewers: a camera whose main stream is H.265, with an H.264
// sub-stream, sent in camera-size packets (1,462 bytes, as an agent that
// did not split them would). A viewer whose offer has H.265 gets the main
// stream in H.265 from its first keyframe (VPS, SPS, PPS, IDR) and every
// access unit whole in packets of at most 1,200 bytes; a viewer with H.264
// only gets the sub-stream at the same time, from a second upstream; a
// second H.265 viewer shares the first's; and the camera stays online.
func TestH265Viewers(t *testing.T) {
	e := newEnv(t, testConfig())
	e.agent.h265, e.agent.record, e.agent.packetSize = true, true, 1462

	h265 := watchWith(t, e, newH265WHEPClient, "cam-1", webrtc.MimeTypeH265)
	main := e.agent.cameraIn("cam-1", rtph264.H265)
	awaitSameFrames(t, h265, main, 40) // over a GOP: keyframes come once a second
	if got := firstUnitTypes(t, h265, rtph264.H265); !slices.Equal(got, []byte{32, 33, 34, 19}) {
		t.Errorf("first access unit's NAL types %v, want VPS, SPS, PPS, IDR (32 33 34 19)", got)
	}

	h264 := watchWith(t, e, h264Client, "cam-1", webrtc.MimeTypeH264)
	sub := e.agent.cameraIn("cam-1", rtph264.H264)
	awaitSameFrames(t, h264, sub, 15)
	if got := firstUnitTypes(t, h264, rtph264.H264); !slices.Contains(got, 5) {
		t.Errorf("the sub-stream's first access unit's NAL types %v, want an IDR", got)
	}

	again := watchWith(t, e, newH265WHEPClient, "cam-1", webrtc.MimeTypeH265)
	awaitSameFrames(t, again, main, 15)
	awaitSameFrames(t, h265, main, 60)
	if n := e.agent.count(wire.CommandLiveStart); n != 2 {
		t.Errorf("%d live_start commands, want 2: one upstream per codec", n)
	}
	if st := e.streams(); len(st) != 2 || st[0].Camera != "cam-1" || st[1].Camera != "cam-1" {
		t.Errorf("streams %+v, want two of cam-1", st)
	}

	main.mu.Lock()
	largest := main.largest
	main.mu.Unlock()
	if largest < 1400 {
		t.Fatalf("the agent's largest packet had %d bytes: the test proves nothing", largest)
	}
	e.packetsFit(t, h265, h264, again)
	if d, _ := e.fleet.Device("cam-1"); d.Status != wire.StatusOnline {
		t.Errorf("cam-1 is %s", d.Status)
	}
	for _, c := range []*whepClient{h265, h264, again} {
		e.leave(c)
	}
	eventually(t, "the upstreams stop", func() bool { return len(e.streams()) == 0 })
}

// TestH265ViewerOfH264Camera: for a camera whose main stream is H.264,
// viewers that decode H.265 and viewers that do not share one upstream,
// whoever comes first: the agent sends H.264 either way.
func TestH265ViewerOfH264Camera(t *testing.T) {
	for _, h265First := range []bool{true, false} {
		name := "H.264 viewer first"
		if h265First {
			name = "H.265 viewer first"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, testConfig())
			e.agent.record = true
			clients := []client{newH265WHEPClient, h264Client}
			if !h265First {
				slices.Reverse(clients)
			}
			first := watchWith(t, e, clients[0], "cam-1", webrtc.MimeTypeH264)
			awaitSameFrames(t, first, e.agent.camera("cam-1"), 5)
			second := watchWith(t, e, clients[1], "cam-1", webrtc.MimeTypeH264)
			awaitSameFrames(t, second, e.agent.camera("cam-1"), 5)
			if n := e.agent.count(wire.CommandLiveStart); n != 1 {
				t.Errorf("%d live_start commands, want 1", n)
			}
			if st := e.streams(); len(st) != 1 || st[0].Viewers != 2 {
				t.Errorf("streams %+v, want one with two viewers", st)
			}
		})
	}
}

// TestH265OnlyViewerOfH264Camera: a player that decodes nothing but H.265
// gets 415 and words for an H.264 camera, and the camera stays online.
func TestH265OnlyViewerOfH264Camera(t *testing.T) {
	e := newEnv(t, testConfig())
	_, offer := makeWHEPClient(t, loopbackAPI(t, false, h265Codecs), false)
	res, body := e.post("cam-1", offer, nil)
	if res.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, "sends H.264 here, which this player's offer does not have") {
		t.Fatalf("POST = %d %s, want 415 naming H.264", res.StatusCode, body)
	}
	if d, _ := e.fleet.Device("cam-1"); d.Status != wire.StatusOnline {
		t.Errorf("cam-1 is %s", d.Status)
	}
}

// An H.265 keyframe whose access unit lacks the parameter sets gets the
// last ones seen, in an AP just before it.
func TestGOPH265ParameterSetsPrefix(t *testing.T) {
	g := newGOP(1 << 20)
	g.codec = rtph264.H265
	enc := &rtph265.Encoder{PayloadType: 116, PayloadMaxSize: rtph264.MaxPayloadSize}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	push := func(ts uint32, au ...[]byte) []*rtp.Packet {
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			p.Timestamp = ts
			g.push(p, parseNALs(rtph264.H265, p.Payload))
		}
		return pkts
	}
	push(0, testVPS265, testSPS265, testPPS265, testIDR265)
	push(3000, testTrail265)
	bare := push(6000, testIDR265)
	got := g.snapshot()
	if len(got) != len(bare)+1 || got[1] != bare[0] {
		t.Fatalf("snapshot = %d packets, want the prefix and %d", len(got), len(bare))
	}
	prefix := got[0]
	if prefix.SequenceNumber != bare[0].SequenceNumber-1 || prefix.Timestamp != 6000 {
		t.Fatalf("prefix header %+v", prefix.Header)
	}
	var types []byte
	rtph264.H265.Units(prefix.Payload, func(nal []byte, _ bool) { types = append(types, rtph264.H265.Type(nal)) })
	if !slices.Equal(types, []byte{32, 33, 34}) {
		t.Fatalf("prefix carries NAL types %v, want VPS, SPS, PPS", types)
	}
}
