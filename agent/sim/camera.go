package sim

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"

	"github.com/citywatch/citywatch/agent/sim/testcard"
)

// DefaultStreamPath is the RTSP path of a simulated camera's stream.
const DefaultStreamPath = "/stream"

// CameraConfig describes one simulated camera.
type CameraConfig struct {
	ID   string
	Name string // drawn on the test card; defaults to ID
	// Addr is the RTSP listen address; "127.0.0.1:0" (the default) picks a
	// free port, which the camera keeps across offline/recover.
	Addr string
	Path string // RTSP path, default DefaultStreamPath
	// User and Password protect RTSP (basic or digest) and the snapshot
	// (basic); an empty User turns authentication off.
	User, Password string
	// Test card geometry and timing; zero values take testcard's defaults
	// (GOP defaults to FPS: a keyframe every second).
	Width, Height, FPS, GOP int
}

// listenerMode is what a camera's RTSP port does, derived from its fault.
type listenerMode int

const (
	modeDown      listenerMode = iota // closed: connection refused
	modeRTSP                          // gortsplib server
	modeBlackhole                     // accepts TCP and never answers
)

// Camera is a simulated IP camera: a real RTSP server (gortsplib, RTP over
// TCP) serving the testcard H.264 stream, plus a JPEG snapshot served
// through ServeHTTP. The encoder runs only while at least one reader plays,
// so an idle camera costs a listening socket and three parked goroutines.
type Camera struct {
	cfg       CameraConfig
	card      testcard.Config // effective test card config, defaults filled in
	format    *format.H264
	desc      *description.Session // shared read-only by every stream of the camera
	log       *slog.Logger
	done      chan struct{} // closed by Close; ends hanging snapshot requests
	closeOnce sync.Once
	wg        sync.WaitGroup // the stream goroutine

	// transition serialises changes of the listener (fault changes, Start,
	// Close). It is held while servers start and stop, which wait for their
	// sessions, so RTSP handlers never take it.
	transition sync.Mutex
	addr       string // real listen address, fixed by Start
	mode       listenerMode
	srv        *gortsplib.Server // set in modeRTSP
	hole       *blackhole        // set in modeBlackhole
	closed     bool

	mu        sync.Mutex // guards the fields below, which RTSP handlers use
	fault     string
	readers   map[*gortsplib.ServerSession]*reader
	playing   map[*gortsplib.ServerConn]*gortsplib.ServerSession // PLAY answered, response not yet sent
	streaming bool                                               // the stream goroutine runs
	enc       *testcard.Encoder                                  // the stream goroutine's encoder
}

// reader is one RTSP session that has set the stream up. Every session gets
// its own ServerStream, so that a reader joining mid-GOP can be held back
// until the next IDR access unit instead of receiving undecodable P frames.
type reader struct {
	stream *gortsplib.ServerStream
	live   bool // PLAY has been answered: packets now reach the reader
}

// NewCamera validates cfg and fills in defaults. It starts nothing.
func NewCamera(cfg CameraConfig, logger *slog.Logger) (*Camera, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.ID
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Path == "" {
		cfg.Path = DefaultStreamPath
	}
	if !strings.HasPrefix(cfg.Path, "/") {
		return nil, fmt.Errorf("sim: camera %s: path %q must start with /", cfg.ID, cfg.Path)
	}
	if cfg.User == "" && cfg.Password != "" {
		return nil, fmt.Errorf("sim: camera %s: password without user", cfg.ID)
	}
	// The encoder is built once here to validate the config and learn the
	// SPS/PPS for the SDP, then dropped: it holds a few frame buffers, and
	// hundreds of idle cameras should not.
	enc, err := testcard.New(testcard.Config{Name: cfg.Name, Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS, GOP: cfg.GOP})
	if err != nil {
		return nil, fmt.Errorf("sim: camera %s: %w", cfg.ID, err)
	}
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: enc.SPS(), PPS: enc.PPS()}
	return &Camera{
		cfg:    cfg,
		card:   enc.Config(),
		format: forma,
		desc: &description.Session{Medias: []*description.Media{{
			Type:    description.MediaTypeVideo,
			Formats: []format.Format{forma},
		}}},
		log:     logger.With("component", "sim", "device", cfg.ID),
		done:    make(chan struct{}),
		readers: make(map[*gortsplib.ServerSession]*reader),
		playing: make(map[*gortsplib.ServerConn]*gortsplib.ServerSession),
	}, nil
}

