package live

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// Reasons the hub itself gives for a failed stream, besides wire's.
const (
	reasonNoAnswer   wire.Reason = "no_answer"  // live_start not sent, or not answered in time
	reasonConnection wire.Reason = "connection" // ICE or DTLS between hub and agent failed
)

// cameraReasons are the agent's reasons that say the camera gave no
// picture; a stream ending for one of them marks the camera degraded.
var cameraReasons = map[wire.Reason]bool{
	wire.ReasonUnreachable: true, wire.ReasonRefused: true, wire.ReasonAuthFailed: true,
	wire.ReasonNoStream: true, wire.ReasonTimeout: true, wire.ReasonProbeError: true,
}

// ending says why an upstream ended.
type ending struct {
	reason  wire.Reason
	detail  string
	failed  bool // not a stop the hub chose: viewers get an error, and it is counted
	fault   bool // the camera gave no picture: the fleet shows it degraded
	byAgent bool // the agent ended it, so it needs no live_stop
	timeout bool // the stream did not start in time
}

// message is the ending as a viewer reads it.
func (e ending) message(camera, agent string) string {
	switch {
	case e.fault:
		return fmt.Sprintf("camera %s gives no picture: %s%s", camera, e.reason, suffix(e.detail))
	case e.reason == wire.ReasonLiveCodec:
		return fmt.Sprintf("camera %s sends video the live path does not carry%s: give it an H.264 sub-stream (rtsp_sub) for live view", camera, suffix(e.detail))
	case e.reason == wire.ReasonLiveLimit:
		return fmt.Sprintf("agent %s refused: its own stream limit is reached", agent)
	case e.reason == reasonNoAnswer:
		return fmt.Sprintf("no answer from agent %s%s", agent, suffix(e.detail))
	case e.failed:
		return fmt.Sprintf("live video from camera %s failed: %s%s", camera, e.reason, suffix(e.detail))
	}
	return fmt.Sprintf("live video from camera %s stopped%s", camera, suffix(e.detail))
}

func suffix(detail string) string {
	if detail == "" {
		return ""
	}
	return " (" + detail + ")"
}

// Health checks of a running stream.
const (
	checkEvery  = 250 * time.Millisecond
	freezeAfter = time.Second // no frame for longer is a freeze
	// stopGrace is how long a lost connection waits for the agent's
	// stopped message, which says why.
	stopGrace = time.Second
)

// upstream is one camera's stream from its agent, shared by its viewers.
// Its run goroutine owns the peer connection's life; the reader goroutine
// feeds packets to the GOP cache and the viewers' queues under mu.
type upstream struct {
	s                      *SFU
	camera, agent, session string
	class                  rtph264.Codec // H.265: the offer asks for H.265 beside H.264
	site, district         string
	log                    *slog.Logger
	started                time.Time
	prev                   *upstream // a stream of the same agent that must end first
	frames, received, lost *metrics.Counter
	freezes                *metrics.Counter

	// Signals to the run goroutine, which alone reads them.
	events     chan wire.Live // from HandleLive
	tracks     chan *webrtc.TrackRemote
	states     chan webrtc.PeerConnectionState
	wake       chan struct{} // the viewer count changed
	readerDone chan struct{}
	quit       chan struct{} // closed by halt
	quitOnce   sync.Once
	halted     ending // set before quit is closed

	// Used by the reader only (forward): the agent's packets repacketized
	// to the WebRTC packet size, once for every viewer.
	split rtph264.Repacketizer
	out   []*rtp.Packet
	infos []nalInfo

	ready     chan struct{} // closed at the first keyframe
	done      chan struct{} // closed when run has cleaned up
	end       ending        // why it ended; valid once done is closed
	sentBytes atomic.Uint64 // to viewers, by their writers

	mu                  sync.Mutex
	stopped             bool
	pc                  *webrtc.PeerConnection // set once, before any track
	ssrc                uint32
	codec               rtph264.Codec   // what the agent sends; set with ssrc
	stream              wire.StreamRole // the camera's stream it plays, as the answer says
	lastKeyframeRequest time.Time
	viewers             map[*viewer]struct{}
	fanout              []*viewer     // viewers being sent packets
	unit                []*rtp.Packet // the access unit being gathered for them
	unitKey             bool          // a GOP starts in unit
	gop                 *gop
	hasKey              bool
	stats               streamStats
	frozen              bool
	rate                rateWindow
	// For the stats points: totals at the last point, and the joins since.
	reported     streamStats
	reportedAt   time.Time
	reportedSent uint64
	joins        int
	slowestJoin  time.Duration
}

