// Package probe checks RTSP cameras the way a viewer would reach them: a
// TCP connect, then OPTIONS and DESCRIBE with the camera's credentials, and
// on a slower cycle a short PLAY that counts frames and bytes. Failures are
// classified (unreachable, refused, auth_failed, no_stream, timeout) so that
// a crew knows whether to bring a ladder, a laptop or a password. The
// package measures and classifies; deciding a camera's status from a series
// of results is the supervisor's job.
package probe

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

// Target is one camera to probe.
type Target struct {
	ID  string     // device id, for in-process probers that simulate cameras
	URL secret.URL // rtsp:// or rtsps://, credentials in the userinfo
}

// Result is the outcome of one probe or sample.
type Result struct {
	// Reason is ReasonNone when the camera answered DESCRIBE with a video
	// media and, for a sample, delivered frames; otherwise it classifies
	// the failure and Detail explains it (never with credentials).
	Reason wire.Reason
	Detail string
	At     time.Time // when the probe finished

	TCP  time.Duration // TCP connect time; 0 when the connect failed
	RTSP time.Duration // OPTIONS+DESCRIBE round trip; 0 when they failed
	// Stream is the video DESCRIBE listed (codec, profile, size; no
	// role): zero when DESCRIBE failed or listed no video.
	Stream wire.Stream

	// Set by Sample only.
	Sampled     bool
	Frames      int
	FPS         float64
	BitrateKbps float64
	LastFrame   time.Time // when the last frame arrived; zero if none
}

// OK reports whether the camera answered as expected.
func (r Result) OK() bool { return r.Reason == wire.ReasonNone }

// Prober probes cameras over the network. The zero value is not usable:
// set Timeout.
type Prober struct {
	// Timeout bounds the TCP connect and each RTSP request.
	Timeout time.Duration
	// Dial opens TCP connections; nil means a net.Dialer. Tests inject
	// failures through it.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Probe connects to the camera and runs OPTIONS and DESCRIBE.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	return p.run(ctx, t, 0)
}

// Sample probes the camera, then plays its video for d and measures frame
// rate and bitrate. A stream that delivers no frame in d is no_stream.
func (p *Prober) Sample(ctx context.Context, t Target, d time.Duration) Result {
	return p.run(ctx, t, d)
}

func (p *Prober) run(ctx context.Context, t Target, sample time.Duration) (res Result) {
	defer func() { res.At = time.Now() }()
	u, err := base.ParseURL(t.URL.Reveal())
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") {
		// The parse error would quote the URL and with it the password.
		return fail(wire.ReasonProbeError, "invalid RTSP URL")
	}
	addr := canonicalAddr(u)

	start := time.Now()
	dialCtx, cancel := context.WithTimeout(ctx, p.Timeout)
	conn, err := p.dial(dialCtx, "tcp", addr)
	cancel()
	if err != nil {
		return fail(ClassifyDial(err, p.Timeout))
	}
	res.TCP = time.Since(start)

	c := p.client(u, conn)
	if err := c.Start2(); err != nil {
		conn.Close()
		return fail(wire.ReasonProbeError, err.Error())
	}
	defer c.Close()
	// gortsplib has no context support: closing the client aborts a
	// pending request, so a cancelled agent does not wait for the timeout.
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	start = time.Now()
	if _, err := c.Options(u); err != nil {
		return res.failed(ClassifyRTSP(ctx, err, p.Timeout))
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		return res.failed(ClassifyRTSP(ctx, err, p.Timeout))
	}
	res.RTSP = time.Since(start)
	video := findVideo(desc)
	if video == nil {
		return res.failed(wire.ReasonNoStream, "DESCRIBE lists no video media")
	}
	res.Stream = describeStream(video)
	if sample == 0 {
		return res
	}
	res.Sampled = true
	return p.play(ctx, c, desc, video, sample, res)
}

