package probe

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

const testTimeout = 500 * time.Millisecond

func target(url string) Target { return Target{ID: "cam-1", URL: secret.URL(url)} }

func TestProbeOK(t *testing.T) {
	cam := startCamera(t, &camera{path: "ch1", user: "admin", pass: "pw", fps: 25})
	p := &Prober{Timeout: testTimeout}

	res := p.Probe(t.Context(), target(cam.url("admin:pw", "ch1")))
	if !res.OK() || res.TCP <= 0 || res.RTSP <= 0 || res.Sampled || res.At.IsZero() {
		t.Fatalf("Probe = %+v, want OK with tcp and rtsp times", res)
	}
	// The SDP's SPS: Baseline profile, 1920×1080.
	if want := (wire.Stream{Codec: wire.CodecH264, Profile: "Baseline", Width: 1920, Height: 1080}); res.Stream != want {
		t.Errorf("stream = %+v, want %+v", res.Stream, want)
	}

	res = p.Sample(t.Context(), target(cam.url("admin:pw", "ch1")), time.Second)
	if !res.OK() || !res.Sampled {
		t.Fatalf("Sample = %+v, want OK", res)
	}
	// 25 fps for one second; scheduling on a loaded machine may shift a
	// frame or two across the window's edges.
	if res.FPS < 18 || res.FPS > 32 {
		t.Errorf("fps = %.1f, want about 25", res.FPS)
	}
	// One 4 kB keyframe and 24 3 kB slices a second ≈ 600 kbit/s.
	if res.BitrateKbps < 400 || res.BitrateKbps > 800 {
		t.Errorf("bitrate = %.0f kbit/s, want about 600", res.BitrateKbps)
	}
	if time.Since(res.LastFrame) > time.Second {
		t.Errorf("last frame at %v, want within the sample", res.LastFrame)
	}
}

func TestProbeFailures(t *testing.T) {
	open := startCamera(t, &camera{path: "ch1", fps: 25})
	authed := startCamera(t, &camera{path: "ch1", user: "admin", pass: "pw", fps: 25})
	silent := startCamera(t, &camera{path: "ch1"})
	audio := startCamera(t, &camera{path: "ch1", audioOnly: true})

	// A port nobody listens on: take a free one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()

	mute := muteListener(t)

	// Unreachable hosts: no packet may leave this machine, so the dialer
	// fails the way the kernel does for a dead route or a silent host.
	dialErr := func(err error) func(context.Context, string, string) (net.Conn, error) {
		return func(_ context.Context, _, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
		}
	}
	noSuchHost := func(_ context.Context, _, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}}
	}
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	}

	tests := []struct {
		name   string
		url    string
		dial   func(context.Context, string, string) (net.Conn, error)
		sample bool
		want   wire.Reason
		detail string
	}{
		{name: "refused", url: "rtsp://" + closedAddr + "/ch1", want: wire.ReasonRefused},
		{name: "host unreachable", url: "rtsp://10.255.0.1/ch1", dial: dialErr(syscall.EHOSTUNREACH), want: wire.ReasonUnreachable},
		{name: "network unreachable", url: "rtsp://10.255.0.1/ch1", dial: dialErr(syscall.ENETUNREACH), want: wire.ReasonUnreachable},
		{name: "connect timeout", url: "rtsp://10.255.0.1/ch1", dial: hang, want: wire.ReasonUnreachable, detail: "no answer to TCP connect"},
		{name: "host name does not resolve", url: "rtsp://cam.invalid/ch1", dial: noSuchHost, want: wire.ReasonUnreachable, detail: "does not resolve"},
		{name: "wrong password", url: authed.url("admin:wrong", "ch1"), want: wire.ReasonAuthFailed, detail: "401"},
		{name: "no credentials", url: authed.url("", "ch1"), want: wire.ReasonAuthFailed},
		{name: "unknown path", url: open.url("", "ch9"), want: wire.ReasonNoStream, detail: "404"},
		{name: "no video media", url: audio.url("", "ch1"), want: wire.ReasonNoStream, detail: "no video"},
		{name: "no frames", url: silent.url("", "ch1"), sample: true, want: wire.ReasonNoStream, detail: "no frame"},
		{name: "RTSP never answers", url: "rtsp://" + mute + "/ch1", want: wire.ReasonTimeout},
		{name: "not an RTSP URL", url: "http://admin:pw@cam/x", want: wire.ReasonProbeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Prober{Timeout: testTimeout, Dial: tt.dial}
			var res Result
			if tt.sample {
				res = p.Sample(t.Context(), target(tt.url), 500*time.Millisecond)
			} else {
				res = p.Probe(t.Context(), target(tt.url))
			}
			if res.Reason != tt.want {
				t.Fatalf("reason = %q (%s), want %q", res.Reason, res.Detail, tt.want)
			}
			if !strings.Contains(res.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to mention %q", res.Detail, tt.detail)
			}
			if strings.Contains(res.Detail, "pw") || strings.Contains(res.Detail, "wrong") {
				t.Errorf("detail leaks credentials: %q", res.Detail)
			}
		})
	}
}

// TestProbeCancel: a cancelled probe returns at once instead of waiting
// for the RTSP timeout.
func TestProbeCancel(t *testing.T) {
	mute := muteListener(t)
	ctx, cancel := context.WithCancel(t.Context())
	p := &Prober{Timeout: time.Minute}
	done := make(chan Result)
	go func() { done <- p.Probe(ctx, target("rtsp://"+mute+"/x")) }()
	time.AfterFunc(50*time.Millisecond, cancel)
	select {
	case res := <-done:
		if res.Reason != wire.ReasonProbeError || res.Detail != "cancelled" {
			t.Errorf("cancelled probe = %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled probe did not return")
	}
}

// muteListener returns the address of a TCP listener that accepts
// connections and never says a word, like a hung camera.
func muteListener(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}