// streamStats are running totals of what the agent sent.
type streamStats struct {
	packets, bytes, frames, lost, freezes uint64
	haveSeq                               bool
	lastSeq                               uint16
	lastPacket, lastFrame                 time.Time
}

// rateWindow turns totals into per-second rates, refreshed every second.
type rateWindow struct {
	at        time.Time
	frames    uint64
	bytes     uint64
	fps, kbps float64
}

func newUpstream(s *SFU, d fleet.Device, class rtph264.Codec, prev *upstream) *upstream {
	session := "ls-" + strings.ToLower(rand.Text()[:20])
	return &upstream{
		s: s, camera: d.ID, agent: d.Agent, session: session, class: class, site: d.Site, district: d.District,
		log:        s.log.With("device", d.ID, "agent", d.Agent, "session", session),
		started:    time.Now(),
		prev:       prev,
		frames:     s.m.frames.With(d.ID),
		received:   s.m.received.With(d.ID),
		lost:       s.m.lost.With(d.ID),
		freezes:    s.m.freezes.With(d.ID),
		events:     make(chan wire.Live, 64),
		tracks:     make(chan *webrtc.TrackRemote, 1),
		states:     make(chan webrtc.PeerConnectionState, 16),
		wake:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		ready:      make(chan struct{}),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		viewers:    map[*viewer]struct{}{},
		gop:        newGOP(gopBytes),
	}
}

// halt asks the upstream to end for e; the first call wins.
func (u *upstream) halt(e ending) {
	u.quitOnce.Do(func() {
		u.halted = e
		close(u.quit)
	})
}

func (u *upstream) markStopped() {
	u.mu.Lock()
	u.stopped = true
	u.mu.Unlock()
}

// playsMain reports whether the agent said it plays the camera's main
// stream.
func (u *upstream) playsMain() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stream == wire.StreamMain
}

// videoCodec returns the codec the agent sends; valid once u.ready is
// closed.
func (u *upstream) videoCodec() rtph264.Codec {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.codec
}

func (u *upstream) viewerCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.viewers)
}

// attach adds a viewer; it is sent packets once subscribe is called.
func (u *upstream) attach(v *viewer) {
	u.mu.Lock()
	u.viewers[v] = struct{}{}
	v.up, v.cold = u, !u.hasKey
	u.mu.Unlock()
	u.poke()
}

func (u *upstream) detach(v *viewer) {
	u.mu.Lock()
	delete(u.viewers, v)
	if i := slices.Index(u.fanout, v); i >= 0 {
		u.fanout = slices.Delete(u.fanout, i, i+1)
	}
	u.mu.Unlock()
	u.poke()
}

func (u *upstream) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// subscribe starts sending packets to v and returns the cached GOP, which
// v must send first. Without a cached GOP, v waits for the next keyframe,
// which is requested.
func (u *upstream) subscribe(v *viewer) []*rtp.Packet {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return nil
	}
	g := u.gop.snapshot()
	// The GOP ends with the access unit being gathered, so far.
	v.waitKey, v.have = g == nil, len(u.unit)
	u.fanout = append(u.fanout, v)
	u.mu.Unlock()
	if g == nil {
		u.requestKeyframe()
	}
	return g
}

// joined records a viewer's time to first frame for the stream's stats.
func (u *upstream) joined(ttff time.Duration) {
	u.mu.Lock()
	u.joins++
	u.slowestJoin = max(u.slowestJoin, ttff)
	u.mu.Unlock()
}

