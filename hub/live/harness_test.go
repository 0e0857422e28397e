package live

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// The test city: agent a1 with six cameras and a sensor, all online, and
// agent a2 whose camera is behind a lost connection.
const (
	agentID      = "a1"
	offlineAgent = "a2"
	sensorID     = "pir-1"
	offlineCam   = "cam-off"
)

var cameras = []string{"cam-1", "cam-2", "cam-3", "cam-4", "cam-5", "cam-6"}

// newFleet returns a registry that knows the test city.
func newFleet(t testing.TB) *fleet.Registry {
	t.Helper()
	r := fleet.New(fleet.Options{})
	now := time.Now()
	seq := map[string]uint64{}
	hdr := func(agent string) wire.Header {
		seq[agent]++
		return wire.Header{V: wire.Version, Agent: agent, Boot: 1, Seq: seq[agent], TS: now}
	}
	apply := func(m wire.Message) {
		t.Helper()
		if _, err := r.Apply(m, false); err != nil {
			t.Fatalf("fleet: %v", err)
		}
	}
	site := wire.Site{ID: "site-1", District: "Riverside"}
	for agent, devs := range map[string][]string{agentID: append(append([]string{}, cameras...), sensorID), offlineAgent: {offlineCam}} {
		apply(wire.Message{Agent: agent, Channel: wire.ChannelState, State: &wire.State{Header: hdr(agent), State: wire.AgentOnline, Conn: 1, Interval: 10}})
		inv := &wire.Inventory{Header: hdr(agent), Site: site}
		h := &wire.Health{Header: hdr(agent), Interval: 10}
		for _, id := range devs {
			d := wire.Device{ID: id, Kind: wire.KindCamera, District: "Riverside", Criticality: 3}
			if id == sensorID {
				d.Kind, d.SensorKind = wire.KindSensor, wire.SensorIntrusion
			}
			inv.Devices = append(inv.Devices, d)
			h.Devices = append(h.Devices, wire.DeviceHealth{ID: id, Status: wire.StatusOnline, Since: now})
		}
		inv.Header, h.Header = hdr(agent), hdr(agent)
		apply(wire.Message{Agent: agent, Channel: wire.ChannelInventory, Inventory: inv})
		apply(wire.Message{Agent: agent, Channel: wire.ChannelHealth, Health: h})
	}
	apply(wire.Message{Agent: offlineAgent, Channel: wire.ChannelState, State: &wire.State{
		Header: wire.Header{V: wire.Version, Agent: offlineAgent, Boot: 1, TS: now}, State: wire.AgentOffline, Will: true, Conn: 1,
	}})
	return r
}

// env is a running relay behind an httptest server, a fake agent that
// answers live_start with a pion peer connection sending H.264, and the
// real fleet registry.
type env struct {
	t     testing.TB
	sfu   *SFU
	audit *recordingAuditor
	fleet *fleet.Registry
	agent *fakeAgent
	reg   *metrics.Registry
	stats *fakeStats
	srv   *httptest.Server
	stop  func()
}

// testConfig is a relay on loopback with prompt timeouts.
func testConfig() Config {
	return Config{LoopbackOnly: true, Linger: 50 * time.Millisecond, UpstreamTimeout: 5 * time.Second}
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := &env{t: t, fleet: newFleet(t), reg: metrics.NewRegistry(), stats: &fakeStats{}, audit: &recordingAuditor{}}
	e.agent = newFakeAgent(t)
	var err error
	e.sfu, err = New(cfg, Deps{Metrics: e.reg, Fleet: e.fleet, Commands: e.agent, Store: e.stats, Audit: e.audit})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := auth.NewRouter(auth.Config{}, auth.Deps{Log: slog.New(slog.DiscardHandler), Metrics: e.reg, Authenticator: testAuthn{}})
	if err != nil {
		t.Fatal(err)
	}
	rt.Handle(e.sfu.Routes()...)
	e.agent.sfu = e.sfu
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sfu.Run(ctx) }()
	eventually(t, "the relay running", func() bool { return e.sfu.webrtcAPI() != nil })
	e.srv = httptest.NewServer(rt.Handler())
	e.stop = sync.OnceFunc(func() {
		e.srv.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
		e.agent.close()
	})
	t.Cleanup(e.stop)
	return e
}

