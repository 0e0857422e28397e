package live

import (
	"encoding/binary"

	"github.com/pion/rtp"
)

// H.264 NAL unit types the relay looks at (RFC 6184, ITU-T H.264 table 7-1).
const (
	nalIDR  = 5  // coded slice of an IDR picture: a keyframe
	nalSPS  = 7  // sequence parameter set
	nalPPS  = 8  // picture parameter set
	nalSTAP = 24 // STAP-A aggregation packet
	nalFUA  = 28 // FU-A fragment
)

// nalInfo is what one RTP packet's H.264 payload carries, as far as the
// relay cares: whether a keyframe starts in it, and any parameter sets it
// carries whole. sps and pps alias the payload.
type nalInfo struct {
	idr      bool
	sps, pps []byte
}

// parseH264 inspects an H.264 RTP payload of packetization mode 1: single
// NAL units (types 1–23), STAP-A (24) and FU-A (28). Other types, and
// malformed aggregates, yield what could be read before the problem; the
// relay forwards such packets untouched, only its keyframe detection is
// blind to them.
func parseH264(payload []byte) nalInfo {
	var info nalInfo
	if len(payload) == 0 {
		return info
	}
	switch t := payload[0] & 0x1f; {
	case t >= 1 && t <= 23:
		info.add(payload)
	case t == nalSTAP:
		for rest := payload[1:]; len(rest) >= 2; {
			size := int(binary.BigEndian.Uint16(rest))
			rest = rest[2:]
			if size == 0 || size > len(rest) {
				break
			}
			info.add(rest[:size])
			rest = rest[size:]
		}
	case t == nalFUA:
		// Only the first fragment says a keyframe starts; parameter sets
		// are small enough never to be fragmented in practice.
		if len(payload) >= 2 && payload[1]&0x80 != 0 && payload[1]&0x1f == nalIDR {
			info.idr = true
		}
	}
	return info
}

func (n *nalInfo) add(nal []byte) {
	switch nal[0] & 0x1f {
	case nalIDR:
		n.idr = true
	case nalSPS:
		n.sps = nal
	case nalPPS:
		n.pps = nal
	}
}

// parameterSets returns a STAP-A packet carrying sps and pps, sent just
// before first, so that a viewer joining at a keyframe whose access unit
// lacks them in-band can still decode it. It takes the sequence number
// before first's, which no viewer that starts with it has seen.
func parameterSets(first *rtp.Packet, sps, pps []byte) *rtp.Packet {
	payload := make([]byte, 0, 1+2+len(sps)+2+len(pps))
	payload = append(payload, sps[0]&0x60|nalSTAP) // F=0, NRI of the SPS
	payload = binary.BigEndian.AppendUint16(payload, uint16(len(sps)))
	payload = append(payload, sps...)
	payload = binary.BigEndian.AppendUint16(payload, uint16(len(pps)))
	payload = append(payload, pps...)
	return &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    first.PayloadType,
			SequenceNumber: first.SequenceNumber - 1,
			Timestamp:      first.Timestamp,
			SSRC:           first.SSRC,
		},
		Payload: payload,
	}
}
