// Package wiretest is a test helper: a second MQTT client that sees what an
// agent publishes the way the hub does, through wire.Decode, so every test
// that uses it also checks that the agent keeps the contract.
package wiretest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/wire"
)

// Timeout bounds every wait so a broken test fails instead of hanging; it
// is not a timing assertion.
const Timeout = 20 * time.Second

var clients atomic.Uint64

// Watcher receives every message an agent publishes.
type Watcher struct {
	t    testing.TB
	cl   paho.Client
	msgs chan wire.Message
}

// Watch subscribes to everything agent publishes on the broker at url.
// The session is persistent, so the watcher also gets what was published
// while a broker restart had it disconnected. Invalid messages fail t.
func Watch(t testing.TB, url, agent string) *Watcher {
	t.Helper()
	w := &Watcher{t: t, msgs: make(chan wire.Message, 1000)}
	opts := paho.NewClientOptions().AddBroker(url).
		SetClientID(fmt.Sprintf("watch-%s-%d-%d", agent, time.Now().UnixNano(), clients.Add(1))).
		SetCleanSession(false).SetConnectRetryInterval(100 * time.Millisecond)
	w.cl = paho.NewClient(opts)
	if tok := w.cl.Connect(); !tok.WaitTimeout(Timeout) || tok.Error() != nil {
		t.Fatalf("wiretest: connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.cl.Disconnect(100) })
	commands := wire.Topic(agent, wire.ChannelCommands)
	tok := w.cl.Subscribe(wire.Prefix+agent+"/#", 1, func(_ paho.Client, m paho.Message) {
		if m.Topic() == commands {
			return // what the test itself sends
		}
		msg, err := wire.Decode(m.Topic(), m.Payload(), time.Now())
		if err != nil {
			t.Errorf("wiretest: agent published an invalid message on %s: %v\n%s", m.Topic(), err, m.Payload())
			return
		}
		w.msgs <- msg
	})
	if !tok.WaitTimeout(Timeout) || tok.Error() != nil {
		t.Fatalf("wiretest: subscribe: %v", tok.Error())
	}
	return w
}

// Any returns the next message, whatever its channel.
func (w *Watcher) Any() wire.Message {
	w.t.Helper()
	select {
	case m := <-w.msgs:
		return m
	case <-time.After(Timeout):
		w.t.Fatal("wiretest: no message")
		return wire.Message{}
	}
}

// Next returns the next message on channel ch that satisfies match,
// skipping everything else.
func (w *Watcher) Next(ch wire.Channel, match func(wire.Message) bool) wire.Message {
	w.t.Helper()
	timeout := time.After(Timeout)
	for {
		select {
		case m := <-w.msgs:
			if m.Channel == ch && (match == nil || match(m)) {
				return m
			}
		case <-timeout:
			w.t.Fatalf("wiretest: no matching %s message", ch)
			return wire.Message{}
		}
	}
}

// State returns the next state message of the given state ("online" or
// "offline").
func (w *Watcher) State(state string) *wire.State {
	w.t.Helper()
	return w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == state }).State
}

// Publish sends payload to topic at QoS 1 and waits for the broker.
func (w *Watcher) Publish(topic, payload string) {
	w.t.Helper()
	if tok := w.cl.Publish(topic, 1, false, payload); !tok.WaitTimeout(Timeout) || tok.Error() != nil {
		w.t.Fatalf("wiretest: publish: %v", tok.Error())
	}
}

// Eventually polls cond until it holds, failing t after Timeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
