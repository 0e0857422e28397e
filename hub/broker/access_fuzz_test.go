package broker

import (
	"testing"

	"github.com/citywatch/citywatch/wire"
)

// FuzzAgentACL: whatever topic or filter a client sends, an agent may
// publish only on its own non-command channels and subscribe only to its
// own commands.
func FuzzAgentACL(f *testing.F) {
	for _, s := range []struct{ user, topic string }{
		{"agent-a", wire.Topic("agent-a", wire.ChannelState)},
		{"agent-a", wire.Topic("agent-a", wire.ChannelCommands)},
		{"agent-a", wire.Topic("agent-b", wire.ChannelState)},
		{"agent-a", wire.Prefix + "agent-a/state/x"},
		{"agent-a", wire.Prefix + "agent-a/+"},
		{"agent-a", wire.Prefix + "#"},
		{"a", wire.Prefix + "a/health"},
		{"agent.a", wire.Prefix + "agent.a/live"},
	} {
		f.Add(s.user, s.topic)
	}
	a := &access{hub: Credential{Username: "hub@fuzz"}}
	f.Fuzz(func(t *testing.T, user, topic string) {
		if wire.ValidID(user) != nil {
			return // OnConnect admits no other agent username
		}
		if a.allowed(user, topic, kindPublish) {
			agent, ch, err := wire.ParseTopic(topic)
			if err != nil || agent != user || ch == wire.ChannelCommands {
				t.Fatalf("agent %q may publish on %q (agent %q, channel %q, %v)", user, topic, agent, ch, err)
			}
		}
		if a.allowed(user, topic, kindSubscribe) && topic != wire.Topic(user, wire.ChannelCommands) {
			t.Fatalf("agent %q may subscribe to %q", user, topic)
		}
	})
}
