package live

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// keyframeRequestInterval spaces the keyframe requests a session passes on
// to its camera. Every viewer that joins or loses packets at the hub can
// ask for one; a camera answers each with an IDR several times the size
// of a normal frame, so a burst of requests would flood the site uplink.
const keyframeRequestInterval = time.Second

// session is one live stream: an RTSP client of the camera and a peer
// connection to the hub, answering the hub's offer with the codec of the
// stream the camera offers; the camera plays once the hub is connected.
type session struct {
	m       *Manager
	id      string
	device  string
	streams Streams
	offer   string    // the hub's
	codecs  []offered // the offer's that the agent can send, by preference
	log     *slog.Logger

	// Set by connect, on the session's goroutine; pc under mu, for the
	// hub's candidates.
	pc        *webrtc.PeerConnection
	track     *webrtc.TrackLocalStaticRTP
	sender    *webrtc.RTPSender
	gathered  <-chan struct{} // closed when ICE gathering is complete
	connected chan struct{}   // closed when the hub's peer first connects
	connOnce  sync.Once       // closes connected
	rtcpDone  chan struct{}   // closed when readRTCP, started with the sender, returns

	ctx    context.Context // ends with the session
	cancel context.CancelFunc

	mu         sync.Mutex // guards the fields below, and pc
	reason     wire.Reason
	detail     string
	offerSet   bool                      // pc has the offer; the hub's candidates can be added
	remote     []wire.ICECandidate       // the hub's, come before the offer was set
	answered   bool                      // the answer is published; candidates go out at once
	candidates []webrtc.ICECandidateInit // gathered before the answer
	grace      *time.Timer               // runs while the hub's peer is disconnected
	camera     *camera                   // set while playing, for keyframe requests
	lastPLI    time.Time                 // last keyframe request sent to the camera

	// Used on gortsplib's reader goroutine only.
	gate  *keyframeGate
	split rtph264.Repacketizer // after the gate, which may insert a packet
	out   []*rtp.Packet        // split's output, reused
	// ssrc is the camera's SSRC with bit 32 set once a packet has arrived.
	ssrc       atomic.Uint64
	lastPacket atomic.Int64 // UnixNano of the camera's last RTP packet
}

func newSession(m *Manager, id, device string, streams Streams, offer string, codecs []offered) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		m: m, id: id, device: device, streams: streams, offer: offer, codecs: codecs,
		log:       m.log.With("session", id, "device", device),
		connected: make(chan struct{}),
		rtcpDone:  make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
	}
}

// end stops the session; the first reason given is the one reported.
func (s *session) end(reason wire.Reason, detail string) {
	s.mu.Lock()
	if s.reason == "" {
		s.reason, s.detail = reason, detail
	}
	s.mu.Unlock()
	s.cancel()
}

// run opens the camera, answers the offer with its codec and streams
// until the session ends, then reports why. It owns the session's
// resources. The camera comes first: which of the offer's codecs the
// answer takes depends on the video it offers.
func (s *session) run() {
	defer s.m.wg.Done()
	if cam := s.open(); cam != nil {
		s.stream(cam)
		cam.close()
	}
	s.close()
	s.mu.Lock()
	reason, detail := s.reason, s.detail
	s.mu.Unlock()
	s.log.Info("live session ended", "reason", reason, "detail", detail)
	s.m.finished(s.id, s.device, reason, detail)
}

// close releases the peer connection. Graceful, so that pion's goroutines
// have ended when it returns and the hub gets a DTLS close_notify, which
// closes its side at once instead of after ICE timeouts.
func (s *session) close() {
	s.cancel()
	s.mu.Lock()
	if s.grace != nil {
		s.grace.Stop()
	}
	s.mu.Unlock()
	if s.pc == nil {
		return
	}
	if err := s.pc.GracefulClose(); err != nil {
		s.log.Debug("closing the peer connection", "err", err)
	}
	if s.sender != nil { // readRTCP runs
		<-s.rtcpDone
	}
}

// answer publishes the answer, naming the camera's stream it plays, once
// ICE gathering is complete, so that it carries every candidate and works
// without trickle, then trickles the same candidates for a hub that
// prefers them.
func (s *session) answer(stream wire.StreamRole) bool {
	select {
	case <-s.gathered:
	case <-s.ctx.Done():
		return false
	}
	answer := s.pc.LocalDescription().SDP
	if len(answer) > wire.MaxSDPLen {
		// The hub would reject it and wait for nothing.
		s.end(wire.ReasonLiveNegotiate, fmt.Sprintf("the answer takes %d bytes, over the limit of %d: too many network interfaces", len(answer), wire.MaxSDPLen))
		return false
	}
	s.m.opts.Publish(wire.Live{Session: s.id, Device: s.device, Type: wire.LiveAnswer, SDP: answer, Stream: stream})
	s.mu.Lock()
	s.answered = true
	cands := s.candidates
	s.candidates = nil
	s.mu.Unlock()
	for _, c := range cands {
		s.publishCandidate(c)
	}
	return true
}