// testAuthn is a fake authenticator for this package's tests: "Bearer
// sup" is a supervisor and "Bearer alice" an operator, both of the whole
// city; "Bearer north" an operator of another district; "Bearer maint" a
// maintainer; "Bearer link-CAMERA" alice's viewing link for CAMERA.
type testAuthn struct{}

func (testAuthn) Authenticate(r *http.Request, queryToken bool) (*auth.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && queryToken && r.URL.Query().Has("token") {
		tok, ok = r.URL.Query().Get("token"), true
	}
	if !ok {
		return nil, auth.ErrNoCredentials
	}
	p := &auth.Principal{Name: tok, Scope: auth.Everything, Via: auth.ViaToken, Session: "s-" + tok}
	switch {
	case tok == "sup":
		p.Role = auth.Supervisor
	case tok == "alice":
		p.Role = auth.Operator
	case tok == "north":
		p.Role, p.Scope = auth.Operator, auth.Scope{Districts: []string{"North"}}
	case tok == "maint":
		p.Role = auth.Maintainer
	case strings.HasPrefix(tok, "link-"):
		p.Name, p.Role, p.Via, p.Camera = "alice", auth.Operator, auth.ViaLink, strings.TrimPrefix(tok, "link-")
		p.Perms = auth.Set{auth.LiveView: {}}
		return p, nil
	default:
		return nil, errors.New("unknown token")
	}
	p.Perms = auth.NewSet(p.Role, nil)
	return p, nil
}

// recordingAuditor keeps what is audited.
type recordingAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *recordingAuditor) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return r, nil
}

// find returns the records of action, oldest first.
func (a *recordingAuditor) find(action string) []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Record
	for _, r := range a.recs {
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

// eventually waits for cond, which becomes true through the network and
// the relay's own goroutines, not through the test's waiting.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeStats records the statistics points.
type fakeStats struct {
	mu     sync.Mutex
	points []metricstore.LiveStat
}

func (f *fakeStats) WriteLive(s metricstore.LiveStat) {
	f.mu.Lock()
	f.points = append(f.points, s)
	f.mu.Unlock()
}

func (f *fakeStats) last(camera string) (metricstore.LiveStat, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.points) - 1; i >= 0; i-- {
		if f.points[i].Camera == camera {
			return f.points[i], true
		}
	}
	return metricstore.LiveStat{}, false
}

