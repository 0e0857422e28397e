package live

import (
	"context"
	"crypto/rand"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// gatherTimeout bounds ICE gathering for an answer; with host candidates
// only it takes milliseconds.
const gatherTimeout = 5 * time.Second

// Retransmission to viewers (RTCP NACK), answered by each viewer's writer
// from the packets it sent, which the upstream shares among its viewers.
const (
	// sentHistory is how many of the last packets sent can be sent again:
	// a few seconds of a 2 Mbit/s stream, as pion's own responder keeps.
	sentHistory = 1024
	// maxResends bounds how often one packet is sent again. A receiver
	// whose SRTP replay window (pion's is 64 packets) has moved past a
	// packet drops its retransmissions and asks again every 100 ms for
	// seconds; answering every time made retransmissions most of the
	// relay's work.
	maxResends = 2
)

// Pacing. A viewer's packets leave through a token bucket: up to
// paceBurst at once, then paceRate a millisecond, about 75 Mbit/s, twenty
// times a 4 Mbit/s camera. A picture of a 2 Mbit/s stream between
// keyframes is about ten packets and leaves whole; a keyframe (50 to 100
// packets) and the GOP sent to a joining viewer (a second of video) are
// spread over milliseconds. Sent at once, their datagrams arrive at the
// viewer's socket together, and a viewer that does not read them in time
// loses what its receive buffer (Linux's default is 208 KB, about 90
// datagrams of ours) does not hold: the kernel drops them, the viewer asks
// for them again, the picture stalls until they come. Packets are sent at
// once while the access units waiting behind them fill half the queue.
const (
	paceBurst = 32
	paceRate  = 8
)

// viewer is one WHEP session: a peer connection with one video track, in
// the codec of the camera's upstream, fed from it.
type viewer struct {
	s       *SFU
	id      string
	camera  string
	accepts []rtph264.Codec // the codecs its offer has, H.264 and H.265 of them
	pc      *webrtc.PeerConnection
	// Set by answer, before answered is closed.
	track  *viewerTrack
	sender *webrtc.RTPSender
	joined time.Time // when the request came: TTFF starts here
	// seqOffset shifts the camera's sequence numbers: the GOP replay and
	// the live packets stay one continuous sequence, and a packet this
	// viewer missed still shows as a gap, so its NACK and PLI work.
	seqOffset uint16
	queue     chan []*rtp.Packet // access units, shared with other viewers
	nacks     chan []uint16      // sequence numbers the viewer asks for again, to the writer
	kick      chan struct{}      // the viewer fell too far behind
	answered  chan struct{}      // closed when the answer has been sent
	connected chan struct{}      // closed when the peer connection is up
	connOnce  sync.Once
	done      chan struct{} // closed by close
	closeOnce sync.Once

	// release gives back the account's session slot; set by the handler.
	release func()

	// Set by attach, before the viewer's goroutines start.
	up   *upstream
	cold bool // the stream was not running yet
	rec  *record

	// Owned by the writer goroutine.
	sentFirst  bool
	sendFailed bool                    // a batch was refused; logged once
	out        webrtc.TrackLocalWriter // the track's one binding
	box        *outbox                 // nil: every packet goes at once
	pace       pacer
	paceTimer  *time.Timer // made by the first pause
	hdr        rtp.Header  // of the packet being written, reused
	ssrc       uint32
	pt         uint8
	sent       [sentHistory]sentPacket // by sequence number modulo sentHistory

	// Guarded by up.mu.
	waitKey bool // skip packets until a keyframe starts
	have    int  // packets of the access unit being gathered that were in the GOP sent
	behind  int  // access units dropped in a row
}

// newViewer takes a WHEP offer, whose video codecs the relay carries are
// accepts. The viewer is not attached to a stream yet, and not answered:
// the answer's codec is the upstream's. On error its peer connection is
// closed.
func (s *SFU) newViewer(api *webrtc.API, camera, offer string, accepts []rtph264.Codec) (*viewer, *httpError) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		s.log.Error("cannot create a peer connection", "err", err)
		return nil, errorf(500, "internal error")
	}
	v := &viewer{
		s: s, id: "ws-" + strings.ToLower(rand.Text()), camera: camera, accepts: accepts, pc: pc,
		joined:    time.Now(),
		seqOffset: uint16(mrand.Uint32()),
		queue:     make(chan []*rtp.Packet, viewerQueue),
		nacks:     make(chan []uint16, 16),
		kick:      make(chan struct{}, 1),
		answered:  make(chan struct{}),
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		pc.Close()
		return nil, errorf(400, "cannot use the offer: %v", err)
	}
	return v, nil
}