func (s *session) onCandidate(c *webrtc.ICECandidate) {
	if c == nil {
		return // gathering complete; s.gathered says so
	}
	init := c.ToJSON()
	s.mu.Lock()
	if !s.answered {
		s.candidates = append(s.candidates, init)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.publishCandidate(init)
}

func (s *session) publishCandidate(c webrtc.ICECandidateInit) {
	s.m.opts.Publish(wire.Live{Session: s.id, Device: s.device, Type: wire.LiveCandidate,
		Candidate: &wire.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}})
}

// addCandidate adds one of the hub's candidates, or keeps it until the
// offer is set. A bad one is logged and skipped: the others may still
// connect.
func (s *session) addCandidate(c wire.ICECandidate) {
	s.mu.Lock()
	if !s.offerSet {
		s.remote = append(s.remote, c)
		s.mu.Unlock()
		return
	}
	pc := s.pc
	s.mu.Unlock()
	err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	if err != nil {
		s.log.Warn("hub ICE candidate not added", "err", err)
	}
}

// onConnectionState ends the session when the hub's peer is gone: at once
// when ICE has failed or the hub closed its side, after HubTimeout when it
// is disconnected and does not come back.
func (s *session) onConnectionState(st webrtc.PeerConnectionState) {
	s.log.Debug("peer connection", "state", st)
	switch st {
	case webrtc.PeerConnectionStateConnected:
		s.connOnce.Do(func() { close(s.connected) })
		s.mu.Lock()
		if s.grace != nil {
			s.grace.Stop()
			s.grace = nil
		}
		s.mu.Unlock()
	case webrtc.PeerConnectionStateDisconnected:
		s.mu.Lock()
		if s.grace == nil && s.ctx.Err() == nil {
			s.grace = time.AfterFunc(s.m.opts.HubTimeout, func() {
				s.end(wire.ReasonLiveHubGone, fmt.Sprintf("the hub's peer was disconnected for %v", s.m.opts.HubTimeout))
			})
		}
		s.mu.Unlock()
	case webrtc.PeerConnectionStateFailed:
		s.end(wire.ReasonLiveHubGone, "ICE failed: the hub's peer is unreachable")
	case webrtc.PeerConnectionStateClosed:
		s.end(wire.ReasonLiveHubGone, "the hub closed the peer connection")
	}
}

// open sets up the camera's main stream in one of the offer's codecs, or
// else its sub-stream; nil when the session ended.
func (s *session) open() *camera {
	codecs := make([]rtph264.Codec, len(s.codecs))
	for i, c := range s.codecs {
		codecs[i] = c.codec
	}
	stream := wire.StreamMain
	cam, reason, detail := openCamera(s.ctx, s.streams.Main, codecs, s.m.opts.RTSPTimeout, s.log)
	if sub := s.subStream(reason); sub != "" {
		s.log.Info("main stream in a codec the hub did not ask for; playing the sub-stream", "detail", detail)
		stream = wire.StreamSub
		cam, reason, detail = openCamera(s.ctx, sub, codecs, s.m.opts.RTSPTimeout, s.log)
		detail = prefix("sub-stream: ", detail)
	}
	if cam == nil {
		s.end(reason, detail)
		return nil
	}
	cam.stream = stream
	return cam
}

// stream answers the offer with the camera's codec, plays the camera once
// the hub is connected (the camera's first keyframe would be lost before)
// and forwards its packets until the session ends.
func (s *session) stream(cam *camera) {
	i := slices.IndexFunc(s.codecs, func(c offered) bool { return c.codec == cam.codec })
	if err := s.connect(s.codecs[i]); err != nil {
		s.end(wire.ReasonLiveNegotiate, err.Error())
		return
	}
	if !s.answer(cam.stream) {
		return
	}
	hub := time.NewTimer(s.m.opts.HubTimeout)
	defer hub.Stop()
	select {
	case <-s.ctx.Done():
		return
	case <-hub.C:
		s.end(wire.ReasonLiveHubGone, fmt.Sprintf("the hub did not connect within %v", s.m.opts.HubTimeout))
		return
	case <-s.connected:
	}
	s.log.Debug("playing", "codec", cam.codec)
	s.gate = newKeyframeGate(cam.codec, cam.params)
	s.split.Codec = cam.codec
	s.lastPacket.Store(time.Now().UnixNano())
	if reason, detail := cam.play(s.ctx, s.forward); reason != wire.ReasonNone {
		s.end(reason, detail)
		return
	}
	s.mu.Lock()
	s.camera = cam
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.camera = nil
		s.mu.Unlock()
	}()
	s.watch(cam)
}

