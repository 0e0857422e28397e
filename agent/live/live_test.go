// The loopback tests stream a simulated RTSP camera through a Manager to a
// pion peer that plays the hub. They live in package live_test because
// agent/sim imports the agent, which imports this package.
package live_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/agent/live"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// timeout bounds every wait so a broken test fails instead of hanging; it
// is not a timing assertion.
const timeout = 20 * time.Second

const agentID = "agent-1"

var boot = time.Now().UnixMilli()

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkLeaks fails the test if it leaves goroutines behind, polling until
// pion and gortsplib have wound down. It is called after the camera has
// started: the simulated camera never closes the stream it answers
// DESCRIBE with, which keeps one goroutine per RTSP server start.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(timeout)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines before the test, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func newCamera(t *testing.T, id string) *sim.Camera {
	t.Helper()
	cam, err := sim.NewCamera(sim.CameraConfig{ID: id, Addr: "127.0.0.1:0", User: "admin", Password: "pw", Width: 320, Height: 176}, logger())
	if err != nil {
		t.Fatal(err)
	}
	if err := cam.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cam.Close)
	return cam
}

// recorder is the manager's Publish: it keeps every message after
// checking that it would pass the hub's wire.Decode.
type recorder struct {
	t   *testing.T
	mu  sync.Mutex
	seq uint64
	got []wire.Live
}

func (r *recorder) publish(l wire.Live) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	l.Header = wire.Header{V: wire.Version, Agent: agentID, Boot: boot, Seq: r.seq, TS: time.Now()}
	data, err := json.Marshal(l)
	if err == nil {
		_, err = wire.Decode(wire.Topic(agentID, wire.ChannelLive), data, time.Now())
	}
	if err != nil {
		r.t.Errorf("invalid live message: %v\n%s", err, data)
	}
	r.got = append(r.got, l)
}

func (r *recorder) all(session string, typ wire.LiveType) []wire.Live {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []wire.Live
	for _, l := range r.got {
		if l.Session == session && l.Type == typ {
			out = append(out, l)
		}
	}
	return out
}

// wait returns the first message of the type for session.
func (r *recorder) wait(session string, typ wire.LiveType) wire.Live {
	r.t.Helper()
	var got []wire.Live
	eventually(r.t, fmt.Sprintf("%s %s", session, typ), func() bool {
		got = r.all(session, typ)
		return len(got) > 0
	})
	return got[0]
}

// startManager runs a manager with the cameras given (device → URL) until
// the test ends.
func startManager(t *testing.T, cameras map[string]string, mutate func(*live.Options)) (*live.Manager, *recorder) {
	t.Helper()
	rec := &recorder{t: t}
	opts := live.Options{
		Cameras: func(id string) (live.Streams, bool) {
			u, ok := cameras[id]
			main, sub, _ := strings.Cut(u, " ") // "main sub"
			return live.Streams{Main: secret.URL(main), Sub: secret.URL(sub)}, ok
		},
		Publish:      rec.publish,
		LoopbackOnly: true,
		RTSPTimeout:  2 * time.Second,
		Logger:       logger(),
	}
	if mutate != nil {
		mutate(&opts)
	}
	m, err := live.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(timeout):
			t.Error("Run did not return after cancel")
		}
	})
	return m, rec
}

// hub is the hub's upstream peer: an offerer with a receive-only video
// transceiver.
type hub struct {
	t     *testing.T
	pc    *webrtc.PeerConnection
	offer string

	mu       sync.Mutex
	packets  []*rtp.Packet
	ssrc     webrtc.SSRC
	mime     string              // of the track received
	cands    []wire.ICECandidate // gathered, for a trickling hub
	gathered bool
}

// newHub makes the peer; codecs registers what it offers (nil:
// offerH264, as the hub asks for a viewer without H.265). Its offer
// carries its candidates.
func newHub(t *testing.T, codecs func(*webrtc.MediaEngine) error) *hub {
	return makeHub(t, codecs, false, 0)
}

// offerH264 registers VP8 and two H.264 profiles with FU-A.
func offerH264(me *webrtc.MediaEngine) error {
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"}, PayloadType: 106},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}

// offerH265 registers H.265 before offerH264's codecs, as the hub asks
// for a viewer that decodes H.265.
func offerH265(me *webrtc.MediaEngine) error {
	err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000,
		SDPFmtpLine: "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"}, PayloadType: 116}, webrtc.RTPCodecTypeVideo)
	if err != nil {
		return err
	}
	return offerH264(me)
}

