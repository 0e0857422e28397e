package fleet_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/citywatch/citywatch/wire"
)

// payload encodes m as an agent would publish it.
func payload(t testing.TB, m wire.Message) (string, []byte) {
	var v any
	switch {
	case m.State != nil:
		v = m.State
	case m.Inventory != nil:
		v = m.Inventory
	case m.Health != nil:
		v = m.Health
	case m.Event != nil:
		v = m.Event
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Topic(m.Agent, m.Channel), b
}

// fuzzFleet is the registry every fuzz input runs against: a1 and b1
// online with devices, c1 gone by its will.
func fuzzFleet(t testing.TB) *harness {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "pir-1")
	h.setup("b1", "Hillside", "cam-9")
	h.must(h.inventory("c1", "Hillside", "cam-5"))
	h.must(h.will("c1", 1))
	h.take()
	return h
}

// FuzzDecodeApply feeds arbitrary topics and payloads through wire.Decode
// and Registry.Apply: nothing may panic, and whatever a message does, it
// changes no agent but the one named in its topic.
func FuzzDecodeApply(f *testing.F) {
	s := fuzzFleet(f)
	spoof := s.health("b1", line("cam-1", wire.StatusOffline, wire.ReasonRefused))
	mismatch := s.health("a1", line("cam-1", wire.StatusOffline, ""))
	for _, m := range []wire.Message{
		s.birth("a1", 2), s.will("a1", 1), s.will("a1", 0), s.shutdown("b1", 1), s.birth("x1", 1),
		s.inventory("a1", "Riverside", "cam-1"), s.inventory("x1", "Elsewhere", "cam-1", "cam-new"),
		s.inventory("b1", "Hillside", "cam-9", "cam-10"),
		s.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused), line("pir-1", wire.StatusDegraded, "")),
		s.health("c1", line("cam-5", wire.StatusOnline, "")),
		spoof,
		s.event("a1", "pir-1", wire.EventTriggered, "", ""), s.event("b1", "cam-1", wire.EventStatus, wire.StatusOffline, ""),
		s.event("a1", "cam-1", wire.EventStatus, wire.StatusOffline, wire.ReasonTimeout),
	} {
		topic, p := payload(f, m)
		f.Add(topic, p, false)
		f.Add(topic, p, true)
	}
	_, p := payload(f, mismatch)
	f.Add(wire.Topic("b1", wire.ChannelHealth), p, false)
	f.Add(wire.Topic("a1", wire.ChannelHealth), []byte(`{"v":1,"agent":"a1","boot":1,"seq":1e999}`), false)
	f.Add(wire.Topic("a1", wire.ChannelCommands), []byte(`{"v":1,"id":"c","ts":"2026-11-28T10:00:00Z","type":"probe"}`), false)
	f.Add("citywatch/v1/agents/a1/health/x", []byte(`{}`), false)

	f.Fuzz(func(t *testing.T, topic string, payload []byte, retained bool) {
		h := fuzzFleet(t)
		before := map[string]agentState{}
		for _, a := range h.r.Agents() {
			before[a.ID] = stateOf(h.r, a.ID)
		}
		m, err := wire.Decode(topic, payload, h.clk.Now())
		if err == nil && m.Channel != wire.ChannelCommands {
			_, _ = h.r.Apply(m, retained)
		}
		for id, st := range before {
			if id == m.Agent {
				continue
			}
			if after := stateOf(h.r, id); !reflect.DeepEqual(st, after) {
				t.Fatalf("a message on %q changed agent %s:\nbefore %+v\nafter  %+v", topic, id, st, after)
			}
		}
		checkInvariants(t, h.r)
	})
}
