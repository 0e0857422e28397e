package broker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// mosquittoACL confines agents to their own topics as the embedded broker
// does; %u is the authenticated username, which testenv also makes the
// client id.
const mosquittoACL = `pattern write citywatch/v1/agents/%u/state
pattern write citywatch/v1/agents/%u/inventory
pattern write citywatch/v1/agents/%u/health
pattern write citywatch/v1/agents/%u/events
pattern write citywatch/v1/agents/%u/live
pattern read citywatch/v1/agents/%u/commands

user ` + hubUser + `
topic readwrite citywatch/v1/agents/#
`

// mosquittoFiles writes a password file with HashSecret hashes for the hub
// and users, and the ACL; it returns their paths.
func mosquittoFiles(t *testing.T, dir string, users ...string) (passwd, acl string) {
	t.Helper()
	var b strings.Builder
	for user, secret := range map[string]string{hubUser: hubPass} {
		writeHash(t, &b, user, secret)
	}
	for _, u := range users {
		writeHash(t, &b, u, secretOf(u))
	}
	passwd, acl = filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	for path, content := range map[string]string{passwd: b.String(), acl: mosquittoACL} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return passwd, acl
}

// mosquittoTLS writes p's CA and a server certificate for 127.0.0.1 into
// dir for a Mosquitto TLS listener.
func mosquittoTLS(t *testing.T, dir string, p pki) *testenv.MosquittoTLS {
	t.Helper()
	o := &testenv.MosquittoTLS{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	if err := os.WriteFile(o.CAFile, p.ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := p.ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Write(o.CertFile, o.KeyFile); err != nil {
		t.Fatal(err)
	}
	return o
}

func writeHash(t *testing.T, b *strings.Builder, user, secret string) {
	t.Helper()
	h, err := broker.HashSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(user + ":" + h + "\n")
}

// TestMosquittoPasswordFormat: hashes made by mosquitto_passwd verify with
// VerifySecret (and Mosquitto accepting HashSecret's is shown below).
func TestMosquittoPasswordFormat(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	testenv.MosquittoPasswd(t, file, "agent-c", "pw-of-agent-c")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	user, hash, ok := strings.Cut(strings.TrimSpace(string(data)), ":")
	if !ok || user != "agent-c" || !strings.HasPrefix(hash, "$7$") {
		t.Fatalf("mosquitto_passwd wrote %q, want agent-c:$7$...", data)
	}
	for _, tt := range []struct {
		secret string
		want   bool
	}{{"pw-of-agent-c", true}, {"pw-of-agent-C", false}, {"", false}} {
		if got, err := broker.VerifySecret(hash, tt.secret); got != tt.want || err != nil {
			t.Errorf("VerifySecret(mosquitto's hash, %q) = %v, %v; want %v", tt.secret, got, err, tt.want)
		}
	}
}

// TestMosquittoWithACL runs the ACL the embedded broker enforces on a real
// Mosquitto, with agent credentials hashed by HashSecret.
func TestMosquittoWithACL(t *testing.T) {
	dir := t.TempDir()
	passwd, acl := mosquittoFiles(t, dir, "agent-a", "agent-b")
	p := newPKI(t)
	mq := testenv.MosquittoWith(t, testenv.MosquittoOptions{PasswordFile: passwd, ACLFile: acl, TLS: mosquittoTLS(t, dir, p)})
	if !strings.HasPrefix(mq.TLSURL(), "ssl://127.0.0.1:") || mq.TLSURL() == "ssl://"+mq.Addr() {
		t.Fatalf("TLSURL() = %q, want its own port on 127.0.0.1", mq.TLSURL())
	}
	as := func(id, user, pass string) login { return login{url: mq.URL(), id: id, user: user, pass: pass} }

	for _, l := range []login{
		as("agent-a", "", ""),
		as("agent-a", "agent-a", "guess"),
		as("agent-a", "agent-a", secretOf("agent-b")),
	} {
		if c, tok := dial(t, l); tok.Error() == nil || c.IsConnected() {
			t.Errorf("Mosquitto admitted %q with password %q", l.user, l.pass)
		}
	}

	hub := connect(t, as(hubUser, hubUser, hubPass))
	seen := subscribe(t, hub, wire.HubSubscription)
	a := connect(t, as("agent-a", "agent-a", secretOf("agent-a")))
	b := connect(t, as("agent-b", "agent-b", secretOf("agent-b")))

	// A's publishes on B's topics reach nobody; its own, sent after them,
	// is the first the hub sees.
	for _, ch := range []wire.Channel{wire.ChannelState, wire.ChannelHealth, wire.ChannelEvents, wire.ChannelLive} {
		wait(t, "forged "+string(ch), a.Publish(wire.Topic("agent-b", ch), 1, ch == wire.ChannelState, "forged"))
	}
	own := wire.Topic("agent-a", wire.ChannelState)
	wait(t, "own state", a.Publish(own, 1, true, "online"))
	if m := receive(t, seen, "A's own state"); m.Topic() != own {
		t.Fatalf("the hub received %q on %s first, want A's own state", m.Payload(), m.Topic())
	}

	// A reads neither B's commands nor anything with a wildcard; the
	// hub's command to A, sent after B's, is the first A receives.
	aGot := make(chan paho.Message, 100)
	for _, filter := range []string{wire.Topic("agent-b", wire.ChannelCommands), wire.Prefix + "#", wire.Topic("agent-a", wire.ChannelCommands)} {
		subscribeCode(t, a, filter, aGot)
	}
	bGot := subscribe(t, b, wire.Topic("agent-b", wire.ChannelCommands))
	wait(t, "command to B", hub.Publish(wire.Topic("agent-b", wire.ChannelCommands), 1, false, "for B"))
	wait(t, "command to A", hub.Publish(wire.Topic("agent-a", wire.ChannelCommands), 1, false, "for A"))
	if m := receive(t, bGot, "B's command"); string(m.Payload()) != "for B" {
		t.Errorf("B got %q", m.Payload())
	}
	if m := receive(t, aGot, "A's command"); string(m.Payload()) != "for A" {
		t.Errorf("A first got %q on %s, want its own command", m.Payload(), m.Topic())
	}

	// The client id is the username: A claiming B's id does not take over
	// B's session.
	bHealth := subscribe(t, hub, wire.Topic("agent-b", wire.ChannelHealth))
	connect(t, as("agent-b", "agent-a", secretOf("agent-a")))
	wait(t, "B still connected", b.Publish(wire.Topic("agent-b", wire.ChannelHealth), 1, false, "still here"))
	if m := receive(t, bHealth, "B's health"); string(m.Payload()) != "still here" {
		t.Errorf("the hub received %q, want B's health", m.Payload())
	}

	// Over TLS, trusting the CA, with a hash from mosquitto_passwd.
	testenv.MosquittoPasswd(t, passwd, "agent-c", secretOf("agent-c"))
	mq.Restart() // Mosquitto reads the password file when it starts
	c := connect(t, overTLS(login{url: mq.TLSURL(), id: "agent-c", user: "agent-c", pass: secretOf("agent-c")}, p.ca.Pool()))
	hub = connect(t, as(hubUser, hubUser, hubPass))
	seen = subscribe(t, hub, wire.Topic("agent-c", wire.ChannelHealth))
	wait(t, "C health", c.Publish(wire.Topic("agent-c", wire.ChannelHealth), 1, false, "tls"))
	if m := receive(t, seen, "C's health"); string(m.Payload()) != "tls" {
		t.Errorf("got %q", m.Payload())
	}
}

// TestMosquittoRequiredClientCertificate: with RequireClientCert, a client
// without a certificate from the CA is refused, one with it connects.
func TestMosquittoRequiredClientCertificate(t *testing.T) {
	dir := t.TempDir()
	passwd, acl := mosquittoFiles(t, dir, "agent-a")
	p := newPKI(t)
	tlsOpts := mosquittoTLS(t, dir, p)
	tlsOpts.RequireClientCert = true
	mq := testenv.MosquittoWith(t, testenv.MosquittoOptions{PasswordFile: passwd, ACLFile: acl, TLS: tlsOpts})
	l := login{url: mq.TLSURL(), id: "agent-a", user: "agent-a", pass: secretOf("agent-a")}
	if c, tok := dial(t, overTLS(l, p.ca.Pool())); tok.Error() == nil || c.IsConnected() {
		t.Error("Mosquitto admitted a TLS client without a certificate")
	}
	connect(t, overTLS(l, p.ca.Pool(), clientCert(t, p.ca, "agent-a")))
}