// Start opens the RTSP port (unless a fault says it is down) and fixes the
// camera's address.
func (c *Camera) Start() error {
	c.transition.Lock()
	defer c.transition.Unlock()
	if c.addr != "" || c.closed {
		return fmt.Errorf("sim: camera %s: already started", c.cfg.ID)
	}
	// Bind now even when the camera starts offline, to learn the port.
	ln, err := net.Listen("tcp", c.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sim: camera %s: %w", c.cfg.ID, err)
	}
	c.addr = ln.Addr().String()
	return c.apply(ln)
}

// Close stops the camera for good: listener, sessions, encoder.
func (c *Camera) Close() {
	c.transition.Lock()
	c.closed = true
	c.stopListener()
	c.transition.Unlock()
	c.closeOnce.Do(func() { close(c.done) })
	c.wg.Wait()
}

// Addr returns host:port of the RTSP server; empty before Start.
func (c *Camera) Addr() string {
	c.transition.Lock()
	defer c.transition.Unlock()
	return c.addr
}

// URL returns the stream URL with credentials, as an agent config holds it.
func (c *Camera) URL() string {
	u := url.URL{Scheme: "rtsp", Host: c.Addr(), Path: c.cfg.Path}
	if c.cfg.User != "" {
		u.User = url.UserPassword(c.cfg.User, c.cfg.Password)
	}
	return u.String()
}

// Fault returns the active fault, "" when healthy.
func (c *Camera) Fault() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault
}

// SetFault injects a camera fault (FaultOffline, FaultAuth, FaultNoStream,
// FaultHang) or clears it (FaultRecover). Readers are dropped on any fault,
// as a real camera drops them when it reboots, changes password or loses
// its encoder. What a camera reports over ONVIF is its ONVIF's.
func (c *Camera) SetFault(fault string) error {
	if _, event := cameraEvents[fault]; !allowed(TargetCamera, fault) || event || fault == FaultRestore {
		return fmt.Errorf("sim: camera %s: %w", c.cfg.ID, unknownFault(TargetCamera, fault))
	}
	if fault == FaultRecover {
		fault = ""
	}
	c.transition.Lock()
	defer c.transition.Unlock()
	c.mu.Lock()
	c.fault = fault
	c.mu.Unlock()
	if fault != "" {
		c.dropReaders()
	}
	if c.addr == "" || c.closed {
		return nil // applied by Start
	}
	return c.apply(nil)
}

// ForceKeyframe makes the next access unit an IDR, for a viewer that needs
// a picture now. It does nothing while nobody is playing.
func (c *Camera) ForceKeyframe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.enc != nil {
		c.enc.ForceKeyframe()
	}
}

// Readers returns the number of sessions currently playing.
func (c *Camera) Readers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.readers {
		if r.live {
			n++
		}
	}
	return n
}

// apply brings the listener in line with the fault. ln, when not nil, is
// an already bound listener on c.addr. Callers hold c.transition.
func (c *Camera) apply(ln net.Listener) error {
	want := modeRTSP
	switch c.Fault() {
	case FaultOffline:
		want = modeDown
	case FaultHang:
		want = modeBlackhole
	}
	if want == c.mode {
		if ln != nil {
			ln.Close()
		}
		return nil
	}
	c.stopListener()
	if want == modeDown {
		if ln != nil {
			ln.Close()
		}
		return nil
	}
	if ln == nil {
		var err error
		// Go sets SO_REUSEADDR, so the port is free again at once even with
		// connections of the old listener in TIME_WAIT.
		if ln, err = net.Listen("tcp", c.addr); err != nil {
			return fmt.Errorf("sim: camera %s: relisten: %w", c.cfg.ID, err)
		}
	}
	if want == modeBlackhole {
		c.hole = newBlackhole(ln)
		c.mode = modeBlackhole
		return nil
	}
	h := &rtspHandler{c: c, ready: make(chan struct{})}
	srv := &gortsplib.Server{
		Handler:     h,
		RTSPAddress: c.addr,
		Listen:      func(string, string) (net.Listener, error) { return ln, nil },
	}
	if err := srv.Start(); err != nil {
		ln.Close()
		return fmt.Errorf("sim: camera %s: rtsp: %w", c.cfg.ID, err)
	}
	// The server accepts from Start on, so a client may ask before srv
	// and describe are set: its requests wait for ready.
	h.srv = srv
	h.describe = &gortsplib.ServerStream{Server: srv, Desc: c.desc}
	err := h.describe.Initialize()
	close(h.ready)
	if err != nil {
		srv.Close()
		return fmt.Errorf("sim: camera %s: rtsp: %w", c.cfg.ID, err)
	}
	c.srv, c.mode = srv, modeRTSP
	return nil
}

