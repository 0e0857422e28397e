// Package rtph264 is the media half of the contract between agents and the
// hub: how large an RTP packet of H.264 video may be on a WebRTC leg (agent
// → hub, hub → viewer), and the Repacketizer that brings a camera's packets
// within that size. Cameras packetize for a 1,500-byte Ethernet MTU (RTSP
// servers send payloads of up to 1,450 bytes, 1,462-byte packets); WebRTC
// stacks send and expect packets of at most 1,200 bytes, which also cross
// VPN and PPPoE links without fragmenting.
//
// The budget, in bytes, for one packet as it leaves the sender:
//
//	  1200  MaxPacketSize: the SRTP packet, i.e. the UDP payload, which a
//	        receiver reading with a 1,200-byte receive MTU gets whole
//	−   16  SRTPOverhead: the authentication tag of AEAD_AES_128_GCM and
//	        AEAD_AES_256_GCM, which pion prefers (AES_CM_HMAC_SHA1_80 takes
//	        10); no MKI is used
//	−   20  ExtensionBudget: header extensions the sending stack may add, in
//	        the one-byte form (RFC 8285): 4 bytes of extension header, mid
//	        of up to 8 characters (1+8), abs-send-time (1+3) and
//	        transport-cc (1+2) — 20 bytes, a multiple of 4, so no padding
//	−   12  the fixed RTP header (each CSRC takes 4 more, counted per packet)
//	= 1152  MaxPayloadSize
//
// So every RTP packet is at most 1,184 bytes with the extensions and its
// datagram at most 1,200. RTX, which would add 2 bytes, is negotiated on
// neither leg. Packets leave the Repacketizer without header extensions:
// those are negotiated per leg, so the ones a packet arrived with mean
// nothing on the next.
package rtph264

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pion/rtp"
)

// Packet size rule of the WebRTC legs; see the package comment for the
// arithmetic.
const (
	MaxPacketSize   = 1200
	SRTPOverhead    = 16
	ExtensionBudget = 20
	HeaderSize      = 12
	MaxPayloadSize  = MaxPacketSize - SRTPOverhead - ExtensionBudget - HeaderSize
)

// H.264 RTP payload structures of packetization mode 1 (RFC 6184).
const (
	typeSTAPA = 24
	typeFUA   = 28
	fuStart   = 0x80
	fuEnd     = 0x40
)

// lateWindow is how far behind the newest input packet a late one (a
// retransmission, a reordered packet) may come and still get the sequence
// number it would have had. An older one starts the numbering anew, as a
// sender that restarted its sequence would need.
const lateWindow = 1024

var (
	errMalformed   = errors.New("rtph264: malformed STAP-A")
	errLateSplit   = errors.New("rtph264: a late packet that must be split has no room in the sequence")
	errUnsplitable = errors.New("rtph264: payload type cannot be split")
)

// Repacketizer renumbers one RTP stream of H.264 and splits the packets
// that are too large: a single NAL unit into FU-A fragments, an FU-A into
// smaller FU-A fragments, a STAP-A into its NAL units (each, if still too
// large, into FU-A fragments). Packets that fit pass through as they are,
// which costs next to nothing; most packets of a stream are such.
//
// Output sequence numbers are the input's plus an offset that grows by n−1
// whenever a packet becomes n, so the output has no gap the input did not
// have: a packet lost before the Repacketizer still shows as one to the
// receiver, whose NACK and PLI then work. Fragments keep the packet's
// timestamp, SSRC and payload type; the marker bit, which ends an access
// unit, goes on the last fragment only.
//
// A Repacketizer is not safe for concurrent use; the zero value is ready.
type Repacketizer struct {
	started bool
	newest  uint16  // highest input sequence number seen
	offset  uint16  // added to input sequence numbers after the last split
	splits  []split // splits within lateWindow of newest, oldest first
}

// split records an input packet that became several, for late packets.
type split struct {
	seq    uint16 // the input packet's sequence number
	offset uint16 // the offset of its first fragment, and of earlier packets
	n      int    // how many it became
}

// Append appends to dst the packets p becomes and returns the extended
// slice. It takes p: a packet that fits is appended itself, its sequence
// number and header extensions changed in place; fragments share p's CSRC
// list and, where they are whole NAL units of a STAP-A, its payload. A
// packet that cannot be brought within MaxPayloadSize (a malformed STAP-A,
// a payload structure that cannot be split, a late packet whose fragments
// have no room in the sequence) gives an error and nothing is appended;
// its sequence number then shows as a gap.
func (r *Repacketizer) Append(dst []*rtp.Packet, p *rtp.Packet) ([]*rtp.Packet, error) {
	seq := p.SequenceNumber
	offset, late, lateN := r.place(seq)
	p.Extension, p.ExtensionProfile, p.Extensions = false, 0, nil
	limit := MaxPayloadSize - 4*len(p.CSRC)
	if len(p.Payload)+int(p.PaddingSize) <= limit {
		p.SequenceNumber = seq + offset
		return append(dst, p), nil
	}
	start := len(dst)
	dst, err := appendSplit(dst, p, limit)
	n := len(dst) - start
	if err == nil && late && n != lateN {
		err = errLateSplit
	}
	if err != nil {
		clear(dst[start:])
		return dst[:start], err
	}
	if !late && n > 1 {
		r.splits = append(r.splits, split{seq: seq, offset: offset, n: n})
		r.offset += uint16(n - 1)
	}
	for i, q := range dst[start:] {
		q.SequenceNumber = seq + offset + uint16(i)
	}
	dst[len(dst)-1].Marker = p.Marker
	return dst, nil
}

