package sim

import (
	"bytes"
	"errors"
	"image/jpeg"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startCamera starts a camera on a free port and closes it when the test ends.
func startCamera(t *testing.T, cfg CameraConfig) *Camera {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "cam-1"
	}
	if cfg.Width == 0 {
		cfg.Width, cfg.Height = 160, 96 // small pictures keep the tests quick
	}
	c, err := NewCamera(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// rtspClient is a gortsplib client playing a camera's stream.
type rtspClient struct {
	c     *gortsplib.Client
	forma *format.H264
	aus   chan [][]byte // access units, in order
	pts   chan int64    // their RTP timestamps, 90 kHz
}

// dial connects to rawURL and sends DESCRIBE; it returns the DESCRIBE error.
func dial(t *testing.T, rawURL string, readTimeout time.Duration) (*rtspClient, error) {
	t.Helper()
	u, err := base.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.TransportTCP
	rc := &rtspClient{
		c:   &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp, ReadTimeout: readTimeout},
		aus: make(chan [][]byte, 1024),
		pts: make(chan int64, 1024),
	}
	if err := rc.c.Start2(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.c.Close)
	desc, _, err := rc.c.Describe(u)
	if err != nil {
		return nil, err
	}
	medi := desc.FindFormat(&rc.forma)
	if medi == nil {
		t.Fatal("no H.264 media in the SDP")
	}
	if _, err := rc.c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		t.Fatal(err)
	}
	dec, err := rc.forma.CreateDecoder()
	if err != nil {
		t.Fatal(err)
	}
	rc.c.OnPacketRTP(medi, rc.forma, func(pkt *rtp.Packet) {
		au, err := dec.Decode(pkt)
		if err != nil {
			return // more packets needed
		}
		rc.aus <- au
		rc.pts <- int64(pkt.Timestamp)
	})
	return rc, nil
}

// play is dial that must succeed, followed by PLAY.
func play(t *testing.T, rawURL string) *rtspClient {
	t.Helper()
	rc, err := dial(t, rawURL, 5*time.Second)
	if err != nil {
		t.Fatalf("describe %s: %v", rawURL, err)
	}
	if _, err := rc.c.Play(nil); err != nil {
		t.Fatal(err)
	}
	return rc
}

// next returns the next access unit and its PTS, failing after a generous
// deadline (this is a liveness bound, not a timing assertion).
func (rc *rtspClient) next(t *testing.T) ([][]byte, int64) {
	t.Helper()
	select {
	case au := <-rc.aus:
		return au, <-rc.pts
	case <-time.After(10 * time.Second):
		t.Fatal("no access unit within 10s")
		return nil, 0
	}
}

func TestCameraStream(t *testing.T) {
	const fps = 10
	// A long GOP: a reader that starts with an IDR got it on demand, not by luck.
	cam := startCamera(t, CameraConfig{User: "admin", Password: "pw", FPS: fps, GOP: 10 * fps})
	rc := play(t, cam.URL())

	if len(rc.forma.SPS) == 0 || len(rc.forma.PPS) == 0 {
		t.Fatal("SDP lacks SPS/PPS")
	}
	const frames = 2 * fps
	var first, last int64
	for i := range frames {
		au, pts := rc.next(t)
		if i == 0 {
			if !h264.IsRandomAccess(au) {
				t.Fatalf("first access unit is not an IDR: NAL types %v", naluTypes(au))
			}
			if !bytes.Equal(au[0], rc.forma.SPS) || !bytes.Equal(au[1], rc.forma.PPS) {
				t.Error("IDR access unit does not start with the SDP's SPS and PPS")
			}
			first = pts
		}
		last = pts
	}
	// The frame rate comes from the stream's own timestamps; the bounds only
	// catch a stream paced at a wildly wrong rate.
	got := float64(frames-1) * 90000 / float64(last-first)
	if got < fps/2 || got > fps*2 {
		t.Errorf("stream runs at %.1f fps, want about %d", got, fps)
	}

	// A second reader joins mid-GOP and still starts with an IDR.
	rc2 := play(t, cam.URL())
	if au, _ := rc2.next(t); !h264.IsRandomAccess(au) {
		t.Fatalf("second reader's first access unit is not an IDR: %v", naluTypes(au))
	}
	waitFor(t, "2 readers", func() bool { return cam.Readers() == 2 })

	rc.c.Close()
	rc2.c.Close()
	waitFor(t, "encoder to stop when nobody plays", func() bool {
		cam.mu.Lock()
		defer cam.mu.Unlock()
		return !cam.streaming && len(cam.readers) == 0
	})
}

func TestCameraForceKeyframe(t *testing.T) {
	cam := startCamera(t, CameraConfig{FPS: 25, GOP: 1000})
	rc := play(t, cam.URL())
	if au, _ := rc.next(t); !h264.IsRandomAccess(au) {
		t.Fatal("first access unit is not an IDR")
	}
	cam.ForceKeyframe()
	for range 50 { // two seconds of frames; the GOP alone would take 40
		if au, _ := rc.next(t); h264.IsRandomAccess(au) {
			return
		}
	}
	t.Fatal("no IDR after ForceKeyframe")
}

