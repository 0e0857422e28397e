package ingest

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// fakeLive is a LiveHandler that records what it is handed.
type fakeLive struct {
	mu   sync.Mutex
	msgs []wire.Live
}

func (f *fakeLive) HandleLive(m wire.Live) {
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
}

func (f *fakeLive) sessions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.msgs {
		out = append(out, m.Session)
	}
	return out
}

func liveMsg(t *testing.T, agent string, seq uint64, session string) []byte {
	t.Helper()
	b, err := json.Marshal(&wire.Live{
		Header:  wire.Header{V: wire.Version, Agent: agent, Boot: testBoot, Seq: seq, TS: time.Now()},
		Session: session, Device: "cam-1", Type: wire.LiveStopped, Reason: wire.ReasonRefused,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Accepted live messages reach the LiveHandler; rejected and retained ones
// do not.
func TestLiveDispatch(t *testing.T) {
	b := testenv.Mosquitto(t)
	rec := newRecorder()
	deps := rec.deps(metrics.NewRegistry())
	live := &fakeLive{}
	deps.Live = live
	p := newPublisher(t, b, "a1")
	topic := wire.Topic("a1", wire.ChannelLive)
	p.publish(topic, liveMsg(t, "a1", 1, "ls-retained"), true) // delivered as retained on subscribe
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-live"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)
	eventually(t, "the retained message", func() bool { return rec.count() == 1 })
	p.publish(topic, liveMsg(t, "a1", 2, "ls-2"), false)
	p.publish(topic, liveMsg(t, "a1", 2, "ls-replayed"), false) // the fleet rejects the replay
	p.publish(topic, liveMsg(t, "a1", 3, "ls-3"), false)
	eventually(t, "every message judged", func() bool { return rec.count()+int(totalRejects(in)) == 4 })
	if got := strings.Join(live.sessions(), ","); got != "ls-2,ls-3" {
		t.Fatalf("live handler got %s, want ls-2,ls-3", got)
	}
}

// SendCommand publishes a complete, valid command on the agent's commands
// topic, without waiting for the broker.
func TestSendCommand(t *testing.T) {
	b := testenv.Mosquitto(t)
	reg := metrics.NewRegistry()
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-commands"}, newRecorder().deps(reg))
	if err != nil {
		t.Fatal(err)
	}
	cmd := wire.Command{Type: wire.CommandLiveStop, Session: "ls-1", Reason: wire.ReasonLiveStopped}
	if err := in.SendCommand("a1", cmd); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("before Run: %v, want ErrNotConnected", err)
	}

	got := make(chan mqtt.Message, 4)
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("agent-a1"))
	wait(t, "connect", sub.Connect())
	t.Cleanup(func() { sub.Disconnect(100) })
	wait(t, "subscribe", sub.Subscribe(wire.Topic("a1", wire.ChannelCommands), 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }))

	start(t, in)
	if err := in.SendCommand("a1", cmd); err != nil {
		t.Fatal(err)
	}
	var m mqtt.Message
	select {
	case m = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("command not received")
	}
	dm, err := wire.Decode(m.Topic(), m.Payload(), time.Now())
	if err != nil {
		t.Fatalf("agent side decode: %v", err)
	}
	c := dm.Command
	if c.V != wire.Version || !strings.HasPrefix(c.ID, "cmd-") || c.TS.IsZero() || c.Type != wire.CommandLiveStop || c.Session != "ls-1" || m.Qos() != 1 || m.Retained() {
		t.Fatalf("command %+v (qos %d, retained %v)", c, m.Qos(), m.Retained())
	}
	eventually(t, "the acknowledgement counted", func() bool { return in.commandsSent.Value() == 1 })

	// A command an agent would refuse is not sent.
	if err := in.SendCommand("a1", wire.Command{Type: wire.CommandLiveStart, Session: "ls-2"}); err == nil || !strings.Contains(err.Error(), "live_start needs") {
		t.Fatalf("invalid command: %v", err)
	}
	if err := in.SendCommand("bad agent", cmd); err == nil {
		t.Fatal("command to an invalid agent id accepted")
	}
}
