package broker_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/wire"
)

// mqtt5 is a bare MQTT 5 client (paho.mqtt.golang speaks MQTT 3 only),
// enough to read the reason codes the broker sends.
type mqtt5 struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial5 connects and returns the client with the CONNACK reason code.
func dial5(t *testing.T, addr, id, user, pass string) (*mqtt5, byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &mqtt5{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 30,
			Username: []byte(user), UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != "",
		},
	})
	ack := c.read()
	if ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("got packet type %d, want CONNACK", ack.FixedHeader.Type)
	}
	return c, ack.ReasonCode
}

func (c *mqtt5) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next packet from the broker.
func (c *mqtt5) read() packets.Packet {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.r.ReadByte()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(b); err != nil {
		c.t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		c.t.Fatal(err)
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return pk
}

func (c *mqtt5) publish(id uint16, topic string, qos byte, payload string) {
	c.t.Helper()
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		PacketID:    id, TopicName: topic, Payload: []byte(payload),
	})
}

// TestMQTT5ReasonCodes: MQTT 5 clients learn why they were refused.
func TestMQTT5ReasonCodes(t *testing.T) {
	tb := start(t, broker.Config{}, "agent-a", "agent-b")
	for _, tt := range []struct {
		name, id, user, pass string
		want                 byte
	}{
		{"anonymous", "agent-a", "", "", packets.ErrNotAuthorized.Code},
		{"wrong secret", "agent-a", "agent-a", "guess", packets.ErrBadUsernameOrPassword.Code},
		{"client id mismatch", "agent-b", "agent-a", secretOf("agent-a"), packets.ErrClientIdentifierNotValid.Code},
	} {
		if _, code := dial5(t, tb.Addr(), tt.id, tt.user, tt.pass); code != tt.want {
			t.Errorf("%s: CONNACK %#x, want %#x", tt.name, code, tt.want)
		}
	}

	hub := tb.hub(t, "hub@test/1")
	seen := subscribe(t, hub, wire.HubSubscription)
	a, code := dial5(t, tb.Addr(), "agent-a", "agent-a", secretOf("agent-a"))
	if code != packets.CodeSuccess.Code {
		t.Fatalf("agent-a: CONNACK %#x", code)
	}

	// A refused QoS 1 publish is answered "not authorized"; a refused QoS 0
	// one is dropped; the connection stays up for the agent's own.
	a.publish(1, wire.Topic("agent-b", wire.ChannelState), 1, "forged")
	if ack := a.read(); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Errorf("forged QoS 1 publish: packet type %d reason %#x, want PUBACK 0x87", ack.FixedHeader.Type, ack.ReasonCode)
	}
	a.publish(0, wire.Topic("agent-b", wire.ChannelHealth), 0, "forged")
	a.publish(2, wire.Topic("agent-a", wire.ChannelState), 1, "online")
	if ack := a.read(); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != packets.CodeSuccess.Code {
		t.Errorf("own publish: packet type %d reason %#x, want PUBACK 0x00", ack.FixedHeader.Type, ack.ReasonCode)
	}
	if m := receive(t, seen, "A's own state"); m.Topic() != wire.Topic("agent-a", wire.ChannelState) {
		t.Errorf("the hub received %q on %s first, want A's own state", m.Payload(), m.Topic())
	}

	a.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    3,
		Filters: packets.Subscriptions{
			{Filter: wire.Topic("agent-b", wire.ChannelCommands), Qos: 1},
			{Filter: wire.Topic("agent-a", wire.ChannelCommands), Qos: 1},
		},
	})
	ack := a.read()
	if ack.FixedHeader.Type != packets.Suback || !bytes.Equal(ack.ReasonCodes, []byte{packets.ErrNotAuthorized.Code, 1}) {
		t.Errorf("SUBACK %d %v, want [0x87 1]", ack.FixedHeader.Type, ack.ReasonCodes)
	}
	if st := tb.Stats(); st.Denied["publish"] != 2 || st.Denied["subscribe"] != 1 {
		t.Errorf("denied %v, want 2 publish and 1 subscribe", st.Denied)
	}

	// A kicked MQTT 5 client is told why.
	if !tb.Kick("agent-a") {
		t.Fatal("Kick found no session")
	}
	if pk := a.read(); pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Errorf("after Kick: packet type %d reason %#x, want DISCONNECT 0x87", pk.FixedHeader.Type, pk.ReasonCode)
	}
}
