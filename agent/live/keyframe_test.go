package live

import (
	"bytes"
	"slices"
	"testing"

	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/wire/rtph264"
)

func TestNALMask(t *testing.T) {
	for _, tc := range []struct {
		name      string
		codec     rtph264.Codec
		payload   []byte
		want      uint64
		continued bool
	}{
		{"empty", rtph264.H264, nil, 0, false},
		{"single IDR", rtph264.H264, []byte{0x65, 1, 2}, 1 << 5, false},
		{"single slice", rtph264.H264, []byte{0x41, 1, 2}, 1 << 1, false},
		{"STAP-A SPS PPS IDR", rtph264.H264, []byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1, 0, 2, 0x65, 1}, 1<<7 | 1<<8 | 1<<5, false},
		{"STAP-A cut short", rtph264.H264, []byte{0x78, 0, 2, 0x67, 1, 0, 9, 0x68}, 1 << 7, false},
		{"FU-A start of an IDR", rtph264.H264, []byte{0x7c, 0x85, 1}, 1 << 5, false},
		{"FU-A middle of an IDR", rtph264.H264, []byte{0x7c, 0x05, 1}, 0, true},
		{"FU-A end of an IDR", rtph264.H264, []byte{0x7c, 0x45, 1}, 0, true},
		{"H.265 AP VPS SPS PPS", rtph264.H265, rtph264.H265.Aggregate(vps265, sps265, pps265), 1<<32 | 1<<33 | 1<<34, false},
		{"H.265 FU start of an IDR", rtph264.H265, idrStart265, 1 << 19, false},
		{"H.265 FU end of an IDR", rtph264.H265, idrEnd265, 0, true},
		{"H.265 CRA", rtph264.H265, []byte{21 << 1, 1, 7}, 1 << 21, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, cont := nalMask(tc.codec, tc.payload); got != tc.want || cont != tc.continued {
				t.Errorf("nalMask = %b, %v; want %b, %v", got, cont, tc.want, tc.continued)
			}
		})
	}
}

// H.265 NAL units and fragments (RFC 7798): a two-byte header, type << 1
// in the first byte, TID 1 in the second.
var (
	vps265      = []byte{32 << 1, 1, 0x0c, 0x01}
	sps265      = []byte{33 << 1, 1, 0x01, 0x60}
	pps265      = []byte{34 << 1, 1, 0xc1, 0x73}
	idrStart265 = []byte{49 << 1, 1, 0x80 | 19, 0xaf}
	idrEnd265   = []byte{49 << 1, 1, 0x40 | 19, 0x01}
	trail265    = []byte{1 << 1, 1, 0xd0}
	sei265      = []byte{39 << 1, 1, 0x05}
)

var (
	sps      = []byte{0x67, 0x42, 0xc0, 0x1f}
	pps      = []byte{0x68, 0xce, 0x3c, 0x80}
	idr      = []byte{0x65, 0x88, 0x84}
	idrStart = []byte{0x7c, 0x85, 0x88}
	idrEnd   = []byte{0x7c, 0x45, 0x84}
	slice    = []byte{0x41, 0x9a, 0x02}
	sei      = []byte{0x06, 0x05, 0x01}
)

func pkt(seq uint16, ts uint32, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 7}, Payload: payload}
}

