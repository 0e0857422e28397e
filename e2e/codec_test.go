package e2e

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gopkg.in/yaml.v3"

	agentconfig "github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/workorder"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// TestH265Camera runs real cameras (FFmpeg: one H.265 main stream, one
// H.264 sub-stream) behind a real agent and hub: the camera with both
// plays its sub-stream to a WebRTC viewer, and so does one whose ONVIF
// profiles name it; the one with H.265 only is refused with words saying
// so (415); and they stay online, before and after, for a codec the
// browser path lacks is not a camera fault. The hub knows each camera's
// streams as the agent's probes found them.
func TestH265Camera(t *testing.T) {
	broker, hub, main, sub := h265Cameras(t)
	// A third camera names no sub-stream; its ONVIF profiles do.
	onv := &sim.ONVIF{Username: "admin", Password: "pw", Profiles: []onvif.Stream{
		{Token: "main", Encoding: "H265", Width: 320, Height: 240, URI: main.URL()},
		{Token: "sub", Encoding: "H264", Width: 320, Height: 240, URI: sub.URL()},
	}}
	onvSrv := httptest.NewServer(onv)
	t.Cleanup(onvSrv.Close)
	exited := runAgentProcess(t, broker.URL(), fmt.Sprintf("  - {id: cam-h265, rtsp: %q, rtsp_sub: %q, fov: 90}\n  - {id: cam-h265-only, rtsp: %q, fov: 90}\n"+
		"  - {id: cam-h265-onvif, rtsp: %q, fov: 90, onvif: {url: %q, username: admin, password: pw}}\n",
		main.URL(), sub.URL(), main.URL(), main.URL(), onvSrv.URL+"/onvif/device_service"))
	status := func(id string) (fleet.Device, error) {
		select {
		case err := <-exited:
			t.Fatalf("the agent exited: %v", err)
		default:
		}
		var d struct{ Device fleet.Device }
		err := hub.get("api/devices/"+id, &d)
		return d.Device, err
	}
	online := func(when string) {
		t.Helper()
		for _, id := range []string{"cam-h265", "cam-h265-only", "cam-h265-onvif"} {
			d, err := status(id)
			if err != nil || d.Status != wire.StatusOnline {
				t.Errorf("%s: %s is %s (%s %s), %v; want online", when, id, d.Status, d.Reason, d.Detail, err)
			}
		}
	}
	eventually(t, time.Minute, func() error {
		for _, id := range []string{"cam-h265", "cam-h265-only", "cam-h265-onvif"} {
			if d, err := status(id); err != nil || d.Status != wire.StatusOnline {
				return fmt.Errorf("%s is %s, %v", id, d.Status, err)
			}
		}
		return nil
	})

	// What the probes found the streams to be reaches the hub with the
	// inventory: codec, profile and size of the main and sub-streams.
	eventually(t, 30*time.Second, func() error {
		d, err := status("cam-h265")
		if err != nil {
			return err
		}
		if len(d.Streams) != 2 {
			return fmt.Errorf("streams %+v", d.Streams)
		}
		m, s := d.Streams[0], d.Streams[1]
		if m.Role != wire.StreamMain || m.Codec != wire.CodecH265 || m.Profile == "" || m.Width != 320 || m.Height != 240 ||
			s.Role != wire.StreamSub || s.Codec != wire.CodecH264 || s.Profile == "" || s.Width != 320 || s.Height != 240 {
			return fmt.Errorf("streams %+v, want an H265 main and an H264 sub, 320×240", d.Streams)
		}
		return nil
	})

	c := playWHEP(t, hub.api, "cam-h265")
	c.awaitFrames(t, 20, 30*time.Second)
	if n := c.firstNALs(); len(n) == 0 || n[0] != 7 && n[0] != 5 && n[0] != 24 {
		t.Errorf("the sub-stream's first NAL units %v, want H.264 starting at a keyframe", n)
	}
	c.stop(t)
	c = playWHEP(t, hub.api, "cam-h265-onvif")
	c.awaitFrames(t, 20, 30*time.Second)
	c.stop(t)

	_, offer := whepOffer(t, newWHEPAPI(t, true))
	code, body, _ := postWHEP(t, hub.api, "cam-h265-only", "application/sdp", offer)
	if code != http.StatusUnsupportedMediaType || !strings.Contains(body, "the camera sends H265, not H.264") || !strings.Contains(body, "sub-stream") {
		t.Errorf("POST for the H.265-only camera = %d %s, want 415 naming H265 and the sub-stream", code, body)
	}
	online("after viewing")
	// A probe round later, too: nothing the stream did lingers.
	time.Sleep(3 * time.Second)
	online("a probe round later")
	if got := hub.metric(t, `citywatch_live_upstream_failures_total{reason="codec"}`); got != 1 {
		t.Errorf("codec failures %v, want 1", got)
	}
}

