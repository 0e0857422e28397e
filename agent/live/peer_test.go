package live

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/wire/rtph264"
)

func offerSDP(direction string, formats string, attrs ...string) string {
	return strings.Join(append([]string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
		"m=video 9 UDP/TLS/RTP/SAVPF " + formats,
		"c=IN IP4 0.0.0.0",
		"a=" + direction,
	}, attrs...), "\r\n") + "\r\n"
}

func TestOfferCodecs(t *testing.T) {
	h264 := []string{
		"a=rtpmap:96 VP8/90000",
		"a=rtpmap:102 H264/90000",
		"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
		"a=rtpmap:106 h264/90000",
		"a=fmtp:106 level-asymmetry-allowed=1; packetization-mode=1; profile-level-id=42e01f",
		"a=rtpmap:108 H264/90000",
		"a=fmtp:108 packetization-mode=1;profile-level-id=640032",
	}
	h265 := []string{
		"a=rtpmap:116 H265/90000",
		"a=fmtp:116 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST",
		"a=rtpmap:118 H265/90000",
		"a=fmtp:118 sprop-max-don-diff=2",
		"a=rtpmap:120 H265/90000",
		"a=fmtp:120 tx-mode=MRST",
	}
	both := append(slices.Clone(h264), h265...)
	for _, tc := range []struct {
		name    string
		offer   string
		want    string // MIME type/payload type, by preference
		wantErr string
	}{
		{"first H.264 with FU-A, offer's payload type", offerSDP("recvonly", "96 102 106 108", h264...), "video/H264/106", ""},
		{"offer order decides", offerSDP("sendrecv", "108 106", h264...), "video/H264/108", ""},
		{"hub would send", offerSDP("sendonly", "106", h264...), "", "no H.264"},
		{"H.264 without FU-A", offerSDP("recvonly", "96 102", h264...), "", "no H.264"},
		{"H.265 and H.264: H.264 first", offerSDP("recvonly", "116 106", both...), "video/H264/106 video/H265/116", ""},
		{"H.265 only", offerSDP("recvonly", "116", both...), "video/H265/116", ""},
		{"H.265 with decoding order numbers", offerSDP("recvonly", "118 106", both...), "video/H264/106", ""},
		{"H.265 of several streams", offerSDP("recvonly", "120", both...), "", "no H.265"},
		{"not SDP", "hello", "", "not valid SDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codecs, err := offerCodecs(tc.offer)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range codecs {
				got = append(got, fmt.Sprintf("%s/%d", c.params.MimeType, c.params.PayloadType))
				if c.codec == rtph264.H264 && !strings.Contains(c.params.SDPFmtpLine, "packetization-mode=1") {
					t.Errorf("H.264 codec %+v", c.params)
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("codecs %v, want %s", got, tc.want)
			}
		})
	}
}

// FuzzOfferCodecs: the offer comes from the network.
func FuzzOfferCodecs(f *testing.F) {
	f.Add(offerSDP("recvonly", "102", "a=rtpmap:102 H264/90000", "a=fmtp:102 packetization-mode=1"))
	f.Add(offerSDP("recvonly", "116", "a=rtpmap:116 H265/90000", "a=fmtp:116 profile-id=1"))
	f.Fuzz(func(t *testing.T, offer string) {
		codecs, err := offerCodecs(offer)
		if err == nil && len(codecs) == 0 {
			t.Error("no codecs and no error")
		}
		for _, c := range codecs {
			if c.codec == rtph264.H264 && fmtpValue(c.params.SDPFmtpLine, "packetization-mode") != "1" {
				t.Errorf("picked %+v", c)
			}
		}
	})
}