// stopListener closes whatever listens on the port. Closing the gortsplib
// server waits for its sessions, whose close handlers take c.mu, so this
// runs without c.mu. Callers hold c.transition.
func (c *Camera) stopListener() {
	switch c.mode {
	case modeRTSP:
		c.srv.Close()
		c.srv = nil
	case modeBlackhole:
		c.hole.close()
		c.hole = nil
	}
	c.mode = modeDown
}

// admit decides whether a DESCRIBE or SETUP may proceed; a non-nil
// response is the refusal to send.
func (c *Camera) admit(conn *gortsplib.ServerConn, req *base.Request, path string) (*base.Response, error) {
	switch c.Fault() {
	case FaultAuth:
		// Even the right credentials fail, as after a password change.
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	case FaultNoStream:
		return &base.Response{StatusCode: base.StatusNotFound}, nil
	}
	if path != c.cfg.Path {
		return &base.Response{StatusCode: base.StatusNotFound}, nil
	}
	if c.cfg.User != "" && !conn.VerifyCredentials(req, c.cfg.User, c.cfg.Password) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	return nil, nil
}

// addReader returns the session's own stream, creating it on first SETUP.
func (c *Camera) addReader(srv *gortsplib.Server, ss *gortsplib.ServerSession) (*gortsplib.ServerStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.readers[ss]; ok {
		return r.stream, nil
	}
	st := &gortsplib.ServerStream{Server: srv, Desc: c.desc}
	if err := st.Initialize(); err != nil {
		return nil, err
	}
	c.readers[ss] = &reader{stream: st}
	return st, nil
}

func (c *Camera) removeReader(ss *gortsplib.ServerSession) {
	c.mu.Lock()
	r := c.readers[ss]
	delete(c.readers, ss)
	c.mu.Unlock()
	if r != nil {
		r.stream.Close()
	}
}

// activate makes a session's reader live once its PLAY response is on the
// way: only then does its ServerStream forward packets. A new reader gets
// a keyframe straight away instead of waiting for the end of the GOP.
func (c *Camera) activate(ss *gortsplib.ServerSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.readers[ss]
	if !ok || r.live {
		return
	}
	r.live = true
	switch {
	case c.enc != nil:
		c.enc.ForceKeyframe()
	case !c.streaming:
		c.streaming = true
		c.wg.Add(1)
		go c.stream()
	}
}

// liveReaders returns the readers to send the next access unit to. With
// none left it retires the stream goroutine, under the same lock that
// activate starts one, so at most one runs at a time.
func (c *Camera) liveReaders(buf []*reader) []*reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf = buf[:0]
	for _, r := range c.readers {
		if r.live {
			buf = append(buf, r)
		}
	}
	if len(buf) == 0 {
		c.streaming, c.enc = false, nil
	}
	return buf
}

// stream encodes the test card at the configured frame rate and sends each
// access unit to every live reader, starting each reader at an IDR. It
// runs while anyone plays.
func (c *Camera) stream() {
	defer c.wg.Done()
	enc, err := testcard.New(c.card)
	if err == nil {
		c.mu.Lock()
		c.enc = enc
		c.mu.Unlock()
		err = c.encodeLoop(enc)
	}
	if err != nil {
		// Nobody can handle the error but the readers, who lose the stream
		// as from a camera whose encoder crashed.
		c.log.Error("stream stopped", "err", err)
		c.mu.Lock()
		c.streaming, c.enc = false, nil
		c.mu.Unlock()
		c.dropReaders()
	}
}

// dropReaders ends every session that has set the stream up. The sessions
// close asynchronously and call back into c, so c.mu is not held.
func (c *Camera) dropReaders() {
	c.mu.Lock()
	sessions := slices.Collect(maps.Keys(c.readers))
	c.mu.Unlock()
	for _, ss := range sessions {
		ss.Close()
	}
}

func (c *Camera) encodeLoop(enc *testcard.Encoder) error {
	packetizer, err := c.format.CreateEncoder()
	if err != nil {
		return err
	}
	media := c.desc.Medias[0]
	tick := time.NewTicker(time.Second / time.Duration(c.card.FPS))
	defer tick.Stop()
	start := time.Now()
	started := make(map[*reader]bool) // readers that have had their IDR
	var live []*reader
	for {
		var now time.Time
		select {
		case now = <-tick.C:
		case <-c.done:
			return nil
		}
		if live = c.liveReaders(live); len(live) == 0 {
			return nil
		}
		nalus, key, err := enc.Encode(now)
		if err != nil {
			return err
		}
		pkts, err := packetizer.Encode(nalus)
		if err != nil {
			return err
		}
		// Wall-clock timestamps: a late tick shows up as a longer frame
		// interval, as with a real camera under load.
		ts := uint32(now.Sub(start) * 90000 / time.Second)
		for _, p := range pkts {
			p.Timestamp = ts
		}
		for _, r := range live {
			if !started[r] {
				if !key {
					continue
				}
				started[r] = true
			}
			for _, p := range pkts {
				// A closed stream (reader just left) or a full queue (slow
				// reader) loses this packet only; the session ends itself.
				_ = r.stream.WritePacketRTPWithNTP(media, p, now)
			}
		}
		for r := range started {
			if !slices.Contains(live, r) {
				delete(started, r) // the reader left
			}
		}
	}
}