// place returns the offset for input sequence number seq. A packet newer
// than any before takes the current offset. A late one takes the offset it
// would have had and, with lateN, the number of packets it became if it
// was split when it first came (1 otherwise): a split that was not made
// then has no room in the output sequence now.
func (r *Repacketizer) place(seq uint16) (offset uint16, late bool, lateN int) {
	d := int16(seq - r.newest)
	if r.started && d <= 0 && d > -lateWindow {
		// The earliest split at or after seq fixed the offset of
		// everything before it.
		for _, s := range r.splits {
			switch d := int16(s.seq - seq); {
			case d == 0:
				return s.offset, true, s.n
			case d > 0:
				return s.offset, true, 1
			}
		}
		return r.offset, true, 1
	}
	if r.started && d <= -lateWindow {
		r.splits = r.splits[:0] // a new sequence: nothing before it comes late
	}
	r.started, r.newest = true, seq
	i := 0
	for i < len(r.splits) && int16(seq-r.splits[i].seq) >= lateWindow {
		i++
	}
	if i > 0 {
		r.splits = append(r.splits[:0], r.splits[i:]...)
	}
	return r.offset, false, 0
}

// appendSplit appends the packets p becomes when its payload exceeds limit
// (so it is not empty), all without marker.
func appendSplit(dst []*rtp.Packet, p *rtp.Packet, limit int) ([]*rtp.Packet, error) {
	payload := p.Payload
	switch typ := payload[0] & 0x1f; {
	case typ >= 1 && typ <= 23: // a single NAL unit
		return appendFUA(dst, p, payload[0], payload[1:], true, true, limit), nil
	case typ == typeSTAPA:
		units, err := stapUnits(payload)
		if err != nil {
			return dst, err
		}
		for _, u := range units {
			if len(u) <= limit {
				dst = append(dst, fragment(new(rtp.Packet), p, u[:len(u):len(u)]))
			} else {
				dst = appendFUA(dst, p, u[0], u[1:], true, true, limit)
			}
		}
		return dst, nil
	case typ == typeFUA: // over limit, so it has its two header bytes
		// The original fragment's NAL header: F and NRI from the FU
		// indicator, the type from the FU header.
		nal := payload[0]&0xe0 | payload[1]&0x1f
		return appendFUA(dst, p, nal, payload[2:], payload[1]&fuStart != 0, payload[1]&fuEnd != 0, limit), nil
	default: // STAP-B, MTAP, FU-B and reserved types: not of mode 1
		return dst, fmt.Errorf("%w: NAL unit type %d", errUnsplitable, typ)
	}
}

// stapUnits returns the NAL units of a STAP-A payload, aliasing it.
func stapUnits(payload []byte) ([][]byte, error) {
	var units [][]byte
	for rest := payload[1:]; len(rest) > 0; {
		if len(rest) < 2 {
			return nil, errMalformed
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 || n > len(rest)-2 {
			return nil, errMalformed
		}
		units = append(units, rest[2:2+n])
		rest = rest[2+n:]
	}
	if len(units) == 0 {
		return nil, errMalformed
	}
	return units, nil
}

// appendFUA appends FU-A fragments of a NAL unit, or of a part of one,
// whose header is nal and whose following bytes are body. first and last
// say whether body begins and ends the NAL unit (the S and E bits). The
// fragments are of nearly equal size, so that none is needlessly small,
// and share one new buffer.
func appendFUA(dst []*rtp.Packet, p *rtp.Packet, nal byte, body []byte, first, last bool, limit int) []*rtp.Packet {
	chunk := limit - 2
	n := max(1, (len(body)+chunk-1)/chunk)
	buf := make([]byte, 0, 2*n+len(body))
	pkts := make([]rtp.Packet, n)
	for i := range pkts {
		lo, hi := i*len(body)/n, (i+1)*len(body)/n
		hdr := nal & 0x1f
		if i == 0 && first {
			hdr |= fuStart
		}
		if i == n-1 && last {
			hdr |= fuEnd
		}
		at := len(buf)
		buf = append(buf, nal&0xe0|typeFUA, hdr)
		buf = append(buf, body[lo:hi]...)
		dst = append(dst, fragment(&pkts[i], p, buf[at:len(buf):len(buf)]))
	}
	return dst
}

// fragment sets q to p's header, without marker and padding, and payload.
func fragment(q, p *rtp.Packet, payload []byte) *rtp.Packet {
	*q = rtp.Packet{Header: p.Header, Payload: payload}
	q.Marker, q.Padding, q.Header.PaddingSize = false, false, 0
	return q
}
