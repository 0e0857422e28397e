package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// camera is the RTSP side of a session: a gortsplib client with the
// camera's video set up, in a codec the hub asked for.
type camera struct {
	url     secret.URL // the stream it plays
	client  *gortsplib.Client
	media   *description.Media
	format  format.Format
	codec   rtph264.Codec
	params  [][]byte        // the parameter sets of its SDP, in codec.ParameterSets order
	stream  wire.StreamRole // which of the camera's it is: main or sub
	timeout time.Duration
	dialErr atomic.Pointer[error] // why the TCP connect failed, if it did
	stop    func() bool           // unregisters the close on ctx
	done    chan error            // the client's end, once playing
}

// openCamera connects to the camera and sets up its video in the first of
// codecs it offers (DESCRIBE, SETUP), without playing it yet. On failure
// it returns nil and the probe's classification, or ReasonLiveCodec for
// video in none of codecs. The client closes when ctx ends: gortsplib has
// no context support, and a stopped session must not wait out a timeout.
func openCamera(ctx context.Context, url secret.URL, codecs []rtph264.Codec, timeout time.Duration, log *slog.Logger) (*camera, wire.Reason, string) {
	u, err := base.ParseURL(url.Reveal())
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") {
		// The parse error would quote the URL and with it the password.
		return nil, wire.ReasonProbeError, "invalid RTSP URL"
	}
	c := &camera{url: url, timeout: timeout, done: make(chan error, 1)}
	// Interleaved TCP, as the probe: one connection through site
	// firewalls and NAT, and no loss to hide from the hub.
	tcp := gortsplib.TransportTCP
	var d net.Dialer
	c.client = &gortsplib.Client{
		Scheme:       u.Scheme,
		Host:         u.Host,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		Transport:    &tcp,
		// Dial failures are told apart from RTSP ones, as the probe does.
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, address)
			if err != nil {
				c.dialErr.Store(&err)
			}
			return conn, err
		},
		// The defaults log through the standard logger.
		OnPacketsLost:     func(n uint64) { log.Debug("camera packets lost", "packets", n) },
		OnDecodeError:     func(err error) { log.Debug("camera packet not decoded", "err", err) },
		OnTransportSwitch: func(err error) { log.Debug("camera transport", "err", err) },
	}
	if err := c.client.Start2(); err != nil {
		return nil, wire.ReasonProbeError, err.Error()
	}
	c.stop = context.AfterFunc(ctx, c.client.Close)
	desc, _, err := c.client.Describe(u)
	if err != nil {
		c.close()
		reason, detail := c.classify(ctx, err)
		return nil, reason, detail
	}
	if !c.findVideo(desc, codecs) {
		c.close()
		if sent := videoCodecs(desc); len(sent) > 0 {
			// Video the live path does not carry: not the camera's fault.
			names := make([]string, len(codecs))
			for i, codec := range codecs {
				names[i] = codec.String()
			}
			return nil, wire.ReasonLiveCodec, "the camera sends " + strings.Join(sent, ", ") + ", not " + strings.Join(names, " or ")
		}
		return nil, wire.ReasonNoStream, "the camera offers no video"
	}
	if _, err := c.client.Setup(desc.BaseURL, c.media, 0, 0); err != nil {
		c.close()
		reason, detail := c.classify(ctx, err)
		return nil, reason, detail
	}
	return c, wire.ReasonNone, ""
}

// findVideo picks the camera's video in the first of codecs it offers.
func (c *camera) findVideo(desc *description.Session, codecs []rtph264.Codec) bool {
	for _, codec := range codecs {
		switch codec {
		case rtph264.H264:
			var f *format.H264
			if c.media = desc.FindFormat(&f); c.media != nil {
				sps, pps := f.SafeParams()
				c.format, c.params = f, [][]byte{sps, pps}
			}
		case rtph264.H265:
			var f *format.H265
			// Decoding order numbers (DONL) are not carried: cameras
			// do not send them.
			if c.media = desc.FindFormat(&f); c.media != nil && f.MaxDONDiff != 0 {
				c.media = nil
			}
			if c.media != nil {
				vps, sps, pps := f.SafeParams()
				c.format, c.params = f, [][]byte{vps, sps, pps}
			}
		}
		if c.media != nil {
			c.codec = codec
			return true
		}
	}
	return false
}

// play starts the stream, handing every RTP packet to forward on the
// client's reader goroutine; c.done reports the client's end.
func (c *camera) play(ctx context.Context, forward func(*rtp.Packet)) (wire.Reason, string) {
	c.client.OnPacketRTP(c.media, c.format, forward)
	if _, err := c.client.Play(nil); err != nil {
		return c.classify(ctx, err)
	}
	go func() { c.done <- c.client.Wait() }()
	return wire.ReasonNone, ""
}

func (c *camera) writeRTCP(pkt rtcp.Packet) error {
	return c.client.WritePacketRTCP(c.media, pkt)
}

func (c *camera) close() {
	c.stop()
	c.client.Close()
}

func (c *camera) classify(ctx context.Context, err error) (wire.Reason, string) {
	if dialErr := c.dialErr.Load(); dialErr != nil {
		return probe.ClassifyDial(*dialErr, c.timeout)
	}
	return probe.ClassifyRTSP(ctx, err, c.timeout)
}

// lost explains why a playing stream ended. A stall is no_stream. A
// closed or reset connection says nothing of the cause, so the camera is
// probed once: refused, auth_failed and the rest then mean what they mean
// in health reports. A camera that answers the probe, or fails it in no
// known way (a camera going down may reset the probe's connection too),
// just dropped the stream.
func (c *camera) lost(ctx context.Context, err error) (wire.Reason, string) {
	if errors.As(err, new(liberrors.ErrClientTCPTimeout)) {
		return probe.ClassifyRTSP(ctx, err, c.timeout)
	}
	res := (&probe.Prober{Timeout: c.timeout}).Probe(ctx, probe.Target{URL: c.url})
	if !res.OK() && res.Reason != wire.ReasonProbeError {
		return res.Reason, res.Detail
	}
	return wire.ReasonNoStream, fmt.Sprintf("the camera ended the stream: %v", err)
}

// videoCodecs names the video codecs a camera offers.
func videoCodecs(desc *description.Session) []string {
	var names []string
	for _, m := range desc.Medias {
		if m.Type != description.MediaTypeVideo {
			continue
		}
		for _, f := range m.Formats {
			if !slices.Contains(names, f.Codec()) {
				names = append(names, f.Codec())
			}
		}
	}
	return names
}
