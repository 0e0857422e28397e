package wire

import "fmt"

// Stream is one of a camera's video streams as its agent's probes found
// it: what a crew needs to know before choosing a stream for a video wall,
// and what says a camera was reconfigured or swapped (the hub records a
// main stream whose codec or resolution changed in the device's history).
// Frame rate and bitrate, which change from sample to sample, are metrics
// of the health reports (MetricFPS and MetricBitrateKbps for the main
// stream, MetricSubFPS and MetricSubBitrateKbps for the sub-stream).
type Stream struct {
	Role StreamRole `json:"role"`
	// Codec is CodecH264, CodecH265 or, for other codecs, the name the
	// camera gives in its SDP (up to 32 bytes).
	Codec string `json:"codec"`
	// Profile is the codec profile (Baseline, Main, High, Main 10…),
	// empty when the camera's SDP does not carry its parameter sets.
	Profile string `json:"profile,omitempty"`
	// Width and Height are the picture's size in pixels; 0 when unknown.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// StreamRole says which of a camera's streams a Stream is.
type StreamRole string

// Stream roles: the main stream is what is recorded and judged for health;
// a sub-stream is a smaller one for live view and video walls.
const (
	StreamMain StreamRole = "main"
	StreamSub  StreamRole = "sub"
)

// Codec names of Stream.Codec.
const (
	CodecH264 = "H264"
	CodecH265 = "H265"
)

// Metrics of a camera's sub-stream (see MetricFPS, MetricBitrateKbps).
const (
	MetricSubFPS         = "sub_fps"
	MetricSubBitrateKbps = "sub_bitrate_kbps"
)

// MaxStreams is how many streams an inventory line may list: a main
// stream and up to three sub-streams.
const MaxStreams = 4

// maxPixels bounds a stream's width and height (16K).
const maxPixels = 16384

// String is the stream as a crew reads it: "H265 Main 2560×1440".
func (s Stream) String() string {
	out := s.Codec
	if s.Profile != "" {
		out += " " + s.Profile
	}
	if s.Width > 0 && s.Height > 0 {
		out += fmt.Sprintf(" %d×%d", s.Width, s.Height)
	}
	return out
}

func validStreams(device string, ss []Stream) error {
	if len(ss) > MaxStreams {
		return reject(RejectInvalid, "camera %q: %d streams exceed the limit of %d", device, len(ss), MaxStreams)
	}
	mains := 0
	for _, s := range ss {
		switch s.Role {
		case StreamMain:
			mains++
		case StreamSub:
		default:
			return reject(RejectInvalid, "camera %q: unknown stream role %q", device, clip(string(s.Role)))
		}
		if s.Codec == "" {
			return reject(RejectInvalid, "camera %q: a %s stream without a codec", device, s.Role)
		}
		for _, f := range []struct{ what, v string }{{"codec", s.Codec}, {"profile", s.Profile}} {
			if err := checkLen("stream "+f.what, f.v, 32); err != nil {
				return err
			}
		}
		if s.Width < 0 || s.Height < 0 || s.Width > maxPixels || s.Height > maxPixels {
			return reject(RejectInvalid, "camera %q: stream size %d×%d out of range 0–%d", device, s.Width, s.Height, maxPixels)
		}
	}
	if mains > 1 {
		return reject(RejectInvalid, "camera %q: %d main streams", device, mains)
	}
	return nil
}