// requestKeyframe asks the agent for a keyframe, unless one was asked for
// within the keyframe interval.
func (u *upstream) requestKeyframe() {
	now := time.Now()
	u.mu.Lock()
	pc, ssrc := u.pc, u.ssrc
	if pc == nil || ssrc == 0 || now.Sub(u.lastKeyframeRequest) < u.s.cfg.KeyframeInterval {
		u.mu.Unlock()
		return
	}
	u.lastKeyframeRequest = now
	u.mu.Unlock()
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		u.log.Debug("keyframe request not sent", "err", err)
		return
	}
	u.s.m.keyframeRequests.Inc()
}

// run negotiates with the agent, watches the stream until it ends, and
// cleans up: viewers, peer connection, agent, fleet, stats.
func (u *upstream) run(ctx context.Context) {
	defer close(u.done)
	sent, e := u.negotiate(ctx)
	if e == nil {
		e = u.watch(ctx)
	}
	u.finish(*e, sent)
}

// negotiate sends the agent the hub's offer. sent says whether live_start
// went out, so that the agent must be told when the stream ends.
func (u *upstream) negotiate(ctx context.Context) (sent bool, e *ending) {
	if u.prev != nil { // its live_stop must reach the agent before our live_start
		select {
		case <-u.prev.done:
		case <-ctx.Done():
			return false, shutdown()
		case <-u.quit:
			return false, &u.halted
		}
	}
	fail := func(err error) (bool, *ending) {
		return false, &ending{reason: reasonConnection, detail: err.Error(), failed: true}
	}
	pc, err := u.s.apis.upstream.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fail(err)
	}
	u.mu.Lock()
	u.pc = pc
	u.mu.Unlock()
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case u.tracks <- t:
		default: // one video track is all we asked for
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		select {
		case u.states <- st:
		default:
		}
	})
	tr, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	if err != nil {
		return fail(err)
	}
	if err := tr.SetCodecPreferences(offerCodecs(u.class)); err != nil {
		return fail(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	// The offer carries every candidate: agents need no trickle from us.
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return false, shutdown()
	case <-u.quit:
		return false, &u.halted
	}
	sdp := pc.LocalDescription().SDP
	if len(sdp) > wire.MaxSDPLen {
		return fail(fmt.Errorf("offer of %d bytes exceeds the protocol's %d", len(sdp), wire.MaxSDPLen))
	}
	err = u.s.commands.SendCommand(u.agent, wire.Command{
		Type: wire.CommandLiveStart, Session: u.session, Devices: []string{u.camera}, SDP: sdp,
	})
	if err != nil {
		return false, &ending{reason: reasonNoAnswer, detail: "live_start not sent: " + err.Error(), failed: true}
	}
	u.log.Debug("live_start sent")
	return true, nil
}

func shutdown() *ending {
	return &ending{reason: wire.ReasonLiveStopped, detail: "the hub is shutting down"}
}

