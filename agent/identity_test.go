package agent_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/internal/wiretest"
	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// TestONVIFIdentity: a camera with an ONVIF service (simulated, its clock
// 30 s ahead) fills the inventory's asset fields with what it says of
// itself (over what the configuration says), its clock drift goes into
// health reports, and its snapshots come through its media service.
func TestONVIFIdentity(t *testing.T) {
	broker := testenv.Mosquitto(t)
	cam := &sim.ONVIF{Username: "admin", Password: "pw", Skew: 30 * time.Second,
		Info: onvif.Info{Manufacturer: "Dahua", Model: "IPC-HFW2431S", Firmware: "2.800.0000", Serial: "7J0A1B2C3D4E5F6"}}
	srv := httptest.NewServer(cam)
	t.Cleanup(srv.Close)
	// Its pictures, behind basic authentication with its ONVIF account.
	pic := []byte{0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3}
	pics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="camera"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write(pic)
	}))
	t.Cleanup(pics.Close)
	cam.Snapshot = pics.URL + "/onvif-http/snapshot?Profile_1"
	cfg := testConfig(t, broker.URL())
	cfg.Cameras[0].Model, cfg.Cameras[0].Serial = "typed by hand", "OLD-SERIAL"
	cfg.Cameras[0].ONVIF = config.ONVIF{URL: srv.URL + "/onvif/device_service", Username: "admin", Password: "pw"}
	a, w := runAgent(t, broker.URL(), cfg)

	w.Publish(wire.Topic("agent-t1", wire.ChannelCommands),
		`{"v":1,"id":"cmd-1","ts":"`+time.Now().UTC().Format(time.RFC3339)+`","type":"probe","devices":["cam-1"]}`)
	inv := w.Next(wire.ChannelInventory, func(m wire.Message) bool { return m.Inventory.Devices[0].Serial == "7J0A1B2C3D4E5F6" }).Inventory
	if d := inv.Devices[0]; d.Model != "IPC-HFW2431S" || d.Firmware != "2.800.0000" || d.Vendor != "Dahua" || d.Camera == nil || !d.Camera.Snapshot {
		t.Errorf("inventory's camera %+v, want the camera's own model, firmware and maker, and snapshots", d)
	}
	h := w.Next(wire.ChannelHealth, func(m wire.Message) bool { _, ok := m.Health.Devices[0].Metrics[wire.MetricClockDrift]; return ok }).Health
	if d := h.Devices[0].Metrics[wire.MetricClockDrift]; d < 28 || d > 32 {
		t.Errorf("clock drift %v s, want about 30", d)
	}

	// Its snapshot comes through ONVIF: no snapshot URL is configured.
	w.Publish(wire.Topic("agent-t1", wire.ChannelCommands),
		`{"v":1,"id":"cmd-s1","ts":"`+time.Now().UTC().Format(time.RFC3339)+`","type":"snapshot","devices":["cam-1"]}`)
	if sn := w.Next(wire.ChannelSnapshot, nil).Snapshot; !bytes.Equal(sn.JPEG, pic) || sn.Error != "" {
		t.Errorf("snapshot through ONVIF: %d bytes, %q", len(sn.JPEG), sn.Error)
	}

	// A reload that leaves the camera's ONVIF settings as they were does
	// not ask it again; its identity stays in the inventory.
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if inv := w.Next(wire.ChannelInventory, nil).Inventory; inv.Devices[0].Serial != "7J0A1B2C3D4E5F6" {
		t.Errorf("inventory after a reload %+v, want the camera's serial kept", inv.Devices[0])
	}
	if n := cam.Calls("GetDeviceInformation"); n != 1 {
		t.Errorf("%d GetDeviceInformation calls, want 1", n)
	}
}