// TestBFrameCamera: an H.264 Main-profile camera with B-frames (FFmpeg,
// two between references) plays through a real agent and hub with its
// frames in the order the camera sent them: the viewer sees every packet
// after the one before, and the frames' timestamps step back where a
// B-frame is shown before the reference decoded ahead of it.
func TestBFrameCamera(t *testing.T) {
	broker := testenv.Mosquitto(t)
	hub := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: "live: {loopback_only: true, linger: 300ms}\n"})
	cam := testenv.FFmpegCamera(t, testenv.CameraOptions{Width: 320, Height: 240, FPS: 10, Bitrate: 300_000, BFrames: 2})
	runAgentProcess(t, broker.URL(), fmt.Sprintf("  - {id: cam-bframes, rtsp: %q, fov: 90}\n", cam.URL()))
	eventually(t, time.Minute, func() error {
		var d struct{ Device fleet.Device }
		if err := hub.get("api/devices/cam-bframes", &d); err != nil {
			return err
		}
		if d.Device.Status != wire.StatusOnline {
			return fmt.Errorf("cam-bframes is %s", d.Device.Status)
		}
		return nil
	})
	c := playWHEP(t, hub.api, "cam-bframes")
	c.awaitFrames(t, 30, 30*time.Second)
	stamps, behind := c.order()
	if behind != 0 {
		t.Errorf("%d packets arrived out of order", behind)
	}
	back := 0
	for i := 1; i < len(stamps); i++ {
		if int32(stamps[i]-stamps[i-1]) < 0 {
			back++
		}
	}
	if back == 0 {
		t.Errorf("no frame's timestamp steps back in %d frames: the B-frames did not come through as sent (%v)", len(stamps), stamps)
	}
	c.stop(t)
}