// loopbackAPI is a pion API for the test's own peers, with pion's default
// codecs (audio, VP8, VP9, H.264, H.265, AV1), or else with codecs only.
// They read datagrams of at most rtph264.MaxPacketSize bytes, so every
// viewer in these tests checks that the relay keeps to it: a larger one
// is dropped, and its frame never completes.
func loopbackAPI(t testing.TB, defaultCodecs bool, codecs []webrtc.RTPCodecParameters) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	var err error
	if defaultCodecs {
		err = me.RegisterDefaultCodecs()
	} else {
		for _, c := range codecs {
			if err = me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
				break
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetReceiveMTU(rtph264.MaxPacketSize)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// fakeAgent answers the hub's commands as an agent would, with one
// fakeCamera per live session. Its SendCommand never blocks.
type fakeAgent struct {
	t   testing.TB
	sfu *SFU
	api *webrtc.API

	silent atomic.Bool // ignore live_start
	// h265 makes the cameras' main streams H.265 with an H.264
	// sub-stream: a session whose offer asks for H.265 gets the main
	// stream, others the sub-stream.
	h265  bool
	frame []byte // the non-IDR slice the cameras send in H.264; nil: testNonIDR
	// packetSize is the size of the RTP packets the cameras make: 0 for a
	// current agent's (within rtph264's limit); 1,462 for an older agent
	// that forwards the camera's packets as they are.
	packetSize int
	record     bool // the cameras keep the access units they send

	mu       sync.Mutex
	commands []wire.Command
	cams     map[string]*fakeCamera // by session
	wg       sync.WaitGroup
}

func newFakeAgent(t testing.TB) *fakeAgent {
	return &fakeAgent{t: t, api: loopbackAPI(t, false, offerCodecs(rtph264.H265)), cams: map[string]*fakeCamera{}}
}

func (a *fakeAgent) SendCommand(agent string, cmd wire.Command) error {
	if agent != agentID {
		a.t.Errorf("command for agent %s", agent)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commands = append(a.commands, cmd)
	switch cmd.Type {
	case wire.CommandLiveStart:
		if !a.silent.Load() {
			a.wg.Go(func() { a.start(cmd) })
		}
	case wire.CommandLiveStop:
		if c := a.cams[cmd.Session]; c != nil {
			c.close()
		}
	}
	return nil
}

// count returns how many commands of type typ the agent got.
func (a *fakeAgent) count(typ string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.commands {
		if c.Type == typ {
			n++
		}
	}
	return n
}

// log returns the commands as "type device-or-session" lines.
func (a *fakeAgent) log() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, c := range a.commands {
		out = append(out, c.Type+" "+strings.Join(c.Devices, ",")+c.Session)
	}
	return out
}

// camera returns the fake camera streaming device, waiting for it.
func (a *fakeAgent) camera(device string) *fakeCamera {
	a.t.Helper()
	return a.cameraOf(device, func(*fakeCamera) bool { return true })
}

// cameraIn returns the fake camera streaming device in codec, waiting for
// it.
func (a *fakeAgent) cameraIn(device string, codec rtph264.Codec) *fakeCamera {
	a.t.Helper()
	return a.cameraOf(device, func(c *fakeCamera) bool { return c.codec == codec })
}

func (a *fakeAgent) cameraOf(device string, match func(*fakeCamera) bool) *fakeCamera {
	a.t.Helper()
	var cam *fakeCamera
	eventually(a.t, "the camera "+device+" streaming", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, c := range a.cams {
			if c.device == device && !c.isClosed() && match(c) {
				cam = c
				return true
			}
		}
		return false
	})
	return cam
}

func (a *fakeAgent) start(cmd wire.Command) {
	frame := a.frame
	if frame == nil {
		frame = testNonIDR
	}
	// As an agent does: the main stream if the offer has its codec, else
	// the sub-stream.
	codec, stream := rtph264.H264, wire.StreamMain
	if a.h265 {
		codec = rtph264.H265
		if !strings.Contains(cmd.SDP, "H265/90000") {
			codec, stream = rtph264.H264, wire.StreamSub
		}
	}
	c, answer, err := newFakeCamera(a.api, cmd.Session, cmd.Devices[0], cmd.SDP, codec, frame, a.packetSize, a.record)
	if err != nil {
		a.t.Errorf("fake camera: %v", err)
		return
	}
	a.mu.Lock()
	a.cams[cmd.Session] = c
	a.mu.Unlock()
	a.sfu.HandleLive(wire.Live{Header: wire.Header{Agent: agentID}, Session: cmd.Session, Device: cmd.Devices[0], Type: wire.LiveAnswer, SDP: answer, Stream: stream})
}

// fail ends device's stream at the agent for reason, as a camera failure
// would.
func (a *fakeAgent) fail(device string, reason wire.Reason, detail string) {
	c := a.camera(device)
	c.close()
	a.sfu.HandleLive(wire.Live{Header: wire.Header{Agent: agentID}, Session: c.session, Device: device, Type: wire.LiveStopped, Reason: reason, Detail: detail})
}

func (a *fakeAgent) close() {
	a.mu.Lock()
	for _, c := range a.cams {
		c.close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// fakeCamera is the agent's side of one session: a peer connection that
// sends a hand-made H.264 or H.265 stream at 30 frames/s with a keyframe
// every second, and one more when asked with a PLI.
type fakeCamera struct {
	session, device string
	codec           rtph264.Codec
	frame           []byte
	packetSize      int
	record          bool
	pc              *webrtc.PeerConnection
	track           *webrtc.TrackLocalStaticRTP
	plis            atomic.Int32
	paused          atomic.Bool
	done            chan struct{}
	once            sync.Once
	wg              sync.WaitGroup

	mu      sync.Mutex
	sent    map[uint32][]byte // access units in Annex B by timestamp, when recording
	largest int               // bytes of the largest packet sent
}

func newFakeCamera(api *webrtc.API, session, device, offer string, codec rtph264.Codec, frame []byte, packetSize int, record bool) (*fakeCamera, string, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	if packetSize == 0 {
		packetSize = rtph264.HeaderSize + rtph264.MaxPayloadSize
	}
	c := &fakeCamera{session: session, device: device, codec: codec, frame: frame, packetSize: packetSize, record: record,
		pc: pc, done: make(chan struct{}), sent: map[uint32][]byte{}}
	c.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: codecMIME(codec), ClockRate: 90000}, "video", device)
	if err != nil {
		return nil, "", err
	}
	sender, err := pc.AddTrack(c.track)
	if err != nil {
		return nil, "", err
	}
	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			connOnce.Do(func() { close(connected) })
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, "", err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, "", err
	}
	<-gathered
	c.wg.Go(func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					c.plis.Add(1)
				}
			}
		}
	})
	c.wg.Go(func() {
		select {
		case <-connected:
			c.stream()
		case <-c.done:
		}
	})
	return c, pc.LocalDescription().SDP, nil
}

