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
	max   int           // bytes
	codec rtph264.Codec // of the stream; set before the first packet

	pkts  []*rtp.Packet // nil while there is no usable GOP
	bytes int
	// prefix carries the last parameter sets seen, when the keyframe's
	// access unit did not bring its own.
	prefix *rtp.Packet

	// The access unit being received: packets of one RTP timestamp.
	au       []*rtp.Packet
	auBytes  int
	auTS     uint32
	auKey    bool
	auParams int       // bit i: the unit carries the codec's parameter set i
	params   [3][]byte // the last parameter sets seen in the stream
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
		g.auKey, g.auParams = false, 0
	}
	if g.auBytes+size > g.max { // one timestamp for megabytes: not a picture worth keeping
		clear(g.au)
		g.au, g.auBytes = g.au[:0], 0
	}
	g.au = append(g.au, p)
	g.auBytes += size
	for i, ps := range n.params {
		if ps != nil {
			g.params[i] = ps
			g.auParams |= 1 << i
		}
	}
	if n.key && !g.auKey {
		g.auKey = true
		g.pkts = append(make([]*rtp.Packet, 0, max(64, 2*len(g.au))), g.au...)
		g.bytes = g.auBytes
		g.prefix = nil
		if all := 1<<len(g.codec.ParameterSets()) - 1; g.auParams != all {
			g.prefix = g.parameterSets()
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

// parameterSets returns the last parameter sets seen, in a packet before
// the GOP's first; nil when one is missing, or when together they are too
// large for one packet (real ones take tens of bytes).
func (g *gop) parameterSets() *rtp.Packet {
	params := g.params[:len(g.codec.ParameterSets())]
	size := 2
	for _, ps := range params {
		if ps == nil {
			return nil
		}
		size += 2 + len(ps)
	}
	if size > rtph264.MaxPayloadSize {
		return nil
	}
	return parameterSets(g.codec, g.pkts[0], params)
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
