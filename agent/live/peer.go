package live

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/wire/rtph264"
)

// connect builds the session's peer connection for the hub's offer,
// sending codec, and sets the answer; ICE gathering goes on in the
// background. Each session gets its own media engine, holding just that
// codec under the offer's payload type, so the answer cannot pick
// anything else. Candidates the hub sent before are added once the offer
// is set.
func (s *session) connect(codec offered) error {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(codec.params, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("register %s: %w", codec.codec, err)
	}
	// NACK, RTCP reports and TWCC, so the hub can recover lost packets
	// without a keyframe.
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return fmt.Errorf("interceptors: %w", err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(s.m.settings))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("peer connection: %w", err)
	}
	s.mu.Lock()
	s.pc = pc
	s.mu.Unlock()
	pc.OnICECandidate(s.onCandidate)
	pc.OnConnectionStateChange(s.onConnectionState)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.offer}); err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	s.mu.Lock()
	early := s.remote
	s.remote, s.offerSet = nil, true
	s.mu.Unlock()
	for _, c := range early {
		s.addCandidate(c)
	}
	if s.track, err = webrtc.NewTrackLocalStaticRTP(codec.params.RTPCodecCapability, "video", s.device); err != nil {
		return fmt.Errorf("track: %w", err)
	}
	// Added after the offer, the track takes the offer's receive-only
	// video transceiver, which makes the answer send-only.
	if s.sender, err = pc.AddTrack(s.track); err != nil {
		return fmt.Errorf("track: %w", err)
	}
	go s.readRTCP()
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	s.gathered = webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

// offered is a codec of the hub's offer the agent can send, as the offer
// names it.
type offered struct {
	codec  rtph264.Codec
	params webrtc.RTPCodecParameters
}

// offerCodecs returns the codecs of the hub's offer the agent can send,
// H.264 before H.265, each the offer's first of its kind, under the
// offer's payload type and with its fmtp line (profile and all), so the
// answer matches exactly:
//
//   - H.264 with packetization-mode=1: cameras fragment frames larger than
//     a packet (FU-A), which mode 0 forbids, and the agent splits packets
//     to the WebRTC packet size the same way;
//   - H.265 without decoding order numbers (sprop-max-don-diff 0, and
//     tx-mode SRST, the default), as cameras send it and rtph264 splits it.
//
// Which profile the offer names does not matter much: the camera's video
// is passed through without transcoding, and decoders go by the
// parameter sets in the stream. A hub that asks for H.265 lists it in its
// offer beside H.264; an agent that does not know H.265 answers H.264.
func offerCodecs(offer string) ([]offered, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("the offer is not valid SDP: %w", err)
	}
	codecs := sd.GetCodecMap()
	var h264, h265 *offered
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" || md.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := md.Attribute(sdp.AttrKeySendOnly); ok {
			continue // the hub would send, not receive
		}
		if _, ok := md.Attribute(sdp.AttrKeyInactive); ok {
			continue
		}
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				continue
			}
			c, ok := codecs[uint8(pt)]
			if !ok || c.ClockRate != 90000 {
				continue
			}
			switch {
			case h264 == nil && strings.EqualFold(c.Name, "H264") && fmtpValue(c.Fmtp, "packetization-mode") == "1":
				h264 = &offered{rtph264.H264, codecParameters(webrtc.MimeTypeH264, c.Fmtp, pt)}
			case h265 == nil && strings.EqualFold(c.Name, "H265") && strings.TrimLeft(fmtpValue(c.Fmtp, "sprop-max-don-diff"), "0") == "" &&
				(fmtpValue(c.Fmtp, "tx-mode") == "" || strings.EqualFold(fmtpValue(c.Fmtp, "tx-mode"), "SRST")):
				h265 = &offered{rtph264.H265, codecParameters(webrtc.MimeTypeH265, c.Fmtp, pt)}
			}
		}
	}
	var out []offered
	for _, c := range []*offered{h264, h265} {
		if c != nil {
			out = append(out, *c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the offer asks for no H.264 video with packetization-mode=1 and no H.265 video")
	}
	return out, nil
}

func codecParameters(mime, fmtp string, pt uint64) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:    mime,
			ClockRate:   90000,
			SDPFmtpLine: fmtp,
			// The default interceptors add nack and nack pli.
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}},
		},
		PayloadType: webrtc.PayloadType(pt),
	}
}

// fmtpValue returns the value of key in an fmtp parameter list such as
// "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".
func fmtpValue(fmtp, key string) string {
	for p := range strings.SplitSeq(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