func TestCameraFaults(t *testing.T) {
	cam := startCamera(t, CameraConfig{User: "admin", Password: "pw", FPS: 5})
	addr := cam.Addr()

	tests := []struct {
		fault string
		check func(error) bool
		want  string
	}{
		{FaultOffline, func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }, "connection refused"},
		{FaultAuth, statusIs(base.StatusUnauthorized), "401"},
		{FaultNoStream, statusIs(base.StatusNotFound), "404"},
		{FaultHang, func(err error) bool {
			var e liberrors.ErrClientRequestTimedOut
			return errors.As(err, &e)
		}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			reader := play(t, cam.URL())
			reader.next(t)

			if err := cam.SetFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			_, err := dial(t, cam.URL(), 300*time.Millisecond)
			if !tt.check(err) {
				t.Fatalf("describe during %s: got %v, want %s", tt.fault, err, tt.want)
			}
			if err := reader.c.Wait(); err == nil {
				t.Error("a reader playing when the fault struck was not dropped")
			}

			if err := cam.SetFault(FaultRecover); err != nil {
				t.Fatal(err)
			}
			if cam.Addr() != addr {
				t.Fatalf("address changed from %s to %s", addr, cam.Addr())
			}
			rc := play(t, cam.URL())
			if au, _ := rc.next(t); !h264.IsRandomAccess(au) {
				t.Fatal("first access unit after recover is not an IDR")
			}
		})
	}
}

func TestCameraWrongCredentialsAndPath(t *testing.T) {
	cam := startCamera(t, CameraConfig{User: "admin", Password: "pw"})
	host := cam.Addr()
	for _, u := range []string{
		"rtsp://admin:wrong@" + host + "/stream",
		"rtsp://" + host + "/stream",
	} {
		if _, err := dial(t, u, time.Second); err == nil {
			t.Errorf("%s: describe succeeded", u)
		}
	}
	if _, err := dial(t, "rtsp://admin:pw@"+host+"/other", time.Second); !statusIs(base.StatusNotFound)(err) {
		t.Errorf("wrong path: got %v, want 404", err)
	}
}

func TestCameraSnapshot(t *testing.T) {
	cam := startCamera(t, CameraConfig{User: "admin", Password: "pw"})
	srv := httptest.NewServer(cam)
	defer srv.Close()

	get := func(user, pass string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, body
	}

	res, body := get("admin", "pw")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("got %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("snapshot does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 160 || b.Dy() != 96 {
		t.Errorf("snapshot is %v, want 160x96", b)
	}
	if res, _ := get("admin", "nope"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %s", res.Status)
	}
	for fault, want := range map[string]int{FaultOffline: 503, FaultNoStream: 503, FaultAuth: 401} {
		if err := cam.SetFault(fault); err != nil {
			t.Fatal(err)
		}
		if res, _ := get("admin", "pw"); res.StatusCode != want {
			t.Errorf("%s: got %s, want %d", fault, res.Status, want)
		}
	}
	if err := cam.SetFault(FaultHang); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := client.Get(srv.URL); err == nil {
		t.Error("hang: snapshot answered")
	}
}

func TestCameraStartsOffline(t *testing.T) {
	cam, err := NewCamera(CameraConfig{ID: "cam-1", Width: 160, Height: 96}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := cam.SetFault(FaultOffline); err != nil {
		t.Fatal(err)
	}
	if err := cam.Start(); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	if _, err := dial(t, cam.URL(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("got %v, want connection refused", err)
	}
	if err := cam.SetFault(FaultRecover); err != nil {
		t.Fatal(err)
	}
	play(t, cam.URL()).next(t)
}

func TestNewCameraInvalid(t *testing.T) {
	for name, cfg := range map[string]CameraConfig{
		"odd size":          {ID: "c", Width: 100, Height: 100},
		"relative path":     {ID: "c", Path: "stream"},
		"password, no user": {ID: "c", Password: "pw"},
	} {
		if _, err := NewCamera(cfg, testLogger(t)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	cam := startCamera(t, CameraConfig{})
	if err := cam.SetFault("melt"); !errors.Is(err, ErrUnknownFault) {
		t.Errorf("unknown fault: got %v", err)
	}
}

func statusIs(code base.StatusCode) func(error) bool {
	return func(err error) bool {
		var e liberrors.ErrClientBadStatusCode
		return errors.As(err, &e) && e.Code == code
	}
}

func naluTypes(au [][]byte) []h264.NALUType {
	var ts []h264.NALUType
	for _, n := range au {
		ts = append(ts, h264.NALUType(n[0]&0x1f))
	}
	return ts
}

// waitFor polls cond until it holds, failing after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