// TestONVIFTamper: a camera whose analytics report tampering (its event
// stream, followed from the start) is degraded for tamper within seconds,
// though its probes pass; a blurred picture is image_quality; online
// again when the events end.
func TestONVIFTamper(t *testing.T) {
	broker := testenv.Mosquitto(t)
	cam := &sim.ONVIF{Username: "admin", Password: "pw", Info: onvif.Info{Model: "DS-2CD2T47G2-L", Serial: "S1"}}
	srv := httptest.NewServer(cam)
	t.Cleanup(srv.Close)
	cfg := testConfig(t, broker.URL())
	cfg.Cameras[0].ONVIF = config.ONVIF{URL: srv.URL + "/onvif/device_service", Username: "admin", Password: "pw"}
	_, w := runAgent(t, broker.URL(), cfg)
	camEvent := func(m wire.Message) bool { return m.Event.Device == "cam-1" }
	wiretest.Eventually(t, "the agent pulling the camera's events", func() bool { return cam.Calls("PullMessages") > 0 })

	cam.Emit("tns1:RuleEngine/TamperDetector/Tamper", "IsTamper", true)
	ev := w.Next(wire.ChannelEvents, func(m wire.Message) bool { return camEvent(m) && m.Event.To == wire.StatusDegraded }).Event
	if ev.Reason != wire.ReasonTamper || !strings.Contains(ev.Detail, "tampering") {
		t.Errorf("event %+v, want degraded for tamper", ev)
	}
	// A blurred picture stays behind the tamper, and is the reason once
	// the tamper ends; then the camera is online again.
	cam.Emit("tns1:VideoSource/ImageTooBlurry/ImagingService", "State", true)
	cam.Emit("tns1:RuleEngine/TamperDetector/Tamper", "IsTamper", false)
	ev = w.Next(wire.ChannelEvents, func(m wire.Message) bool { return camEvent(m) && m.Event.Reason == wire.ReasonImageQuality }).Event
	if ev.To != wire.StatusDegraded || !strings.Contains(ev.Detail, "too_blurry") {
		t.Errorf("event %+v, want degraded for image quality (too_blurry)", ev)
	}
	cam.Emit("tns1:VideoSource/ImageTooBlurry/ImagingService", "State", false)
	if ev := w.Next(wire.ChannelEvents, func(m wire.Message) bool { return camEvent(m) && m.Event.To == wire.StatusOnline }).Event; ev.From != wire.StatusDegraded {
		t.Errorf("event %+v, want degraded → online", ev)
	}
}

// TestONVIFMotion: a camera whose analytics report motion (the ONVIF
// simulator's MotionAlarm, then its cell motion detector saying the same)
// sends one triggered event with reason motion, its health lines carry
// triggered while the motion lasts, and it stays online throughout:
// motion is a device event, not a fault. The motion's end is a restored
// event. The camera's clock is 20 s off: its events are followed from the
// start all the same (its clock is read before the subscription).
func TestONVIFMotion(t *testing.T) {
	broker := testenv.Mosquitto(t)
	cam := &sim.ONVIF{Username: "admin", Password: "pw", Skew: 20 * time.Second, Info: onvif.Info{Model: "IPC-HFW2431S", Serial: "S2"}}
	srv := httptest.NewServer(cam)
	t.Cleanup(srv.Close)
	cfg := testConfig(t, broker.URL())
	cfg.Cameras[0].ONVIF = config.ONVIF{URL: srv.URL + "/onvif/device_service", Username: "admin", Password: "pw"}
	_, w := runAgent(t, broker.URL(), cfg)
	w.Publish(wire.Topic("agent-t1", wire.ChannelCommands),
		`{"v":1,"id":"cmd-1","ts":"`+time.Now().UTC().Format(time.RFC3339)+`","type":"probe","devices":["cam-1"]}`)
	w.Next(wire.ChannelEvents, func(m wire.Message) bool { return m.Event.Device == "cam-1" && m.Event.To == wire.StatusOnline })
	wiretest.Eventually(t, "the agent pulling the camera's events", func() bool { return cam.Calls("PullMessages") > 0 })

	cam.Emit("tns1:VideoSource/MotionAlarm", "State", true)
	cam.Emit("tns1:RuleEngine/CellMotionDetector/Motion", "IsMotion", true)
	ev := w.Next(wire.ChannelEvents, func(m wire.Message) bool { return m.Event.Device == "cam-1" }).Event
	if ev.Type != wire.EventTriggered || ev.Reason != wire.ReasonMotion {
		t.Fatalf("event %+v, want triggered for motion", ev)
	}
	h := w.Next(wire.ChannelHealth, func(m wire.Message) bool { return m.Health.Devices[0].Triggered }).Health.Devices[0]
	if h.Status != wire.StatusOnline || h.Reason != wire.ReasonNone {
		t.Errorf("camera in motion: %s (%q), want online", h.Status, h.Reason)
	}

	cam.Emit("tns1:VideoSource/MotionAlarm", "State", false)
	for {
		m := w.Any()
		if m.Event == nil || m.Event.Device != "cam-1" {
			continue
		}
		if m.Event.Type != wire.EventRestored || m.Event.Reason != wire.ReasonMotion {
			t.Fatalf("event %+v, want the motion restored (and no other event of the camera first)", m.Event)
		}
		break
	}
	if h := w.Next(wire.ChannelHealth, nil).Health.Devices[0]; h.Triggered || h.Status != wire.StatusOnline {
		t.Errorf("camera after the motion: %+v, want online and not triggered", h)
	}
}
