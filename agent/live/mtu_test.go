package live_test

import (
	"bytes"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// largeCamera is an RTSP camera that packetizes for Ethernet, as real ones
// do (gortsplib's 1,450-byte payloads): on PLAY it sends a fixed sequence
// of access units whose NAL units take single packets of 1,432 bytes,
// FU-A fragments of 1,462 and a STAP-A of 1,317, and keeps what it sent.
type largeCamera struct {
	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
	forma  *format.H264
	frames [][][]byte // the access units to send, NAL units each
	wg     sync.WaitGroup

	mu      sync.Mutex
	playing bool // PLAY answered, response not yet sent
	sent    int  // access units sent
	largest int  // bytes of the largest RTP packet sent
}

func newLargeCamera(t *testing.T, frames [][][]byte) *largeCamera {
	t.Helper()
	c := &largeCamera{frames: frames}
	c.forma = &format.H264{PayloadTyp: 96, PacketizationMode: 1,
		SPS: []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}, PPS: []byte{0x68, 0xce, 0x3c, 0x80}}
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
	enc, err := c.forma.CreateEncoder()
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

// body returns n bytes after a NAL header hdr, different for each frame.
func body(hdr byte, n, frame int) []byte {
	b := make([]byte, n)
	b[0] = hdr
	for j := 1; j < n; j++ {
		b[j] = byte(frame*31 + j*7)
	}
	return b
}

// largeFrames is a stream of n access units, a keyframe every tenth, built
// so that the camera sends packets of every kind over the WebRTC size.
func largeFrames(n int) [][][]byte {
	var frames [][][]byte
	for i := range n {
		var f [][]byte
		switch {
		case i%10 == 0: // SPS and PPS in a STAP-A, the IDR in FU-A fragments
			f = [][]byte{{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}, {0x68, 0xce, 0x3c, 0x80}, body(0x65, 6000+i, i)}
		case i%3 == 0: // one 1,432-byte packet
			f = [][]byte{body(0x41, 1420, i)}
		case i%3 == 1: // FU-A fragments of 1,462 bytes
			f = [][]byte{body(0x41, 3000+i, i)}
		default: // two slices in one 1,317-byte STAP-A
			f = [][]byte{body(0x41, 600, i), body(0x41, 700, i)}
		}
		frames = append(frames, f)
	}
	return frames
}

// accessUnits depacketizes packets as a WebRTC receiver does: in sequence
// order, duplicates (retransmissions) dropped, one Annex B access unit per
// timestamp.
func accessUnits(t *testing.T, pkts []*rtp.Packet) [][]byte {
	t.Helper()
	if len(pkts) == 0 {
		return nil
	}
	// Unwrap the sequence numbers relative to the first packet.
	bySeq := map[int]*rtp.Packet{}
	for _, p := range pkts {
		bySeq[int(int16(p.SequenceNumber-pkts[0].SequenceNumber))] = p
	}
	seqs := slices.Sorted(func(yield func(int) bool) {
		for s := range bySeq {
			if !yield(s) {
				return
			}
		}
	})
	var out [][]byte
	var depack codecs.H264Packet
	for i, s := range seqs {
		p := bySeq[s]
		if i == 0 || p.Timestamp != bySeq[seqs[i-1]].Timestamp {
			out = append(out, nil)
		}
		b, err := depack.Unmarshal(p.Payload)
		if err != nil {
			t.Fatalf("packet %d: depacketize: %v", p.SequenceNumber, err)
		}
		out[len(out)-1] = append(out[len(out)-1], b...)
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

// TestLargeCameraPacketsFitTheHubsMTU streams a camera that sends packets
// of up to 1,462 bytes to a hub peer that reads datagrams of at most 1,200
// bytes, as WebRTC receivers may: every access unit arrives whole and
// byte for byte, because the agent splits the camera's packets.
func TestLargeCameraPacketsFitTheHubsMTU(t *testing.T) {
	const n = 40
	frames := largeFrames(n)
	cam := newLargeCamera(t, frames)
	m, rec := startManager(t, map[string]string{"cam-1": cam.url()}, nil)
	h := connectHub(t, m, rec, makeHub(t, nil, false, rtph264.MaxPacketSize), "ls-1", "cam-1")

	deadline := time.Now().Add(timeout)
	for {
		cam.mu.Lock()
		sent := cam.sent
		cam.mu.Unlock()
		if sent == n && len(accessUnits(t, h.received())) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the camera sent %d access units, the hub assembled %d", sent, len(accessUnits(t, h.received())))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cam.largest < 1400 {
		t.Fatalf("the camera's largest packet had %d bytes: the test proves nothing", cam.largest)
	}
	got := accessUnits(t, h.received())
	if len(got) != n {
		t.Fatalf("%d access units received, %d sent", len(got), n)
	}
	for i, au := range got {
		if want := annexB(frames[i]); !bytes.Equal(au, want) {
			t.Errorf("access unit %d: %d bytes received, %d sent, or different bytes", i, len(au), len(want))
		}
	}
	for _, p := range h.received() {
		if size := p.MarshalSize() + rtph264.SRTPOverhead + rtph264.ExtensionBudget; size > rtph264.MaxPacketSize {
			t.Errorf("packet %d: %d bytes with the SRTP tag and extension budget", p.SequenceNumber, size)
		}
		// Fragments are filled: only a NAL unit's last may be shorter.
		if b := p.Payload; len(b) >= 2 && b[0]&0x1f == 28 && b[1]&0x40 == 0 && len(b) != rtph264.MaxPayloadSize {
			t.Errorf("packet %d: an FU-A fragment of %d bytes before its unit's last, want %d", p.SequenceNumber, len(b), rtph264.MaxPayloadSize)
		}
	}
	if s := m.Stats(); s.Unsplit != 0 {
		t.Errorf("%d packets not split", s.Unsplit)
	}
}
