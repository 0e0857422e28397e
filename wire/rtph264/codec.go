package rtph264

import "encoding/binary"

// Codec is the video codec of an RTP stream: H.264 (RFC 6184, packetization
// mode 1) or H.265 (RFC 7798, without DONL). Both carry NAL units the same
// three ways (single, aggregated, fragmented); H.265's NAL header takes two
// bytes where H.264's takes one, and its fragment header one more bit for
// the type. The zero value is H264.
type Codec uint8

// Codecs.
const (
	H264 Codec = iota
	H265
)

// Payload structures of each codec.
const (
	typeSTAPA = 24 // H.264 single-time aggregation packet
	typeFUA   = 28 // H.264 fragmentation unit
	typeAP    = 48 // H.265 aggregation packet
	typeFU    = 49 // H.265 fragmentation unit
	fuStart   = 0x80
	fuEnd     = 0x40
)

func (c Codec) String() string {
	if c == H265 {
		return "H.265"
	}
	return "H.264"
}

// headerLen is the size of a NAL unit header, and of a payload header.
func (c Codec) headerLen() int {
	if c == H265 {
		return 2
	}
	return 1
}

// Type returns the type of a NAL unit or payload header; b must hold at
// least one byte.
func (c Codec) Type(b []byte) byte {
	if c == H265 {
		return b[0] >> 1 & 0x3f
	}
	return b[0] & 0x1f
}

func (c Codec) aggregateType() byte {
	if c == H265 {
		return typeAP
	}
	return typeSTAPA
}

func (c Codec) fragmentType() byte {
	if c == H265 {
		return typeFU
	}
	return typeFUA
}

// single reports whether typ is a NAL unit carried whole in its own packet.
func (c Codec) single(typ byte) bool {
	if c == H265 {
		return typ <= 47
	}
	return typ >= 1 && typ <= 23
}

// fuType returns the type of the fragmented NAL unit from a fragment
// header.
func (c Codec) fuType(fu byte) byte {
	if c == H265 {
		return fu & 0x3f
	}
	return fu & 0x1f
}

// fuNAL returns the NAL header of the unit a fragment carries, rebuilt
// from its payload header and fragment header.
func (c Codec) fuNAL(payload []byte) [2]byte {
	if c == H265 {
		return [2]byte{payload[0]&0x81 | payload[2]&0x3f<<1, payload[1]}
	}
	return [2]byte{payload[0]&0xe0 | payload[1]&0x1f}
}

// nalHeader returns the header of a NAL unit.
func (c Codec) nalHeader(nal []byte) [2]byte {
	if c == H265 {
		return [2]byte{nal[0], nal[1]}
	}
	return [2]byte{nal[0]}
}

// putFU writes the payload and fragment headers of a fragment of the NAL
// unit whose header is nal into b, and returns their size.
func (c Codec) putFU(b []byte, nal [2]byte, start, end bool) int {
	var fu byte
	if start {
		fu |= fuStart
	}
	if end {
		fu |= fuEnd
	}
	if c == H265 {
		b[0], b[1], b[2] = nal[0]&0x81|typeFU<<1, nal[1], fu|nal[0]>>1&0x3f
		return 3
	}
	b[0], b[1] = nal[0]&0xe0|typeFUA, fu|nal[0]&0x1f
	return 2
}

// Keyframe reports whether a NAL unit of type typ starts a picture a
// decoder can begin with: an IDR slice in H.264, an IRAP picture (BLA,
// IDR, CRA) in H.265.
func (c Codec) Keyframe(typ byte) bool {
	if c == H265 {
		return typ >= 16 && typ <= 21
	}
	return typ == 5
}

// Picture reports whether a NAL unit of type typ is a coded slice of a
// picture (VCL), keyframe or not.
func (c Codec) Picture(typ byte) bool {
	if c == H265 {
		return typ <= 31
	}
	return typ >= 1 && typ <= 5
}

// ParameterSets returns the NAL unit types of the codec's parameter sets,
// in the order a decoder needs them: SPS and PPS for H.264; VPS, SPS and
// PPS for H.265.
func (c Codec) ParameterSets() []byte {
	if c == H265 {
		return []byte{32, 33, 34}
	}
	return []byte{7, 8}
}

// Units reports what an RTP payload carries: it calls unit with every NAL
// unit that starts in it, whole for a single NAL unit or the units of an
// aggregate, only the header for the first fragment of a fragmented one
// (whole is then false). It returns true, and calls nothing, for a middle
// or last fragment, which starts nothing. A malformed aggregate yields
// the units before the problem; other payload structures yield nothing.
func (c Codec) Units(payload []byte, unit func(nal []byte, whole bool)) (continued bool) {
	hl := c.headerLen()
	if len(payload) < hl {
		return false
	}
	switch typ := c.Type(payload); {
	case typ == c.fragmentType():
		if len(payload) < hl+1 || payload[hl]&fuStart == 0 {
			return true
		}
		h := c.fuNAL(payload)
		unit(h[:hl], false)
	case typ == c.aggregateType():
		for rest := payload[hl:]; len(rest) > 2; {
			n := int(binary.BigEndian.Uint16(rest))
			if n < hl || 2+n > len(rest) {
				break
			}
			unit(rest[2:2+n], true)
			rest = rest[2+n:]
		}
	case c.single(typ):
		unit(payload, true)
	}
	return false
}

// Aggregate returns the payload of an aggregation packet (STAP-A, or AP)
// carrying units, which must be whole NAL units of at most 65,535 bytes.
func (c Codec) Aggregate(units ...[]byte) []byte {
	n := c.headerLen()
	for _, u := range units {
		n += 2 + len(u)
	}
	b := make([]byte, c.headerLen(), n)
	if c == H265 {
		// F is set if any unit has it; LayerId and TID are the lowest of
		// the units' (RFC 7798, 4.4.2).
		layer, tid := byte(0x3f), byte(7)
		for _, u := range units {
			b[0] |= u[0] & 0x80
			layer = min(layer, u[0]&1<<5|u[1]>>3)
			tid = min(tid, u[1]&7)
		}
		b[0] |= typeAP<<1 | layer>>5
		b[1] = layer<<3 | tid
	} else {
		// F is set if any unit has it; NRI is the highest of the units'.
		for _, u := range units {
			b[0] = max(b[0]&0x60, u[0]&0x60) | (b[0]|u[0])&0x80
		}
		b[0] |= typeSTAPA
	}
	for _, u := range units {
		b = binary.BigEndian.AppendUint16(b, uint16(len(u)))
		b = append(b, u...)
	}
	return b
}