func TestKeyframeGate(t *testing.T) {
	type out struct {
		seq     uint16
		ts      uint32
		payload []byte
	}
	stapA := append(append(append([]byte{0x78, 0, 4}, sps...), 0, 4), pps...)
	ap := rtph264.H265.Aggregate(vps265, sps265, pps265)
	for _, tc := range []struct {
		name    string
		codec   rtph264.Codec
		params  [][]byte // from the SDP
		in      []*rtp.Packet
		dropped []bool // per packet in
		want    []out
	}{
		{
			name: "starts at the keyframe's access unit, parameter sets in band",
			in: []*rtp.Packet{
				pkt(10, 100, slice), pkt(11, 200, sps), pkt(12, 200, pps), pkt(13, 200, idrStart), pkt(14, 200, idrEnd), pkt(15, 300, slice),
			},
			dropped: []bool{true, false, false, false, false, false},
			want:    []out{{11, 200, sps}, {12, 200, pps}, {13, 200, idrStart}, {14, 200, idrEnd}, {15, 300, slice}},
		},
		{
			name: "joins in the middle of a fragmented IDR",
			in:   []*rtp.Packet{pkt(1, 100, idrEnd), pkt(2, 200, slice), pkt(3, 300, idr)},
			// Without parameter sets anywhere there is nothing to add.
			dropped: []bool{true, true, false},
			want:    []out{{3, 300, idr}},
		},
		{
			name:    "held packets of an access unit without IDR are dropped",
			params:  [][]byte{sps, pps},
			in:      []*rtp.Packet{pkt(1, 100, sei), pkt(2, 100, slice), pkt(3, 200, sei), pkt(4, 300, sps), pkt(5, 300, pps), pkt(6, 300, idr)},
			dropped: []bool{false, true, false, false, false, false},
			want:    []out{{4, 300, sps}, {5, 300, pps}, {6, 300, idr}},
		},
		{
			name:    "parameter sets from the SDP go before the first IDR",
			params:  [][]byte{sps, pps},
			in:      []*rtp.Packet{pkt(65534, 100, sei), pkt(65535, 100, idrStart), pkt(0, 100, idrEnd), pkt(1, 200, slice)},
			dropped: []bool{false, false, false, false},
			want:    []out{{65534, 100, stapA}, {65535, 100, sei}, {0, 100, idrStart}, {1, 100, idrEnd}, {2, 200, slice}},
		},
		{
			name:    "H.265: joins at the IRAP picture, parameter sets from the SDP before it",
			codec:   rtph264.H265,
			params:  [][]byte{vps265, sps265, pps265},
			in:      []*rtp.Packet{pkt(7, 100, idrEnd265), pkt(8, 200, trail265), pkt(9, 300, sei265), pkt(10, 300, idrStart265), pkt(11, 300, idrEnd265), pkt(12, 400, trail265)},
			dropped: []bool{true, true, false, false, false, false},
			want:    []out{{9, 300, ap}, {10, 300, sei265}, {11, 300, idrStart265}, {12, 300, idrEnd265}, {13, 400, trail265}},
		},
		{
			name:    "H.265: parameter sets in band need none added",
			codec:   rtph264.H265,
			params:  [][]byte{vps265, sps265, pps265},
			in:      []*rtp.Packet{pkt(1, 100, ap), pkt(2, 100, idrStart265), pkt(3, 100, idrEnd265)},
			dropped: []bool{false, false, false},
			want:    []out{{1, 100, ap}, {2, 100, idrStart265}, {3, 100, idrEnd265}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newKeyframeGate(tc.codec, tc.params)
			var got []out
			emit := func(p *rtp.Packet) { got = append(got, out{p.SequenceNumber, p.Timestamp, p.Payload}) }
			for i, p := range tc.in {
				if d := g.push(p, emit); d != tc.dropped[i] {
					t.Errorf("packet %d: dropped %v, want %v", i, d, tc.dropped[i])
				}
			}
			if !slices.EqualFunc(got, tc.want, func(a, b out) bool {
				return a.seq == b.seq && a.ts == b.ts && bytes.Equal(a.payload, b.payload)
			}) {
				t.Errorf("emitted %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestKeyframeGateCopiesHeld checks that held packets survive the reuse
// of gortsplib's read buffer.
func TestKeyframeGateCopiesHeld(t *testing.T) {
	g := newKeyframeGate(rtph264.H264, nil)
	buf := slices.Clone(sps)
	g.push(pkt(1, 100, buf), func(*rtp.Packet) {})
	copy(buf, slice)
	var got [][]byte
	g.push(pkt(2, 100, idr), func(p *rtp.Packet) { got = append(got, p.Payload) })
	if len(got) != 2 || !bytes.Equal(got[0], sps) {
		t.Errorf("emitted %x", got)
	}
}

// FuzzKeyframeGate feeds the gate camera payloads of any shape, of
// either codec: it must not panic, and once open it must pass every
// packet on.
func FuzzKeyframeGate(f *testing.F) {
	f.Add([]byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1, 0, 2, 0x65, 1}, uint32(1))
	f.Add([]byte{0x7c, 0x85, 1}, uint32(2))
	f.Add([]byte{0x78, 0xff}, uint32(3))
	f.Add([]byte{48 << 1, 1, 0, 3, 32 << 1, 1, 0}, uint32(4))
	f.Fuzz(func(t *testing.T, payload []byte, ts uint32) {
		for _, c := range []struct {
			codec  rtph264.Codec
			params [][]byte
			key    []byte
		}{
			{rtph264.H264, [][]byte{sps, pps}, idr},
			{rtph264.H265, [][]byte{vps265, sps265, pps265}, []byte{19 << 1, 1, 0xaf}},
		} {
			g := newKeyframeGate(c.codec, c.params)
			var n int
			emit := func(*rtp.Packet) { n++ }
			g.push(pkt(1, ts, bytes.Clone(payload)), emit)
			g.push(pkt(2, ts, c.key), emit)
			before := n
			g.push(pkt(3, ts+1, bytes.Clone(payload)), emit)
			if n != before+1 {
				t.Errorf("%s: open gate emitted %d packets for one", c.codec, n-before)
			}
		}
	})
}
