package live_test

import (
	"bytes"
	"errors"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// largeCamera is an RTSP camera that packetizes for Ethernet, as real ones
// do (gortsplib's 1,450-byte payloads): on PLAY it sends a fixed sequence
// of access units, H.264 or H.265, whose NAL units take single packets of
// up to 1,432 bytes, fragments of 1,462 and an aggregate of 1,317 or
// more, and keeps what it sent.
type largeCamera struct {
	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
	forma  format.Format // *format.H264 or *format.H265
	frames [][][]byte    // the access units to send, NAL units each
	wg     sync.WaitGroup

	mu      sync.Mutex
	playing bool // PLAY answered, response not yet sent
	sent    int  // access units sent
	largest int  // bytes of the largest RTP packet sent
}

func newLargeCamera(t *testing.T, frames [][][]byte) *largeCamera {
	return newCameraOf(t, &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps264, PPS: pps264}, frames)
}

// newLargeH265Camera is an H.265 largeCamera.
func newLargeH265Camera(t *testing.T, frames [][][]byte) *largeCamera {
	return newCameraOf(t, &format.H265{PayloadTyp: 96, VPS: vps265, SPS: sps265, PPS: pps265}, frames)
}

func newCameraOf(t *testing.T, forma format.Format, frames [][][]byte) *largeCamera {
	t.Helper()
	c := &largeCamera{forma: forma, frames: frames}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{c.forma}}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.srv = &gortsplib.Server{
		Handler:     c,
		RTSPAddress: ln.Addr().String(),
		Listen:      func(string, string) (net.Listener, error) { return ln, nil },
	}
	if err := c.srv.Start(); err != nil {
		t.Fatal(err)
	}
	c.stream = &gortsplib.ServerStream{Server: c.srv, Desc: desc}
	if err := c.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stream.Close()
		c.srv.Close()
		c.wg.Wait()
	})
	return c
}

func (c *largeCamera) url() string { return "rtsp://" + c.srv.RTSPAddress + "/stream" }

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (c *largeCamera) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (c *largeCamera) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (c *largeCamera) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	c.mu.Lock()
	c.playing = true
	c.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnResponse implements gortsplib.ServerHandlerOnResponse: the reader
// receives packets once its PLAY response is on the way.
func (c *largeCamera) OnResponse(_ *gortsplib.ServerConn, res *base.Response) {
	c.mu.Lock()
	play := c.playing
	c.playing = false
	c.mu.Unlock()
	if play && res.StatusCode == base.StatusOK {
		c.wg.Go(c.send)
	}
}

