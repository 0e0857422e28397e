package rtph264

import (
	"bytes"
	"slices"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"
)

// h265NAL returns an H.265 NAL unit of n bytes of type typ (layer 0, TID
// 1) with a recognisable body.
func h265NAL(typ byte, n int) []byte {
	b := make([]byte, n)
	b[0], b[1] = typ<<1, 1
	for i := 2; i < n; i++ {
		b[i] = byte(i*7 + int(typ))
	}
	return b
}

func TestUnits(t *testing.T) {
	type unit struct {
		typ   byte
		whole bool
	}
	vps, sps, pps, idr := h265NAL(32, 24), h265NAL(33, 40), h265NAL(34, 8), h265NAL(19, 3000)
	cases := []struct {
		name      string
		codec     Codec
		payload   []byte
		want      []unit
		continued bool
	}{
		{"H.264 single", H264, nal(0x65, 100), []unit{{5, true}}, false},
		{"H.264 STAP-A", H264, H264.Aggregate(nal(0x67, 10), nal(0x68, 4)), []unit{{7, true}, {8, true}}, false},
		{"H.264 FU-A start", H264, fuA(true, false, 0x65, make([]byte, 10)), []unit{{5, false}}, false},
		{"H.264 FU-A middle", H264, fuA(false, false, 0x65, make([]byte, 10)), nil, true},
		{"H.265 single", H265, idr, []unit{{19, true}}, false},
		{"H.265 AP", H265, H265.Aggregate(vps, sps, pps), []unit{{32, true}, {33, true}, {34, true}}, false},
		{"H.265 FU start", H265, []byte{typeFU << 1, 1, fuStart | 19, 1, 2, 3}, []unit{{19, false}}, false},
		{"H.265 FU end", H265, []byte{typeFU << 1, 1, fuEnd | 19, 1, 2, 3}, nil, true},
		{"H.265 malformed AP", H265, []byte{typeAP << 1, 1, 0, 9, 1}, nil, false},
		{"H.265 PACI", H265, []byte{50 << 1, 1, 0, 0}, nil, false},
		{"empty", H265, nil, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []unit
			cont := c.codec.Units(c.payload, func(n []byte, whole bool) { got = append(got, unit{c.codec.Type(n), whole}) })
			if !slices.Equal(got, c.want) || cont != c.continued {
				t.Errorf("Units = %v, %v; want %v, %v", got, cont, c.want, c.continued)
			}
		})
	}
	if ap := H265.Aggregate(vps, sps); H265.Type(ap) != typeAP || ap[1] != 1 {
		t.Errorf("AP header % x, want type 48, layer 0, TID 1", ap[:2])
	}
}

// TestH265CameraStream repacketizes an H.265 stream as a camera sends it
// (access units of parameter sets and a large IRAP picture, then smaller
// pictures, in packets of up to 1,450 bytes of payload): every packet
// fits the budget, and a standard decoder gets the same access units.
func TestH265CameraStream(t *testing.T) {
	var aus [][][]byte
	for i := range 20 {
		switch {
		case i%10 == 0:
			aus = append(aus, [][]byte{h265NAL(32, 24), h265NAL(33, 40), h265NAL(34, 8), h265NAL(19, 9000+i)})
		default:
			aus = append(aus, [][]byte{h265NAL(1, 300+i*211)})
		}
	}
	enc := &rtph265.Encoder{PayloadType: 96, PayloadMaxSize: 1450}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	var in []*rtp.Packet
	for i, au := range aus {
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			p.Timestamp = uint32(i * 3600)
		}
		in = append(in, pkts...)
	}
	r := Repacketizer{Codec: H265}
	dec := &rtph265.Decoder{}
	if err := dec.Init(); err != nil {
		t.Fatal(err)
	}
	var got [][][]byte
	var out []*rtp.Packet
	large := 0
	for _, p := range in {
		if len(p.Payload) > MaxPayloadSize {
			large++
		}
		var err error
		out, err = r.Append(out[:0], p)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range out {
			if q.MarshalSize()+ExtensionBudget+SRTPOverhead > MaxPacketSize {
				t.Errorf("packet %d: %d bytes, over the budget", q.SequenceNumber, q.MarshalSize())
			}
			au, err := dec.Decode(q)
			if err == nil {
				got = append(got, au)
			}
		}
	}
	if large == 0 {
		t.Fatal("the camera sent no packet over the budget: the test proves nothing")
	}
	if len(got) != len(aus) {
		t.Fatalf("%d access units decoded, want %d", len(got), len(aus))
	}
	for i := range aus {
		if !slices.EqualFunc(got[i], aus[i], bytes.Equal) {
			t.Errorf("access unit %d differs", i)
		}
	}
}

func FuzzH265Append(f *testing.F) {
	f.Add([]byte{typeFU << 1, 1, fuStart | 19, 1, 2, 3}, uint16(1))
	f.Add(H265.Aggregate(h265NAL(32, 24), h265NAL(19, 1400)), uint16(7))
	f.Fuzz(func(t *testing.T, payload []byte, seq uint16) {
		r := Repacketizer{Codec: H265}
		for i := range 3 {
			out, _ := r.Append(nil, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq + uint16(i)}, Payload: payload})
			for _, q := range out {
				if len(q.Payload) > MaxPayloadSize {
					t.Fatalf("payload of %d bytes", len(q.Payload))
				}
			}
		}
	})
}
