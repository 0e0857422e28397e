package live_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"

	"github.com/citywatch/citywatch/agent/live"
	"github.com/citywatch/citywatch/agent/secret"
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
