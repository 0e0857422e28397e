package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	agentconfig "github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// intruderID is an agent enrolled with a credential of its own, which it
// uses to try to act as other agents.
const intruderID = "agent-intruder-01"

// intruder is a connected MQTT client of an enrolled agent that keeps
// every message the broker delivers to it.
type intruder struct {
	id     string
	client mqtt.Client
	mu     sync.Mutex
	got    []string // topics of the messages delivered
}

func newIntruder(t *testing.T, url, secret string, tlsCfg *tls.Config) *intruder {
	t.Helper()
	in := &intruder{id: intruderID}
	in.client = mustConnectMQTT(t, url, intruderID, intruderID, secret, tlsCfg)
	return in
}

// subscribe asks for filter and reports whether the broker granted it.
func (in *intruder) subscribe(t *testing.T, filter string) bool {
	t.Helper()
	tok := in.client.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		in.mu.Lock()
		in.got = append(in.got, m.Topic())
		in.mu.Unlock()
	})
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("subscribe %s: no answer", filter)
	}
	if tok.Error() != nil {
		return false
	}
	code, ok := tok.(*mqtt.SubscribeToken).Result()[filter]
	return ok && code < 0x80
}

// publish publishes at QoS 1 and waits for the broker's acknowledgement.
func (in *intruder) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	tok := in.client.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (in *intruder) received() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.got)
}

// birth publishes the intruder's own, genuine birth message and waits for
// the hub to list it: the broker carries what the agent may say.
func (in *intruder) birth(t *testing.T, hub *app.App) {
	t.Helper()
	now := time.Now()
	b, err := json.Marshal(wire.State{
		Header: wire.Header{V: wire.Version, Agent: in.id, Boot: now.UnixMilli(), Seq: 1, TS: now},
		State:  wire.AgentOnline, Conn: 1, Interval: 10, Version: "intruder",
	})
	if err != nil {
		t.Fatal(err)
	}
	in.publish(t, wire.Topic(in.id, wire.ChannelState), b)
	eventually(t, 10*time.Second, func() error {
		if a, ok := hub.Fleet().Agent(in.id); !ok || a.Status != wire.StatusOnline {
			return fmt.Errorf("the hub lists the intruder's own birth as %+v (%v)", a, ok)
		}
		return nil
	})
}

// victim is the agent an intruder tries to speak for: a camera to break,
// one to watch and a sensor to fake an intrusion on.
type victim struct {
	agent           agentconfig.Config
	broken, watched string
	sensor          string
}

func pickVictim(t *testing.T, s *stack) victim {
	t.Helper()
	for _, a := range s.sim.City().Agents {
		if len(a.Cameras) < 2 || len(a.Sensors) == 0 {
			continue
		}
		v := victim{agent: a, broken: a.Cameras[0].ID, watched: a.Cameras[1].ID, sensor: a.Sensors[0].ID}
		for _, d := range a.Sensors {
			if d.Kind == wire.SensorIntrusion {
				v.sensor = d.ID
			}
		}
		return v
	}
	t.Fatal("no agent with two cameras and a sensor")
	return victim{}
}

// forgery is what the intruder publishes in the victim's name: a health
// report saying every device of the victim is online and an intrusion on
// its sensor, both well formed and numbered after anything the victim has
// sent, so that the hub would apply them if they reached it.
type forgery struct {
	health, event []byte
	seq           uint64 // the lowest sequence number of the two
}

func forge(t *testing.T, s *stack, v victim) forgery {
	t.Helper()
	a, ok := s.hub.Fleet().Agent(v.agent.ID)
	if !ok {
		t.Fatalf("the hub does not know %s", v.agent.ID)
	}
	now := time.Now()
	f := forgery{seq: a.Seq + 1_000_000}
	header := func(seq uint64) wire.Header {
		return wire.Header{V: wire.Version, Agent: a.ID, Boot: a.Boot, Seq: seq, TS: now}
	}
	h := wire.Health{Header: header(f.seq), Interval: a.Interval}
	for _, id := range s.devicesOf(v.agent.ID) {
		h.Devices = append(h.Devices, wire.DeviceHealth{ID: id, Status: wire.StatusOnline, Since: now})
	}
	ev := wire.Event{Header: header(f.seq + 1), Device: v.sensor, Type: wire.EventTriggered, At: now}
	var err error
	for _, m := range []struct {
		ch  wire.Channel
		v   any
		out *[]byte
	}{{wire.ChannelHealth, h, &f.health}, {wire.ChannelEvents, ev, &f.event}} {
		if *m.out, err = json.Marshal(m.v); err != nil {
			t.Fatal(err)
		}
		if _, err := wire.Decode(wire.Topic(a.ID, m.ch), *m.out, now); err != nil {
			t.Fatalf("the forged %s message is not one the hub would take: %v", m.ch, err)
		}
	}
	return f
}