// newTricklingHub makes a peer whose offer carries no candidates: they
// follow in live_candidate commands.
func newTricklingHub(t *testing.T) *hub {
	return makeHub(t, nil, true, 0)
}

// makeHub makes the peer; receiveMTU, unless zero, is the most bytes it
// reads of one datagram (pion's default is 1,500).
func makeHub(t *testing.T, codecs func(*webrtc.MediaEngine) error, trickle bool, receiveMTU uint) *hub {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if codecs == nil {
		codecs = offerH264
	}
	if err := codecs(me); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetReceiveMTU(receiveMTU)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.GracefulClose() })
	h := &hub{t: t, pc: pc}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		h.mu.Lock()
		h.ssrc, h.mime = tr.SSRC(), tr.Codec().MimeType
		h.mu.Unlock()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.packets = append(h.packets, pkt)
			h.mu.Unlock()
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if c == nil {
			h.gathered = true
			return
		}
		init := c.ToJSON()
		h.cands = append(h.cands, wire.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex})
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if trickle {
		h.offer = offer.SDP
		return h
	}
	<-gathered
	h.offer = pc.LocalDescription().SDP
	return h
}

// candidates waits for gathering to complete and returns the candidates.
func (h *hub) candidates() []wire.ICECandidate {
	h.t.Helper()
	eventually(h.t, "the hub's candidates", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.gathered
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.cands)
}

// accept applies the agent's answer.
func (h *hub) accept(answer wire.Live) {
	h.t.Helper()
	if err := h.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		h.t.Fatal(err)
	}
}

// codec returns the MIME type of the track received; "" before one came.
func (h *hub) codec() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mime
}

func (h *hub) received() []*rtp.Packet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.packets)
}

// frames returns the NAL unit types of each access unit received, in
// order: packets of one frame share a timestamp.
func (h *hub) frames() [][]uint8 {
	codec := rtph264.H264
	if h.codec() == webrtc.MimeTypeH265 {
		codec = rtph264.H265
	}
	var out [][]uint8
	var ts uint32
	for i, p := range h.received() {
		if i == 0 || p.Timestamp != ts {
			out = append(out, nil)
			ts = p.Timestamp
		}
		codec.Units(p.Payload, func(nal []byte, _ bool) { out[len(out)-1] = append(out[len(out)-1], codec.Type(nal)) })
	}
	return out
}

func startCmd(session, device, sdp string) wire.Command {
	return wire.Command{V: wire.Version, ID: "cmd-" + session, TS: time.Now(), Type: wire.CommandLiveStart,
		Devices: []string{device}, Session: session, SDP: sdp}
}

func stopCmd(session string) wire.Command {
	return wire.Command{V: wire.Version, ID: "stop-" + session, TS: time.Now(), Type: wire.CommandLiveStop,
		Session: session, Reason: "viewer_left"}
}

func candidateCmd(session string, c wire.ICECandidate) wire.Command {
	return wire.Command{V: wire.Version, ID: "cand-" + session, TS: time.Now(), Type: wire.CommandLiveCandidate,
		Session: session, Candidate: &c}
}

// connect starts session on m for camera and connects a hub peer to it.
func connect(t *testing.T, m *live.Manager, rec *recorder, session, camera string) *hub {
	t.Helper()
	return connectHub(t, m, rec, newHub(t, nil), session, camera)
}

func connectHub(t *testing.T, m *live.Manager, rec *recorder, h *hub, session, camera string) *hub {
	t.Helper()
	m.Handle(context.Background(), startCmd(session, camera, h.offer))
	answer := rec.wait(session, wire.LiveAnswer)
	if answer.Device != camera || !strings.Contains(answer.SDP, "a=sendonly") || !strings.Contains(answer.SDP, "H264/90000") && !strings.Contains(answer.SDP, "H265/90000") {
		t.Fatalf("answer %+v", answer)
	}
	h.accept(answer)
	return h
}

