package live

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// connect builds the session's peer connection for the hub's offer and
// sets the answer; ICE gathering goes on in the background. Each session
// gets its own media engine, holding just the offer's H.264 codec under
// the offer's payload type, so the answer cannot pick anything else.
func (s *session) connect(offer string) error {
	codec, err := h264Codec(offer)
	if err != nil {
		return err
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(codec, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("register H.264: %w", err)
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
	s.pc = pc
	pc.OnICECandidate(s.onCandidate)
	pc.OnConnectionStateChange(s.onConnectionState)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	if s.track, err = webrtc.NewTrackLocalStaticRTP(codec.RTPCodecCapability, "video", s.device); err != nil {
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

// h264Codec picks the codec to answer with: the offer's first H.264 with
// packetization-mode=1, under the offer's payload type and with its fmtp
// line (profile-level-id and all), so the answer matches exactly. Mode 1
// is required because cameras fragment frames larger than a packet
// (FU-A), which mode 0 forbids, and the agent splits packets to the WebRTC
// packet size the same way. Which profile the offer names does not matter
// much: the camera's video is passed through without transcoding, and
// browsers decode every profile cameras send.
func h264Codec(offer string) (webrtc.RTPCodecParameters, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("the offer is not valid SDP: %w", err)
	}
	codecs := sd.GetCodecMap()
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
			if !ok || !strings.EqualFold(c.Name, "H264") || c.ClockRate != 90000 || fmtpValue(c.Fmtp, "packetization-mode") != "1" {
				continue
			}
			return webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{
					MimeType:    webrtc.MimeTypeH264,
					ClockRate:   90000,
					SDPFmtpLine: c.Fmtp,
					// The default interceptors add nack and nack pli.
					RTCPFeedback: []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}},
				},
				PayloadType: webrtc.PayloadType(pt),
			}, nil
		}
	}
	return webrtc.RTPCodecParameters{}, errors.New("the offer asks for no H.264 video with packetization-mode=1")
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
