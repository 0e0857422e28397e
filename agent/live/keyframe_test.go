package live

import (
	"bytes"
	"slices"
	"testing"

	"github.com/pion/rtp"
)

func TestNALUMask(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		want    uint32
	}{
		{"empty", nil, 0},
		{"single IDR", []byte{0x65, 1, 2}, 1 << naluIDR},
		{"single slice", []byte{0x41, 1, 2}, 1 << naluSlice},
		{"STAP-A SPS PPS IDR", []byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1, 0, 2, 0x65, 1}, 1<<naluSPS | 1<<naluPPS | 1<<naluIDR},
		{"STAP-A cut short", []byte{0x78, 0, 2, 0x67, 1, 0, 9, 0x68}, 1 << naluSPS},
		{"FU-A start of an IDR", []byte{0x7c, 0x85, 1}, 1 << naluIDR},
		{"FU-A middle of an IDR", []byte{0x7c, 0x05, 1}, 1 << naluFUA},
		{"FU-A end of an IDR", []byte{0x7c, 0x45, 1}, 1 << naluFUA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := naluMask(tc.payload); got != tc.want {
				t.Errorf("naluMask = %b, want %b", got, tc.want)
			}
		})
	}
}

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
	for _, tc := range []struct {
		name     string
		sps, pps []byte // from the SDP
		in       []*rtp.Packet
		dropped  []bool // per packet in
		want     []out
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
			name: "held packets of an access unit without IDR are dropped",
			sps:  sps, pps: pps,
			in:      []*rtp.Packet{pkt(1, 100, sei), pkt(2, 100, slice), pkt(3, 200, sei), pkt(4, 300, sps), pkt(5, 300, pps), pkt(6, 300, idr)},
			dropped: []bool{false, true, false, false, false, false},
			want:    []out{{4, 300, sps}, {5, 300, pps}, {6, 300, idr}},
		},
		{
			name: "parameter sets from the SDP go before the first IDR",
			sps:  sps, pps: pps,
			in:      []*rtp.Packet{pkt(65534, 100, sei), pkt(65535, 100, idrStart), pkt(0, 100, idrEnd), pkt(1, 200, slice)},
			dropped: []bool{false, false, false, false},
			want:    []out{{65534, 100, stapA}, {65535, 100, sei}, {0, 100, idrStart}, {1, 100, idrEnd}, {2, 200, slice}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := keyframeGate{sps: tc.sps, pps: tc.pps}
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
	var g keyframeGate
	buf := slices.Clone(sps)
	g.push(pkt(1, 100, buf), func(*rtp.Packet) {})
	copy(buf, slice)
	var got [][]byte
	g.push(pkt(2, 100, idr), func(p *rtp.Packet) { got = append(got, p.Payload) })
	if len(got) != 2 || !bytes.Equal(got[0], sps) {
		t.Errorf("emitted %x", got)
	}
}

// FuzzKeyframeGate feeds the gate camera payloads of any shape: it must
// not panic, and once open it must pass every packet on.
func FuzzKeyframeGate(f *testing.F) {
	f.Add([]byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1, 0, 2, 0x65, 1}, uint32(1))
	f.Add([]byte{0x7c, 0x85, 1}, uint32(2))
	f.Add([]byte{0x78, 0xff}, uint32(3))
	f.Fuzz(func(t *testing.T, payload []byte, ts uint32) {
		g := keyframeGate{sps: sps, pps: pps}
		var n int
		emit := func(*rtp.Packet) { n++ }
		g.push(pkt(1, ts, payload), emit)
		g.push(pkt(2, ts, idr), emit)
		before := n
		g.push(pkt(3, ts+1, payload), emit)
		if n != before+1 {
			t.Errorf("open gate emitted %d packets for one", n-before)
		}
	})
}