// ServeHTTP serves the camera's JPEG snapshot, the way IP cameras expose
// one over HTTP. Faults show as a camera would show them: offline and
// nostream answer 503, auth 401, hang holds the request until the client
// gives up.
func (c *Camera) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fault := c.Fault()
	switch fault {
	case FaultOffline, FaultNoStream:
		http.Error(w, "camera unavailable", http.StatusServiceUnavailable)
		return
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-c.done:
		}
		return
	}
	user, pass, ok := r.BasicAuth()
	if fault == FaultAuth || (c.cfg.User != "" && (!ok || user != c.cfg.User || pass != c.cfg.Password)) {
		w.Header().Set("WWW-Authenticate", `Basic realm="camera"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	jpg, err := c.snapshot(time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Write(jpg)
}

// snapshot renders the picture for t with the streaming encoder, or with a
// throwaway one while nobody plays (snapshots are rare; idle memory is not).
func (c *Camera) snapshot(t time.Time) ([]byte, error) {
	c.mu.Lock()
	enc := c.enc
	c.mu.Unlock()
	if enc == nil {
		var err error
		if enc, err = testcard.New(c.card); err != nil {
			return nil, err
		}
	}
	return enc.Snapshot(t)
}

// rtspHandler answers the RTSP requests of one server instance; a camera
// gets a new server each time it comes back from offline or hang.
type rtspHandler struct {
	c     *Camera
	ready chan struct{} // closed once srv and describe are set
	// Written once before ready is closed.
	srv      *gortsplib.Server
	describe *gortsplib.ServerStream // never written to; it only carries the SDP
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (h *rtspHandler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	<-h.ready
	if res, err := h.c.admit(ctx.Conn, ctx.Request, ctx.Path); res != nil {
		return res, nil, err
	}
	return &base.Response{StatusCode: base.StatusOK}, h.describe, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (h *rtspHandler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	<-h.ready
	if res, err := h.c.admit(ctx.Conn, ctx.Request, ctx.Path); res != nil {
		return res, nil, err
	}
	st, err := h.c.addReader(h.srv, ctx.Session)
	if err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil, err
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay. The reader becomes live
// in OnResponse: gortsplib registers it with its stream only after OnPlay
// returns, and packets written before that would be lost — the IDR with
// them.
func (h *rtspHandler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	h.c.mu.Lock()
	h.c.playing[ctx.Conn] = ctx.Session
	h.c.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnResponse implements gortsplib.ServerHandlerOnResponse.
func (h *rtspHandler) OnResponse(conn *gortsplib.ServerConn, res *base.Response) {
	h.c.mu.Lock()
	ss, ok := h.c.playing[conn]
	delete(h.c.playing, conn)
	h.c.mu.Unlock()
	if ok && res.StatusCode == base.StatusOK {
		h.c.activate(ss)
	}
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (h *rtspHandler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.c.removeReader(ctx.Session)
}

// OnStreamWriteError implements gortsplib.ServerHandlerOnStreamWriteError
// (without it gortsplib logs to the standard logger).
func (h *rtspHandler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	h.c.log.Debug("rtsp write", "err", ctx.Error)
}

// OnDecodeError implements gortsplib.ServerHandlerOnDecodeError.
func (h *rtspHandler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.c.log.Debug("rtsp decode", "err", ctx.Error)
}

// blackhole accepts TCP connections and never answers: the hang fault.
type blackhole struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newBlackhole(ln net.Listener) *blackhole {
	b := &blackhole{ln: ln, conns: make(map[net.Conn]struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // closed
			}
			b.mu.Lock()
			if b.closed {
				b.mu.Unlock()
				conn.Close()
				return
			}
			b.conns[conn] = struct{}{}
			b.wg.Add(1)
			b.mu.Unlock()
			go b.swallow(conn)
		}
	}()
	return b
}

// swallow reads and discards until the client gives up, so a long hang
// does not pile up file descriptors of clients long gone.
func (b *blackhole) swallow(conn net.Conn) {
	defer b.wg.Done()
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
	b.mu.Lock()
	delete(b.conns, conn)
	b.mu.Unlock()
}

func (b *blackhole) close() {
	b.ln.Close()
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