// answer answers the offer with a track of codec, the upstream's. Added
// after the offer, the track takes the offer's receive-only video
// section, which makes the answer send-only.
func (v *viewer) answer(ctx context.Context, codec rtph264.Codec) (string, *httpError) {
	if !slices.Contains(v.accepts, codec) {
		return "", errorf(415, "camera %s sends %s here, which this player's offer does not have", v.camera, codec)
	}
	static, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: codecMIME(codec), ClockRate: 90000}, "video", "citywatch-"+v.camera)
	if err == nil {
		v.track = &viewerTrack{TrackLocalStaticRTP: static}
		v.sender, err = v.pc.AddTrack(v.track)
	}
	if err != nil {
		v.s.log.Error("cannot add a track", "err", err)
		return "", errorf(500, "internal error")
	}
	answer, err := v.pc.CreateAnswer(nil)
	if err != nil {
		return "", errorf(400, "cannot answer the offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(v.pc)
	if err := v.pc.SetLocalDescription(answer); err != nil {
		return "", errorf(400, "cannot answer the offer: %v", err)
	}
	if !v.sending() {
		return "", errorf(400, "offer has no %s video the hub can send (a recvonly video section with %s)", codec, codecFormat(codec))
	}
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", errorf(503, "the request was canceled")
	case <-t.C:
		v.s.log.Error("ICE gathering did not complete", "timeout", gatherTimeout)
		return "", errorf(500, "internal error")
	}
	return v.pc.LocalDescription().SDP, nil
}

// codecFormat says what an offer's codec must be for the relay to send
// it.
func codecFormat(c rtph264.Codec) string {
	if c == rtph264.H265 {
		return "H.265, tx-mode SRST"
	}
	return "H.264, packetization-mode=1"
}

// sending reports whether the negotiation gave the track a codec in a
// section the viewer receives.
func (v *viewer) sending() bool {
	for _, t := range v.pc.GetTransceivers() {
		if t.Sender() == v.sender {
			d := t.Direction()
			return t.Mid() != "" && len(v.sender.GetParameters().Codecs) > 0 &&
				(d == webrtc.RTPTransceiverDirectionSendonly || d == webrtc.RTPTransceiverDirectionSendrecv)
		}
	}
	return false
}

// watchState follows the peer connection once the viewer has joined.
func (v *viewer) watchState() {
	v.pc.OnConnectionStateChange(v.onState)
	v.onState(v.pc.ConnectionState()) // in case it changed before
}

func (v *viewer) onState(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		v.connOnce.Do(func() { close(v.connected) })
	case webrtc.PeerConnectionStateFailed:
		v.close("connection failed")
	case webrtc.PeerConnectionStateClosed:
		v.close("closed by the viewer")
	}
}

// close ends the session for reason; only the first call counts. It is
// for joined viewers.
func (v *viewer) close(reason string) {
	v.closeOnce.Do(func() {
		close(v.done)
		v.release()
		v.s.leave(v)
		v.s.auditEnd(v.rec, time.Now(), reason)
		if err := v.pc.Close(); err != nil {
			v.s.log.Debug("closing a viewer's peer connection", "session", v.id, "err", err)
		}
	})
}

func (v *viewer) closed() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// offer queues packets for the viewer without blocking the upstream's
// reader; up.mu is held. A viewer that falls a whole queue behind is cut.
func (v *viewer) offer(pkts []*rtp.Packet) {
	select {
	case v.queue <- pkts:
		v.behind = 0
	default:
		v.behind++
		v.rec.dropped.Add(uint64(len(pkts)))
		v.s.m.dropped.Add(uint64(len(pkts)))
		if v.behind == viewerQueue {
			select {
			case v.kick <- struct{}{}:
			default:
			}
		}
	}
}

