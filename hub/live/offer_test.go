package live

import (
	"strings"
	"testing"
)

const minimalOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\na=rtpmap:102 H264/90000\r\n"

func TestCheckOffer(t *testing.T) {
	for _, tc := range []struct {
		name, offer, want string
	}{
		{"H.264", minimalOffer, ""},
		{"lower case", strings.Replace(minimalOffer, "H264", "h264", 1), ""},
		{"VP8 only", strings.Replace(minimalOffer, "H264", "VP8", 1), "offer has no H.264 video"},
		{"video rejected", strings.Replace(minimalOffer, "m=video 9", "m=video 0", 1), "offer has no H.264 video"},
		{"H.264 as audio", strings.Replace(minimalOffer, "m=video", "m=audio", 1), "offer has no H.264 video"},
		{"not SDP", "hello", "malformed SDP"},
		{"empty", "", "malformed SDP"},
		{"broken line", "v=0\r\nthis is not sdp\r\n", "malformed SDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkOffer([]byte(tc.offer))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("checkOffer = %v, want %q", err, tc.want)
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
