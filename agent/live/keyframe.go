package live

import (
	"bytes"
	"slices"

	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// nalMask returns a bit (1 << type) for every NAL unit an RTP payload
// starts: a single unit, the units of an aggregate, the unit of a first
// fragment. continued says the payload is the middle or end of a
// fragmented unit, which starts nothing.
func nalMask(codec rtph264.Codec, payload []byte) (mask uint64, continued bool) {
	continued = codec.Units(payload, func(nal []byte, _ bool) { mask |= 1 << codec.Type(nal) })
	return mask, continued
}

// typeMask returns a bit for every NAL unit type of codec that is.
func typeMask(codec rtph264.Codec, is func(rtph264.Codec, byte) bool) uint64 {
	var m uint64
	for t := range byte(64) {
		if is(codec, t) {
			m |= 1 << t
		}
	}
	return m
}

// maxHeld bounds the packets held before a possible keyframe: the NAL
// units that precede a keyframe in its access unit (delimiter, SEI,
// parameter sets) take a handful.
const maxHeld = 16

// keyframeGate holds a stream back until its first keyframe (an H.264
// IDR, an H.265 IRAP picture). Packets before it cannot be decoded and
// only cost the site uplink, and a hub that knows every stream starts
// with a keyframe can keep the current GOP for viewers who join later.
// Packets of the keyframe's access unit that come before its slices (SEI,
// parameter sets) are held and released with it.
//
// A camera that sends its parameter sets only in the RTSP SDP
// (sprop-parameter-sets, sprop-vps/sps/pps) gets them put in front of its
// first keyframe, in an aggregation packet: WebRTC decoders read them only
// in band. Every later packet then carries a sequence number one higher,
// so the stream stays without gaps. Nothing else about the packets
// changes.
type keyframeGate struct {
	codec rtph264.Codec
	// params are the parameter sets of the camera's SDP, in the order of
	// codec.ParameterSets; nil when the SDP lacks any.
	params [][]byte
	// Bits of the codec's NAL unit types: keyframe slices, other
	// slices, parameter sets.
	key, picture, paramTypes uint64

	open     bool
	held     []*rtp.Packet
	heldMask uint64
	shift    uint16 // packets inserted
}

func newKeyframeGate(codec rtph264.Codec, params [][]byte) *keyframeGate {
	g := &keyframeGate{
		codec:   codec,
		key:     typeMask(codec, rtph264.Codec.Keyframe),
		picture: typeMask(codec, rtph264.Codec.Picture),
	}
	for _, t := range codec.ParameterSets() {
		g.paramTypes |= 1 << t
	}
	if !slices.ContainsFunc(params, func(p []byte) bool { return len(p) == 0 }) && len(params) == len(codec.ParameterSets()) {
		g.params = params
	}
	return g
}

// push passes pkt, and any packets held for it, to emit once the stream
// has reached a keyframe. It reports whether pkt was dropped for coming
// before the first keyframe.
func (g *keyframeGate) push(pkt *rtp.Packet, emit func(*rtp.Packet)) (dropped bool) {
	if g.open {
		pkt.SequenceNumber += g.shift
		emit(pkt)
		return false
	}
	if len(g.held) > 0 && g.held[0].Timestamp != pkt.Timestamp {
		g.drop() // their access unit had no keyframe
	}
	mask, continued := nalMask(g.codec, pkt.Payload)
	switch {
	case mask&g.key != 0:
		g.open = true
		if (mask|g.heldMask)&g.paramTypes != g.paramTypes && g.params != nil {
			first := pkt
			if len(g.held) > 0 {
				first = g.held[0]
			}
			emit(g.parameterSets(first))
			g.shift = 1
		}
		for _, h := range g.held {
			h.SequenceNumber += g.shift
			emit(h)
		}
		g.held = nil
		pkt.SequenceNumber += g.shift
		emit(pkt)
		return false
	case mask != 0 && !continued && mask&g.picture == 0 && len(g.held) < maxHeld:
		// Perhaps the start of a keyframe's access unit. The payload is
		// copied: gortsplib reuses its read buffer.
		h := *pkt
		h.Payload = bytes.Clone(pkt.Payload)
		h.CSRC = slices.Clone(pkt.CSRC)
		g.held = append(g.held, &h)
		g.heldMask |= mask
		return false
	default:
		g.drop()
		return true
	}
}

func (g *keyframeGate) drop() {
	g.held = g.held[:0]
	g.heldMask = 0
}

// parameterSets builds an aggregation packet with the SDP's parameter
// sets, taking the place (and sequence number) of first, the first packet
// of the keyframe's access unit.
func (g *keyframeGate) parameterSets(first *rtp.Packet) *rtp.Packet {
	return &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    first.PayloadType,
			SequenceNumber: first.SequenceNumber,
			Timestamp:      first.Timestamp,
			SSRC:           first.SSRC,
		},
		Payload: g.codec.Aggregate(g.params...),
	}
}