// watch follows the stream until it ends and says why.
func (u *upstream) watch(ctx context.Context) *ending {
	start := time.NewTimer(u.s.cfg.UpstreamTimeout)
	defer start.Stop()
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	stats := time.NewTicker(u.s.cfg.StatsInterval)
	defer stats.Stop()
	var linger *time.Timer
	var lingerC <-chan time.Time
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	ready := u.ready
	answered, connected, reading := false, false, false
	// An agent that ends a stream closes its peer connection, which the hub
	// notices at once, and says why over MQTT, which takes a moment longer.
	var gone *ending
	grace := time.NewTimer(stopGrace)
	grace.Stop()
	defer grace.Stop()
	var graceC <-chan time.Time
	lost := func(detail string) {
		if gone == nil {
			gone = &ending{reason: reasonConnection, detail: detail, failed: true}
			grace.Reset(stopGrace)
			graceC = grace.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			return shutdown()
		case <-u.quit:
			return &u.halted
		case m := <-u.events:
			switch m.Type {
			case wire.LiveAnswer:
				if answered {
					continue
				}
				answered = true
				u.mu.Lock()
				u.stream = m.Stream
				u.mu.Unlock()
				if err := u.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
					return &ending{reason: wire.ReasonLiveNegotiate, detail: "the agent's answer: " + err.Error(), failed: true}
				}
			case wire.LiveCandidate:
				c := webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex}
				if err := u.pc.AddICECandidate(c); err != nil {
					u.log.Debug("agent's ICE candidate refused", "err", err)
				}
			case wire.LiveStopped:
				return &ending{reason: m.Reason, detail: m.Detail, failed: true, fault: cameraReasons[m.Reason], byAgent: true}
			}
		case t := <-u.tracks:
			if reading {
				continue
			}
			codec, ok := mimeCodec(t.Codec().MimeType)
			if !ok {
				return &ending{reason: wire.ReasonLiveNegotiate, detail: "the agent sent " + t.Codec().MimeType, failed: true}
			}
			reading = true
			u.split.Codec = codec // before the reader starts
			u.mu.Lock()
			u.ssrc, u.codec, u.gop.codec = uint32(t.SSRC()), codec, codec
			u.mu.Unlock()
			if codec != u.class {
				u.s.alias(u)
			}
			u.log.Debug("agent sends", "codec", codec)
			u.s.wg.Go(func() { u.read(t) })
			u.requestKeyframe() // a cold start: the camera's next keyframe may be seconds away
		case st := <-u.states:
			switch st {
			case webrtc.PeerConnectionStateConnected:
				connected = true
			case webrtc.PeerConnectionStateDisconnected:
				connected = false
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				lost("the connection to the agent " + st.String())
			}
		case <-u.readerDone:
			lost("the agent's track ended")
		case <-graceC:
			return gone
		case <-start.C:
			if u.hasKeyframe() {
				continue
			}
			if !answered {
				return &ending{reason: reasonNoAnswer, detail: fmt.Sprintf("within %s", u.s.cfg.UpstreamTimeout), failed: true, timeout: true}
			}
			if !connected {
				return &ending{reason: reasonConnection, detail: fmt.Sprintf("no connection to the agent within %s", u.s.cfg.UpstreamTimeout), failed: true, timeout: true}
			}
			return &ending{reason: wire.ReasonNoStream, detail: fmt.Sprintf("no keyframe within %s", u.s.cfg.UpstreamTimeout), failed: true, fault: true, timeout: true}
		case <-ready:
			ready = nil
			u.log.Info("stream running", "start", time.Since(u.started).Round(time.Millisecond))
			u.s.fleet.ClearStreamFault(u.camera)
		case now := <-check.C:
			if e := u.check(now, connected); e != nil {
				return e
			}
		case now := <-stats.C:
			u.report(now, "", "")
		case <-u.wake:
			switch n := u.viewerCount(); {
			case n == 0 && linger == nil:
				linger = time.NewTimer(u.s.cfg.Linger)
				lingerC = linger.C
			case n > 0 && linger != nil:
				linger.Stop()
				linger, lingerC = nil, nil
			}
		case <-lingerC:
			linger, lingerC = nil, nil
			if u.s.stopIfIdle(u) {
				return &ending{reason: wire.ReasonLiveStopped, detail: "nobody watching"}
			}
		}
	}
}

// stopIfIdle removes u if it still has no viewers, atomically with joins.
func (s *SFU) stopIfIdle(u *upstream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.viewerCount() > 0 {
		return false
	}
	s.removeLocked(u)
	return true
}

func (u *upstream) hasKeyframe() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hasKey
}

