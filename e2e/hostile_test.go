package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// Hostile and broken messages are rejected and counted by reason, change
// nothing, and good traffic from every agent keeps flowing meanwhile.
func TestHostileMessagesAreRejectedWhileGoodTrafficFlows(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity})
	s.waitAllOnline(t)
	agents := s.sim.City().Agents
	victim, other := agents[0].ID, agents[1].ID

	attacker := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(s.broker.URL()).SetClientID("attacker"))
	if tok := attacker.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("attacker connect: %v", tok.Error())
	}
	defer attacker.Disconnect(100)

	// Capture one real health report of each agent, to replay and to spoof.
	captured := make(chan mqtt.Message, 16)
	for _, a := range []string{victim, other} {
		tok := attacker.Subscribe(wire.Topic(a, wire.ChannelHealth), 1, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case captured <- m:
			default:
			}
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
	}
	var victimReport, otherReport []byte
	for victimReport == nil || otherReport == nil {
		select {
		case m := <-captured:
			if strings.Contains(m.Topic(), "/"+victim+"/") {
				victimReport = m.Payload()
			} else {
				otherReport = m.Payload()
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no health reports to capture")
		}
	}
	var h wire.Health
	if err := json.Unmarshal(victimReport, &h); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(h *wire.Health)) []byte {
		c := h
		c.Devices = append([]wire.DeviceHealth(nil), h.Devices...)
		c.Seq += 1_000_000 // fresh, so only the planted fault can reject it
		f(&c)
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := s.hub.Fleet().Devices()
	healthTopic := wire.Topic(victim, wire.ChannelHealth)
	hostile := []struct {
		reason  wire.RejectReason
		topic   string
		payload []byte
	}{
		{wire.RejectMalformed, healthTopic, []byte(`{"v":1,"agent":"` + victim + `","devices":[`)},
		{wire.RejectMalformed, healthTopic, bytes.Replace(mutate(func(*wire.Health) {}), []byte(`"fps":`), []byte(`"fps":NaN,"x":`), 1)},
		{wire.RejectTooLarge, healthTopic, bytes.Repeat([]byte("x"), wire.MaxPayload+1)},
		{wire.RejectAgentMismatch, healthTopic, otherReport},
		{wire.RejectFuture, healthTopic, mutate(func(h *wire.Health) { h.TS = time.Now().Add(time.Hour) })},
		{wire.RejectReplay, healthTopic, victimReport},
		{wire.RejectBadVersion, healthTopic, bytes.Replace(mutate(func(*wire.Health) {}), []byte(`"v":1`), []byte(`"v":9`), 1)},
		{wire.RejectUnknownDevice, healthTopic, mutate(func(h *wire.Health) { h.Devices[0].ID = "ghost-camera" })},
		{wire.RejectInvalid, healthTopic, mutate(func(h *wire.Health) { h.Devices[0].Status = "unreachable" })},
		{wire.RejectBadTopic, wire.Prefix + victim + "/telemetry", victimReport},
	}
	if !bytes.Contains(hostile[1].payload, []byte("NaN")) {
		t.Fatal("the NaN payload has no NaN: the captured report has no fps metric")
	}
	want := map[wire.RejectReason]float64{}
	baseline := map[wire.RejectReason]float64{}
	for _, r := range wire.RejectReasons {
		baseline[r] = s.api.metric(t, fmt.Sprintf(`citywatch_mqtt_rejects_total{reason="%s"}`, r))
	}
	for _, m := range hostile {
		tok := attacker.Publish(m.topic, 1, false, m.payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		want[m.reason]++
	}
	for reason, n := range want {
		series := fmt.Sprintf(`citywatch_mqtt_rejects_total{reason="%s"}`, reason)
		eventually(t, 10*time.Second, func() error {
			if got := s.api.metric(t, series) - baseline[reason]; got < n {
				return fmt.Errorf("%s grew by %v, want %v", series, got, n)
			}
			return nil
		})
	}

	// Nothing the attacker sent changed any device.
	after := map[string]fleet.Device{}
	for _, d := range s.hub.Fleet().Devices() {
		after[d.ID] = d
	}
	for _, d := range before {
		if a := after[d.ID]; a.Status != d.Status || a.Agent != d.Agent {
			t.Errorf("%s changed from %s/%s to %s/%s", d.ID, d.Agent, d.Status, a.Agent, a.Status)
		}
	}
	// Good traffic continues: the victim's next real reports are accepted
	// (its sequence moves on) and a real fault still reaches the hub.
	seq := func() uint64 { a, _ := s.hub.Fleet().Agent(victim); return a.Seq }
	start := seq()
	eventually(t, 15*time.Second, func() error {
		if seq() <= start+1 {
			return fmt.Errorf("victim seq still %d", seq())
		}
		return nil
	})
	ev := s.api.events(t)
	cam := agents[0].Cameras[0].ID
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 30*time.Second, cam+" offline after the attack", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == cam && c.To == wire.StatusOffline
	})
}
