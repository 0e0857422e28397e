package probe

import (
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/citywatch/citywatch/wire"
)

// describeStream says what a camera's video media is: its first format's
// codec and, from the parameter sets the SDP carries, profile and size.
// A camera whose SDP leaves them out (they then come in-band) is described
// by its codec alone; an SPS that does not parse is treated the same: the
// probe reports what it knows rather than failing a camera that plays.
func describeStream(video *description.Media) wire.Stream {
	if len(video.Formats) == 0 {
		return wire.Stream{}
	}
	f := video.Formats[0]
	s := wire.Stream{Codec: f.Codec()}
	switch f := f.(type) {
	case *format.H264:
		var sps h264.SPS
		if len(f.SPS) > 0 && sps.Unmarshal(f.SPS) == nil {
			s.Profile, s.Width, s.Height = h264Profile(sps.ProfileIdc), sps.Width(), sps.Height()
		}
	case *format.H265:
		var sps h265.SPS
		if len(f.SPS) > 0 && sps.Unmarshal(f.SPS) == nil {
			s.Profile, s.Width, s.Height = h265Profile(sps.ProfileTierLevel.GeneralProfileIdc), sps.Width(), sps.Height()
		}
	}
	return s
}

// h264Profile names an H.264 profile_idc (ITU-T H.264 Annex A).
func h264Profile(idc uint8) string {
	switch idc {
	case 66:
		return "Baseline"
	case 77:
		return "Main"
	case 88:
		return "Extended"
	case 100:
		return "High"
	case 110:
		return "High 10"
	case 122:
		return "High 4:2:2"
	case 244:
		return "High 4:4:4"
	}
	return ""
}

// h265Profile names an H.265 general_profile_idc (ITU-T H.265 Annex A).
func h265Profile(idc uint8) string {
	switch idc {
	case 1:
		return "Main"
	case 2:
		return "Main 10"
	case 3:
		return "Main Still Picture"
	case 4:
		return "Range Extensions"
	}
	return ""
}