func (c *largeCamera) send() {
	var enc interface {
		Encode([][]byte) ([]*rtp.Packet, error)
	}
	var err error
	switch f := c.forma.(type) {
	case *format.H264:
		enc, err = f.CreateEncoder()
	case *format.H265:
		enc, err = f.CreateEncoder()
	}
	if err != nil {
		panic(err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i, f := range c.frames {
		<-tick.C
		pkts, err := enc.Encode(f)
		if err != nil {
			panic(err)
		}
		for _, p := range pkts {
			p.Timestamp = uint32(i * 3000)
			c.mu.Lock()
			c.largest = max(c.largest, p.MarshalSize())
			c.mu.Unlock()
			if c.stream.WritePacketRTP(c.stream.Desc.Medias[0], p) != nil {
				return // the reader left
			}
		}
		c.mu.Lock()
		c.sent++
		c.mu.Unlock()
	}
}

// body returns a NAL unit of n bytes that begins with the header hdr,
// different for each frame.
func body(hdr []byte, n, frame int) []byte {
	b := make([]byte, n)
	copy(b, hdr)
	for j := len(hdr); j < n; j++ {
		b[j] = byte(frame*31 + j*7)
	}
	return b
}

// Parameter sets of the large cameras.
var (
	sps264 = []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}
	pps264 = []byte{0x68, 0xce, 0x3c, 0x80}
	// A 1920×1080 Main-profile stream's, as gortsplib's tests have them.
	vps265 = []byte{0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x00,
		0x03, 0x00, 0x00, 0x03, 0x00, 0x96, 0xac, 0x09}
	sps265 = []byte{0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x00,
		0x03, 0x00, 0x96, 0xa0, 0x05, 0xa2, 0x01, 0xe1, 0x63, 0x6b, 0x92, 0x4c, 0x9a, 0xe5, 0x99}
	pps265 = []byte{0x44, 0x01, 0xe0, 0x76, 0xb0, 0x26, 0x40}
)

// largeFrames is a stream of n access units, a keyframe every tenth, built
// so that the camera sends packets of every kind over the WebRTC size.
func largeFrames(n int) [][][]byte {
	var frames [][][]byte
	for i := range n {
		var f [][]byte
		switch {
		case i%10 == 0: // SPS and PPS in a STAP-A, the IDR in FU-A fragments
			f = [][]byte{sps264, pps264, body([]byte{0x65}, 6000+i, i)}
		case i%3 == 0: // one 1,432-byte packet
			f = [][]byte{body([]byte{0x41}, 1420, i)}
		case i%3 == 1: // FU-A fragments of 1,462 bytes
			f = [][]byte{body([]byte{0x41}, 3000+i, i)}
		default: // two slices in one 1,317-byte STAP-A
			f = [][]byte{body([]byte{0x41}, 600, i), body([]byte{0x41}, 700, i)}
		}
		frames = append(frames, f)
	}
	return frames
}

// largeH265Frames is largeFrames in H.265: the parameter sets in an AP
// before each IDR (type 19), the other pictures trailing ones (type 1).
func largeH265Frames(n int) [][][]byte {
	idr, trail := []byte{19 << 1, 1}, []byte{1 << 1, 1}
	var frames [][][]byte
	for i := range n {
		var f [][]byte
		switch {
		case i%10 == 0:
			f = [][]byte{vps265, sps265, pps265, body(idr, 6000+i, i)}
		case i%3 == 0:
			f = [][]byte{body(trail, 1420, i)}
		case i%3 == 1:
			f = [][]byte{body(trail, 3000+i, i)}
		default:
			f = [][]byte{body(trail, 600, i), body(trail, 700, i)}
		}
		frames = append(frames, f)
	}
	return frames
}

// inOrder returns packets as a WebRTC receiver takes them: in sequence
// order, duplicates (retransmissions) dropped.
func inOrder(pkts []*rtp.Packet) []*rtp.Packet {
	if len(pkts) == 0 {
		return nil
	}
	// Unwrap the sequence numbers relative to the first packet.
	bySeq := map[int]*rtp.Packet{}
	for _, p := range pkts {
		bySeq[int(int16(p.SequenceNumber-pkts[0].SequenceNumber))] = p
	}
	out := make([]*rtp.Packet, 0, len(bySeq))
	for _, s := range slices.Sorted(maps.Keys(bySeq)) {
		out = append(out, bySeq[s])
	}
	return out
}

// accessUnits depacketizes H.264 packets as a WebRTC receiver does: one
// Annex B access unit per timestamp.
func accessUnits(t *testing.T, pkts []*rtp.Packet) [][]byte {
	t.Helper()
	var out [][]byte
	var depack codecs.H264Packet
	var ts uint32
	for i, p := range inOrder(pkts) {
		if i == 0 || p.Timestamp != ts {
			out, ts = append(out, nil), p.Timestamp
		}
		b, err := depack.Unmarshal(p.Payload)
		if err != nil {
			t.Fatalf("packet %d: depacketize: %v", p.SequenceNumber, err)
		}
		out[len(out)-1] = append(out[len(out)-1], b...)
	}
	return out
}

// h265AccessUnits depacketizes H.265 packets (RFC 7798) into Annex B
// access units, each ending at a marker bit.
func h265AccessUnits(t *testing.T, pkts []*rtp.Packet) [][]byte {
	t.Helper()
	dec := &rtph265.Decoder{}
	if err := dec.Init(); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range inOrder(pkts) {
		au, err := dec.Decode(p)
		switch {
		case errors.Is(err, rtph265.ErrMorePacketsNeeded):
		case err != nil:
			t.Fatalf("packet %d: depacketize: %v", p.SequenceNumber, err)
		default:
			out = append(out, annexB(au))
		}
	}
	return out
}

func annexB(nals [][]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

// TestLargeCameraPacketsFitTheHubsMTU streams cameras that send packets of
// up to 1,462 bytes, H.264 and H.265, to a hub peer that reads datagrams
// of at most 1,200 bytes, as WebRTC receivers may: every access unit
// arrives whole and byte for byte, because the agent splits the camera's
// packets.
func TestLargeCameraPacketsFitTheHubsMTU(t *testing.T) {
	const n = 40
	for _, tc := range []struct {
		name   string
		frames [][][]byte
		camera func(*testing.T, [][][]byte) *largeCamera
		mime   string
		units  func(*testing.T, []*rtp.Packet) [][]byte
		codec  rtph264.Codec
	}{
		{"H.264", largeFrames(n), newLargeCamera, webrtc.MimeTypeH264, accessUnits, rtph264.H264},
		{"H.265", largeH265Frames(n), newLargeH265Camera, webrtc.MimeTypeH265, h265AccessUnits, rtph264.H265},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := tc.camera(t, tc.frames)
			m, rec := startManager(t, map[string]string{"cam-1": cam.url()}, nil)
			h := connectHub(t, m, rec, makeHub(t, offerH265, false, rtph264.MaxPacketSize), "ls-1", "cam-1")

			deadline := time.Now().Add(timeout)
			for {
				cam.mu.Lock()
				sent := cam.sent
				cam.mu.Unlock()
				if sent == n && len(tc.units(t, h.received())) >= n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the camera sent %d access units, the hub assembled %d", sent, len(tc.units(t, h.received())))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if cam.largest < 1400 {
				t.Fatalf("the camera's largest packet had %d bytes: the test proves nothing", cam.largest)
			}
			if got := h.codec(); got != tc.mime {
				t.Errorf("the hub received %s, want %s", got, tc.mime)
			}
			got := tc.units(t, h.received())
			if len(got) != n {
				t.Fatalf("%d access units received, %d sent", len(got), n)
			}
			for i, au := range got {
				if want := annexB(tc.frames[i]); !bytes.Equal(au, want) {
					t.Errorf("access unit %d: %d bytes received, %d sent, or different bytes", i, len(au), len(want))
				}
			}
			for _, p := range h.received() {
				if size := p.MarshalSize() + rtph264.SRTPOverhead + rtph264.ExtensionBudget; size > rtph264.MaxPacketSize {
					t.Errorf("packet %d: %d bytes with the SRTP tag and extension budget", p.SequenceNumber, size)
				}
				// Fragments are filled: only a NAL unit's last may be shorter.
				if len(p.Payload) != rtph264.MaxPayloadSize && middleFragment(tc.codec, p.Payload) {
					t.Errorf("packet %d: a fragment of %d bytes before its unit's last, want %d", p.SequenceNumber, len(p.Payload), rtph264.MaxPayloadSize)
				}
			}
			if s := m.Stats(); s.Unsplit != 0 {
				t.Errorf("%d packets not split", s.Unsplit)
			}
		})
	}
}

// middleFragment reports whether payload is a fragment (FU-A, FU) of a
// NAL unit other than its last.
func middleFragment(codec rtph264.Codec, payload []byte) bool {
	if codec == rtph264.H265 {
		return len(payload) >= 3 && codec.Type(payload) == 49 && payload[2]&0x40 == 0
	}
	return len(payload) >= 2 && codec.Type(payload) == 28 && payload[1]&0x40 == 0
}
