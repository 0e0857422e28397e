package live

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// gatherTimeout bounds ICE gathering for an answer; with host candidates
// only it takes milliseconds.
const gatherTimeout = 5 * time.Second

// viewer is one WHEP session: a peer connection with one H.264 track fed
// from the camera's upstream.
type viewer struct {
	s      *SFU
	id     string
	camera string
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	joined time.Time // when the request came: TTFF starts here
	// seqOffset shifts the camera's sequence numbers: the GOP replay and
	// the live packets stay one continuous sequence, and a packet this
	// viewer missed still shows as a gap, so its NACK and PLI work.
	seqOffset uint16
	queue     chan *rtp.Packet
	kick      chan struct{} // the viewer fell too far behind
	answered  chan struct{} // closed when the answer has been sent
	connected chan struct{} // closed when the peer connection is up
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
	sentFirst bool

	// Guarded by up.mu.
	waitKey bool // skip packets until a keyframe starts
	behind  int  // packets dropped in a row
}

// newViewer answers a WHEP offer. The viewer is not attached to a stream
// yet; on error its peer connection is closed.
func (s *SFU) newViewer(ctx context.Context, api *webrtc.API, camera, offer string) (*viewer, string, *httpError) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		s.log.Error("cannot create a peer connection", "err", err)
		return nil, "", errorf(500, "internal error")
	}
	v := &viewer{
		s: s, id: "ws-" + strings.ToLower(rand.Text()), camera: camera, pc: pc,
		joined:    time.Now(),
		seqOffset: uint16(mrand.Uint32()),
		queue:     make(chan *rtp.Packet, viewerQueue),
		kick:      make(chan struct{}, 1),
		answered:  make(chan struct{}),
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	answer, herr := v.negotiate(ctx, offer)
	if herr != nil {
		pc.Close()
		return nil, "", herr
	}
	return v, answer, nil
}

func (v *viewer) negotiate(ctx context.Context, offer string) (string, *httpError) {
	var err error
	v.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "citywatch-"+v.camera)
	if err == nil {
		v.sender, err = v.pc.AddTrack(v.track)
	}
	if err != nil {
		v.s.log.Error("cannot add a track", "err", err)
		return "", errorf(500, "internal error")
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", errorf(400, "cannot use the offer: %v", err)
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
		return "", errorf(400, "offer has no H.264 video the hub can send (a recvonly video section with H.264, packetization-mode=1)")
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

// sending reports whether the negotiation gave the track an H.264 codec in
// a section the viewer receives.
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

// offer queues a packet for the viewer without blocking the upstream's
// reader; up.mu is held. A viewer that falls a whole queue behind is cut.
func (v *viewer) offer(p *rtp.Packet) {
	select {
	case v.queue <- p:
		v.behind = 0
	default:
		v.behind++
		v.rec.dropped.Add(1)
		v.s.m.dropped.Inc()
		if v.behind == viewerQueue {
			select {
			case v.kick <- struct{}{}:
			default:
			}
		}
	}
}

// writeLoop waits for the viewer to connect, sends it the cached GOP, then
// live packets, until the session ends.
func (v *viewer) writeLoop() {
	select {
	case <-v.answered:
	case <-v.done:
		return
	}
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
	for _, p := range v.up.subscribe(v) {
		if !v.send(p) {
			return
		}
	}
	for {
		select {
		case p := <-v.queue:
			if !v.send(p) {
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

func (v *viewer) send(p *rtp.Packet) bool {
	out := *p
	out.SequenceNumber += v.seqOffset
	// The agent's header extensions were negotiated with the hub, not with
	// this viewer.
	out.Extension, out.ExtensionProfile, out.Extensions = false, 0, nil
	if err := v.track.WriteRTP(&out); err != nil {
		if !v.closed() {
			v.close("sending failed: " + err.Error())
		}
		return false
	}
	n := uint64(len(p.Payload))
	v.rec.packets.Add(1)
	v.rec.bytes.Add(n)
	v.up.sentBytes.Add(n)
	v.s.m.forwarded.Inc()
	v.s.m.forwardedBytes.Add(n)
	if !v.sentFirst {
		v.sentFirst = true
		ttff := time.Since(v.joined)
		v.s.m.observeTTFF(v.cold, ttff)
		v.rec.setTTFF(ttff)
		v.up.joined(ttff)
	}
	return true
}

// readRTCP reads the viewer's reports, which also drives pion's NACK
// responder, and turns picture loss into a keyframe request upstream.
func (v *viewer) readRTCP() {
	for {
		pkts, _, err := v.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.up.requestKeyframe()
			}
		}
	}
}
