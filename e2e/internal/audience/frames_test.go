package audience

import (
	"slices"
	"strings"
	"testing"

	"github.com/pion/rtp"
)

// stream builds the packets of a stream: each picture is a keyframe (a
// STAP-A with SPS and PPS, then an IDR in three FU-A fragments) or a P
// picture (one slice in two FU-A fragments), sequence numbers from 65530 so
// they wrap.
func stream(pictures string) []*rtp.Packet {
	var out []*rtp.Packet
	seq := uint16(65530)
	add := func(ts uint32, marker bool, payload ...byte) {
		out = append(out, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload})
		seq++
	}
	for i, c := range pictures {
		ts := uint32(i) * 3600
		if c == 'K' {
			add(ts, false, 24, 0, 2, 0x67, 1, 0, 2, 0x68, 2)
			add(ts, false, 0x7c, 0x85, 9)
			add(ts, false, 0x7c, 0x05, 9)
			add(ts, true, 0x7c, 0x45, 9)
			continue
		}
		add(ts, false, 0x5c, 0x81, 9)
		add(ts, true, 0x5c, 0x41, 9)
	}
	return out
}

func TestFrames(t *testing.T) {
	// Loss shows once the stream runs a window ahead: every case ends
	// with this tail, one keyframe and 70 whole P pictures.
	tail := "K" + strings.Repeat("P", 70)
	for _, tc := range []struct {
		name string
		pics string
		drop func([]*rtp.Packet) []*rtp.Packet // what arrives, in order
		want Counts                            // besides the tail's; Packets and Bytes are counted
	}{
		{
			name: "in order",
			pics: "PKPPKP",
			want: Counts{Frames: 5, Keyframes: 2, BeforeKeyframe: 1},
		},
		{
			name: "a slice lost: undecodable until the next keyframe",
			pics: "KPPPKP",
			drop: func(p []*rtp.Packet) []*rtp.Packet { return slices.Delete(p, 5, 6) }, // the first P's end
			want: Counts{Frames: 3, Keyframes: 2, Undecodable: 3, Gaps: 1, Lost: 1},
		},
		{
			name: "a keyframe's end lost",
			pics: "KPKP",
			drop: func(p []*rtp.Packet) []*rtp.Packet { return slices.Delete(p, 9, 10) },
			want: Counts{Frames: 2, Keyframes: 1, Undecodable: 2, Gaps: 1, Lost: 1},
		},
		{
			name: "two runs lost",
			pics: "KPPKP",
			drop: func(p []*rtp.Packet) []*rtp.Packet { return slices.Delete(slices.Delete(p, 10, 12), 4, 6) },
			want: Counts{Frames: 1, Keyframes: 1, Undecodable: 3, Gaps: 2, Lost: 4},
		},
		{
			name: "reordered and duplicated: nothing lost",
			pics: "KPP",
			drop: func(p []*rtp.Packet) []*rtp.Packet {
				return append([]*rtp.Packet{p[0], p[2], p[1], p[3], p[5], p[4], p[4]}, p[6:]...)
			},
			want: Counts{Frames: 3, Keyframes: 1, Late: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := stream(tc.pics + tail)
			if tc.drop != nil {
				pkts = tc.drop(pkts)
			}
			f := newFrames()
			want := tc.want
			want.Frames += 71
			want.Keyframes++
			for _, p := range pkts {
				f.push(p)
				want.Packets++
				want.Bytes += uint64(len(p.Payload))
				want.LargestPacket = max(want.LargestPacket, 12+len(p.Payload))
			}
			if f.Counts != want {
				t.Errorf("got  %+v\nwant %+v", f.Counts, want)
			}
		})
	}
}