// TestONVIFCamera runs a camera with an ONVIF service (simulated in the
// test, its clock 40 s ahead) and RTSP (the simulator's test card) behind
// a real agent process and hub process: citywatch-agent discover proposes
// it, its model and serial reach the hub from the camera itself, its
// clock drift is a warning alarm, a work order's snapshot comes from its
// ONVIF snapshot address, and
// when its analytics report tampering it is degraded for tamper with a
// tamper alarm, online again when that ends.
func TestONVIFCamera(t *testing.T) {
	broker := testenv.Mosquitto(t)
	hub := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL()})
	rtsp, err := sim.NewCamera(sim.CameraConfig{ID: "cam-onvif", Addr: "127.0.0.1:0", Width: 320, Height: 176}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rtsp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rtsp.Close)
	// The camera's snapshot address serves a JPEG of its own.
	var pic bytes.Buffer
	if err := jpeg.Encode(&pic, image.NewGray(image.Rect(0, 0, 64, 48)), nil); err != nil {
		t.Fatal(err)
	}
	snap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(pic.Bytes())
	}))
	t.Cleanup(snap.Close)
	cam := &sim.ONVIF{Username: "admin", Password: "pw", Skew: 40 * time.Second, Snapshot: snap.URL + "/snapshot.jpg",
		Info: onvif.Info{Manufacturer: "Hikvision", Model: "DS-2CD2T47G2-L", Firmware: "V5.7.3", Serial: "DS-2CD2T47G2-L20220101AACHJ1"}}
	srv := httptest.NewServer(cam)
	t.Cleanup(srv.Close)

	// Discovery on the site LAN (here a unicast probe to the camera's
	// discovery port) proposes the camera for the agent's configuration.
	disc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disc.Close() })
	go cam.ServeDiscovery(disc, "urn:uuid:0c8b5a44-0000-4000-8000-00000000aa01", srv.URL+"/onvif/device_service", "Gate east")
	out, err := exec.Command(buildCommand(t, "github.com/citywatch/citywatch/agent/cmd/citywatch-agent"),
		"discover", "-addr", disc.LocalAddr().String(), "-timeout", "2s").Output()
	if err != nil {
		t.Fatalf("citywatch-agent discover: %v\n%s", err, out)
	}
	var proposal struct{ Cameras []agentconfig.Camera }
	if err := yaml.Unmarshal(out, &proposal); err != nil || len(proposal.Cameras) != 1 ||
		proposal.Cameras[0].ONVIF.URL != srv.URL+"/onvif/device_service" || proposal.Cameras[0].ID != "cam-00000000aa01" {
		t.Fatalf("discover proposed %+v (%v) from\n%s", proposal.Cameras, err, out)
	}
	runAgentProcess(t, broker.URL(), fmt.Sprintf("  - {id: cam-onvif, rtsp: %q, fov: 90, model: typed, onvif: {url: %q, username: admin, password: pw}}\n",
		rtsp.URL(), srv.URL+"/onvif/device_service"))

	device := func() fleet.Device {
		var d struct{ Device fleet.Device }
		if err := hub.get("api/devices/cam-onvif", &d); err != nil {
			t.Logf("device: %v", err)
		}
		return d.Device
	}
	alarmOf := func(source alarm.Source) (alarmView, error) {
		var as struct{ Alarms []alarmView }
		if err := hub.get("api/alarms?device=cam-onvif&source="+string(source), &as); err != nil {
			return alarmView{}, err
		}
		if len(as.Alarms) != 1 {
			return alarmView{}, fmt.Errorf("%d %s alarms", len(as.Alarms), source)
		}
		return as.Alarms[0], nil
	}
	eventually(t, time.Minute, func() error {
		d := device()
		if d.Status != wire.StatusOnline || d.Serial != cam.Info.Serial || d.Model != cam.Info.Model || d.Metrics[wire.MetricClockDrift] < 35 {
			return fmt.Errorf("cam-onvif is %s, model %q serial %q, metrics %v", d.Status, d.Model, d.Serial, d.Metrics)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		a, err := alarmOf(alarm.SourceThreshold)
		if err == nil && a.Type != wire.MetricClockDrift {
			err = fmt.Errorf("threshold alarm of type %s", a.Type)
		}
		return err
	})

	// A work order's picture comes through the camera's ONVIF snapshot
	// address.
	var created struct{ Order struct{ ID string } }
	hub.api.postJSON(t, "api/workorders", `{"devices":["cam-onvif"],"title":"check the picture"}`, &created)
	var shots struct {
		Results []workorder.SnapshotResult `json:"results"`
	}
	hub.api.postJSON(t, "api/workorders/"+created.Order.ID+"/snapshot", `{}`, &shots)
	if len(shots.Results) != 1 || shots.Results[0].Photo == nil || shots.Results[0].Photo.Type != "image/jpeg" ||
		shots.Results[0].Photo.Size != pic.Len() || cam.Calls("GetSnapshotUri") == 0 {
		t.Errorf("snapshot %+v (GetSnapshotUri asked %d times), want the camera's %d-byte JPEG", shots.Results, cam.Calls("GetSnapshotUri"), pic.Len())
	}

	cam.Emit("tns1:RuleEngine/TamperDetector/Tamper", "IsTamper", true)
	eventually(t, 30*time.Second, func() error {
		if d := device(); d.Status != wire.StatusDegraded || d.Reason != wire.ReasonTamper {
			return fmt.Errorf("cam-onvif is %s (%s)", d.Status, d.Reason)
		}
		a, err := alarmOf(alarm.SourceTamper)
		if err == nil && a.Type != "camera" {
			err = fmt.Errorf("tamper alarm of type %s", a.Type)
		}
		return err
	})
	cam.Emit("tns1:RuleEngine/TamperDetector/Tamper", "IsTamper", false)
	eventually(t, 30*time.Second, func() error {
		if d := device(); d.Status != wire.StatusOnline {
			return fmt.Errorf("cam-onvif is %s (%s)", d.Status, d.Reason)
		}
		return nil
	})
}