// breakCamera takes the victim's camera offline and waits for the hub to
// know it: the forged report says otherwise.
func breakCamera(t *testing.T, s *stack, v victim) {
	t.Helper()
	if err := s.sim.Fault(sim.Fault{Device: v.broken, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if d, _ := s.hub.Fleet().Device(v.broken); d.Status != wire.StatusOffline {
			return fmt.Errorf("%s is %s", v.broken, d.Status)
		}
		return nil
	})
}

// waitReports waits until the hub has taken two more reports of agent than
// it had when called: anything published before then has been handled.
func waitReports(t *testing.T, hub *app.App, agent string) {
	t.Helper()
	start, _ := hub.Fleet().Agent(agent)
	eventually(t, 30*time.Second, func() error {
		if a, _ := hub.Fleet().Agent(agent); a.Seq < start.Seq+2 {
			return fmt.Errorf("%s at seq %d, was %d", agent, a.Seq, start.Seq)
		}
		return nil
	})
}

// checkForgeryIgnored checks, once the victim's own reports have moved on,
// that the hub took nothing of the forgery: the victim's sequence never
// jumped, the broken camera is still offline, the sensor not triggered, and
// no alarm names it.
func checkForgeryIgnored(t *testing.T, s *stack, v victim, f forgery) {
	t.Helper()
	waitReports(t, s.hub, v.agent.ID)
	if a, _ := s.hub.Fleet().Agent(v.agent.ID); a.Seq >= f.seq {
		t.Errorf("the hub took a forged message: %s is at seq %d, the forgery at %d", a.ID, a.Seq, f.seq)
	}
	if d, _ := s.hub.Fleet().Device(v.broken); d.Status != wire.StatusOffline {
		t.Errorf("the forged report brought %s %s", v.broken, d.Status)
	}
	if d, _ := s.hub.Fleet().Device(v.sensor); d.Triggered {
		t.Errorf("the forged intrusion triggered %s", v.sensor)
	}
	var list alarmList
	s.api.getJSON(t, "api/alarms?agent="+v.agent.ID, &list)
	for _, a := range list.Alarms {
		if a.Device == v.sensor {
			t.Errorf("the forged intrusion raised %s (%s)", a.ID, a.Source)
		}
	}
}

// watch plays one of the victim's cameras to the end of a few frames: the
// hub commands the victim to stream and the victim answers on its live
// topic, which the intruder must not see.
func watch(t *testing.T, s *stack, v victim) {
	t.Helper()
	p := playWHEP(t, s.api, v.watched)
	p.awaitFrames(t, 10, 20*time.Second)
	p.stop(t)
}

