package live

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/citywatch/citywatch/wire/rtph264"
)

func stapA(nals ...[]byte) []byte {
	b := []byte{0x78}
	for _, n := range nals {
		b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
		b = append(b, n...)
	}
	return b
}

func TestParseH264(t *testing.T) {
	for _, tc := range []struct {
		name     string
		payload  []byte
		idr      bool
		sps, pps bool
	}{
		{"empty", nil, false, false, false},
		{"non-IDR slice", testNonIDR, false, false, false},
		{"IDR slice", testIDR, true, false, false},
		{"SPS", testSPS, false, true, false},
		{"PPS", testPPS, false, false, true},
		{"STAP-A SPS PPS IDR", stapA(testSPS, testPPS, testIDR[:50]), true, true, true},
		{"STAP-A SPS PPS", stapA(testSPS, testPPS), false, true, true},
		{"STAP-A truncated", stapA(testSPS, testPPS)[:12], false, true, false},
		{"STAP-A zero size", append(stapA(testSPS), 0, 0), false, true, false},
		{"FU-A IDR start", []byte{0x7c, 0x85, 0xaa}, true, false, false},
		{"FU-A IDR middle", []byte{0x7c, 0x05, 0xaa}, false, false, false},
		{"FU-A non-IDR start", []byte{0x7c, 0x81, 0xaa}, false, false, false},
		{"FU-A header only", []byte{0x7c}, false, false, false},
		{"STAP-B (mode 2)", []byte{0x19, 0, 0, 0, 5, 0x65}, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := parseNALs(rtph264.H264, tc.payload)
			sps, pps := n.params[0], n.params[1]
			if n.key != tc.idr || (sps != nil) != tc.sps || (pps != nil) != tc.pps {
				t.Fatalf("parseNALs = idr %v sps %v pps %v, want %v %v %v", n.key, sps != nil, pps != nil, tc.idr, tc.sps, tc.pps)
			}
			if tc.sps && !bytes.Equal(sps, testSPS) || tc.pps && !bytes.Equal(pps, testPPS) {
				t.Fatalf("parameter sets %x %x", sps, pps)
			}
		})
	}
}

// TestParseH265: IRAP pictures (BLA, IDR, CRA) are keyframes; VPS, SPS
// and PPS are found whole, alone or in an AP.
func TestParseH265(t *testing.T) {
	vps, sps, pps := []byte{32 << 1, 1, 0x0c}, []byte{33 << 1, 1, 0x01}, []byte{34 << 1, 1, 0xc1}
	for _, tc := range []struct {
		name    string
		payload []byte
		key     bool
		params  int // how many parameter sets
	}{
		{"trailing picture", []byte{1 << 1, 1, 0xaa}, false, 0},
		{"IDR_W_RADL", []byte{19 << 1, 1, 0xaa}, true, 0},
		{"CRA", []byte{21 << 1, 1, 0xaa}, true, 0},
		{"AP VPS SPS PPS", rtph264.H265.Aggregate(vps, sps, pps), false, 3},
		{"FU start of an IDR", []byte{49 << 1, 1, 0x80 | 19, 0xaa}, true, 0},
		{"FU middle of an IDR", []byte{49 << 1, 1, 19, 0xaa}, false, 0},
		{"H.264 IDR read as H.265", testIDR[:20], false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := parseNALs(rtph264.H265, tc.payload)
			got := 0
			for _, ps := range n.params {
				if ps != nil {
					got++
				}
			}
			if n.key != tc.key || got != tc.params {
				t.Fatalf("parseNALs = key %v, %d parameter sets; want %v, %d", n.key, got, tc.key, tc.params)
			}
		})
	}
}

func FuzzParseNALs(f *testing.F) {
	for _, p := range [][]byte{testIDR[:20], testSPS, stapA(testSPS, testPPS, testIDR[:10]), {0x7c, 0x85, 1}, {0x18, 0xff, 0xff}, {96, 1, 0, 3, 64, 1, 0}} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, codec := range []rtph264.Codec{rtph264.H264, rtph264.H265} {
			n := parseNALs(codec, payload)
			for _, ps := range n.params {
				if ps != nil && (len(ps) == 0 || len(ps) > len(payload)) {
					t.Fatalf("%s: parameter set of %d bytes from a %d-byte payload", codec, len(ps), len(payload))
				}
			}
		}
	})
}

