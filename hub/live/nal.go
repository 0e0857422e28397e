package live

import (
	"slices"

	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// nalInfo is what one RTP packet's payload carries, as far as the relay
// cares: whether a keyframe (an H.264 IDR, an H.265 IRAP picture) starts
// in it, and any parameter sets it carries whole, at their index in the
// codec's ParameterSets. They alias the payload.
type nalInfo struct {
	key    bool
	params [3][]byte
}

// parseNALs inspects an H.264 or H.265 RTP payload: single NAL units,
// aggregates (STAP-A, AP) and fragments (FU-A, FU). Other payload
// structures, and malformed aggregates, yield what could be read before
// the problem; the relay forwards such packets untouched, only its
// keyframe detection is blind to them. Only a first fragment says a
// keyframe starts; parameter sets are small enough never to be fragmented
// in practice.
func parseNALs(codec rtph264.Codec, payload []byte) nalInfo {
	var info nalInfo
	codec.Units(payload, func(nal []byte, whole bool) {
		typ := codec.Type(nal)
		if codec.Keyframe(typ) {
			info.key = true
		}
		if i := slices.Index(codec.ParameterSets(), typ); i >= 0 && whole {
			info.params[i] = nal
		}
	})
	return info
}

// parameterSets returns an aggregation packet carrying params, sent just
// before first, so that a viewer joining at a keyframe whose access unit
// lacks them in-band can still decode it. It takes the sequence number
// before first's, which no viewer that starts with it has seen.
func parameterSets(codec rtph264.Codec, first *rtp.Packet, params [][]byte) *rtp.Packet {
	return &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    first.PayloadType,
			SequenceNumber: first.SequenceNumber - 1,
			Timestamp:      first.Timestamp,
			SSRC:           first.SSRC,
		},
		Payload: codec.Aggregate(params...),
	}
}
