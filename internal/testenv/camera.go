package testenv

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

const cameraStartTimeout = 20 * time.Second

// CameraOptions say what the camera encodes. Zero values take the defaults
// noted.
type CameraOptions struct {
	Width, Height int // 1280×720
	FPS           int // 25
	Bitrate       int // bits a second, 2,000,000
	// GOP is the keyframe interval in frames; FPS (one a second).
	GOP int
	// H265 encodes with libx265 instead of libx264, as most cameras
	// installed today do for their main stream.
	H265 bool
	// BFrames > 0 encodes H.264 Main profile with that many B-frames
	// between references, as some cameras do; 0 is Constrained Baseline
	// order (no B-frames).
	BFrames int
}

// Camera is an RTSP camera: FFmpeg encodes a moving test pattern with
// libx264 (or libx265) in real time (constant bitrate, no B-frames, SPS and PPS in band
// before every keyframe, as IP cameras send them) and publishes it over
// RTSP (RECORD, interleaved TCP) to an RTSP server in the test process
// (gortsplib), which serves it to any number of readers, each joining the
// live stream where it is. The server takes no CPU worth measuring; FFmpeg
// takes a good part of a core.
type Camera struct {
	url string
}

// FFmpegCamera starts a camera and returns once the RTSP server has the
// first packets of its stream. It stops when the test ends. The binary is
// $CITYWATCH_FFMPEG, `ffmpeg` on PATH, or /usr/bin/ffmpeg.
func FFmpegCamera(t testing.TB, opts CameraOptions) *Camera {
	t.Helper()
	bin := lookBin(t, "ffmpeg", "CITYWATCH_FFMPEG", "/usr/bin/ffmpeg")
	opts = cameraDefaults(opts)

	h := &relay{published: make(chan struct{})}
	var addr string // the port the kernel chose
	h.srv = &gortsplib.Server{Handler: h, RTSPAddress: "127.0.0.1:0",
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err == nil {
				addr = l.Addr().String()
			}
			return l, err
		}}
	if err := h.srv.Start(); err != nil {
		t.Fatalf("testenv: camera's RTSP server: %v", err)
	}
	t.Cleanup(h.close)
	c := &Camera{url: "rtsp://" + addr + "/camera"}

	log := newTailBuffer(64 << 10)
	p, err := startProcess("ffmpeg", bin, ffmpegArgs(opts, c.url), os.Environ(), t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after h.close, so it runs before it: FFmpeg stops first.
	t.Cleanup(func() {
		_ = p.stop(stopGrace)
		if t.Failed() {
			t.Logf("testenv: ffmpeg log (%s):\n%s", c.url, log.String())
		}
	})
	ctx, cancel := startupTimeout(t, cameraStartTimeout)
	defer cancel()
	select {
	case <-h.published:
	case <-p.done:
		t.Fatalf("testenv: ffmpeg %v (%v):\n%s", errExited, p.waitErr, log.String())
	case <-ctx.Done():
		t.Fatalf("testenv: camera: no stream from ffmpeg within %s:\n%s", cameraStartTimeout, log.String())
	}
	return c
}

func cameraDefaults(o CameraOptions) CameraOptions {
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 1280, 720
	}
	if o.FPS == 0 {
		o.FPS = 25
	}
	if o.Bitrate == 0 {
		o.Bitrate = 2_000_000
	}
	if o.GOP == 0 {
		o.GOP = o.FPS
	}
	return o
}

func ffmpegArgs(o CameraOptions, url string) []string {
	codec := []string{"-c:v", "libx264", "-sc_threshold", "0", "-bf", strconv.Itoa(o.BFrames)}
	if o.BFrames > 0 {
		codec = append(codec, "-profile:v", "main")
	}
	if o.H265 {
		codec = []string{"-c:v", "libx265", "-x265-params", "log-level=error:scenecut=0", "-bf", "0"}
	}
	args := []string{
		"-hide_banner", "-nostdin", "-loglevel", "warning",
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", o.Width, o.Height, o.FPS),
	}
	args = append(args, codec...)
	return append(args, "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		// A camera's constant bitrate: half a second of buffer.
		"-b:v", strconv.Itoa(o.Bitrate), "-maxrate", strconv.Itoa(o.Bitrate), "-bufsize", strconv.Itoa(o.Bitrate/2),
		"-g", strconv.Itoa(o.GOP), "-keyint_min", strconv.Itoa(o.GOP),
		// The RTSP muxer asks for global headers (parameter sets in the SDP
		// only); cameras repeat them in band before each keyframe.
		"-bsf:v", "dump_extra=freq=keyframe",
		"-f", "rtsp", "-rtsp_transport", "tcp", url,
	)
}

// relay is the camera's RTSP server: one publisher, any number of readers.
type relay struct {
	srv       *gortsplib.Server
	published chan struct{} // closed at the publisher's first packet
	once      sync.Once

	mu        sync.Mutex
	stream    *gortsplib.ServerStream // nil until a publisher announces
	publisher *gortsplib.ServerSession
}

func (r *relay) close() {
	r.srv.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil {
		r.stream.Close()
	}
}

// current is the stream readers get: 404 before FFmpeg has announced it.
func (r *relay) current() (*base.Response, *gortsplib.ServerStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, r.stream, nil
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (r *relay) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return r.current()
}

// OnAnnounce implements gortsplib.ServerHandlerOnAnnounce.
func (r *relay) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, fmt.Errorf("the camera already has a publisher")
	}
	st := &gortsplib.ServerStream{Server: r.srv, Desc: ctx.Description}
	if err := st.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	r.stream, r.publisher = st, ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup: the publisher's SETUP
// needs no stream; a reader's gets the published one.
func (r *relay) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	return r.current()
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (r *relay) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord implements gortsplib.ServerHandlerOnRecord: every packet of the
// publisher goes to every reader.
func (r *relay) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	r.mu.Lock()
	st := r.stream
	r.mu.Unlock()
	ctx.Session.OnPacketRTPAny(func(m *description.Media, _ format.Format, p *rtp.Packet) {
		r.once.Do(func() { close(r.published) })
		// An error means the stream is closing with the server.
		_ = st.WritePacketRTP(m, p)
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose: when
// the publisher goes, so does the stream, and its readers with it.
func (r *relay) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil && ctx.Session == r.publisher {
		r.stream.Close()
		r.stream, r.publisher = nil, nil
	}
}

// URL is the camera's stream: rtsp://127.0.0.1:PORT/camera.
func (c *Camera) URL() string { return c.url }
