package rtph264

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// piece is part of a NAL unit as a packet stream carries it: its header
// byte when it starts the unit, and the bytes after the header. Splitting
// a stream must leave its pieces, merged where one continues another,
// unchanged.
type piece struct {
	start, end bool
	hdr        byte
	data       []byte
}

// pieces returns the merged pieces of a packet stream's H.264 payloads.
func pieces(t *testing.T, pkts []*rtp.Packet) []piece {
	t.Helper()
	var out []piece
	add := func(p piece) {
		if !p.start && !p.end && len(p.data) == 0 {
			return // a fragment that carries nothing, and need not be kept
		}
		if n := len(out); n > 0 && !out[n-1].end && !p.start {
			out[n-1].data = append(out[n-1].data, p.data...)
			out[n-1].end = p.end
			return
		}
		p.data = slices.Clone(p.data)
		out = append(out, p)
	}
	for _, p := range pkts {
		b := p.Payload
		if len(b) == 0 {
			continue
		}
		switch typ := b[0] & 0x1f; typ {
		case typeSTAPA:
			units, err := aggregateUnits(b[1:], 1)
			if err != nil {
				t.Fatalf("pieces of a malformed STAP-A: %v", err)
			}
			for _, u := range units {
				add(piece{start: true, end: true, hdr: u[0], data: u[1:]})
			}
		case typeFUA:
			if len(b) < 2 {
				t.Fatalf("FU-A of %d bytes", len(b))
			}
			add(piece{start: b[1]&fuStart != 0, end: b[1]&fuEnd != 0, hdr: b[0]&0xe0 | b[1]&0x1f, data: b[2:]})
		default:
			add(piece{start: true, end: true, hdr: b[0], data: b[1:]})
		}
	}
	for i := range out {
		if !out[i].start {
			out[i].hdr = 0 // a continued fragment's header says nothing
		}
	}
	return out
}

func stapA(units ...[]byte) []byte {
	b := []byte{0x78} // NRI 3, STAP-A
	for _, u := range units {
		b = binary.BigEndian.AppendUint16(b, uint16(len(u)))
		b = append(b, u...)
	}
	return b
}

// nal returns a NAL unit of n bytes with header hdr and a recognisable
// body.
func nal(hdr byte, n int) []byte {
	b := make([]byte, n)
	b[0] = hdr
	for i := 1; i < n; i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func fuA(start, end bool, hdr byte, body []byte) []byte {
	h := hdr & 0x1f
	if start {
		h |= fuStart
	}
	if end {
		h |= fuEnd
	}
	return append([]byte{hdr&0xe0 | typeFUA, h}, body...)
}

func packet(seq uint16, marker bool, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 90000, SSRC: 0xcafe, Marker: marker}, Payload: payload}
}

// checkSplit asserts what the output of an input stream must be: packets
// within the budget, numbered on from firstSeq, with the input's header
// fields, the marker on the last only, and the same NAL units.
func checkSplit(t *testing.T, in []rtp.Packet, out []*rtp.Packet, firstSeq uint16) {
	t.Helper()
	var inPkts []*rtp.Packet
	for i := range in {
		inPkts = append(inPkts, &in[i])
	}
	h := in[len(in)-1]
	for i, q := range out {
		if q.MarshalSize()+ExtensionBudget+SRTPOverhead > MaxPacketSize {
			t.Errorf("packet %d: %d bytes, over the budget", i, q.MarshalSize())
		}
		if q.SequenceNumber != firstSeq+uint16(i) {
			t.Errorf("packet %d: sequence %d, want %d", i, q.SequenceNumber, firstSeq+uint16(i))
		}
		if q.Timestamp != h.Timestamp || q.SSRC != h.SSRC || q.PayloadType != h.PayloadType || !slices.Equal(q.CSRC, h.CSRC) {
			t.Errorf("packet %d: header %+v, want the input's timestamp, SSRC, payload type and CSRC", i, q.Header)
		}
		if q.Extension || len(q.Extensions) > 0 {
			t.Errorf("packet %d keeps header extensions", i)
		}
		if q.Padding || q.PaddingSize != 0 {
			t.Errorf("packet %d has padding", i)
		}
		if want := h.Marker && i == len(out)-1; q.Marker != want {
			t.Errorf("packet %d of %d: marker %v", i, len(out), q.Marker)
		}
	}
	if got, want := pieces(t, out), pieces(t, inPkts); !equalPieces(got, want) {
		t.Errorf("the output carries other NAL units than the input:\n got %d pieces\nwant %d", len(got), len(want))
	}
}

func equalPieces(a, b []piece) bool {
	return slices.EqualFunc(a, b, func(x, y piece) bool {
		return x.start == y.start && x.end == y.end && x.hdr == y.hdr && bytes.Equal(x.data, y.data)
	})
}

