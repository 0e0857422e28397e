package sim

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// TestONVIFCameras runs a city with the demo's ONVIF cameras: their
// agents' configurations leave the identity out, yet the inventory
// carries the maker, model, firmware and serial the cameras say over
// ONVIF; the drifted camera's clock drift is reported; pictures come
// through the snapshot URI; and the motion, tamper and restore faults
// reach the agent as the camera's events (motion a triggered event with
// the camera online, tampering a degraded status). A camera without ONVIF
// refuses them.
func TestONVIFCameras(t *testing.T) {
	broker := testenv.Mosquitto(t)
	city := CityOptions{Seed: 3, Districts: 1, Sites: 2, Devices: 10}
	plan, err := GenerateCity(city)
	if err != nil {
		t.Fatal(err)
	}
	cams, drifted := DemoONVIF(plan)
	if len(cams) != 2 || cams[drifted] != DemoDrift {
		t.Fatalf("demo ONVIF cameras %v (drifted %q), want one per site, one %v ahead", cams, drifted, DemoDrift)
	}
	s, err := New(Options{
		BrokerURL: broker.URL(),
		City:      city,
		Camera:    CameraConfig{Width: 160, Height: 96, FPS: 10},
		Interval:  time.Second,
		ONVIF:     cams,
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, broker.URL())
	run(t, s)

	var other string // an ONVIF camera on time
	for ai, a := range plan.Agents {
		for i, want := range a.Cameras {
			got := s.Agents()[ai].Cameras[i]
			if _, ok := cams[want.ID]; !ok {
				if got.ONVIF.URL != "" || got.Model != want.Model {
					t.Errorf("camera %s without ONVIF: config %+v", want.ID, got)
				}
				continue
			}
			if want.ID != drifted {
				other = want.ID
			}
			if got.ONVIF.URL == "" || got.Vendor != "" || got.Model != "" || got.Firmware != "" || got.Serial != "" || got.Snapshot != "" {
				t.Errorf("ONVIF camera %s: config %+v, want its ONVIF service and no identity or snapshot URL", want.ID, got)
			}
			w.await(t, "the identity of "+want.ID+" in the inventory", func(m wire.Message) bool {
				if m.Inventory == nil || m.Agent != a.ID {
					return false
				}
				d := m.Inventory.Devices[i]
				return d.ID == want.ID && d.Vendor == want.Vendor && d.Model == want.Model && d.Firmware == want.Firmware &&
					d.Serial == want.Serial && d.Vendor != "" && d.Serial != "" && d.Camera.Snapshot
			})
		}
	}
	w.await(t, "the clock drift of "+drifted, func(m wire.Message) bool {
		if m.Health == nil {
			return false
		}
		for _, d := range m.Health.Devices {
			if v, ok := d.Metrics[wire.MetricClockDrift]; d.ID == drifted && ok {
				return math.Abs(v-DemoDrift.Seconds()) < 3
			}
		}
		return false
	})

	// A picture through the camera's ONVIF media service, as its agent
	// fetches one.
	cfg := s.Agents()[0].Cameras[1]
	client, err := onvif.New(onvif.Options{URL: cfg.ONVIF.URL, Username: cfg.ONVIF.Username, Password: cfg.ONVIF.Password.Reveal()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.SystemTime(t.Context()); err != nil { // it may be the drifted one
		t.Fatal(err)
	}
	uri, err := client.SnapshotURI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if pic, err := client.Fetch(t.Context(), uri, wire.MaxSnapshot); err != nil || !bytes.HasPrefix(pic, []byte{0xFF, 0xD8, 0xFF}) {
		t.Errorf("snapshot through ONVIF: %d bytes, %v", len(pic), err)
	}

	event := func(what string, ok func(e *wire.Event) bool) {
		t.Helper()
		w.await(t, what, func(m wire.Message) bool { return m.Event != nil && m.Event.Device == other && ok(m.Event) })
	}
	if err := s.Fault(Fault{Device: other, Fault: FaultMotion}); err != nil {
		t.Fatal(err)
	}
	event(other+" motion", func(e *wire.Event) bool { return e.Type == wire.EventTriggered && e.Reason == wire.ReasonMotion })
	if err := s.Fault(Fault{Device: other, Fault: FaultTamper}); err != nil {
		t.Fatal(err)
	}
	event(other+" tampered", func(e *wire.Event) bool { return e.To == wire.StatusDegraded && e.Reason == wire.ReasonTamper })
	if got := len(s.Faults()); got != 2 {
		t.Errorf("%d faults active, want motion and tamper: %v", got, s.Faults())
	}
	if err := s.Fault(Fault{Device: other, Fault: FaultRestore}); err != nil {
		t.Fatal(err)
	}
	event(other+" still", func(e *wire.Event) bool { return e.Type == wire.EventRestored && e.Reason == wire.ReasonMotion })
	event(other+" online again", func(e *wire.Event) bool { return e.To == wire.StatusOnline && e.From == wire.StatusDegraded })
	if f := s.Faults(); len(f) != 0 {
		t.Errorf("faults after restore: %v", f)
	}
	w.mu.Lock()
	for _, m := range w.msgs {
		if m.Event != nil && m.Event.Device == other && m.Event.Type == wire.EventStatus && m.Event.Reason != wire.ReasonTamper && m.Event.To != wire.StatusOnline {
			t.Errorf("%s: %+v; motion is not a fault", other, m.Event)
		}
	}
	w.mu.Unlock()

	bare := plan.Agents[0].Cameras[0].ID
	for _, f := range []string{FaultMotion, FaultTamper, FaultRestore} {
		if err := s.Fault(Fault{Device: bare, Fault: f}); !errors.Is(err, ErrBadFault) {
			t.Errorf("%s on %s, a camera without ONVIF: %v, want ErrBadFault", f, bare, err)
		}
	}
}
