package live_test

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/agent/live"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/wire"
)

// describedCamera is an RTSP camera that only answers DESCRIBE, with the
// media it is given: what a camera offers decides a session before any
// packet flows.
type describedCamera struct{ stream *gortsplib.ServerStream }

func newDescribedCamera(t *testing.T, medias ...*description.Media) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &describedCamera{}
	srv := &gortsplib.Server{Handler: c, RTSPAddress: ln.Addr().String(), Listen: func(string, string) (net.Listener, error) { return ln, nil }}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c.stream = &gortsplib.ServerStream{Server: srv, Desc: &description.Session{Medias: medias}}
	if err := c.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stream.Close()
		srv.Close()
	})
	return "rtsp://" + ln.Addr().String() + "/main"
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (c *describedCamera) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// TestCameraCodec: a camera sending H.265 only ends the session as
// "codec", naming what it sends (the hub then changes nothing about the
// camera's health); one offering no video at all is no_stream, a fault.
func TestCameraCodec(t *testing.T) {
	h265 := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H265{PayloadTyp: 96}}}
	audio := &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, MULaw: false, SampleRate: 8000, ChannelCount: 1}}}
	tests := []struct {
		name   string
		medias []*description.Media
		reason wire.Reason
		detail string
	}{
		{"H.265 only", []*description.Media{h265, audio}, wire.ReasonLiveCodec, "the camera sends H265, not H.264"},
		{"no video", []*description.Media{audio}, wire.ReasonNoStream, "the camera offers no video"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rec := startManager(t, map[string]string{"cam-1": newDescribedCamera(t, tt.medias...)}, nil)
			h := newHub(t, nil)
			m.Handle(context.Background(), startCmd("ls-1", "cam-1", h.offer))
			if st := rec.wait("ls-1", wire.LiveStopped); st.Reason != tt.reason || st.Detail != tt.detail {
				t.Errorf("stopped %+v; want %s: %s", st, tt.reason, tt.detail)
			}
			if s := m.Stats(); s.Active != 0 || s.Ended[tt.reason] != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestSubStream: a camera whose main stream is H.265 plays its H.264
// sub-stream; one whose sub-stream is H.265 too says so.
func TestSubStream(t *testing.T) {
	h265 := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H265{PayloadTyp: 96}}}
	sub := newCamera(t, "cam-1")
	checkLeaks(t)
	m, rec := startManager(t, map[string]string{
		"cam-1": newDescribedCamera(t, h265) + " " + sub.URL(),
		"cam-2": newDescribedCamera(t, h265) + " " + newDescribedCamera(t, h265),
	}, nil)
	h := connect(t, m, rec, "ls-1", "cam-1")
	eventually(t, "frames of the sub-stream", func() bool { return len(h.frames()) >= 5 })
	if sub.Readers() != 1 {
		t.Errorf("the sub-stream has %d readers, want 1", sub.Readers())
	}

	h2 := newHub(t, nil)
	m.Handle(context.Background(), startCmd("ls-2", "cam-2", h2.offer))
	if st := rec.wait("ls-2", wire.LiveStopped); st.Reason != wire.ReasonLiveCodec || st.Detail != "sub-stream: the camera sends H265, not H.264" {
		t.Errorf("stopped %+v; want codec for the sub-stream", st)
	}
}

// TestFoundSubStream: a camera without a configured sub-stream plays the
// one FindSub finds (its ONVIF profiles) when its main stream is H.265,
// and asks only then.
func TestFoundSubStream(t *testing.T) {
	h265 := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H265{PayloadTyp: 96}}}
	sub := newCamera(t, "cam-1")
	checkLeaks(t)
	main := newDescribedCamera(t, h265)
	var asked atomic.Int32
	m, rec := startManager(t, nil, func(o *live.Options) {
		o.Cameras = func(id string) (live.Streams, bool) {
			return live.Streams{Main: secret.URL(main), FindSub: func(context.Context) (secret.URL, error) {
				asked.Add(1)
				return secret.URL(sub.URL()), nil
			}}, id == "cam-1"
		}
	})
	h := connect(t, m, rec, "ls-1", "cam-1")
	eventually(t, "frames of the found sub-stream", func() bool { return len(h.frames()) >= 5 })
	if n := asked.Load(); n != 1 {
		t.Errorf("FindSub asked %d times, want 1", n)
	}
}

// TestCodecChoice: the stream a session plays, and the codec it answers
// with, follow what the hub's offer asks for. A hub that asks for H.265
// beside H.264 gets an H.265 main stream as it is, and an H.264 camera's
// H.264; a hub that asks for H.264 only gets the H.265 camera's H.264
// sub-stream. The hub's candidates may come before the answer: the
// session keeps them until it has its peer connection.
func TestCodecChoice(t *testing.T) {
	sub := newCamera(t, "cam-sub")
	h264 := newCamera(t, "cam-h264")
	checkLeaks(t)
	for _, tc := range []struct {
		name   string
		main   func(*testing.T) string
		offer  func(*webrtc.MediaEngine) error
		mime   string
		first  []uint8         // NAL unit types the first access unit must have
		stream wire.StreamRole // the answer's
		reader *sim.Camera     // the camera that must be read
	}{
		{"H.265 asked, H.265 main", func(t *testing.T) string { return newLargeH265Camera(t, largeH265Frames(40)).url() }, offerH265, webrtc.MimeTypeH265, []uint8{32, 33, 34, 19}, wire.StreamMain, nil},
		{"H.264 only, H.265 main", func(t *testing.T) string { return newLargeH265Camera(t, largeH265Frames(40)).url() }, nil, webrtc.MimeTypeH264, []uint8{7, 8, 5}, wire.StreamSub, sub},
		{"H.265 asked, H.264 main", func(*testing.T) string { return h264.URL() }, offerH265, webrtc.MimeTypeH264, []uint8{7, 8, 5}, wire.StreamMain, h264},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, rec := startManager(t, map[string]string{"cam-1": tc.main(t) + " " + sub.URL()}, nil)
			h := makeHub(t, tc.offer, true, 0)
			m.Handle(context.Background(), startCmd("ls-1", "cam-1", h.offer))
			for _, c := range h.candidates() {
				m.Handle(context.Background(), candidateCmd("ls-1", c))
			}
			answer := rec.wait("ls-1", wire.LiveAnswer)
			if answer.Stream != tc.stream {
				t.Errorf("the answer plays the %q stream, want %q", answer.Stream, tc.stream)
			}
			h.accept(answer)
			for _, c := range rec.all("ls-1", wire.LiveCandidate) {
				if err := h.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate.Candidate, SDPMid: c.Candidate.SDPMid, SDPMLineIndex: c.Candidate.SDPMLineIndex}); err != nil {
					t.Errorf("candidate %q: %v", c.Candidate.Candidate, err)
				}
			}
			eventually(t, "5 frames", func() bool { return len(h.frames()) >= 5 })
			if got := h.codec(); got != tc.mime {
				t.Errorf("the hub received %s, want %s", got, tc.mime)
			}
			first := h.frames()[0]
			for _, want := range tc.first {
				if !slices.Contains(first, want) {
					t.Errorf("first access unit has NAL types %v; want %v", first, tc.first)
				}
			}
			if tc.reader != nil && tc.reader.Readers() != 1 {
				t.Errorf("%s has %d readers, want 1", tc.reader.URL(), tc.reader.Readers())
			}
			m.Handle(context.Background(), stopCmd("ls-1"))
			rec.wait("ls-1", wire.LiveStopped)
		})
	}
}