func TestSmallPacketsPassThrough(t *testing.T) {
	var r Repacketizer
	in := packet(100, true, nal(0x41, MaxPayloadSize))
	in.Extension, in.ExtensionProfile = true, rtp.ExtensionProfileOneByte
	if err := in.SetExtension(3, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	out, err := r.Append(nil, in)
	if err != nil || len(out) != 1 || out[0] != in {
		t.Fatalf("Append = %v, %v; want the packet itself", out, err)
	}
	if in.SequenceNumber != 100 || in.Extension || in.Extensions != nil || !in.Marker {
		t.Errorf("header %+v; want sequence 100, marker, no extensions", in.Header)
	}

	// The fast path allocates nothing.
	buf := make([]*rtp.Packet, 0, 1)
	p := packet(0, false, nal(0x41, 800))
	seq := uint16(101)
	if n := testing.AllocsPerRun(100, func() {
		p.SequenceNumber = seq
		seq++
		buf, _ = r.Append(buf[:0], p)
	}); n != 0 {
		t.Errorf("%v allocations per small packet", n)
	}
}

func TestSplit(t *testing.T) {
	big := nal(0x65, 4000) // IDR slice
	cases := []struct {
		name    string
		payload []byte
		csrc    []uint32
		padding byte
		want    int // packets out
	}{
		{name: "single NAL unit just over", payload: nal(0x41, MaxPayloadSize+1), want: 2},
		{name: "camera-size single NAL unit", payload: nal(0x41, 1450), want: 2},
		{name: "large single NAL unit", payload: big, want: 4},
		{name: "FU-A start", payload: fuA(true, false, 0x65, big[1:1449]), want: 2},
		{name: "FU-A that fits", payload: fuA(false, false, 0x65, big[1:1001]), want: 1},
		{name: "FU-A end", payload: fuA(false, true, 0x65, big[2500:]), want: 2},
		{name: "STAP-A of small units", payload: stapA(nal(0x67, 26), nal(0x68, 4), nal(0x65, 1130)), want: 3},
		{name: "STAP-A with a unit over the limit", payload: stapA(nal(0x67, 26), nal(0x68, 4), nal(0x65, 1400)), want: 4},
		{name: "CSRCs take from the budget", payload: nal(0x41, MaxPayloadSize-8), csrc: []uint32{1, 2, 3}, want: 2},
		{name: "padding counts, and is dropped", payload: nal(0x41, MaxPayloadSize), padding: 4, want: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The marker ends the access unit: nothing is held back.
			in := packet(500, true, c.payload)
			in.CSRC = c.csrc
			if c.padding > 0 {
				in.Padding, in.PaddingSize = true, c.padding
			}
			orig := *in
			var r Repacketizer
			out, err := r.Append(nil, in)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != c.want {
				t.Errorf("%d packets, want %d", len(out), c.want)
			}
			checkSplit(t, []rtp.Packet{orig}, out, 500)
		})
	}
}

func TestSplitRefused(t *testing.T) {
	over := MaxPayloadSize + 100
	cases := map[string][]byte{
		"STAP-A length past the end": append(stapA(nal(0x65, over)), 0x05, 0x00, 0x41),
		"STAP-A empty unit":          append(stapA(nal(0x65, over)), 0, 0),
		"STAP-A trailing byte":       append(stapA(nal(0x65, over)), 0x41),
		"STAP-B":                     nal(0x79, over),
		"MTAP16":                     nal(0x7a, over),
		"FU-B":                       nal(0x7d, over),
		"reserved type 0":            nal(0x60, over),
		"reserved type 31":           nal(0x7f, over),
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			var r Repacketizer
			keep := packet(1, false, nal(0x41, 10))
			dst := []*rtp.Packet{keep}
			out, err := r.Append(dst, packet(7, true, payload))
			if err == nil || len(out) != 1 || out[0] != keep {
				t.Fatalf("Append = %d packets, %v; want an error and dst unchanged", len(out), err)
			}
			// The refused packet's number is a gap: the next follows it.
			out, err = r.Append(nil, packet(8, true, nal(0x41, 10)))
			if err != nil || out[0].SequenceNumber != 8 {
				t.Errorf("next packet: %v, %v", out, err)
			}
		})
	}
}