// play sets up the video media, plays it for d and fills in the frame
// measurements of res.
func (p *Prober) play(ctx context.Context, c *gortsplib.Client, desc *description.Session, video *description.Media, d time.Duration, res Result) Result {
	if _, err := c.Setup(desc.BaseURL, video, 0, 0); err != nil {
		return res.failed(ClassifyRTSP(ctx, err, p.Timeout))
	}
	var m meter
	// Callbacks attach to set-up media only, hence after Setup.
	c.OnPacketRTPAny(func(_ *description.Media, _ format.Format, pkt *rtp.Packet) { m.packet(pkt) })
	if _, err := c.Play(nil); err != nil {
		return res.failed(ClassifyRTSP(ctx, err, p.Timeout))
	}
	start := time.Now()
	timer := time.NewTimer(d)
	defer timer.Stop()
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return res.failed(wire.ReasonProbeError, "cancelled")
	case err := <-waitErr:
		// The camera closed the session or stopped sending mid-sample;
		// what arrived until then still counts, but a stall is reported.
		if m.snapshot().frames == 0 {
			return res.failed(ClassifyRTSP(ctx, err, p.Timeout))
		}
	}
	elapsed := time.Since(start).Seconds()
	s := m.snapshot()
	res.Frames = s.frames
	res.FPS = float64(s.frames) / elapsed
	res.BitrateKbps = float64(s.bytes) * 8 / 1000 / elapsed
	res.LastFrame = s.last
	if s.frames == 0 {
		return res.failed(wire.ReasonNoStream, fmt.Sprintf("no frame in %v of PLAY", d))
	}
	return res
}

func (p *Prober) client(u *base.URL, conn net.Conn) *gortsplib.Client {
	// Interleaved TCP: one connection, no UDP ports to open through site
	// firewalls and NAT, and the same path a viewer behind the hub uses.
	tcp := gortsplib.TransportTCP
	first := conn
	return &gortsplib.Client{
		Scheme:       u.Scheme,
		Host:         u.Host,
		ReadTimeout:  p.Timeout,
		WriteTimeout: p.Timeout,
		Transport:    &tcp,
		// The first dial hands over the connection already timed above;
		// a redirect to another host dials afresh.
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			if c := first; c != nil {
				first = nil
				return c, nil
			}
			return p.dial(ctx, network, address)
		},
		// The defaults log through the standard logger; losses and decode
		// errors do not matter to a probe that only counts frames.
		OnPacketsLost:     func(uint64) {},
		OnDecodeError:     func(error) {},
		OnTransportSwitch: func(error) {},
	}
}

func (p *Prober) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if p.Dial != nil {
		return p.Dial(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (r Result) failed(reason wire.Reason, detail string) Result {
	r.Reason, r.Detail = reason, detail
	return r
}

func fail(reason wire.Reason, detail string) Result {
	return Result{Reason: reason, Detail: detail}
}

func canonicalAddr(u *base.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "554"
	if u.Scheme == "rtsps" {
		port = "322"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func findVideo(desc *description.Session) *description.Media {
	for _, m := range desc.Medias {
		if m.Type == description.MediaTypeVideo {
			return m
		}
	}
	return nil
}

// meter counts frames and bytes of the packets gortsplib delivers from its
// reader goroutine. A frame is a run of packets with the same RTP
// timestamp, which holds for every video payload format without having to
// depacketize it, and does not depend on cameras setting the marker bit.
type meter struct {
	mu     sync.Mutex
	frames int
	bytes  int
	ts     uint32
	last   time.Time
}

func (m *meter) packet(pkt *rtp.Packet) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bytes += len(pkt.Payload)
	if m.frames == 0 || pkt.Timestamp != m.ts {
		m.frames++
		m.ts = pkt.Timestamp
		m.last = time.Now()
	}
}

type meterSnapshot struct {
	frames, bytes int
	last          time.Time
}

func (m *meter) snapshot() meterSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return meterSnapshot{m.frames, m.bytes, m.last}
}