// watch waits for the session to end, the camera to fail or its stream to
// stall.
func (s *session) watch(cam *camera) {
	limit := s.m.opts.NoFrameTimeout
	tick := time.NewTicker(limit / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case err := <-cam.done:
			if s.ctx.Err() == nil { // not closed by the session's own end
				s.end(cam.lost(s.ctx, err))
			}
			return
		case now := <-tick.C:
			if now.Sub(time.Unix(0, s.lastPacket.Load())) > limit {
				s.end(wire.ReasonNoStream, fmt.Sprintf("no video from the camera for %v", limit))
				return
			}
		}
	}
}

// forward passes one of the camera's RTP packets to the hub. It runs on
// gortsplib's reader goroutine.
func (s *session) forward(pkt *rtp.Packet) {
	s.lastPacket.Store(time.Now().UnixNano())
	s.ssrc.Store(1<<32 | uint64(pkt.SSRC))
	if dropped := s.gate.push(pkt, s.write); dropped {
		// Joined between keyframes: a camera that honours RTCP
		// feedback sends one now instead of at the end of its GOP.
		s.requestKeyframe()
	}
}

// write sends a packet to the hub, repacketized to the WebRTC leg's packet
// size: cameras packetize for Ethernet's MTU. The repacketizer also drops
// the RTSP session's header extensions, which were not negotiated with the
// hub. pion sets the SSRC and payload type it negotiated and keeps the
// sequence numbers (the repacketizer's, with the camera's losses as gaps)
// and timestamps.
func (s *session) write(pkt *rtp.Packet) {
	var err error
	s.out, err = s.split.Append(s.out[:0], pkt)
	if err != nil { // s.out may still carry earlier packets held back
		s.m.unsplit.Add(1)
		s.log.Debug("camera packet too large for the hub and not split", "err", err)
	}
	for _, q := range s.out {
		if err := s.track.WriteRTP(q); err != nil {
			return // the peer connection is closing
		}
		s.m.packets.Add(1)
		s.m.bytes.Add(uint64(len(q.Payload)))
	}
	clear(s.out) // the packets are pion's now; keep nothing alive
}

// readRTCP reads the hub's RTCP, which also lets pion's interceptors (NACK
// responder, reports) see it, and passes keyframe requests on.
func (s *session) readRTCP() {
	defer close(s.rtcpDone)
	for {
		pkts, _, err := s.sender.ReadRTCP()
		if err != nil {
			return // the peer connection is closed
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.m.plis.Add(1)
				s.requestKeyframe()
			}
		}
	}
}

// requestKeyframe asks the camera for a keyframe with an RTCP PLI on the
// RTSP session, at most once per keyframeRequestInterval. RTSP has no
// keyframe request of its own and many cameras ignore RTCP feedback; those
// send their next IDR at the end of the GOP. Restarting the RTSP session
// to force one would cost a round of requests, and a camera-side session,
// per viewer's request.
func (s *session) requestKeyframe() {
	ssrc := s.ssrc.Load()
	now := time.Now()
	s.mu.Lock()
	cam := s.camera
	if cam == nil || ssrc == 0 || now.Sub(s.lastPLI) < keyframeRequestInterval {
		s.mu.Unlock()
		return
	}
	s.lastPLI = now
	s.mu.Unlock()
	if err := cam.writeRTCP(&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}); err != nil {
		s.log.Debug("keyframe request to the camera", "err", err)
		return
	}
	s.m.cameraPLIs.Add(1)
}

// subStream is the stream to play when the main one ended for reason: the
// configured sub-stream, or one FindSub finds, when the main stream is in
// none of the offer's codecs; "" otherwise.
func (s *session) subStream(reason wire.Reason) secret.URL {
	if reason != wire.ReasonLiveCodec {
		return ""
	}
	if s.streams.Sub != "" || s.streams.FindSub == nil {
		return s.streams.Sub
	}
	sub, err := s.streams.FindSub(s.ctx)
	if err != nil {
		s.log.Info("no H.264 sub-stream found", "err", err)
	}
	return sub
}

// prefix puts p before detail, unless detail is empty.
func prefix(p, detail string) string {
	if detail == "" {
		return ""
	}
	return p + detail
}