// TestSequence follows the output numbering through splits, losses, late
// packets and a restart of the input sequence.
func TestSequence(t *testing.T) {
	var r Repacketizer
	var w uint16 = lateWindow
	small := func() []byte { return nal(0x41, 500) }
	large := func() []byte { return nal(0x41, 3000) } // 3 fragments
	type step struct {
		seq     uint16
		payload []byte
		want    []uint16 // output sequence numbers; nil: an error
	}
	steps := []step{
		{65530, small(), []uint16{65530}},
		{65531, large(), []uint16{65531, 65532, 65533}},
		{65532, small(), []uint16{65534}},
		// 65533 is lost: one number is kept for it.
		{65534, small(), []uint16{0}},
		{65535, large(), []uint16{1, 2, 3}},
		{0, small(), []uint16{4}},
		// Late: the lost packet takes its number; packets that came
		// before are duplicates and dropped.
		{65533, small(), []uint16{65535}},
		{65531, large(), []uint16{}},
		{0, small(), []uint16{}},
		// A lost packet that had to be split has no room when it comes late.
		{2, small(), []uint16{6}},
		{1, large(), nil},
		{3, small(), []uint16{7}},
		// A jump back beyond the late window is a new sequence: the
		// numbering goes on.
		{3 - w, large(), []uint16{8, 9, 10}},
		{4 - w, small(), []uint16{11}},
		{2 - w, small(), []uint16{}},
	}
	for i, s := range steps {
		out, err := r.Append(nil, packet(s.seq, true, s.payload))
		if s.want == nil {
			if err == nil {
				t.Errorf("step %d (input %d): %d packets, want an error", i, s.seq, len(out))
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d (input %d): %v", i, s.seq, err)
		}
		got := []uint16{}
		for _, q := range out {
			got = append(got, q.SequenceNumber)
		}
		if !slices.Equal(got, s.want) {
			t.Errorf("step %d (input %d): output %v, want %v", i, s.seq, got, s.want)
		}
	}
}

// TestGapsAgeOut checks that the record of gaps, kept for late packets,
// stays within the late window on a long, lossy stream.
func TestGapsAgeOut(t *testing.T) {
	var r Repacketizer
	for seq := 0; seq < 10000; seq += 2 {
		if _, err := r.Append(nil, packet(uint16(seq), true, nal(0x41, 2000))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.gaps); n > lateWindow {
		t.Errorf("%d gaps remembered, more than the late window of %d", n, lateWindow)
	}
	// Jumps of half the sequence space leave nothing behind either.
	for seq := 10000; seq < 200000; seq += 32767 {
		if _, err := r.Append(nil, packet(uint16(seq), true, nal(0x41, 2000))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.gaps); n != 1 {
		t.Errorf("%d gaps remembered after long jumps, want the last one", n)
	}
}

// TestLostFragmentComesLate loses a fragment of a NAL unit the sender cut
// smaller than the limit: the fragments before the loss leave at once, a
// number is kept for it, and when it comes late the receiver, putting
// the packets in sequence order, has the NAL unit whole.
func TestLostFragmentComesLate(t *testing.T) {
	unit := nal(0x65, 5000)
	var in []*rtp.Packet
	for i, lo := 0, 1; lo < len(unit); i, lo = i+1, lo+700 {
		hi := min(lo+700, len(unit))
		in = append(in, packet(uint16(100+i), hi == len(unit), fuA(lo == 1, hi == len(unit), unit[0], unit[lo:hi])))
	}
	lost := in[3]
	var r Repacketizer
	var out []*rtp.Packet
	for _, p := range append(slices.Delete(slices.Clone(in), 3, 4), lost) {
		var err error
		if out, err = r.Append(out, p); err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(out, func(a, b *rtp.Packet) int { return int(a.SequenceNumber) - int(b.SequenceNumber) })
	for i, q := range out {
		if q.SequenceNumber != out[0].SequenceNumber+uint16(i) {
			t.Fatalf("output numbers %d, %d: not one sequence", out[0].SequenceNumber, q.SequenceNumber)
		}
	}
	if got := pieces(t, out); len(got) != 1 || !got[0].start || !got[0].end || !bytes.Equal(append([]byte{got[0].hdr}, got[0].data...), unit) {
		t.Errorf("the NAL unit did not come out whole: %d pieces", len(got))
	}
}

// TestCameraStream repacketizes frames as a camera packetizes them (1,450
// bytes of payload) and depacketizes the result as a WebRTC receiver
// does: every frame comes out byte for byte.
func TestCameraStream(t *testing.T) {
	camera := rtp.NewPacketizer(1462, 96, 0xcafe, &codecs.H264Payloader{}, rtp.NewFixedSequencer(65000), 90000)
	frames := [][][]byte{
		{nal(0x67, 26), nal(0x68, 4), nal(0x65, 20000)},
		{nal(0x41, 1449)},
		{nal(0x41, 1100), nal(0x41, 1200)}, // two slices
		{nal(0x41, 300)},
		{nal(0x67, 26), nal(0x68, 4), nal(0x65, 1300)}, // one camera packet, two on the leg
	}
	var r Repacketizer
	var sent, large, whole int
	var depack codecs.H264Packet
	var first, next uint16
	for i, f := range frames {
		var annexB []byte
		for _, n := range f {
			annexB = append(append(annexB, 0, 0, 0, 1), n...)
		}
		var got []byte
		for _, p := range camera.Packetize(annexB, 3000) {
			sent++
			if p.MarshalSize() >= 1400 {
				large++
			}
			out, err := r.Append(nil, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range out {
				if q.MarshalSize()+ExtensionBudget+SRTPOverhead > MaxPacketSize {
					t.Errorf("frame %d: a packet of %d bytes", i, q.MarshalSize())
				}
				if sent == 1 && q == out[0] {
					first = q.SequenceNumber
				} else if q.SequenceNumber != next {
					t.Errorf("frame %d: sequence %d, want %d", i, q.SequenceNumber, next)
				}
				next = q.SequenceNumber + 1
				b, err := depack.Unmarshal(q.Payload)
				if err != nil {
					t.Fatalf("frame %d: depacketize: %v", i, err)
				}
				got = append(got, b...)
			}
			if p.Marker && (len(out) == 0 || !out[len(out)-1].Marker) || !p.Marker && slices.ContainsFunc(out, func(q *rtp.Packet) bool { return q.Marker }) {
				t.Errorf("frame %d: marker moved", i)
			}
			if p.Payload[0]&0x1f != typeFUA && len(p.Payload) <= MaxPayloadSize {
				whole++ // passes through
			}
		}
		if !bytes.Equal(got, annexB) {
			t.Errorf("frame %d: %d bytes out, %d in, or different", i, len(got), len(annexB))
		}
	}
	if large == 0 {
		t.Fatal("the camera sent no packet of 1,400 bytes or more: the test proves nothing")
	}
	// Fragments are filled to the limit: a NAL unit of n bytes too large
	// for one packet takes ⌈(n−1)/(MaxPayloadSize−2)⌉ packets, not two
	// for each of the camera's.
	want := whole
	for _, f := range frames {
		for _, u := range f {
			if len(u) > MaxPayloadSize {
				want += (len(u) - 1 + MaxPayloadSize - 3) / (MaxPayloadSize - 2)
			}
		}
	}
	if out := int(next - first); out != want {
		t.Errorf("%d packets out, want %d (%d in)", out, want, sent)
	}
}

// FuzzAppend feeds arbitrary packets, each ending an access unit so that
// nothing is held back: Append never panics, and either refuses a packet
// (appending nothing) or returns packets within the limit that carry the
// same NAL units.
func FuzzAppend(f *testing.F) {
	f.Add(uint16(1), uint8(0), nal(0x41, 3000))
	f.Add(uint16(2), uint8(0), stapA(nal(0x67, 20), nal(0x65, 2000)))
	f.Add(uint16(3), uint8(1), fuA(false, true, 0x65, nal(0, 1300)))
	f.Add(uint16(4), uint8(2), append(stapA(nal(0x67, 1200)), 0xff))
	f.Add(uint16(5), uint8(0), []byte{0x7c})
	f.Fuzz(func(t *testing.T, seq uint16, csrcs uint8, payload []byte) {
		in := packet(seq, true, payload)
		in.CSRC = make([]uint32, csrcs%16)
		orig := *in
		var r Repacketizer
		dst := []*rtp.Packet{packet(0, false, nil)}
		out, err := r.Append(dst, in)
		if out[0] != dst[0] {
			t.Fatal("dst overwritten")
		}
		out = out[1:]
		if err != nil {
			if len(out) != 0 {
				t.Fatalf("error %v with %d packets appended", err, len(out))
			}
			if len(payload)+4*len(in.CSRC) <= MaxPayloadSize {
				t.Fatalf("a packet that fits was refused: %v", err)
			}
			return
		}
		if len(out) == 1 && out[0] == in {
			if len(payload)+4*len(in.CSRC) > MaxPayloadSize {
				t.Fatal("an oversized packet passed through")
			}
			return
		}
		checkSplit(t, []rtp.Packet{orig}, out, seq)
	})
}

func BenchmarkAppend(b *testing.B) {
	b.Run("small", func(b *testing.B) {
		var r Repacketizer
		p := packet(0, false, nal(0x41, 1100))
		buf := make([]*rtp.Packet, 0, 4)
		for i := 0; b.Loop(); i++ {
			p.SequenceNumber = uint16(i)
			buf, _ = r.Append(buf[:0], p)
		}
	})
	b.Run("camera-size", func(b *testing.B) {
		var r Repacketizer
		payload := fuA(false, false, 0x65, nal(0, 1448))
		buf := make([]*rtp.Packet, 0, 4)
		for i := 0; b.Loop(); i++ {
			buf, _ = r.Append(buf[:0], packet(uint16(i), false, payload))
		}
	})
}