// Hand-made NAL units: enough for the relay and a depacketizer, not for a
// decoder.
var (
	testSPS    = []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}
	testPPS    = []byte{0x68, 0xce, 0x3c, 0x80}
	testIDR    = append([]byte{0x65, 0x88, 0x84}, bytes.Repeat([]byte{0xab}, 3000)...) // FU-A
	testNonIDR = append([]byte{0x41, 0x9a, 0x02}, bytes.Repeat([]byte{0xcd}, 300)...)  // single NAL
)

// Hand-made H.265 NAL units (two-byte headers, TID 1), as testSPS and
// the rest.
var (
	testVPS265   = []byte{32 << 1, 1, 0x0c, 0x01, 0xff, 0xff}
	testSPS265   = []byte{33 << 1, 1, 0x01, 0x60, 0x00, 0x00}
	testPPS265   = []byte{34 << 1, 1, 0xc1, 0x73, 0xd1, 0x89}
	testIDR265   = append([]byte{19 << 1, 1, 0xaf}, bytes.Repeat([]byte{0xab}, 3000)...) // IDR_W_RADL, fragmented
	testTrail265 = append([]byte{1 << 1, 1, 0xd0}, bytes.Repeat([]byte{0xcd}, 1417)...)  // TRAIL_R, 1,432 bytes
)

func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