// writeLoop waits for the viewer to connect, sends it the cached GOP, then
// live packets, until the session ends; it also sends lost packets again.
func (v *viewer) writeLoop() {
	select {
	case <-v.answered:
	case <-v.done:
		return
	}
	v.s.wg.Go(v.readRTCP) // v.sender is set
	t := time.NewTimer(v.s.cfg.UpstreamTimeout)
	select {
	case <-v.connected:
		t.Stop()
	case <-v.done:
		t.Stop()
		return
	case <-t.C:
		v.close("the viewer did not connect")
		return
	}
	// Connected, the track is bound: its stream is written to directly,
	// without pion's per-packet copy of the packet.
	if v.out, v.ssrc, v.pt = v.track.binding(); v.out == nil {
		v.close("the viewer's video track is not bound")
		return
	}
	// Connected, the candidate pair is chosen: packets can wait for the
	// rest of their access unit.
	if v.box = v.s.apis.socks.open(v.sender); v.box != nil {
		defer v.s.apis.socks.close(v.box)
	}
	// First the cached GOP, then live packets.
	if !v.sendPaced(v.up.subscribe(v)) {
		return
	}
	for {
		select {
		case pkts := <-v.queue:
			if !v.sendPaced(pkts) {
				return
			}
		case seqs := <-v.nacks:
			if !v.batch(func() bool { return v.resend(seqs) }) {
				return
			}
		case <-v.kick:
			v.close("too slow: fell a whole queue behind")
			return
		case <-v.done:
			return
		}
	}
}

// sendPaced sends packets in order, as the pacer lets them go (see
// paceBurst), each part in one batch; while it waits, it answers NACKs.
func (v *viewer) sendPaced(pkts []*rtp.Packet) bool {
	for len(pkts) > 0 {
		n := v.pace.take(len(pkts), time.Now())
		if len(v.queue) >= viewerQueue/2 {
			n = len(pkts) // behind: catch up
		}
		if n == 0 {
			if !v.pause(v.pace.wait(len(pkts))) {
				return false
			}
			continue
		}
		if !v.sendAll(pkts[:n]) {
			return false
		}
		pkts = pkts[n:]
	}
	return true
}

// pause waits d, or less if the viewer asks for packets again.
func (v *viewer) pause(d time.Duration) bool {
	if v.paceTimer == nil {
		v.paceTimer = time.NewTimer(d)
	} else {
		v.paceTimer.Reset(d)
	}
	select {
	case <-v.paceTimer.C:
		return true
	case seqs := <-v.nacks:
		v.paceTimer.Stop()
		return v.batch(func() bool { return v.resend(seqs) })
	case <-v.done:
		v.paceTimer.Stop()
		return false
	}
}

// pacer is a viewer's token bucket (see paceBurst), owned by its writer.
// The zero pacer is full.
type pacer struct {
	tokens float64 // packets that may leave now
	at     time.Time
}

// take says how many of n packets may leave at now, and takes them.
func (p *pacer) take(n int, now time.Time) int {
	p.tokens = min(paceBurst, p.tokens+float64(now.Sub(p.at))*paceRate/float64(time.Millisecond))
	p.at = now
	k := min(n, int(p.tokens))
	p.tokens -= float64(k)
	return k
}

// wait says how long until min(n, paceRate) packets may leave.
func (p *pacer) wait(n int) time.Duration {
	need := float64(min(n, paceRate)) - p.tokens
	return time.Duration(math.Ceil(max(need, 0) * float64(time.Millisecond) / paceRate))
}

// sendAll sends packets in order, together, and counts them.
func (v *viewer) sendAll(pkts []*rtp.Packet) bool {
	var n, bytes uint64
	ok := v.batch(func() bool {
		for _, p := range pkts {
			if !v.send(p) {
				return false
			}
			n++
			bytes += uint64(len(p.Payload))
		}
		return true
	})
	// Once a batch: the counters are shared by every viewer's writer.
	v.rec.packets.Add(n)
	v.rec.bytes.Add(bytes)
	v.up.sentBytes.Add(bytes)
	v.s.m.forwarded.Add(n)
	v.s.m.forwardedBytes.Add(bytes)
	return ok
}

