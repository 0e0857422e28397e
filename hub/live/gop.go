package live

import (
	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// gop keeps the packets of the current group of pictures: everything from
// the first packet of the last keyframe's access unit on. A viewer joining
// a running stream gets these first, so its first picture is the keyframe
// and it need not wait for the camera's next one. The cache is bounded in
// bytes; a GOP that outgrows it is dropped and the cache stays empty until
// the next keyframe. It is not safe for concurrent use.
type gop struct {
	max int // bytes

	pkts  []*rtp.Packet // nil while there is no usable GOP
	bytes int
	// prefix carries the last parameter sets seen, when the keyframe's
	// access unit did not bring its own.
	prefix *rtp.Packet

	// The access unit being received: packets of one RTP timestamp.
	au                  []*rtp.Packet
	auBytes             int
	auTS                uint32
	auIDR, auSPS, auPPS bool
	sps, pps            []byte // the last parameter sets seen in the stream
}

func newGOP(maxBytes int) *gop { return &gop{max: maxBytes} }

// packetSize is what a cached packet costs, near enough.
func packetSize(p *rtp.Packet) int { return 12 + len(p.Payload) }

// push adds the next packet of the stream and reports whether a new GOP
// starts with it (its access unit became a keyframe's).
func (g *gop) push(p *rtp.Packet, n nalInfo) (keyframe bool) {
	size := packetSize(p)
	if len(g.au) == 0 || p.Timestamp != g.auTS {
		clear(g.au)
		g.au, g.auBytes, g.auTS = g.au[:0], 0, p.Timestamp
		g.auIDR, g.auSPS, g.auPPS = false, false, false
	}
	if g.auBytes+size > g.max { // one timestamp for megabytes: not a picture worth keeping
		clear(g.au)
		g.au, g.auBytes = g.au[:0], 0
	}
	g.au = append(g.au, p)
	g.auBytes += size
	if n.sps != nil {
		g.sps, g.auSPS = n.sps, true
	}
	if n.pps != nil {
		g.pps, g.auPPS = n.pps, true
	}
	if n.idr && !g.auIDR {
		g.auIDR = true
		g.pkts = append(make([]*rtp.Packet, 0, max(64, 2*len(g.au))), g.au...)
		g.bytes = g.auBytes
		g.prefix = nil
		// Parameter sets too large for one packet together are left out;
		// real ones take tens of bytes.
		if (!g.auSPS || !g.auPPS) && g.sps != nil && g.pps != nil && 5+len(g.sps)+len(g.pps) <= rtph264.MaxPayloadSize {
			g.prefix = parameterSets(g.pkts[0], g.sps, g.pps)
		}
		return true
	}
	if g.pkts != nil {
		g.bytes += size
		if g.bytes > g.max {
			g.pkts, g.bytes, g.prefix = nil, 0, nil
			return false
		}
		g.pkts = append(g.pkts, p)
	}
	return false
}

// snapshot returns the cached GOP, parameter sets first, or nil when there
// is none. The packets are shared and must not be modified.
func (g *gop) snapshot() []*rtp.Packet {
	if g.pkts == nil {
		return nil
	}
	out := make([]*rtp.Packet, 0, len(g.pkts)+1)
	if g.prefix != nil {
		out = append(out, g.prefix)
	}
	return append(out, g.pkts...)
}