// packetizer returns what packetizes the camera's access units: pion's
// for H.264, gortsplib's for H.265 (pion's does not fragment with the
// RFC's payload header as cameras do).
func (c *fakeCamera) packetizer() func(au [][]byte, ts uint32) []*rtp.Packet {
	if c.codec == rtph264.H265 {
		enc := &rtph265.Encoder{PayloadType: 116, PayloadMaxSize: c.packetSize - rtph264.HeaderSize}
		if err := enc.Init(); err != nil {
			panic(err)
		}
		return func(au [][]byte, ts uint32) []*rtp.Packet {
			pkts, err := enc.Encode(au)
			if err != nil {
				panic(err)
			}
			for _, p := range pkts {
				p.Timestamp = ts
			}
			return pkts
		}
	}
	pk := rtp.NewPacketizer(uint16(c.packetSize), 102, 0x1234, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	return func(au [][]byte, _ uint32) []*rtp.Packet { return pk.Packetize(annexB(au...), 3000) }
}

func (c *fakeCamera) stream() {
	packetize := c.packetizer()
	key, frame := [][]byte{testSPS, testPPS, testIDR}, [][]byte{c.frame}
	if c.codec == rtph264.H265 {
		key, frame = [][]byte{testVPS265, testSPS265, testPPS265, testIDR265}, [][]byte{testTrail265}
	}
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	plis := int32(0)
	for i := 0; ; i++ {
		select {
		case <-tick.C:
		case <-c.done:
			return
		}
		if c.paused.Load() {
			continue
		}
		au := frame
		if p := c.plis.Load(); i%30 == 0 || p != plis {
			plis = p
			au = key
		}
		pkts := packetize(au, uint32(i*3000))
		c.mu.Lock()
		if c.record {
			c.sent[pkts[0].Timestamp] = annexB(au...)
		}
		for _, p := range pkts {
			c.largest = max(c.largest, p.MarshalSize())
		}
		c.mu.Unlock()
		for _, p := range pkts {
			if err := c.track.WriteRTP(p); err != nil {
				return
			}
		}
	}
}

func (c *fakeCamera) close() {
	c.once.Do(func() {
		close(c.done)
		c.pc.Close()
	})
	c.wg.Wait()
}

func (c *fakeCamera) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// whepClient is a WHEP player: a pion peer connection receiving one video
// track.
type whepClient struct {
	t        testing.TB
	pc       *webrtc.PeerConnection
	location string

	keepAll bool // keep every packet in all; set before accept

	mu      sync.Mutex
	mime    string        // of the track received
	first   []*rtp.Packet // the first packets, up to 64
	all     []*rtp.Packet // every packet, when keepAll
	packets int
	got     chan struct{} // closed at the first packet
	gotOnce sync.Once
	closed  chan struct{} // closed when the connection is closed or failed
	clOnce  sync.Once
	wg      sync.WaitGroup
}

// offer builds a client and its offer, with H.264 video; withAudio adds
// an audio section, and pion's other video codecs, H.265 among them, as
// browsers' players do.
func newWHEPClient(t testing.TB, withAudio bool) (*whepClient, string) {
	return makeWHEPClient(t, loopbackAPI(t, withAudio, h264Codecs), withAudio)
}

// newH265WHEPClient builds a client whose offer has H.265 before H.264, as
// a browser that decodes H.265 makes.
func newH265WHEPClient(t testing.TB) (*whepClient, string) {
	return makeWHEPClient(t, loopbackAPI(t, false, offerCodecs(rtph264.H265)), false)
}

func makeWHEPClient(t testing.TB, api *webrtc.API, withAudio bool) (*whepClient, string) {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &whepClient{t: t, pc: pc, got: make(chan struct{}), closed: make(chan struct{})}
	t.Cleanup(c.close)
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recv); err != nil {
		t.Fatal(err)
	}
	if withAudio {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.mu.Lock()
		c.mime = tr.Codec().MimeType
		c.mu.Unlock()
		c.wg.Go(func() {
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				c.mu.Lock()
				c.packets++
				if len(c.first) < 64 {
					c.first = append(c.first, p)
				}
				if c.keepAll {
					c.all = append(c.all, p)
				}
				c.mu.Unlock()
				c.gotOnce.Do(func() { close(c.got) })
			}
		})
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateClosed || st == webrtc.PeerConnectionStateFailed {
			c.clOnce.Do(func() { close(c.closed) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return c, pc.LocalDescription().SDP
}

// watch starts watching camera and fails the test unless it gets 201.
func (e *env) watch(camera string) *whepClient {
	e.t.Helper()
	c, offer := newWHEPClient(e.t, false)
	res, body := e.post(camera, offer, nil)
	if res.StatusCode != http.StatusCreated {
		e.t.Fatalf("POST whep %s: %d %s", camera, res.StatusCode, body)
	}
	c.accept(res, body)
	return c
}

func (c *whepClient) accept(res *http.Response, answer string) {
	c.t.Helper()
	c.location = res.Header.Get("Location")
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatal(err)
	}
}

// awaitPackets waits until the client has received n packets.
func (c *whepClient) awaitPackets(n int) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("%d packets", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.packets >= n
	})
}