func TestStream(t *testing.T) {
	cam := newCamera(t, "cam-1")
	checkLeaks(t)
	m, rec := startManager(t, map[string]string{"cam-1": cam.URL()}, nil)
	// Both sides trickle: the hub's candidates follow its offer, and the
	// agent sends the candidates its answer carries again, for a hub that
	// takes them that way.
	h := connectHub(t, m, rec, newTricklingHub(t), "ls-1", "cam-1")
	for _, c := range h.candidates() {
		m.Handle(context.Background(), candidateCmd("ls-1", c))
	}
	cands := rec.all("ls-1", wire.LiveCandidate)
	if len(cands) == 0 {
		t.Fatal("no candidates trickled")
	}
	for _, c := range cands {
		if err := h.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate.Candidate, SDPMid: c.Candidate.SDPMid, SDPMLineIndex: c.Candidate.SDPMLineIndex}); err != nil {
			t.Errorf("candidate %q: %v", c.Candidate.Candidate, err)
		}
	}

	eventually(t, "10 frames", func() bool { return len(h.frames()) >= 10 })
	first := h.frames()[0]
	for _, want := range []uint8{7, 8, 5} {
		if !slices.Contains(first, want) {
			t.Errorf("first frame has NAL types %v; want SPS (7), PPS (8) and IDR (5)", first)
		}
	}
	// Sequence numbers arrive without gaps: the camera's, untouched.
	pkts := h.received()
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("sequence %d after %d", pkts[i].SequenceNumber, pkts[i-1].SequenceNumber)
		}
	}
	n := len(h.frames())
	eventually(t, "frames keep arriving", func() bool { return len(h.frames()) >= n+10 })

	// Keyframe requests from the hub are counted and passed on.
	h.mu.Lock()
	ssrc := uint32(h.ssrc)
	h.mu.Unlock()
	if err := h.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "PLI counted", func() bool { return m.Stats().PLIs >= 1 })
	eventually(t, "PLI passed to the camera", func() bool { return m.Stats().CameraPLIs >= 1 })

	// A duplicate start and a candidate for an unknown session change
	// nothing.
	m.Handle(context.Background(), startCmd("ls-1", "cam-1", h.offer))
	m.Handle(context.Background(), candidateCmd("ls-nope", wire.ICECandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"}))
	if s := m.Stats(); s.Started != 1 || s.Active != 1 || s.Ignored != 2 || len(rec.all("ls-1", wire.LiveAnswer)) != 1 {
		t.Errorf("after a duplicate start and a stray candidate: %+v", s)
	}

	m.Handle(context.Background(), stopCmd("ls-1"))
	if st := rec.wait("ls-1", wire.LiveStopped); st.Reason != wire.ReasonLiveStopped || st.Device != "cam-1" {
		t.Errorf("stopped %+v", st)
	}
	eventually(t, "the hub's peer closes", func() bool { return h.pc.ConnectionState() == webrtc.PeerConnectionStateClosed })
	eventually(t, "the camera has no reader", func() bool { return cam.Readers() == 0 })

	// Late messages of the ended session are ignored, a restart too.
	m.Handle(context.Background(), stopCmd("ls-1"))
	m.Handle(context.Background(), startCmd("ls-1", "cam-1", h.offer))
	s := m.Stats()
	if s.Active != 0 || s.Started != 1 || s.Ended[wire.ReasonLiveStopped] != 1 || s.Ignored != 4 || s.Packets == 0 || s.Bytes == 0 {
		t.Errorf("stats %+v", s)
	}
	if n := len(rec.all("ls-1", wire.LiveStopped)); n != 1 {
		t.Errorf("%d stopped messages", n)
	}
}

// TestCameraFails cuts the camera off mid-stream: the session ends with
// the camera's failure and the hub's peer is closed.
func TestCameraFails(t *testing.T) {
	cam := newCamera(t, "cam-1")
	checkLeaks(t)
	m, rec := startManager(t, map[string]string{"cam-1": cam.URL()}, nil)
	h := connect(t, m, rec, "ls-1", "cam-1")
	eventually(t, "frames", func() bool { return len(h.frames()) >= 5 })

	if err := cam.SetFault(sim.FaultOffline); err != nil {
		t.Fatal(err)
	}
	st := rec.wait("ls-1", wire.LiveStopped)
	if st.Reason != wire.ReasonRefused && st.Reason != wire.ReasonNoStream {
		t.Errorf("stopped %+v; want refused or no_stream", st)
	}
	eventually(t, "the hub's peer closes", func() bool { return h.pc.ConnectionState() == webrtc.PeerConnectionStateClosed })
	if s := m.Stats(); s.Active != 0 || s.Ended[st.Reason] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestHubGone: a hub that never connects, and one that closes its peer
// without live_stop.
func TestHubGone(t *testing.T) {
	cam := newCamera(t, "cam-1")
	checkLeaks(t)
	m, rec := startManager(t, map[string]string{"cam-1": cam.URL()}, func(o *live.Options) { o.HubTimeout = 300 * time.Millisecond })

	h := newHub(t, nil)
	m.Handle(context.Background(), startCmd("ls-1", "cam-1", h.offer))
	rec.wait("ls-1", wire.LiveAnswer) // and never applied
	if st := rec.wait("ls-1", wire.LiveStopped); st.Reason != wire.ReasonLiveHubGone {
		t.Errorf("stopped %+v; want hub_gone", st)
	}

	h = connect(t, m, rec, "ls-2", "cam-1")
	eventually(t, "frames", func() bool { return len(h.frames()) >= 5 })
	if err := h.pc.Close(); err != nil {
		t.Fatal(err)
	}
	if st := rec.wait("ls-2", wire.LiveStopped); st.Reason != wire.ReasonLiveHubGone {
		t.Errorf("stopped %+v; want hub_gone", st)
	}
	eventually(t, "the camera has no reader", func() bool { return cam.Readers() == 0 })
	if s := m.Stats(); s.Active != 0 || s.Ended[wire.ReasonLiveHubGone] != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestRefused covers sessions that end before any video flows.
func TestRefused(t *testing.T) {
	cam := newCamera(t, "cam-1")
	checkLeaks(t)
	wrongPassword := strings.Replace(cam.URL(), ":pw@", ":nope@", 1)
	vp8Only := func(me *webrtc.MediaEngine) error {
		return me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96,
		}, webrtc.RTPCodecTypeVideo)
	}
	h264Mode0 := func(me *webrtc.MediaEngine) error {
		return me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"}, PayloadType: 102,
		}, webrtc.RTPCodecTypeVideo)
	}
	for _, tc := range []struct {
		name   string
		device string
		codecs func(*webrtc.MediaEngine) error
		want   wire.Reason
	}{
		{"unknown camera", "cam-9", nil, wire.ReasonLiveNoCamera},
		{"offer without H.264", "cam-1", vp8Only, wire.ReasonLiveNegotiate},
		{"H.264 without FU-A", "cam-1", h264Mode0, wire.ReasonLiveNegotiate},
		{"wrong camera password", "cam-bad", nil, wire.ReasonAuthFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, rec := startManager(t, map[string]string{"cam-1": cam.URL(), "cam-bad": wrongPassword}, nil)
			h := newHub(t, tc.codecs)
			m.Handle(context.Background(), startCmd("ls-1", tc.device, h.offer))
			if st := rec.wait("ls-1", wire.LiveStopped); st.Reason != tc.want || st.Device != tc.device {
				t.Errorf("stopped %+v; want %s", st, tc.want)
			}
			if s := m.Stats(); s.Active != 0 || s.Ended[tc.want] != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestLimit(t *testing.T) {
	cam := newCamera(t, "cam-1")
	checkLeaks(t)
	m, rec := startManager(t, map[string]string{"cam-1": cam.URL()}, func(o *live.Options) { o.MaxSessions = 1 })
	h := connect(t, m, rec, "ls-1", "cam-1")
	eventually(t, "frames", func() bool { return len(h.frames()) >= 1 })

	m.Handle(context.Background(), startCmd("ls-2", "cam-1", newHub(t, nil).offer))
	if st := rec.wait("ls-2", wire.LiveStopped); st.Reason != wire.ReasonLiveLimit {
		t.Errorf("stopped %+v; want limit", st)
	}
	if n := len(rec.all("ls-2", wire.LiveAnswer)); n != 0 {
		t.Errorf("%d answers to a refused session", n)
	}

	// The slot is free again once the first session has ended.
	m.Handle(context.Background(), stopCmd("ls-1"))
	rec.wait("ls-1", wire.LiveStopped)
	connect(t, m, rec, "ls-3", "cam-1")
	if s := m.Stats(); s.Started != 2 || s.Active != 1 || s.Ended[wire.ReasonLiveLimit] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestShutdown ends a running session by ending Run: it reports stopped.
func TestShutdown(t *testing.T) {
	cam := newCamera(t, "cam-1")
	checkLeaks(t)
	rec := &recorder{t: t}
	m, err := live.New(live.Options{
		Cameras:      func(string) (live.Streams, bool) { return live.Streams{Main: secret.URL(cam.URL())}, true },
		Publish:      rec.publish,
		LoopbackOnly: true,
		Logger:       logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	h := connect(t, m, rec, "ls-1", "cam-1")
	eventually(t, "frames", func() bool { return len(h.frames()) >= 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := rec.all("ls-1", wire.LiveStopped); len(st) != 1 || st[0].Reason != wire.ReasonLiveStopped {
		t.Errorf("stopped %+v", st)
	}
	m.Handle(context.Background(), startCmd("ls-2", "cam-1", newHub(t, nil).offer))
	if st := rec.all("ls-2", wire.LiveStopped); len(st) != 1 || st[0].Reason != wire.ReasonLiveStopped {
		t.Errorf("start after Run: %+v", st)
	}
}