// TestH265CameraInChromium: the console in Chromium plays an H.265
// camera's H.264 sub-stream with one click (frames decoded, and more
// frames after), says in words why an H.265-only camera cannot play, and
// both cameras stay online.
func TestH265CameraInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, live: true})
	small := testenv.CameraOptions{Width: 320, Height: 240, FPS: 10, Bitrate: 300_000}
	h265 := small
	h265.H265 = true
	main, sub := testenv.FFmpegCamera(t, h265), testenv.FFmpegCamera(t, small)
	runAgentProcess(t, s.broker.URL(), fmt.Sprintf("  - {id: cam-h265, rtsp: %q, rtsp_sub: %q, fov: 90}\n  - {id: cam-h265-only, rtsp: %q, fov: 90}\n",
		main.URL(), sub.URL(), main.URL()))
	online := func() error {
		for _, id := range []string{"cam-h265", "cam-h265-only"} {
			var d struct{ Device fleet.Device }
			if err := s.api.fetch("api/devices/"+id, &d); err != nil {
				return err
			}
			if d.Device.Status != wire.StatusOnline {
				return fmt.Errorf("%s is %s (%s %s)", id, d.Device.Status, d.Device.Reason, d.Device.Detail)
			}
		}
		return nil
	}
	eventually(t, time.Minute, online)

	browserAccount(t, s.hub, "h265-op", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "h265-op", 120*time.Second)
	if err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`window.citywatch.openLive('cam-h265')`),
		chromedp.WaitVisible(`#player[data-camera="cam-h265"][data-state="playing"]`),
	); err != nil {
		t.Fatalf("live view of cam-h265: %v", err)
	}
	decodingGrows(t, ctx, "player", []string{"cam-h265"})

	// Closed first (the dialog's close event comes a moment later), then
	// the other camera.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.citywatch.closeLive()`), chromedp.WaitNotVisible(`#player`),
		chromedp.Evaluate[chromedp.Void](`window.citywatch.openLive('cam-h265-only')`)); err != nil {
		t.Fatal(err)
	}
	player := func() (string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[string](`(({dataset: d}) => d.camera + ' ' + d.state)(document.querySelector('#player')) + ': ' + (document.querySelector('#player .v-msg')?.textContent || '')`))
	}
	eventually(t, 30*time.Second, func() error {
		p, err := player()
		if err == nil && !strings.HasPrefix(p, "cam-h265-only failed") {
			err = fmt.Errorf("the player: %s", p)
		}
		return err
	})
	msg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#player .v-msg')?.textContent || ''`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "cannot play in the browser") || !strings.Contains(msg, "H.264 sub-stream") {
		t.Errorf("the player says %q, want why and what to do", msg)
	}
	if err := online(); err != nil {
		t.Errorf("after viewing: %v", err)
	}
}

// h265Cameras starts a broker, a hub relaying live video on loopback and
// two FFmpeg cameras of 320×240 at 10 fps: an H.265 main stream and an
// H.264 sub-stream.
func h265Cameras(t *testing.T) (broker *testenv.Broker, hub *hubProcess, main, sub *testenv.Camera) {
	t.Helper()
	broker = testenv.Mosquitto(t)
	hub = startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: "live: {loopback_only: true, linger: 300ms}\n"})
	small := testenv.CameraOptions{Width: 320, Height: 240, FPS: 10, Bitrate: 300_000}
	h265 := small
	h265.H265 = true
	return broker, hub, testenv.FFmpegCamera(t, h265), testenv.FFmpegCamera(t, small)
}
