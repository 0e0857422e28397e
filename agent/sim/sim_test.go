package sim

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// watcher subscribes to every agent topic and keeps the decoded messages.
type watcher struct {
	mu   sync.Mutex
	msgs []wire.Message
}

func watch(t *testing.T, brokerURL string) *watcher {
	t.Helper()
	w := &watcher{}
	opts := paho.NewClientOptions().AddBroker(brokerURL).SetClientID("sim-test-watcher").
		SetOrderMatters(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(wire.HubSubscription, 1, func(_ paho.Client, m paho.Message) {
		msg, err := wire.Decode(m.Topic(), m.Payload(), time.Now())
		if err != nil {
			t.Errorf("agent sent an invalid message on %s: %v", m.Topic(), err)
			return
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, msg)
		w.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	return w
}

// await polls until a message matching ok has arrived.
func (w *watcher) await(t *testing.T, what string, ok func(wire.Message) bool) wire.Message {
	t.Helper()
	var found wire.Message
	waitFor(t, what, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, m := range w.msgs {
			if ok(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// forget drops the messages seen so far, so await sees only new ones.
func (w *watcher) forget() {
	w.mu.Lock()
	w.msgs = nil
	w.mu.Unlock()
}

func TestSimWithMosquitto(t *testing.T) {
	broker := testenv.Mosquitto(t)
	s, err := New(Options{
		BrokerURL: broker.URL(),
		City:      CityOptions{Seed: 3, Districts: 1, Sites: 2, Devices: 10},
		Camera:    CameraConfig{Width: 160, Height: 96, FPS: 10},
		Interval:  time.Second,
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, broker.URL())

	stop := run(t, s)

	site := s.Agents()[0]
	id := site.ID
	w.await(t, "birth of "+id, func(m wire.Message) bool {
		return m.Agent == id && m.State != nil && m.State.State == wire.AgentOnline
	})
	inv := w.await(t, "inventory of "+id, func(m wire.Message) bool { return m.Agent == id && m.Inventory != nil })
	if got, want := len(inv.Inventory.Devices), len(site.Cameras)+len(site.Sensors); got != want {
		t.Errorf("inventory lists %d devices, want %d", got, want)
	}

	// The camera really streams: a snapshot through the URL the agent has.
	res, err := http.Get(site.Cameras[0].Snapshot.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("snapshot: %s", res.Status)
	}

	t.Run("camera offline", func(t *testing.T) {
		cam := site.Cameras[0].ID
		if err := s.Fault(Fault{Device: cam, Fault: FaultOffline}); err != nil {
			t.Fatal(err)
		}
		w.await(t, cam+" reported refused", func(m wire.Message) bool {
			return m.Event != nil && m.Event.Device == cam && m.Event.To == wire.StatusOffline && m.Event.Reason == wire.ReasonRefused
		})
		if err := s.Fault(Fault{Device: cam, Fault: FaultRecover}); err != nil {
			t.Fatal(err)
		}
		w.await(t, cam+" back online", func(m wire.Message) bool {
			return m.Event != nil && m.Event.Device == cam && m.Event.To == wire.StatusOnline
		})
	})

	t.Run("sensor trigger", func(t *testing.T) {
		sensor := site.Sensors[0].ID
		if err := s.Fault(Fault{Device: sensor, Fault: FaultTrigger}); err != nil {
			t.Fatal(err)
		}
		w.await(t, sensor+" triggered", func(m wire.Message) bool {
			return m.Event != nil && m.Event.Device == sensor && m.Event.Type == wire.EventTriggered
		})
	})

	t.Run("agent disconnect", func(t *testing.T) {
		w.forget()
		if err := s.Fault(Fault{Agent: id, Fault: FaultDisconnect, For: 2 * time.Second}); err != nil {
			t.Fatal(err)
		}
		w.await(t, "Last Will of "+id, func(m wire.Message) bool {
			return m.Agent == id && m.State != nil && m.State.Will && m.State.State == wire.AgentOffline
		})
		w.await(t, id+" reborn after the window", func(m wire.Message) bool {
			return m.Agent == id && m.State != nil && m.State.State == wire.AgentOnline
		})
	})

	if err := s.Fault(Fault{Device: "no-such-camera", Fault: FaultOffline}); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("unknown device: %v", err)
	}

	// Stopping the sim stops the agents cleanly, through their relays: the
	// broker keeps their offline state, not their Last Will.
	w.forget()
	stop()
	for _, a := range s.Agents() {
		w.await(t, "clean offline state of "+a.ID, func(m wire.Message) bool {
			return m.Agent == a.ID && m.State != nil && m.State.State == wire.AgentOffline
		})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if m.State != nil && m.State.Will {
			t.Errorf("agent %s left without saying goodbye: its Last Will fired", m.Agent)
		}
	}
}

// run runs s until the test ends or the returned stop is called, and
// waits until every agent runs.
func run(t *testing.T, s *Sim) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("sim not ready after 30s")
	}
	return stop
}

// TestScaleMode runs a small fleet with in-process cameras: every agent
// comes up, and a camera fault reaches the broker as the real prober
// would report it.
func TestScaleMode(t *testing.T) {
	broker := testenv.Mosquitto(t)
	const agents = 50
	s, err := New(Options{
		BrokerURL:        broker.URL(),
		City:             CityOptions{Seed: 5, Districts: 8, Sites: agents, Devices: agents * 20},
		InProcessCameras: true,
		Interval:         time.Second,
		Logger:           testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, broker.URL())
	run(t, s)

	waitFor(t, "every agent's birth", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		born := make(map[string]bool)
		for _, m := range w.msgs {
			if m.State != nil && m.State.State == wire.AgentOnline {
				born[m.Agent] = true
			}
		}
		return len(born) == agents
	})
	cam := s.City().Agents[agents-1].Cameras[0].ID
	if err := s.Fault(Fault{Device: cam, Fault: FaultAuth}); err != nil {
		t.Fatal(err)
	}
	w.await(t, cam+" reported auth_failed", func(m wire.Message) bool {
		return m.Event != nil && m.Event.Device == cam && m.Event.Reason == wire.ReasonAuthFailed
	})
}
