package probe

import (
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"

	"github.com/citywatch/citywatch/wire"
)

// A camera is described by what its SDP says, and by less when it says
// less: no parameter sets, a broken SPS or a codec without profiles give
// the codec alone, never a failed probe.
func TestDescribeStream(t *testing.T) {
	video := func(f format.Format) *description.Media {
		return &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{f}}
	}
	for name, tc := range map[string]struct {
		media *description.Media
		want  wire.Stream
	}{
		"h264 with sps": {video(&format.H264{PayloadTyp: 96, SPS: testSPS, PPS: testPPS, PacketizationMode: 1}),
			wire.Stream{Codec: wire.CodecH264, Profile: "Baseline", Width: 1920, Height: 1080}},
		"h264 in-band":    {video(&format.H264{PayloadTyp: 96, PacketizationMode: 1}), wire.Stream{Codec: wire.CodecH264}},
		"h264 broken sps": {video(&format.H264{PayloadTyp: 96, SPS: testSPS[:4], PacketizationMode: 1}), wire.Stream{Codec: wire.CodecH264}},
		"h265 in-band":    {video(&format.H265{PayloadTyp: 96}), wire.Stream{Codec: wire.CodecH265}},
		"mjpeg":           {video(&format.MJPEG{}), wire.Stream{Codec: "M-JPEG"}},
		"no formats":      {&description.Media{Type: description.MediaTypeVideo}, wire.Stream{}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := describeStream(tc.media); got != tc.want {
				t.Errorf("describeStream = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestProfileNames(t *testing.T) {
	if h264Profile(100) != "High" || h264Profile(77) != "Main" || h264Profile(1) != "" {
		t.Error("H.264 profile names wrong")
	}
	if h265Profile(1) != "Main" || h265Profile(2) != "Main 10" || h265Profile(9) != "" {
		t.Error("H.265 profile names wrong")
	}
}