// The embedded broker admits enrolled agents only, and each only to its own
// topics: no anonymous client; an enrolled agent speaking for another
// (health saying all is well, an intrusion) changes nothing and is counted,
// and it reads neither the other's commands nor its live signalling; a
// crowd of made-up agents, some with real agents' names, registers nothing,
// raises nothing and disturbs no real agent.
func TestEmbeddedBrokerConfinesAgents(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, embedded: true, live: true, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	v := pickVictim(t, s)
	url := s.hub.BrokerURL()
	refused := func(reason string) float64 {
		return s.api.metric(t, fmt.Sprintf(`citywatch_broker_refused_total{reason=%q}`, reason))
	}
	denied := func(kind string) float64 {
		return s.api.metric(t, fmt.Sprintf(`citywatch_broker_denied_total{kind=%q}`, kind))
	}

	anonymous := refused("anonymous")
	if c, err := connectMQTT(url, "anonymous-client", "", "", nil); err == nil {
		c.Disconnect(0)
		t.Fatal("an anonymous client was admitted")
	}
	if got := refused("anonymous") - anonymous; got != 1 {
		t.Errorf("anonymous refusals grew by %v, want 1", got)
	}

	t.Run("made-up agents", func(t *testing.T) {
		fakeAgents(t, s, url)
	})

	secret, err := s.hub.Identity().EnrollAgent(context.Background(), cliActor, intruderID)
	if err != nil {
		t.Fatal(err)
	}
	in := newIntruder(t, url, secret, nil)
	in.birth(t, s.hub)

	subscribeDenied := denied("subscribe")
	filters := []string{
		wire.Topic(v.agent.ID, wire.ChannelCommands), wire.Topic(v.agent.ID, wire.ChannelLive),
		wire.Prefix + "+/" + string(wire.ChannelCommands), "#",
	}
	for _, f := range filters {
		if in.subscribe(t, f) {
			t.Errorf("the intruder's subscription to %s was granted", f)
		}
	}
	if got := denied("subscribe") - subscribeDenied; got != float64(len(filters)) {
		t.Errorf("subscription denials grew by %v, want %d", got, len(filters))
	}
	watch(t, s, v)

	breakCamera(t, s, v)
	f := forge(t, s, v)
	publishDenied := denied("publish")
	in.publish(t, wire.Topic(v.agent.ID, wire.ChannelHealth), f.health)
	in.publish(t, wire.Topic(v.agent.ID, wire.ChannelEvents), f.event)
	eventually(t, 10*time.Second, func() error {
		if got := denied("publish") - publishDenied; got != 2 {
			return fmt.Errorf("publish denials grew by %v, want 2", got)
		}
		return nil
	})
	checkForgeryIgnored(t, s, v, f)
	if got := in.received(); len(got) > 0 {
		t.Errorf("the intruder received %d messages: %v", len(got), got)
	}
}

// fakeAgents sends more than a hundred CONNECTs with made-up credentials,
// some under real agents' ids with a Last Will saying they are offline,
// and checks that none gets in and that nothing changes.
func fakeAgents(t *testing.T, s *stack, url string) {
	type attempt struct{ id, will string }
	var attempts []attempt
	for i := range 120 {
		attempts = append(attempts, attempt{id: fmt.Sprintf("agent-made-up-%03d", i)})
	}
	before := map[string]uint32{} // real agent → connection number
	for _, a := range s.sim.City().Agents {
		attempts = append(attempts, attempt{id: a.ID, will: wire.Topic(a.ID, wire.ChannelState)})
		ag, _ := s.hub.Fleet().Agent(a.ID)
		before[a.ID] = ag.Conn
	}
	agents := len(s.hub.Fleet().Agents())
	badCredentials := s.api.metric(t, `citywatch_broker_refused_total{reason="bad_credentials"}`)

	var wg sync.WaitGroup
	admitted := make(chan string, len(attempts))
	sem := make(chan struct{}, 16)
	for i, a := range attempts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			o := mqtt.NewClientOptions().AddBroker(url).SetClientID(a.id).SetProtocolVersion(4).
				SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
				SetUsername(a.id).SetPassword(fmt.Sprintf("cwa_made-up-%d", i))
			if a.will != "" {
				now := time.Now()
				will, _ := json.Marshal(wire.State{Header: wire.Header{V: wire.Version, Agent: a.id, Boot: now.UnixMilli(), TS: now},
					State: wire.AgentOffline, Will: true, Conn: 1})
				o.SetBinaryWill(a.will, will, 1, true)
			}
			c := mqtt.NewClient(o)
			if tok := c.Connect(); tok.WaitTimeout(15*time.Second) && tok.Error() == nil {
				admitted <- a.id
				c.Disconnect(0)
			}
		})
	}
	wg.Wait()
	close(admitted)
	for id := range admitted {
		t.Errorf("made-up credentials for %s were admitted", id)
	}
	if got := s.api.metric(t, `citywatch_broker_refused_total{reason="bad_credentials"}`) - badCredentials; got != float64(len(attempts)) {
		t.Errorf("bad credential refusals grew by %v, want %d", got, len(attempts))
	}
	for id := range before {
		waitReports(t, s.hub, id)
	}
	if n := len(s.hub.Fleet().Agents()); n != agents {
		t.Errorf("the hub lists %d agents, %d before the made-up ones", n, agents)
	}
	for id, conn := range before {
		if a, _ := s.hub.Fleet().Agent(id); a.Status != wire.StatusOnline || a.Conn != conn {
			t.Errorf("%s is %s on connection %d (was %d): a made-up login disturbed it", id, a.Status, a.Conn, conn)
		}
	}
	var list alarmList
	s.api.getJSON(t, "api/alarms", &list)
	if list.Total != 0 {
		t.Errorf("made-up agents raised %d alarms: %+v", list.Total, list.Alarms)
	}
}

