package probe

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
)

// camera is an in-test RTSP camera on 127.0.0.1: it serves one path with a
// small hand-made H.264 stream (the probe counts frames, it never decodes
// them, so the slices need not be a decodable picture).
type camera struct {
	path       string
	user, pass string // required credentials; empty: none
	fps        int    // 0: the stream plays but sends nothing
	audioOnly  bool

	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
	media  *description.Media
	addr   string
}

// A valid baseline-profile SPS/PPS pair (from gortsplib's tests), so the SDP
// is one a real camera would send.
var (
	testSPS = []byte{
		0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02,
		0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
		0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
	}
	testPPS = []byte{0x68, 0xcb, 0x8c, 0xb2}
)

func startCamera(t *testing.T, c *camera) *camera {
	t.Helper()
	var ln net.Listener
	c.srv = &gortsplib.Server{
		Handler:     c,
		RTSPAddress: "127.0.0.1:0",
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			ln = l
			return l, err
		},
	}
	if c.audioOnly {
		c.media = &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{
			&format.G711{PayloadTyp: 8, SampleRate: 8000, ChannelCount: 1},
		}}
	} else {
		c.media = &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{
			&format.H264{PayloadTyp: 96, SPS: testSPS, PPS: testPPS, PacketizationMode: 1},
		}}
	}
	if err := c.srv.Start(); err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	c.stream = &gortsplib.ServerStream{Server: c.srv, Desc: &description.Session{Medias: []*description.Media{c.media}}}
	if err := c.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	if c.fps > 0 && !c.audioOnly {
		wg.Go(func() { c.send(t, done) })
	}
	t.Cleanup(func() {
		close(done)
		wg.Wait()
		c.stream.Close()
		c.srv.Close()
	})
	return c
}

// url returns the camera's URL with the given userinfo ("" for none).
func (c *camera) url(userinfo, path string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return "rtsp://" + userinfo + c.addr + "/" + path
}

// send writes c.fps access units a second, a keyframe every second and
// P-slices large enough to need FU-A fragmentation (several RTP packets
// per frame), as real streams do.
func (c *camera) send(t *testing.T, done chan struct{}) {
	enc, err := c.media.Formats[0].(*format.H264).CreateEncoder()
	if err != nil {
		t.Error(err)
		return
	}
	idr := append([]byte{0x65, 0x88, 0x84}, make([]byte, 4000)...)
	slice := append([]byte{0x41, 0x9a}, make([]byte, 3000)...)
	tick := time.NewTicker(time.Second / time.Duration(c.fps))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		au := [][]byte{slice}
		if i%c.fps == 0 {
			au = [][]byte{testSPS, testPPS, idr}
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Error(err)
			return
		}
		for _, p := range pkts {
			p.Timestamp = uint32(i * 90000 / c.fps)
			if err := c.stream.WritePacketRTP(c.media, p); err != nil {
				t.Error(err)
				return
			}
		}
	}
}

// check answers a DESCRIBE or SETUP: 401 without the right credentials, 404
// for any other path.
func (c *camera) check(conn *gortsplib.ServerConn, req *base.Request, path string) (*base.Response, error) {
	if c.user != "" && !conn.VerifyCredentials(req, c.user, c.pass) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	if strings.TrimPrefix(path, "/") != c.path {
		return &base.Response{StatusCode: base.StatusNotFound}, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (c *camera) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	res, err := c.check(ctx.Conn, ctx.Request, ctx.Path)
	if res.StatusCode != base.StatusOK {
		return res, nil, err
	}
	return res, c.stream, nil
}

func (c *camera) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	res, err := c.check(ctx.Conn, ctx.Request, ctx.Path)
	if res.StatusCode != base.StatusOK {
		return res, nil, err
	}
	return res, c.stream, nil
}

func (c *camera) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}