// batch runs send with the viewer's datagrams held in its outbox, then
// sends them in one go.
func (v *viewer) batch(send func() bool) bool {
	if v.box == nil {
		return send()
	}
	v.box.hold()
	ok := send()
	if unsent, err := v.box.flush(); err != nil {
		v.rec.dropped.Add(uint64(unsent))
		v.s.m.dropped.Add(uint64(unsent))
		if !v.sendFailed {
			v.sendFailed = true
			v.s.log.Warn("a viewer's packets were refused by the kernel; counted as dropped (logged once per session)",
				"session", v.id, "datagrams", unsent, "err", err)
		}
	}
	return ok
}

// sentPacket is a packet sent to the viewer, kept to be sent again.
type sentPacket struct {
	p       *rtp.Packet // shared; nil for none
	seq     uint16      // as the viewer got it
	resends uint8
}

// send writes a packet to the viewer: its sequence number shifted by the
// viewer's offset, the SSRC and payload type negotiated with the viewer.
// The upstream's packets carry no header extensions (the repacketizer
// drops the agent's, negotiated with the hub, not with this viewer).
// sendAll counts what it sent.
func (v *viewer) send(p *rtp.Packet) bool {
	seq := p.SequenceNumber + v.seqOffset
	if !v.write(p, seq) {
		return false
	}
	v.sent[seq%sentHistory] = sentPacket{p: p, seq: seq}
	if !v.sentFirst {
		v.sentFirst = true
		ttff := time.Since(v.joined)
		v.s.m.observeTTFF(v.cold, ttff)
		v.rec.setTTFF(ttff)
		v.up.joined(ttff)
	}
	return true
}

// resend sends again the packets a NACK asks for that were sent lately,
// each at most maxResends times.
func (v *viewer) resend(seqs []uint16) bool {
	for _, seq := range seqs {
		sp := &v.sent[seq%sentHistory]
		if sp.p == nil || sp.seq != seq || sp.resends >= maxResends {
			continue
		}
		sp.resends++
		if !v.write(sp.p, seq) {
			return false
		}
		v.s.m.resent.Inc()
	}
	return true
}

// write sends p as seq. The header is the viewer's one, reused: nothing
// on the way (RTCP reports, SRTP) keeps it.
func (v *viewer) write(p *rtp.Packet, seq uint16) bool {
	v.hdr = p.Header
	v.hdr.SequenceNumber, v.hdr.SSRC, v.hdr.PayloadType = seq, v.ssrc, v.pt
	if _, err := v.out.WriteRTP(&v.hdr, p.Payload); err != nil {
		if !v.closed() {
			v.close("sending failed: " + err.Error())
		}
		return false
	}
	return true
}

// readRTCP reads the viewer's reports: lost packets go to the writer to be
// sent again, picture loss becomes a keyframe request upstream.
func (v *viewer) readRTCP() {
	for {
		pkts, _, err := v.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.up.requestKeyframe()
			case *rtcp.TransportLayerNack:
				var seqs []uint16
				for _, pair := range p.Nacks {
					pair.Range(func(seq uint16) bool {
						seqs = append(seqs, seq)
						return true
					})
				}
				select {
				case v.nacks <- seqs:
				default: // the writer is behind; the viewer asks again
				}
			}
		}
	}
}

// viewerTrack is a viewer's video track: pion's static RTP track chooses
// the codec when the track is bound, and the viewer's writer then writes
// to the binding's stream itself. A track has one binding, to the
// viewer's peer connection.
type viewerTrack struct {
	*webrtc.TrackLocalStaticRTP

	mu   sync.Mutex
	out  webrtc.TrackLocalWriter
	ssrc uint32
	pt   uint8
}

// Bind implements webrtc.TrackLocal.
func (t *viewerTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := t.TrackLocalStaticRTP.Bind(ctx)
	if err == nil {
		t.mu.Lock()
		t.out, t.ssrc, t.pt = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(codec.PayloadType)
		t.mu.Unlock()
	}
	return codec, err
}

// Unbind implements webrtc.TrackLocal.
func (t *viewerTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.out = nil
	t.mu.Unlock()
	return t.TrackLocalStaticRTP.Unbind(ctx)
}

// binding returns the stream to write to, with the SSRC and payload type
// negotiated; nil before Bind.
func (t *viewerTrack) binding() (webrtc.TrackLocalWriter, uint32, uint8) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out, t.ssrc, t.pt
}
