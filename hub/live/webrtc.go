package live

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// h264Codecs are the H.264 flavours the relay negotiates, upstream and with
// viewers. Packetization mode 1 only: the relay forwards FU-A and STAP-A,
// split to the WebRTC packet size. The bytes are the camera's whatever the
// profile agreed; decoders go by the SPS in the stream.
var h264Codecs = []webrtc.RTPCodecParameters{
	{RTPCodecCapability: videoCapability(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"), PayloadType: 102}, // constrained baseline 3.1
	{RTPCodecCapability: videoCapability(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"), PayloadType: 104}, // baseline 3.1
	{RTPCodecCapability: videoCapability(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"), PayloadType: 106}, // constrained high 3.1
}

// h265Codecs are the H.265 flavours the relay negotiates: the Main and
// Main 10 profiles cameras send, one RTP stream (tx-mode SRST), no
// decoding order numbers, as RFC 7798 packetizes by default. The relay
// forwards FU and AP packets split to the WebRTC packet size; level-id
// is not negotiated (decoders go by the VPS and SPS in the stream).
var h265Codecs = []webrtc.RTPCodecParameters{
	{RTPCodecCapability: videoCapability(webrtc.MimeTypeH265, "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"), PayloadType: 116}, // Main
	{RTPCodecCapability: videoCapability(webrtc.MimeTypeH265, "level-id=93;profile-id=2;tier-flag=0;tx-mode=SRST"), PayloadType: 118}, // Main 10
}

// offerCodecs are the codecs an upstream asks its agent for: H.264, or for
// viewers that decode H.265, H.265 beside it. An agent answers with the
// one its camera's stream is in; one that does not know H.265 answers
// H.264 as before.
func offerCodecs(class rtph264.Codec) []webrtc.RTPCodecParameters {
	if class == rtph264.H265 {
		return slices.Concat(h265Codecs, h264Codecs)
	}
	return h264Codecs
}

// mimeCodec returns the codec of a MIME type the relay carries.
func mimeCodec(mime string) (rtph264.Codec, bool) {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return rtph264.H264, true
	case strings.EqualFold(mime, webrtc.MimeTypeH265):
		return rtph264.H265, true
	}
	return 0, false
}

// codecMIME is mimeCodec's inverse.
func codecMIME(c rtph264.Codec) string {
	if c == rtph264.H265 {
		return webrtc.MimeTypeH265
	}
	return webrtc.MimeTypeH264
}

func videoCapability(mime, fmtp string) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{
		MimeType:    mime,
		ClockRate:   90000,
		SDPFmtpLine: fmtp,
		RTCPFeedback: []webrtc.RTCPFeedback{
			{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
			{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"}, {Type: webrtc.TypeRTCPFBGoogREMB},
		},
	}
}

// apis are what the relay's peer connections are made with, on one
// network: the relay's sockets (outbox.go) and, with Config.UDPPort, one
// ICE UDP mux on that port.
type apis struct {
	upstream, viewer *webrtc.API
	socks            *sockets
	close            func() // releases the UDP port
}

// newAPIs builds the relay's webrtc.APIs. Both use pion's default
// interceptors but the NACK responder, which would copy every packet sent
// to every viewer and answer a viewer that asks for the same packet again
// and again (viewer.resend answers instead, from the shared packets), and
// the stats interceptor, whose figures nobody reads. Upstreams ask agents
// for lost packets (NACK generator) and give transport-wide congestion
// feedback; viewers send no media, so their connections have RTCP reports
// only (the others would tick ten times a second each, for nothing).
func newAPIs(cfg Config, log *slog.Logger) (*apis, error) {
	up, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	upIR := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	upIR.Add(gen)
	if err := webrtc.ConfigureRTCPReports(upIR); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(up); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(up, upIR); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	down, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	downIR := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(downIR); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}

	std, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	a := &apis{socks: &sockets{Net: std}, close: func() {}}
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{log}}
	se.SetNet(a.socks)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if len(cfg.PublicIPs) > 0 {
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			return nil, fmt.Errorf("public IPs: %w", err)
		}
	}
	if cfg.UDPPort != 0 {
		host := "0.0.0.0"
		if cfg.LoopbackOnly {
			host = "127.0.0.1"
		}
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), uint16(cfg.UDPPort))))
		if err != nil {
			return nil, fmt.Errorf("ICE UDP port: %w", err)
		}
		mux := webrtc.NewICEUDPMux(se.LoggerFactory.NewLogger("ice-mux"), a.socks.wrap(conn))
		se.SetICEUDPMux(mux)
		a.close = func() { mux.Close() }
	}
	a.upstream = webrtc.NewAPI(webrtc.WithMediaEngine(up), webrtc.WithInterceptorRegistry(upIR), webrtc.WithSettingEngine(se))
	a.viewer = webrtc.NewAPI(webrtc.WithMediaEngine(down), webrtc.WithInterceptorRegistry(downIR), webrtc.WithSettingEngine(se))
	return a, nil
}

// mediaEngine has the relay's H.264 and H.265 codecs.
func mediaEngine() (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range offerCodecs(rtph264.H265) {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	return me, nil
}

// pionLogs passes pion's logs to slog: its errors as warnings (a peer that
// goes away makes pion complain, and that is routine for a relay), its
// warnings at debug level, the rest not at all.
type pionLogs struct{ log *slog.Logger }

func (p pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{p.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)              {}
func (l pionLogger) Tracef(string, ...any)     {}
func (l pionLogger) Debug(string)              {}
func (l pionLogger) Debugf(string, ...any)     {}
func (l pionLogger) Info(string)               {}
func (l pionLogger) Infof(string, ...any)      {}
func (l pionLogger) Warn(msg string)           { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Warnf(f string, a ...any)  { l.logf(slog.LevelDebug, f, a...) }
func (l pionLogger) Error(msg string)          { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Errorf(f string, a ...any) { l.logf(slog.LevelWarn, f, a...) }

func (l pionLogger) logf(level slog.Level, f string, a ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(f, a...))
	}
}
