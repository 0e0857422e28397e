package ingest

import (
	"errors"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// fakeClient is an MQTT client whose Publish is the function field; the
// other methods are not used by sendCommands.
type fakeClient struct {
	mqtt.Client
	publish func(topic string, qos byte, retained bool, payload any) mqtt.Token
}

func (c *fakeClient) Publish(topic string, qos byte, retained bool, payload any) mqtt.Token {
	return c.publish(topic, qos, retained, payload)
}

// fakeToken completes when ack is called.
type fakeToken struct {
	done chan struct{}
	err  error
}

func newFakeToken() *fakeToken { return &fakeToken{done: make(chan struct{})} }

func (t *fakeToken) ack(err error) { t.err = err; close(t.done) }

func (t *fakeToken) Wait() bool { <-t.done; return true }

func (t *fakeToken) WaitTimeout(d time.Duration) bool {
	select {
	case <-t.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (t *fakeToken) Done() <-chan struct{} { return t.done }

func (t *fakeToken) Error() error {
	<-t.done
	return t.err
}

// Commands go out one after another without waiting for the broker to
// acknowledge each (after a restart the hub asks every agent at once), in
// the order they were queued, and each acknowledgement or failure is
// counted when it comes.
func TestCommandsDoNotWaitForEachAcknowledgement(t *testing.T) {
	in, err := New(Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "hub"}, newRecorder().deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var topics []string
	var tokens []*fakeToken
	client := &fakeClient{publish: func(topic string, _ byte, _ bool, _ any) mqtt.Token {
		mu.Lock()
		defer mu.Unlock()
		topics = append(topics, topic)
		tokens = append(tokens, newFakeToken())
		return tokens[len(tokens)-1]
	}}
	in.setConnected(true)
	agents := []string{"a1", "a2", "a3"}
	for _, a := range agents {
		if err := in.SendCommand(a, wire.Command{Type: wire.CommandReport}); err != nil {
			t.Fatal(err)
		}
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		in.sendCommands(client, stop)
	}()

	published := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(tokens)
	}
	eventually(t, "every command published before any acknowledgement", func() bool { return published() == len(agents) })
	for i, a := range agents {
		if want := wire.Topic(a, wire.ChannelCommands); topics[i] != want {
			t.Fatalf("command %d went to %s, want %s", i, topics[i], want)
		}
	}
	tokens[1].ack(nil)
	tokens[0].ack(errors.New("refused"))
	tokens[2].ack(nil)
	eventually(t, "the acknowledgements counted", func() bool {
		return in.commandsSent.Value() == 2 && in.commandsLost.Value() == 1
	})
	close(stop)
	<-stopped
}
