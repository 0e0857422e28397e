package wire

import (
	"strings"
)

// Prefix is the root of every citywatch topic. The major version is part of
// the topic so a v2 hub and v1 agents can share a broker during a migration.
const Prefix = "citywatch/v1/agents/"

// Channel is the last topic segment: what kind of message travels there.
type Channel string

// Channels. State, inventory are retained; health and events are the stream;
// commands flow from the hub to one agent; live carries an agent's side of
// live video signalling.
const (
	ChannelState     Channel = "state"     // retained birth; the Last Will overwrites it
	ChannelInventory Channel = "inventory" // retained device list
	ChannelHealth    Channel = "health"    // periodic report of every device
	ChannelEvents    Channel = "events"    // device state changes, sent at once
	ChannelCommands  Channel = "commands"  // hub → agent
	ChannelLive      Channel = "live"      // live video signalling, agent → hub
	ChannelSnapshot  Channel = "snapshot"  // a camera's picture on request, agent → hub
)

// Topic returns the topic of channel ch for agent id.
func Topic(agent string, ch Channel) string {
	return Prefix + agent + "/" + string(ch)
}

// HubSubscription is the filter the hub subscribes to: every channel an
// agent publishes on (it also matches commands, which the hub ignores).
const HubSubscription = Prefix + "+/+"

// ParseTopic splits a topic into agent id and channel. It rejects topics
// outside the contract and agent ids that are not valid IDs.
func ParseTopic(topic string) (agent string, ch Channel, err error) {
	rest, ok := strings.CutPrefix(topic, Prefix)
	if !ok {
		return "", "", reject(RejectBadTopic, "topic %q is not under %s", clip(topic), Prefix)
	}
	agent, last, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(last, "/") {
		return "", "", reject(RejectBadTopic, "topic %q has the wrong number of levels", clip(topic))
	}
	if err := ValidID(agent); err != nil {
		return "", "", reject(RejectBadTopic, "topic agent id: %v", err)
	}
	switch c := Channel(last); c {
	case ChannelState, ChannelInventory, ChannelHealth, ChannelEvents, ChannelCommands, ChannelLive, ChannelSnapshot:
		return agent, c, nil
	}
	return "", "", reject(RejectBadTopic, "unknown channel %q", clip(last))
}

// MaxIDLen bounds agent, site and device ids.
const MaxIDLen = 64

// ValidID checks an agent, site or device id: 1–64 characters of letters,
// digits, '-', '_' and '.', not starting with '.'. IDs appear in topics,
// URLs, InfluxDB tags and file names, so anything else is refused rather
// than escaped everywhere.
func ValidID(id string) error {
	if id == "" {
		return errEmptyID
	}
	if len(id) > MaxIDLen {
		return &idError{id: id, why: "longer than 64 characters"}
	}
	if id[0] == '.' {
		// "." and ".." would mean something else in a URL path or a file name.
		return &idError{id: id, why: "must not start with '.'"}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return &idError{id: id, why: "only letters, digits, '-', '_' and '.' are allowed"}
		}
	}
	return nil
}

type idError struct{ id, why string }

func (e *idError) Error() string { return "id " + quote(clip(e.id)) + ": " + e.why }

var errEmptyID = &idError{why: "empty"}

// clip shortens untrusted strings before they reach a log line.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func quote(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }
