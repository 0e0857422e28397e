// Package rtph264 is the media half of the contract between agents and the
// hub: how large an RTP packet of H.264 or H.265 video may be on a WebRTC
// leg (agent → hub, hub → viewer), the Repacketizer that brings a camera's
// packets within that size, and what both sides need to know of the NAL
// units a packet carries (Codec). H.265 is packetized as H.264 is (RFC 7798
// follows RFC 6184: single NAL units, aggregates, fragments), so one
// Repacketizer serves both. Cameras packetize for a 1,500-byte Ethernet MTU (RTSP
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
// datagram at most 1,200. Fragments are filled to that budget: every packet
// costs its sender an encryption and a system call per receiver, so a
// camera's 1,450-byte fragments become 1,152-byte ones, not two halves. RTX, which would add 2 bytes, is negotiated on
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

// lateWindow is how far behind the newest input packet a late one (a
// retransmission, a reordered packet) may come and still take the output
// number kept for it. An older one is taken for a sender that restarted its
// sequence.
const lateWindow = 1024

var (
	errMalformed   = errors.New("rtph264: malformed aggregation packet")
	errLateSplit   = errors.New("rtph264: a late packet that must be split has no room in the sequence")
	errUnsplitable = errors.New("rtph264: payload type cannot be split")
)

// Repacketizer renumbers one RTP stream of H.264 or H.265 and brings its
// packets within MaxPayloadSize. Fragments (H.264's FU-A, H.265's FU) are
// carried over into new fragments filled to the limit: a fragmented NAL
// unit's bytes leave in as few packets as they fit in, whatever size the
// sender cut them to. A single NAL unit too large becomes such fragments;
// an aggregate (STAP-A, AP) too large, its NAL units (each, if still too
// large, in fragments). Other packets that fit pass through as they are,
// which costs next to nothing.
//
// The bytes of a fragment that is not full wait for the next packet of
// their NAL unit; they leave with the unit's last fragment, at an access
// unit's end (the marker bit), or before a gap in the input sequence.
//
// Output sequence numbers count on without a gap the input did not have:
// for every packet lost before the Repacketizer a number is skipped, so
// the receiver sees the loss and its NACK and PLI work, and the lost
// packet, should it come late, takes that number if it fits in one packet
// (a fragment then continues exactly where the fragments before the gap
// end). A late packet that was not lost is a duplicate and is dropped.
// Packets keep their timestamp, SSRC and payload type; the marker bit,
// which ends an access unit, goes on the last packet of the input packet
// that carried it.
//
// A Repacketizer is not safe for concurrent use; the zero value is ready
// for H.264.
type Repacketizer struct {
	Codec Codec // of the stream; set before the first packet

	started bool
	newest  uint16 // highest input sequence number seen
	next    uint16 // output sequence number of the next packet
	gaps    []gap  // input numbers not seen within lateWindow of newest, oldest first

	// The fragmented NAL unit being carried.
	fu    bool       // one is open
	nal   [2]byte    // its NAL header (H.264's takes the first byte)
	hdr   rtp.Header // of the last input packet that carried it
	limit int        // payload bytes per packet, for hdr's CSRCs
	first bool       // the next fragment is the unit's first
	frag  *fuPacket  // the fragment being filled; nil before its first byte
	n     int        // bytes of frag's payload, its fragment headers included
}

// gap is a run of input packets that did not come, and the output numbers
// kept for them.
type gap struct {
	in, out uint16 // the first missing input number, and its output number
	n       uint16 // how many
}

// fuPacket is a fragment the Repacketizer makes, with room for its payload
// in the same allocation.
type fuPacket struct {
	rtp.Packet
	buf [MaxPayloadSize]byte
}

// Append appends to dst the packets p becomes, and any held back that must
// leave before them, and returns the extended slice. It takes p: a packet
// that passes through is appended itself, its sequence number and header
// extensions changed in place; packets made of STAP-A units share p's
// payload, and every packet shares p's CSRC list. A packet that cannot be
// brought within MaxPayloadSize (a malformed STAP-A, a payload structure
// that cannot be split, a late packet that would have to be split) gives
// an error and nothing of it is appended; its sequence number then shows as
// a gap. The returned slice is valid with an error too.
func (r *Repacketizer) Append(dst []*rtp.Packet, p *rtp.Packet) ([]*rtp.Packet, error) {
	p.Extension, p.ExtensionProfile, p.Extensions = false, 0, nil
	limit := MaxPayloadSize - 4*len(p.CSRC)
	seq := p.SequenceNumber
	switch d := int16(seq - r.newest); {
	case !r.started:
		r.started, r.next = true, seq
	case d <= 0 && d > -lateWindow:
		return r.appendLate(dst, p, limit)
	case d > 1: // packets lost: what came before them leaves now
		dst = r.flush(dst)
		if d > lateWindow { // every earlier gap is out of the window
			r.gaps = r.gaps[:0]
		}
		r.gaps = append(r.gaps, gap{in: r.newest + 1, out: r.next, n: uint16(d - 1)})
		r.next += uint16(d - 1)
	case d <= 0: // a sequence that starts anew: nothing before it comes late
		dst = r.flush(dst)
		r.gaps = r.gaps[:0]
	}
	r.newest = seq
	i := 0
	for i < len(r.gaps) && int16(seq-(r.gaps[i].in+r.gaps[i].n-1)) >= lateWindow {
		i++
	}
	if i > 0 {
		r.gaps = append(r.gaps[:0], r.gaps[i:]...)
	}

	payload := p.Payload
	hl := r.Codec.headerLen()
	fu := len(payload) > hl && r.Codec.Type(payload) == r.Codec.fragmentType()
	if !fu || !r.continues(p) {
		dst = r.flush(dst)
	}
	start := len(dst)
	var err error
	switch {
	case fu:
		if !r.fu {
			r.open(p, r.Codec.fuNAL(payload), payload[hl]&fuStart != 0, limit)
		}
		r.hdr = p.Header
		dst = r.fill(dst, payload[hl+1:], payload[hl]&fuEnd != 0)
	case len(payload)+int(p.PaddingSize) <= limit:
		p.SequenceNumber = r.next
		r.next++
		dst = append(dst, p)
	default:
		dst, err = r.appendSplit(dst, p, limit)
	}
	if err != nil {
		r.next++ // its number stays a gap
		return dst, err
	}
	if p.Marker {
		dst = r.flush(dst)
		if len(dst) > start {
			dst[len(dst)-1].Marker = true
		}
	}
	return dst, nil
}

// appendLate places a late packet: one that did not come in its turn takes
// its output number if it fits; one that came is a duplicate and dropped.
func (r *Repacketizer) appendLate(dst []*rtp.Packet, p *rtp.Packet, limit int) ([]*rtp.Packet, error) {
	for _, g := range r.gaps {
		if i := p.SequenceNumber - g.in; i < g.n {
			if len(p.Payload)+int(p.PaddingSize) > limit {
				return dst, errLateSplit
			}
			p.SequenceNumber = g.out + i
			return append(dst, p), nil
		}
	}
	return dst, nil
}

// continues reports whether p, a fragment, carries on the open NAL unit.
func (r *Repacketizer) continues(p *rtp.Packet) bool {
	fu := p.Payload[r.Codec.headerLen()]
	return r.fu && fu&fuStart == 0 && r.Codec.fuType(fu) == r.Codec.Type(r.nal[:]) &&
		p.Timestamp == r.hdr.Timestamp && p.SSRC == r.hdr.SSRC && len(p.CSRC) == len(r.hdr.CSRC)
}

// appendSplit appends the packets p becomes when its payload, which is not
// a fragment, exceeds limit (so it is not empty).
func (r *Repacketizer) appendSplit(dst []*rtp.Packet, p *rtp.Packet, limit int) ([]*rtp.Packet, error) {
	payload := p.Payload
	hl := r.Codec.headerLen()
	if len(payload) < hl {
		return dst, errMalformed
	}
	switch typ := r.Codec.Type(payload); {
	case r.Codec.single(typ):
		r.open(p, r.Codec.nalHeader(payload), true, limit)
		return r.fill(dst, payload[hl:], true), nil
	case typ == r.Codec.aggregateType():
		units, err := aggregateUnits(payload[hl:], hl)
		if err != nil {
			return dst, err
		}
		for _, u := range units {
			if len(u) <= limit {
				q := &rtp.Packet{Header: p.Header, Payload: u[:len(u):len(u)]}
				q.Marker, q.Padding, q.PaddingSize = false, false, 0
				q.SequenceNumber = r.next
				r.next++
				dst = append(dst, q)
			} else {
				r.open(p, r.Codec.nalHeader(u), true, limit)
				dst = r.fill(dst, u[hl:], true)
			}
		}
		return dst, nil
	default: // H.264's STAP-B, MTAP, FU-B, H.265's PACI, reserved types
		return dst, fmt.Errorf("%w: %s payload type %d", errUnsplitable, r.Codec, typ)
	}
}

// aggregateUnits returns the NAL units of an aggregation packet's payload
// after its header, aliasing it; hl is the size of a NAL unit header.
func aggregateUnits(body []byte, hl int) ([][]byte, error) {
	var units [][]byte
	for rest := body; len(rest) > 0; {
		if len(rest) < 2 {
			return nil, errMalformed
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n < hl || n > len(rest)-2 {
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

// open starts carrying a fragmented NAL unit whose header is nal; first
// says whether its first bytes follow.
func (r *Repacketizer) open(p *rtp.Packet, nal [2]byte, first bool, limit int) {
	r.fu, r.nal, r.hdr, r.first, r.limit = true, nal, p.Header, first, limit
}

// fill adds body, the next bytes of the open NAL unit, to its fragments,
// appending each that is full; last says whether body ends the unit, whose
// last fragment then leaves too.
func (r *Repacketizer) fill(dst []*rtp.Packet, body []byte, last bool) []*rtp.Packet {
	for len(body) > 0 {
		if r.frag == nil {
			r.frag, r.n = new(fuPacket), r.Codec.headerLen()+1
		}
		k := copy(r.frag.buf[r.n:r.limit], body)
		r.n, body = r.n+k, body[k:]
		if r.n == r.limit && (len(body) > 0 || !last) {
			dst = r.emit(dst, false)
		}
	}
	if last {
		dst = r.emit(dst, true)
		r.fu = false
	}
	return dst
}

// flush appends the fragment held back, if any, and closes the NAL unit:
// what follows does not continue it.
func (r *Repacketizer) flush(dst []*rtp.Packet) []*rtp.Packet {
	if r.frag != nil {
		dst = r.emit(dst, false)
	}
	r.fu = false
	return dst
}

// emit appends the fragment being filled, the unit's last if last.
func (r *Repacketizer) emit(dst []*rtp.Packet, last bool) []*rtp.Packet {
	q := r.frag
	if q == nil { // a unit whose last input fragment was empty
		q, r.n = new(fuPacket), r.Codec.headerLen()+1
	}
	r.Codec.putFU(q.buf[:], r.nal, r.first, last)
	q.Header = r.hdr
	q.Marker, q.Padding, q.PaddingSize = false, false, 0
	q.SequenceNumber = r.next
	q.Payload = q.buf[:r.n:r.n]
	r.next++
	r.first, r.frag = false, nil
	return append(dst, &q.Packet)
}