// An external Mosquitto configured with the files `citywatch-hub agents
// mosquitto` writes admits the hub with its own login and each enrolled
// agent with its own, and confines each agent to its own topics: no
// anonymous client; an enrolled agent's own messages reach the hub, its
// messages in another agent's name do not, and it cannot read the other's
// commands.
func TestMosquittoWithHubWrittenFiles(t *testing.T) {
	dir := t.TempDir()
	const hubUser, hubPassword = "citywatch-hub", "hub-mqtt-Secret-42"
	conf := writeHubConfig(t, dir, fmt.Sprintf("mqtt:\n  username: %s\n  password: %s\n", hubUser, hubPassword))
	city, err := sim.GenerateCity(smallCity)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, a := range append(city.Agents, agentconfig.Config{ID: intruderID}) {
		secrets[a.ID] = hubCLI(t, conf, "agents", "enroll", a.ID)
	}
	passwd, acl := filepath.Join(dir, "mosquitto.passwd"), filepath.Join(dir, "mosquitto.acl")
	hubCLI(t, conf, "agents", "mosquitto", "-passwd", passwd, "-acl", acl)
	broker := testenv.MosquittoWith(t, testenv.MosquittoOptions{PasswordFile: passwd, ACLFile: acl})

	s := startStack(t, stackOptions{city: smallCity, mosquitto: broker, live: true, hubCfg: func(c *config.Config) {
		c.DataDir = dir
		c.MQTT.Username, c.MQTT.Password = hubUser, hubPassword
	}, agents: func(o *sim.Options, _ *app.App) {
		o.Credentials = func(id string) (string, string) { return id, secrets[id] }
	}})
	// Every agent's own messages reach the hub through its own login.
	s.waitAllOnline(t)
	v := pickVictim(t, s)

	if c, err := connectMQTT(broker.URL(), "anonymous-client", "", "", nil); err == nil {
		c.Disconnect(0)
		t.Fatal("Mosquitto admitted an anonymous client")
	}
	if c, err := connectMQTT(broker.URL(), v.agent.ID, v.agent.ID, "cwa_made-up", nil); err == nil {
		c.Disconnect(0)
		t.Fatalf("Mosquitto admitted %s with a made-up secret", v.agent.ID)
	}

	in := newIntruder(t, broker.URL(), secrets[intruderID], nil)
	in.birth(t, s.hub)
	for _, f := range []string{
		wire.Topic(v.agent.ID, wire.ChannelCommands), wire.Topic(v.agent.ID, wire.ChannelLive),
		wire.Prefix + "+/" + string(wire.ChannelCommands),
	} {
		// Mosquitto may grant a filter and withhold each message the ACL
		// denies: what counts is that nothing arrives.
		in.subscribe(t, f)
	}
	watch(t, s, v)

	breakCamera(t, s, v)
	f := forge(t, s, v)
	in.publish(t, wire.Topic(v.agent.ID, wire.ChannelHealth), f.health)
	in.publish(t, wire.Topic(v.agent.ID, wire.ChannelEvents), f.event)
	checkForgeryIgnored(t, s, v, f)
	if got := in.received(); len(got) > 0 {
		t.Errorf("the intruder received %d messages: %v", len(got), got)
	}
}