// check counts freezes, refreshes the rates, and ends a watched stream
// that stalled while its connection was up (with the connection down the
// connection is to blame, and ICE says so soon).
func (u *upstream) check(now time.Time, connected bool) *ending {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.hasKey {
		return nil
	}
	st := &u.stats
	if dt := now.Sub(u.rate.at); dt >= time.Second {
		if !u.rate.at.IsZero() {
			u.rate.fps = float64(st.frames-u.rate.frames) / dt.Seconds()
			u.rate.kbps = float64(st.bytes-u.rate.bytes) * 8 / 1000 / dt.Seconds()
		}
		u.rate.at, u.rate.frames, u.rate.bytes = now, st.frames, st.bytes
	}
	watched := len(u.viewers) > 0
	switch {
	case now.Sub(st.lastFrame) <= freezeAfter:
		u.frozen = false
	case watched && !u.frozen:
		u.frozen = true
		st.freezes++
		u.freezes.Inc()
	}
	if watched && connected && now.Sub(st.lastPacket) > u.s.cfg.StallTimeout {
		return &ending{reason: wire.ReasonNoStream, detail: fmt.Sprintf("no video for %s", u.s.cfg.StallTimeout.Round(time.Second)), failed: true, fault: true}
	}
	return nil
}

// read is the packet path: from the agent's track to the GOP cache and
// every viewer's queue.
func (u *upstream) read(t *webrtc.TrackRemote) {
	defer close(u.readerDone)
	buf := make([]byte, 1500)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		// An exact copy: the packet is shared by the cache and every
		// viewer, and outlives buf.
		p := &rtp.Packet{}
		if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			continue
		}
		u.forward(p, time.Now())
	}
}

