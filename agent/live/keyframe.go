package live

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/pion/rtp"
)

// H.264 NAL unit types (ITU-T H.264 table 7-1) and RTP payload structures
// (RFC 6184) the keyframe gate tells apart.
const (
	naluSlice = 1  // coded slice of a non-IDR picture
	naluIDR   = 5  // coded slice of an IDR picture
	naluSPS   = 7  // sequence parameter set
	naluPPS   = 8  // picture parameter set
	naluSTAPA = 24 // single-time aggregation packet
	naluFUA   = 28 // fragmentation unit
)

// notKeyStart marks packets that cannot begin a keyframe's access unit:
// slices of other pictures (types 1–4: non-IDR, data partitions) and the
// middle or end of a fragmented NAL unit.
const notKeyStart = 1<<naluSlice | 1<<2 | 1<<3 | 1<<4 | 1<<naluFUA

// naluMask returns a bit (1 << type) for every NAL unit an RTP payload
// carries: the aggregated units of a STAP-A, the fragmented unit of an
// FU-A start. The middle and end of an FU-A give 1 << naluFUA instead, as
// they start nothing.
func naluMask(payload []byte) uint32 {
	if len(payload) == 0 {
		return 0
	}
	switch typ := payload[0] & 0x1f; typ {
	case naluSTAPA:
		var mask uint32
		for p := payload[1:]; len(p) > 2; {
			n := int(binary.BigEndian.Uint16(p))
			if n == 0 || 2+n > len(p) {
				break
			}
			mask |= 1 << (p[2] & 0x1f)
			p = p[2+n:]
		}
		return mask
	case naluFUA:
		if len(payload) < 2 || payload[1]&0x80 == 0 {
			return 1 << naluFUA
		}
		return 1 << (payload[1] & 0x1f)
	default:
		return 1 << typ
	}
}

// maxHeld bounds the packets held before a possible keyframe: the NAL
// units that precede an IDR in its access unit (delimiter, SEI, SPS, PPS)
// take a handful.
const maxHeld = 16

// keyframeGate holds a stream back until its first keyframe. Packets
// before it cannot be decoded and only cost the site uplink, and a hub
// that knows every stream starts with an IDR can keep the current GOP for
// viewers who join later. Packets of the keyframe's access unit that come
// before the IDR (SPS, PPS, SEI) are held and released with it.
//
// A camera that sends its parameter sets only in the RTSP SDP
// (sprop-parameter-sets) gets them put in front of its first IDR, in a
// STAP-A: WebRTC decoders read them only in band. Every later packet then
// carries a sequence number one higher, so the stream stays without gaps.
// Nothing else about the packets changes.
type keyframeGate struct {
	sps, pps []byte // from the camera's SDP; may be empty

	open     bool
	held     []*rtp.Packet
	heldMask uint32
	shift    uint16 // packets inserted
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
		g.drop() // their access unit had no IDR
	}
	mask := naluMask(pkt.Payload)
	switch {
	case mask&(1<<naluIDR) != 0:
		g.open = true
		inBand := mask | g.heldMask
		if (inBand&(1<<naluSPS) == 0 || inBand&(1<<naluPPS) == 0) && len(g.sps) > 0 && len(g.pps) > 0 {
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
	case mask != 0 && mask&notKeyStart == 0 && len(g.held) < maxHeld:
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

// parameterSets builds a STAP-A with the SPS and PPS, taking the place
// (and sequence number) of first, the first packet of the IDR's access
// unit.
func (g *keyframeGate) parameterSets(first *rtp.Packet) *rtp.Packet {
	// NRI of an aggregate: the highest of its units.
	nri := max(g.sps[0]&0x60, g.pps[0]&0x60)
	payload := make([]byte, 0, 5+len(g.sps)+len(g.pps))
	payload = append(payload, nri|naluSTAPA)
	payload = binary.BigEndian.AppendUint16(payload, uint16(len(g.sps)))
	payload = append(payload, g.sps...)
	payload = binary.BigEndian.AppendUint16(payload, uint16(len(g.pps)))
	payload = append(payload, g.pps...)
	return &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    first.PayloadType,
			SequenceNumber: first.SequenceNumber,
			Timestamp:      first.Timestamp,
			SSRC:           first.SSRC,
		},
		Payload: payload,
	}
}
