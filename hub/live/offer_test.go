package live

import (
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/wire/rtph264"
)

const minimalOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\na=rtpmap:102 H264/90000\r\n"

func TestCheckOffer(t *testing.T) {
	h264, h265, both := []rtph264.Codec{rtph264.H264}, []rtph264.Codec{rtph264.H265}, []rtph264.Codec{rtph264.H265, rtph264.H264}
	for _, tc := range []struct {
		name, offer string
		accepts     []rtph264.Codec
		want        string
	}{
		{"H.264", minimalOffer, h264, ""},
		{"lower case", strings.Replace(minimalOffer, "H264", "h264", 1), h264, ""},
		{"H.265", strings.Replace(minimalOffer, "H264", "H265", 1), h265, ""},
		{"H.265 and H.264", strings.Replace(minimalOffer, "a=rtpmap:102 H264/90000", "a=rtpmap:116 H265/90000\r\na=rtpmap:102 H264/90000", 1), both, ""},
		{"VP8 only", strings.Replace(minimalOffer, "H264", "VP8", 1), nil, "offer has no H.264 or H.265 video"},
		{"video rejected", strings.Replace(minimalOffer, "m=video 9", "m=video 0", 1), nil, "offer has no H.264 or H.265 video"},
		{"H.264 as audio", strings.Replace(minimalOffer, "m=video", "m=audio", 1), nil, "offer has no H.264 or H.265 video"},
		{"not SDP", "hello", nil, "malformed SDP"},
		{"empty", "", nil, "malformed SDP"},
		{"broken line", "v=0\r\nthis is not sdp\r\n", nil, "malformed SDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accepts, err := checkOffer([]byte(tc.offer))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("checkOffer = %v, want %q", err, tc.want)
			}
			if !slices.Equal(accepts, tc.accepts) {
				t.Errorf("checkOffer accepts %v, want %v", accepts, tc.accepts)
			}
		})
	}
}

func FuzzCheckOffer(f *testing.F) {
	f.Add(minimalOffer)
	f.Add("v=0\r\n")
	f.Add("v=0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96\r\n")
	f.Fuzz(func(t *testing.T, offer string) {
		checkOffer([]byte(offer)) // must not panic or hang
	})
}
