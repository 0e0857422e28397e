package live

import (
	"strings"
	"testing"
)

func offerSDP(direction string, formats string, attrs ...string) string {
	return strings.Join(append([]string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
		"m=video 9 UDP/TLS/RTP/SAVPF " + formats,
		"c=IN IP4 0.0.0.0",
		"a=" + direction,
	}, attrs...), "\r\n") + "\r\n"
}

func TestH264Codec(t *testing.T) {
	h264 := []string{
		"a=rtpmap:96 VP8/90000",
		"a=rtpmap:102 H264/90000",
		"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
		"a=rtpmap:106 h264/90000",
		"a=fmtp:106 level-asymmetry-allowed=1; packetization-mode=1; profile-level-id=42e01f",
		"a=rtpmap:108 H264/90000",
		"a=fmtp:108 packetization-mode=1;profile-level-id=640032",
	}
	for _, tc := range []struct {
		name    string
		offer   string
		wantPT  uint8
		wantErr string
	}{
		{"first H.264 with FU-A, offer's payload type", offerSDP("recvonly", "96 102 106 108", h264...), 106, ""},
		{"offer order decides", offerSDP("sendrecv", "108 106", h264...), 108, ""},
		{"hub would send", offerSDP("sendonly", "106", h264...), 0, "no H.264"},
		{"H.264 without FU-A", offerSDP("recvonly", "96 102", h264...), 0, "no H.264"},
		{"not SDP", "hello", 0, "not valid SDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := h264Codec(tc.offer)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case uint8(c.PayloadType) != tc.wantPT || c.MimeType != "video/H264" || !strings.Contains(c.SDPFmtpLine, "packetization-mode=1"):
				t.Errorf("codec %+v, want payload type %d", c, tc.wantPT)
			}
		})
	}
}

// FuzzH264Codec: the offer comes from the network.
func FuzzH264Codec(f *testing.F) {
	f.Add(offerSDP("recvonly", "102", "a=rtpmap:102 H264/90000", "a=fmtp:102 packetization-mode=1"))
	f.Fuzz(func(t *testing.T, offer string) {
		c, err := h264Codec(offer)
		if err == nil && fmtpValue(c.SDPFmtpLine, "packetization-mode") != "1" {
			t.Errorf("picked %+v", c)
		}
	})
}