// stream packetizes frames as a camera would: SPS and PPS in a STAP-A
// before each keyframe, the IDR in FU-A fragments.
type stream struct {
	pk rtp.Packetizer
}

func newStream() *stream {
	return &stream{pk: rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1000), 90000)}
}

func (s *stream) frame(nals ...[]byte) []*rtp.Packet { return s.pk.Packetize(annexB(nals...), 3000) }

func pushAll(g *gop, pkts []*rtp.Packet) (keyframes int) {
	for _, p := range pkts {
		if g.push(p, parseNALs(g.codec, p.Payload)) {
			keyframes++
		}
	}
	return keyframes
}

func TestGOPCache(t *testing.T) {
	s := newStream()
	g := newGOP(1 << 20)
	if n := pushAll(g, s.frame(testNonIDR)); n != 0 || g.snapshot() != nil {
		t.Fatal("a GOP without a keyframe")
	}
	key := s.frame(testSPS, testPPS, testIDR)
	if n := pushAll(g, key); n != 1 {
		t.Fatalf("%d keyframes in one keyframe's packets", n)
	}
	p1, p2 := s.frame(testNonIDR), s.frame(testNonIDR)
	pushAll(g, p1)
	pushAll(g, p2)
	want := append(append(append([]*rtp.Packet{}, key...), p1...), p2...)
	got := g.snapshot()
	if len(got) != len(want) {
		t.Fatalf("snapshot of %d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("packet %d differs", i)
		}
	}

	// The next keyframe starts a new GOP with its own access unit.
	key2 := s.frame(testSPS, testPPS, testIDR)
	pushAll(g, key2)
	if got := g.snapshot(); len(got) != len(key2) || got[0] != key2[0] {
		t.Fatalf("new GOP = %d packets", len(got))
	}
}

// A keyframe whose access unit lacks the parameter sets gets the last ones
// seen, in a STAP-A just before it.
func TestGOPParameterSetsPrefix(t *testing.T) {
	s := newStream()
	g := newGOP(1 << 20)
	pushAll(g, s.frame(testSPS, testPPS, testIDR))
	pushAll(g, s.frame(testNonIDR))
	bare := s.frame(testIDR) // an encoder sending SPS/PPS once only
	pushAll(g, bare)
	got := g.snapshot()
	if len(got) != len(bare)+1 || got[1] != bare[0] {
		t.Fatalf("snapshot = %d packets, want the prefix and %d", len(got), len(bare))
	}
	prefix := got[0]
	if prefix.SequenceNumber != bare[0].SequenceNumber-1 || prefix.Timestamp != bare[0].Timestamp || prefix.SSRC != bare[0].SSRC || prefix.Marker {
		t.Fatalf("prefix header %+v", prefix.Header)
	}
	n := parseNALs(rtph264.H264, prefix.Payload)
	if !bytes.Equal(n.params[0], testSPS) || !bytes.Equal(n.params[1], testPPS) || n.key {
		t.Fatalf("prefix carries %+v", n)
	}
}

// A GOP larger than the bound is dropped until the next keyframe.
func TestGOPBounded(t *testing.T) {
	s := newStream()
	g := newGOP(8 << 10)
	pushAll(g, s.frame(testSPS, testPPS, testIDR))
	for range 30 {
		pushAll(g, s.frame(testNonIDR))
	}
	if g.snapshot() != nil {
		t.Fatal("an oversized GOP kept")
	}
	pushAll(g, s.frame(testSPS, testPPS, testIDR))
	if g.snapshot() == nil {
		t.Fatal("no GOP after the next keyframe")
	}
	// One timestamp for ever does not grow the access unit without bound.
	p := s.frame(testNonIDR)[0]
	for range 1000 {
		g.push(p, nalInfo{})
	}
	if g.auBytes > g.max {
		t.Fatalf("access unit of %d bytes, bound %d", g.auBytes, g.max)
	}
}
