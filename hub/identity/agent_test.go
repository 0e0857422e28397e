package identity

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

func TestAgentCredentials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.svc.EnrollAgent(ctx, cli, "bad/id"); !isRefusal(err, "bad_request") {
		t.Errorf("bad id: %v", err)
	}
	secret, err := e.svc.EnrollAgent(ctx, cli, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "cwa_") || len(secret) != 4+43 {
		t.Errorf("secret %q", secret)
	}
	for _, tt := range []struct {
		what, user, pass string
		ok               bool
	}{
		{"right", "agent-1", secret, true},
		{"right again, from the cache", "agent-1", secret, true},
		{"wrong secret", "agent-1", secret + "x", false},
		{"empty secret", "agent-1", "", false},
		{"unknown agent", "agent-2", secret, false},
	} {
		if id, ok := e.svc.CheckAgent(tt.user, tt.pass); ok != tt.ok || (ok && id != tt.user) {
			t.Errorf("%s: CheckAgent = %q, %v", tt.what, id, ok)
		}
	}
	if got := e.svc.m.agentChecks.With("cached").Value(); got != 1 {
		t.Errorf("%d cached checks, want 1", got)
	}

	// Rotation: the old secret fails at once, cached or not.
	rotated, err := e.svc.EnrollAgent(ctx, cli, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	if id := receive(t, e.revoked, "rotation"); id != "agent-1" {
		t.Errorf("revoked %q", id)
	}
	if _, ok := e.svc.CheckAgent("agent-1", secret); ok {
		t.Error("the replaced secret still works")
	}
	if _, ok := e.svc.CheckAgent("agent-1", rotated); !ok {
		t.Error("the new secret does not work")
	}
	if e.svc.AgentRevoked("agent-1") || e.svc.AgentRevoked("agent-9") {
		t.Error("a rotated or unknown agent counts as revoked")
	}

	if err := e.svc.RevokeAgent(ctx, cli, "agent-1"); err != nil {
		t.Fatal(err)
	}
	if id := receive(t, e.revoked, "revocation"); id != "agent-1" {
		t.Errorf("revoked %q", id)
	}
	if _, ok := e.svc.CheckAgent("agent-1", rotated); ok {
		t.Error("a revoked agent's secret still works")
	}
	if !e.svc.AgentRevoked("agent-1") {
		t.Error("a revoked agent does not count as revoked")
	}
	if err := e.svc.RevokeAgent(ctx, cli, "agent-9"); !isRefusal(err, "not_found") {
		t.Errorf("revoke unknown: %v", err)
	}
	list, _ := e.svc.AgentCredentials(ctx)
	if len(list) != 1 || list[0].Active() || list[0].RevokedBy != "cli:root" {
		t.Errorf("credentials %+v: want agent-1 revoked, kept", list)
	}
	if len(e.audit.find("agent.enroll", audit.Success)) != 2 || len(e.audit.find("agent.revoke", audit.Success)) != 1 {
		t.Error("enrolments and revocation not audited")
	}
}

func TestAgentCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxAgents = 2 })
	ctx := context.Background()
	for _, id := range []string{"a1", "a2"} {
		if _, err := e.svc.EnrollAgent(ctx, cli, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.EnrollAgent(ctx, cli, "a3"); !isRefusal(err, "conflict") {
		t.Errorf("third agent: %v", err)
	}
	if _, err := e.svc.EnrollAgent(ctx, cli, "a2"); err != nil {
		t.Errorf("rotating at the cap: %v", err)
	}
	e.svc.RevokeAgent(ctx, cli, "a1")
	if _, err := e.svc.EnrollAgent(ctx, cli, "a3"); err != nil {
		t.Errorf("after a revocation: %v", err)
	}
}

func TestAgentCredentialRoutes(t *testing.T) {
	e := newEnv(t)
	sam := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	r := sam.do("POST", "/api/agent-credentials", map[string]string{"agent": "agent-7"})
	want(t, "enrol", r, 201, "")
	var created struct {
		Agent  AgentCredential
		Secret string
	}
	r.decode(t, &created)
	if created.Agent.Agent != "agent-7" || created.Agent.CreatedBy != "sam" || created.Secret == "" {
		t.Fatalf("enrolled %s", r.body)
	}
	r = sam.do("GET", "/api/agent-credentials", nil)
	if strings.Contains(string(r.body), created.Secret) || strings.Contains(string(r.body), "$7$") {
		t.Errorf("list %s shows a secret or hash", r.body)
	}
	r = sam.do("DELETE", "/api/agent-credentials/agent-7", nil)
	want(t, "revoke", r, 200, "")
	r.decode(t, &created.Agent)
	if created.Agent.Active() {
		t.Errorf("revoked %s", r.body)
	}
	want(t, "admin may not", e.ready("ada", auth.Admin, auth.Everything).do("GET", "/api/agent-credentials", nil), 403, "forbidden")
}

// TestAnotherProcess: a second service on the same file stands for the
// command line. What it does reaches the first within its poll.
func TestAnotherProcess(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	secret, err := e.svc.EnrollAgent(ctx, cli, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.svc.CheckAgent("agent-1", secret); !ok {
		t.Fatal("fresh secret refused")
	}
	olga := e.ready("olga", auth.Operator, north)
	var me Me
	olga.do("GET", "/api/auth/me", nil).decode(t, &me)
	drain(e.ended)

	other, _ := e.open(testConfig(), nil, nil)
	if err := other.RevokeAgent(ctx, cli, "agent-1"); err != nil {
		t.Fatal(err)
	}
	if id := receive(t, e.revoked, "revocation by another process"); id != "agent-1" {
		t.Errorf("revoked %q", id)
	}
	if _, ok := e.svc.CheckAgent("agent-1", secret); ok {
		t.Error("secret revoked elsewhere still works here")
	}

	// An account made there, then olga disabled there: by the time this
	// service reports olga's session ended, it has reloaded both.
	if _, _, err := other.AddAccount(ctx, cli, AccountSpec{Name: "newbie", Role: auth.Operator, Scope: north, Password: "Initial-Pass-99"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.UpdateAccount(ctx, cli, "olga", AccountPatch{Disabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	if ids := receive(t, e.ended, "disable by another process"); len(ids) != 1 || ids[0] != me.Session.ID {
		t.Errorf("ended %v, want %s", ids, me.Session.ID)
	}
	want(t, "session of the account disabled elsewhere", olga.do("GET", "/api/auth/me", nil), 401, "invalid_credentials")
	want(t, "login of an account made elsewhere", e.client("").login("newbie", "Initial-Pass-99", nil), 200, "")
}

// TestMosquittoFiles starts a real Mosquitto with the files written here
// and checks that agents log in with their secrets and are confined to
// their own topics.
func TestMosquittoFiles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	secrets := map[string]string{}
	for _, id := range []string{"a1", "a2", "a3"} {
		s, err := e.svc.EnrollAgent(ctx, cli, id)
		if err != nil {
			t.Fatal(err)
		}
		secrets[id] = s
	}
	e.svc.RevokeAgent(ctx, cli, "a3")
	hubHash, err := broker.HashSecret("hub-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	var passwd, acl bytes.Buffer
	if err := e.svc.WriteMosquittoFiles(ctx, &passwd, &acl, "citywatch-hub", hubHash); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(passwd.String(), "a3:") || strings.Count(passwd.String(), "\n") != 3 {
		t.Errorf("password file:\n%s", passwd.String())
	}
	if err := e.svc.WriteMosquittoFiles(ctx, &passwd, &acl, "bad user", hubHash); err == nil {
		t.Error("a hub user with a space was accepted")
	}

	url := startMosquitto(t, passwd.Bytes(), acl.Bytes())
	hub := mqttConnect(t, url, "citywatch-hub", "hub-secret-0123456789")
	got := make(chan paho.Message, 10)
	mqttWait(t, "hub subscribe", hub.Subscribe(wire.Prefix+"#", 1, func(_ paho.Client, m paho.Message) { got <- m }))

	a1 := mqttConnect(t, url, "a1", secrets["a1"])
	// Its own topic is delivered; another agent's is not. Mosquitto
	// handles one client's publishes in order, so once the allowed one
	// arrives the forbidden one would have arrived before it.
	mqttWait(t, "a1 forges a2", a1.Publish(wire.Topic("a2", wire.ChannelHealth), 1, false, "forged"))
	mqttWait(t, "a1 publishes", a1.Publish(wire.Topic("a1", wire.ChannelHealth), 1, false, "mine"))
	m := receive(t, got, "a1's own message")
	if m.Topic() != wire.Topic("a1", wire.ChannelHealth) || string(m.Payload()) != "mine" {
		t.Fatalf("hub got %s %q first, want a1's own message; a forged message got through", m.Topic(), m.Payload())
	}

	// Commands: an agent reads its own only.
	cmds := make(chan paho.Message, 10)
	mqttWait(t, "a1 subscribe", a1.Subscribe(wire.Prefix+"+/commands", 1, func(_ paho.Client, m paho.Message) { cmds <- m }))
	mqttWait(t, "command to a2", hub.Publish(wire.Topic("a2", wire.ChannelCommands), 1, false, "for a2"))
	mqttWait(t, "command to a1", hub.Publish(wire.Topic("a1", wire.ChannelCommands), 1, false, "for a1"))
	if m := receive(t, cmds, "a1's command"); string(m.Payload()) != "for a1" {
		t.Fatalf("a1 got %q first: it reads another agent's commands", m.Payload())
	}

	for _, tt := range []struct{ what, user, pass string }{
		{"wrong secret", "a2", secrets["a1"]},
		{"revoked agent", "a3", secrets["a3"]},
		{"unknown user", "a9", secrets["a1"]},
	} {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(tt.user).SetUsername(tt.user).
			SetPassword(tt.pass).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() == nil {
			c.Disconnect(0)
			t.Errorf("%s: connected", tt.what)
		}
	}
}

// startMosquitto runs Mosquitto on a free port with the password and ACL
// files, without anonymous access, until the test ends.
func startMosquitto(t *testing.T, passwd, acl []byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"passwd": passwd, "acl": acl} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := testenv.FreePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n" // else it drops to "mosquitto", which cannot read the files
	}
	conf := fmt.Sprintf(`%slistener %d 127.0.0.1
allow_anonymous false
password_file %s/passwd
acl_file %s/acl
use_username_as_clientid true
log_dest stderr
log_type all
`, user, port, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var log testenv.LogBuffer
	cmd := exec.Command("/usr/sbin/mosquitto", "-c", filepath.Join(dir, "mosquitto.conf"))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto (scripts/deps.sh installs it): %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", log.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "tcp://" + addr
		}
		select {
		case err := <-exited:
			t.Fatalf("mosquitto exited: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond): // waiting for it to listen
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %s after 10 s\n%s", addr, log.String())
		}
	}
}

func mqttConnect(t *testing.T, url, user, pass string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	mqttWait(t, "connect "+user, c.Connect())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func mqttWait(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
