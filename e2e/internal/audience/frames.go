package audience

import (
	"bytes"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// reorderWindow is how far the newest packet may run ahead of a missing
// one before the missing one counts as lost for good: about half a second
// of a 2 Mbit/s stream, five times pion's NACK interval, so a
// retransmission that comes at all comes in time.
const reorderWindow = 128

// H.264 NAL unit types (ITU-T H.264 table 7-1).
const (
	nalIDR = 5
	nalSPS = 7
	nalPPS = 8
)

// Counts is what one viewer received.
type Counts struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"` // RTP payload
	// Frames could be decoded: complete, in a chain that starts at a
	// complete keyframe with its parameter sets and has lost nothing since.
	Frames    uint64 `json:"frames"`
	Keyframes uint64 `json:"keyframes"` // of Frames
	// Undecodable frames came after a loss and before the next keyframe,
	// or were incomplete or malformed themselves.
	Undecodable uint64 `json:"undecodable"`
	// BeforeKeyframe frames came before the first keyframe.
	BeforeKeyframe uint64 `json:"before_keyframe"`
	Gaps           uint64 `json:"gaps"` // runs of packets lost for good
	Lost           uint64 `json:"lost"` // packets lost for good
	Late           uint64 `json:"late"` // duplicates and packets after they counted as lost
	// LargestPacket is the largest RTP packet read, header and extensions
	// included, in bytes.
	LargestPacket int `json:"largest_packet"`
}

// frames puts a viewer's packets back in sequence order, waiting up to
// reorderWindow packets for a missing one (a retransmission), then
// depacketizes each access unit (the packets up to the marker bit) and
// judges whether a decoder could decode it. Not safe for concurrent use.
type frames struct {
	Counts

	started  bool
	next     uint16                 // the sequence number due
	ahead    map[uint16]*rtp.Packet // arrived before their turn
	aheadOf  uint16                 // the highest sequence number in ahead
	frame    []*rtp.Packet          // the access unit so far
	damaged  bool                   // a packet of frame, or before it, is lost
	chain    bool                   // frames decode: nothing lost since the last keyframe
	keyed    bool                   // a keyframe came
	sps, pps bool                   // parameter sets seen
	depay    codecs.H264Packet
}

func newFrames() *frames { return &frames{ahead: map[uint16]*rtp.Packet{}} }

// push takes the next packet received. p must not be reused by the caller.
func (f *frames) push(p *rtp.Packet) {
	f.Packets++
	f.Bytes += uint64(len(p.Payload))
	f.LargestPacket = max(f.LargestPacket, p.MarshalSize())
	if !f.started {
		f.started, f.next = true, p.SequenceNumber
	}
	d := int16(p.SequenceNumber - f.next)
	switch {
	case d < 0:
		f.Late++
		return
	case d > 0:
		if _, dup := f.ahead[p.SequenceNumber]; dup {
			f.Late++
			return
		}
		f.ahead[p.SequenceNumber] = p
		if len(f.ahead) == 1 || int16(p.SequenceNumber-f.aheadOf) > 0 {
			f.aheadOf = p.SequenceNumber
		}
		// Give up on what is missing once the stream ran far enough ahead.
		if int16(f.aheadOf-f.next) >= reorderWindow {
			f.skip()
		}
		return
	}
	f.take(p)
	f.drain()
}

// skip counts the packets missing before the first one waiting lost, and
// takes the packets waiting from there on.
func (f *frames) skip() {
	f.Gaps++
	for _, ok := f.ahead[f.next]; !ok; _, ok = f.ahead[f.next] {
		f.Lost++
		f.next++
	}
	f.damaged = true
	f.drain()
}

// drain takes the packets waiting that are now due.
func (f *frames) drain() {
	for q, ok := f.ahead[f.next]; ok; q, ok = f.ahead[f.next] {
		delete(f.ahead, f.next)
		f.take(q)
	}
}

// take handles the due packet, in order.
func (f *frames) take(p *rtp.Packet) {
	f.next = p.SequenceNumber + 1
	if len(f.frame) > 0 && p.Timestamp != f.frame[0].Timestamp {
		// A new picture without the last one's marker: its end was lost.
		f.finish()
	}
	f.frame = append(f.frame, p)
	if p.Marker {
		f.finish()
	}
}

// finish judges the access unit in f.frame.
func (f *frames) finish() {
	au, ok := f.depacketize()
	idr, sps, pps := nalTypes(au)
	f.sps, f.pps = f.sps || sps, f.pps || pps
	complete := ok && !f.damaged
	key := complete && idr && f.sps && f.pps
	switch {
	case key:
		f.chain, f.keyed = true, true
	case !complete:
		f.chain = false
	}
	switch {
	case !f.keyed:
		f.BeforeKeyframe++
	case f.chain:
		f.Frames++
		if key {
			f.Keyframes++
		}
	default:
		f.Undecodable++
	}
	clear(f.frame)
	f.frame, f.damaged = f.frame[:0], false
}

// depacketize returns the access unit in Annex B form; false if a packet
// is malformed or a fragmented NAL unit is cut short.
func (f *frames) depacketize() ([]byte, bool) {
	f.depay = codecs.H264Packet{}
	var au []byte
	for _, p := range f.frame {
		b, err := f.depay.Unmarshal(p.Payload)
		if err != nil {
			return au, false
		}
		au = append(au, b...)
	}
	// A fragmented NAL unit cut short yields nothing, not an error.
	last := f.frame[len(f.frame)-1].Payload
	if len(last) >= 2 && last[0]&0x1f == 28 && last[1]&0x40 == 0 {
		return au, false
	}
	return au, len(au) > 0
}

// nalTypes says which of IDR, SPS and PPS an Annex B access unit holds.
func nalTypes(au []byte) (idr, sps, pps bool) {
	start := []byte{0, 0, 1}
	for {
		i := bytes.Index(au, start)
		if i < 0 || i+3 >= len(au) {
			return idr, sps, pps
		}
		au = au[i+3:]
		switch au[0] & 0x1f {
		case nalIDR:
			idr = true
		case nalSPS:
			sps = true
		case nalPPS:
			pps = true
		}
	}
}