func (c *whepClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.packets
}

// firstAccessUnit returns the NAL types of the first picture received, in
// order, depacketized as a player would.
func (c *whepClient) firstAccessUnit() []byte {
	c.t.Helper()
	c.awaitPackets(8)
	c.mu.Lock()
	defer c.mu.Unlock()
	var types []byte
	var h codecs.H264Packet
	ts := c.first[0].Timestamp
	for i, p := range c.first {
		if p.Timestamp != ts {
			break
		}
		if i > 0 && p.SequenceNumber != c.first[i-1].SequenceNumber+1 {
			c.t.Fatalf("sequence gap in the first picture: %d after %d", p.SequenceNumber, c.first[i-1].SequenceNumber)
		}
		annexb, err := h.Unmarshal(p.Payload)
		if err != nil {
			c.t.Fatalf("depacketize: %v", err)
		}
		for nal := range bytes.SplitSeq(annexb, []byte{0, 0, 0, 1}) {
			if len(nal) > 0 {
				types = append(types, nal[0]&0x1f)
			}
		}
	}
	return types
}

func (c *whepClient) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *whepClient) close() {
	c.pc.Close()
	c.wg.Wait()
}

// post sends an offer to camera's WHEP endpoint.
func (e *env) post(camera, offer string, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/cameras/"+camera+"/whep", strings.NewReader(offer))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	for k, v := range hdr {
		req.Header[k] = v
	}
	return e.do(req)
}

// do sends req, as the supervisor "sup" unless it says who.
func (e *env) do(req *http.Request) (*http.Response, string) {
	e.t.Helper()
	if _, ok := req.Header["Authorization"]; !ok {
		req.Header.Set("Authorization", "Bearer sup")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res, string(b)
}

// request sends a request with an optional body to path.
func (e *env) request(method, path, contentType, body string, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	return e.do(req)
}

// leave DELETEs the client's session and closes it.
func (e *env) leave(c *whepClient) {
	e.t.Helper()
	res, body := e.request(http.MethodDelete, c.location, "", "", nil)
	if res.StatusCode != http.StatusNoContent {
		e.t.Fatalf("DELETE %s: %d %s", c.location, res.StatusCode, body)
	}
	c.close()
}

func (e *env) getJSON(path string, v any) {
	e.t.Helper()
	res, body := e.request(http.MethodGet, path, "", "", nil)
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
}

func (e *env) streams() []Stream {
	e.t.Helper()
	var l StreamList
	e.getJSON("/api/live/streams", &l)
	return l.Streams
}

// metric returns the value of one series from /metrics text, or -1.
func (e *env) metric(series string) float64 {
	var b strings.Builder
	e.reg.WriteText(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// resources counts what must not leak: goroutines and UDP sockets.
type resources struct{ goroutines, udp int }

func measure() resources {
	return resources{runtime.NumGoroutine(), udpSockets()}
}

// udpSockets counts the process's open UDP sockets (Linux; elsewhere -1).
func udpSockets() int {
	if runtime.GOOS != "linux" {
		return -1
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/self/net/udp", "/proc/self/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			if fields := strings.Fields(line); i > 0 && len(fields) > 9 {
				inodes[fields[9]] = true
			}
		}
	}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	n := 0
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok && inodes[strings.TrimSuffix(inode, "]")] {
			n++
		}
	}
	return n
}

// backTo waits until goroutines and UDP sockets are back to base.
func backTo(t testing.TB, base resources) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		http.DefaultClient.CloseIdleConnections() // keep-alive connections are not ours
		now := measure()
		if now.goroutines <= base.goroutines && now.udp <= base.udp {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("leak: %d goroutines (was %d), %d UDP sockets (was %d)\n%s",
				now.goroutines, base.goroutines, now.udp, base.udp, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