// forward takes one packet of the agent's. It is counted as it came, then
// repacketized once for every viewer: an older agent's packet, sent as
// large as the camera made it, is split to the WebRTC packet size, and
// fragments cut smaller are refilled. What results goes to the GOP cache
// and every viewer.
func (u *upstream) forward(p *rtp.Packet, now time.Time) {
	seq, size, marker := p.SequenceNumber, uint64(len(p.Payload)), p.Marker
	var err error
	if u.out, err = u.split.Append(u.out[:0], p); err != nil {
		u.s.m.unsplit.Inc()
		u.log.Debug("packet too large for viewers and not split", "err", err)
	}
	u.infos = u.infos[:0]
	for _, q := range u.out {
		u.infos = append(u.infos, parseNALs(u.split.Codec, q.Payload))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st := &u.stats
	st.packets++
	st.bytes += size
	st.lastPacket = now
	u.received.Add(size)
	if st.haveSeq {
		d := int16(seq - st.lastSeq)
		switch {
		case d > 1:
			st.lost += uint64(d - 1)
			u.lost.Add(uint64(d - 1))
		case d < 0 && st.lost > 0: // late, after counting it lost
			st.lost--
		}
		if d > 0 {
			st.lastSeq = seq
		}
	} else {
		st.haveSeq, st.lastSeq = true, seq
	}
	if marker {
		st.frames++
		st.lastFrame = now
		u.frames.Inc()
	}
	for i, q := range u.out {
		u.relay(q, u.infos[i], now)
	}
	clear(u.out) // the cache and the viewers hold them now, or nobody
}

// relay adds one packet, within the WebRTC packet size, to the GOP cache
// and to the access unit being gathered for the viewers, who get it whole
// once its last packet came (the marker bit; a new timestamp if that was
// lost): a viewer's writer wakes once a picture and sends its packets
// together. u.mu is held.
func (u *upstream) relay(p *rtp.Packet, info nalInfo, now time.Time) {
	key := u.gop.push(p, info)
	if key && !u.hasKey {
		u.hasKey = true
		u.stats.lastFrame = now
		close(u.ready)
	}
	if len(u.unit) > 0 && p.Timestamp != u.unit[0].Timestamp {
		u.deliver()
	}
	u.unit = append(u.unit, p)
	u.unitKey = u.unitKey || key
	if p.Marker || len(u.unit) == maxUnit {
		u.deliver()
	}
}

// deliver hands the access unit gathered to every viewer being sent
// packets: a viewer waiting for a keyframe gets the GOP once one starts,
// and a viewer that joined while it was gathered has its first packets
// already, from the GOP it was sent. u.mu is held.
func (u *upstream) deliver() {
	for _, v := range u.fanout {
		switch {
		case v.waitKey:
			if !u.unitKey {
				continue
			}
			v.waitKey = false
			v.offer(u.gop.snapshot())
		case v.have < len(u.unit):
			v.offer(u.unit[v.have:])
		}
		v.have = 0
	}
	// The viewers share the slice now.
	u.unit, u.unitKey = nil, false
}

// state names what the stream is doing, for the API and stats.
func (u *upstream) stateLocked() string {
	switch {
	case u.stopped:
		return "stopped"
	case !u.hasKey:
		return "starting"
	case len(u.viewers) == 0:
		return "lingering"
	}
	return "running"
}

// report writes one stats point for the interval since the last.
func (u *upstream) report(now time.Time, state string, reason wire.Reason) {
	if u.s.store == nil {
		return
	}
	u.mu.Lock()
	st, last := u.stats, u.reported
	if state == "" {
		state = u.stateLocked()
	}
	since := u.reportedAt
	if since.IsZero() {
		since = u.started
	}
	stat := metricstore.LiveStat{
		Camera: u.camera, Agent: u.agent, Site: u.site, District: u.district,
		At: now, State: state, Reason: string(reason), Viewers: len(u.viewers),
		Joins: u.joins, TTFFMillis: float64(u.slowestJoin.Microseconds()) / 1000,
		PacketsLost: st.lost - min(last.lost, st.lost), Freezes: st.freezes - last.freezes,
	}
	if dt := now.Sub(since).Seconds(); dt > 0 {
		stat.FPS = float64(st.frames-last.frames) / dt
		stat.BitrateKbps = float64(st.bytes-last.bytes) * 8 / 1000 / dt
	}
	if expected := stat.PacketsLost + st.packets - last.packets; expected > 0 {
		stat.LossPct = 100 * float64(stat.PacketsLost) / float64(expected)
	}
	sent := u.sentBytes.Load()
	stat.BytesSent = sent - u.reportedSent
	u.reported, u.reportedAt, u.reportedSent = st, now, sent
	u.joins, u.slowestJoin = 0, 0
	u.mu.Unlock()
	u.s.store.WriteLive(stat)
}

// finish ends the stream: it is forgotten, its viewers' sessions end, the
// agent is told (unless it ended the stream), and a camera that gave no
// picture shows degraded.
func (u *upstream) finish(e ending, sent bool) {
	u.s.remove(u)
	u.mu.Lock()
	u.stopped = true
	viewers := make([]*viewer, 0, len(u.viewers))
	for v := range u.viewers {
		viewers = append(viewers, v)
	}
	u.fanout = nil
	pc := u.pc
	u.end = e
	u.mu.Unlock()

	// Closing a peer connection waits for its goroutines; hundreds of
	// viewers close side by side.
	reason := e.message(u.camera, u.agent)
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Go(func() { v.close(reason) })
	}
	wg.Wait()
	if sent && !e.byAgent {
		err := u.s.commands.SendCommand(u.agent, wire.Command{Type: wire.CommandLiveStop, Session: u.session, Reason: stopReason(e)})
		if err != nil {
			u.log.Warn("live_stop not sent; the agent ends the stream when its connection fails", "err", err)
		}
	}
	if pc != nil {
		if err := pc.Close(); err != nil {
			u.log.Debug("closing the peer connection", "err", err)
		}
	}
	state := "stopped"
	if e.failed {
		state = "failed"
		u.s.m.failed(e.reason)
	}
	if e.fault {
		u.s.fleet.SetStreamFault(u.camera, e.reason, "live video: "+e.detail)
	}
	u.report(time.Now(), state, e.reason)
	if e.failed {
		u.log.Warn("stream failed", "reason", e.reason, "detail", e.detail, "viewers", len(viewers))
	} else {
		u.log.Info("stream stopped", "detail", e.detail)
	}
}

// stopReason is what live_stop tells the agent.
func stopReason(e ending) wire.Reason {
	if e.failed {
		return e.reason
	}
	return wire.ReasonLiveStopped
}
