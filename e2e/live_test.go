package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// liveStack is a stack whose hub relays video on loopback with a short
// linger, plus a spy on the commands the hub sends the camera's agent.
func liveStack(t *testing.T) (*stack, string, string) {
	t.Helper()
	s := startStack(t, stackOptions{city: smallCity, live: true, hubCfg: func(c *config.Config) {
		c.Live.Linger = time.Second
	}})
	s.waitAllOnline(t)
	agent, cam := firstCamera(t, s)
	return s, agent, cam
}

// commandSpy counts the live commands the hub sends an agent, as the
// agent's broker delivers them.
type commandSpy struct {
	mu   sync.Mutex
	cmds []wire.Command
}

func spyCommands(t *testing.T, brokerURL, agent string) *commandSpy {
	t.Helper()
	spy := &commandSpy{}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("spy-" + agent))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("spy connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(wire.Topic(agent, wire.ChannelCommands), 1, func(_ mqtt.Client, m mqtt.Message) {
		var cmd wire.Command
		if json.Unmarshal(m.Payload(), &cmd) == nil {
			spy.mu.Lock()
			spy.cmds = append(spy.cmds, cmd)
			spy.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("spy subscribe: %v", tok.Error())
	}
	return spy
}

func (s *commandSpy) count(typ, camera string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.cmds {
		if c.Type == typ && (typ != wire.CommandLiveStart || slices.Contains(c.Devices, camera)) {
			n++
		}
	}
	return n
}

// A WHEP player gets the simulated camera's H.264 relayed by the hub from
// the agent: the first frame is a keyframe with SPS and PPS, and frames
// keep coming.
func TestWHEPPlaysSimulatedCamera(t *testing.T) {
	s, _, cam := liveStack(t)
	p := playWHEP(t, s.api, cam)
	p.awaitFrames(t, 30, 20*time.Second)

	nals := p.firstNALs()
	idr := slices.Index(nals, 5)
	if idr < 0 {
		t.Fatalf("no IDR among the first NAL units %v", nals)
	}
	first := nals[:idr]
	if !slices.Contains(first, 7) || !slices.Contains(first, 8) || slices.Contains(first, 1) {
		t.Errorf("NAL units before the first IDR %v: want SPS(7) and PPS(8) and no P slice(1)", first)
	}
	before := p.frameCount()
	p.awaitFrames(t, before+15, 10*time.Second)
	p.stop(t)
}

// However many people watch, the agent is asked for one upstream; it stops
// after the last viewer leaves and the linger passes.
func TestOneUpstreamForManyViewers(t *testing.T) {
	s, agent, cam := liveStack(t)
	spy := spyCommands(t, s.broker.URL(), agent)

	var players []*whepClient
	for _, n := range []int{2, 10} {
		// The new viewers arrive together, racing the upstream's start.
		joined := make([]*whepClient, n-len(players))
		errs := make([]error, len(joined))
		var wg sync.WaitGroup
		for i := range joined {
			wg.Go(func() { joined[i], errs[i] = tryPlayWHEP(t, s.api, cam) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		players = append(players, joined...)
		for _, p := range players {
			p.awaitFrames(t, 10, 20*time.Second)
		}
		if got := spy.count(wire.CommandLiveStart, cam); got != 1 {
			t.Fatalf("%d viewers: %d live_start commands for %s, want 1", len(players), got, cam)
		}
	}
	for _, p := range players {
		p.stop(t)
	}
	eventually(t, 15*time.Second, func() error {
		if n := spy.count(wire.CommandLiveStop, cam); n != 1 {
			return fmt.Errorf("%d live_stop commands", n)
		}
		return nil
	})
	if got := spy.count(wire.CommandLiveStart, cam); got != 1 {
		t.Errorf("%d live_start commands in all, want 1", got)
	}
}

// The camera fails while watched: the viewer's session ends, the camera is
// shown degraded with the stream's reason.
func TestCameraFailsWhileWatched(t *testing.T) {
	s, _, cam := liveStack(t)
	ev := s.api.events(t)
	p := playWHEP(t, s.api, cam)
	p.awaitFrames(t, 10, 20*time.Second)

	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.closedCh:
	case <-time.After(30 * time.Second):
		t.Fatal("the viewer's session did not end after the camera failed")
	}
	c := ev.await(t, 30*time.Second, cam+" degraded by its stream", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == cam && c.To == wire.StatusDegraded
	})
	if c.Device.Reason == "" {
		t.Errorf("degraded without a reason: %+v", c.Device)
	}
}

// Bad requests get clear 4xx answers and disturb nothing.
func TestWHEPBadInput(t *testing.T) {
	s, _, cam := liveStack(t)
	var sensor string
	for _, a := range s.sim.City().Agents {
		if len(a.Sensors) > 0 {
			sensor = a.Sensors[0].ID
		}
	}
	_, good := whepOffer(t, newWHEPAPI(t, true))
	_, vp8 := whepOffer(t, newWHEPAPI(t, false))
	for _, tc := range []struct {
		name, camera, ctype, sdp string
		want                     int
	}{
		{"malformed SDP", cam, "application/sdp", "this is not SDP", http.StatusBadRequest},
		{"unknown camera", "no-such-camera", "application/sdp", good, http.StatusNotFound},
		{"not a camera", sensor, "application/sdp", good, http.StatusBadRequest},
		{"no H.264", cam, "application/sdp", vp8, http.StatusBadRequest},
		{"wrong content type", cam, "application/json", good, http.StatusUnsupportedMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := postWHEP(t, s.api, tc.camera, tc.ctype, tc.sdp)
			if code != tc.want || !strings.Contains(body, "error") {
				t.Errorf("%d %s, want %d with an error body", code, body, tc.want)
			}
		})
	}
	// A real viewer, then a DELETE of its session under another camera and
	// of an unknown session: 404, and the viewer keeps playing.
	p := playWHEP(t, s.api, cam)
	p.awaitFrames(t, 5, 20*time.Second)
	session := p.location[strings.LastIndex(p.location, "/")+1:]
	other := firstOtherCamera(t, s, cam)
	for _, path := range []string{"api/cameras/" + other + "/whep/" + session, "api/cameras/" + cam + "/whep/no-such-session"} {
		res, err := s.api.do(http.MethodDelete, path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("DELETE %s: %s, want 404", path, res.Status)
		}
	}
	before := p.frameCount()
	p.awaitFrames(t, before+10, 10*time.Second)
}

func firstOtherCamera(t *testing.T, s *stack, not string) string {
	for _, a := range s.sim.City().Agents {
		for _, c := range a.Cameras {
			if c.ID != not {
				return c.ID
			}
		}
	}
	t.Fatal("the city has one camera only")
	return ""
}
