package uplink

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/agent/internal/wiretest"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

var testSite = wire.Site{ID: "site-1", District: "Xinhua", Location: wire.Location{Lat: 30.6, Lon: 114.3}}

func testDevices() []wire.Device {
	return []wire.Device{{ID: "cam-1", Kind: wire.KindCamera, District: "Xinhua", Criticality: 3,
		Location: testSite.Location, Camera: &wire.CameraInfo{Heading: 90, FOV: 70, Range: 40}}}
}

// startClient runs an uplink against the broker at brokerURL until the
// test ends. The returned stop cancels Run and fails the test if it does
// not return cleanly.
func startClient(t *testing.T, brokerURL, agent string, mutate func(*Config)) (*Client, func()) {
	t.Helper()
	c := newClient(t, brokerURL, agent, mutate)
	return c, runClient(t, c)
}

// newClient makes an uplink with the test inventory, not yet running, so
// a test can wrap its paho client first.
func newClient(t *testing.T, brokerURL, agent string, mutate func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BrokerURL: brokerURL, ClientID: "test-" + agent, Agent: agent, Site: testSite.ID,
		Version: "test", Interval: time.Second, Boot: time.Now(), ShutdownTimeout: 3 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetInventory(wire.Inventory{Site: testSite, Devices: testDevices()})
	return c
}

// runClient runs c until the test ends; see startClient.
func runClient(t *testing.T, c *Client) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = c.Run(ctx)
	}()
	stop := func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(wiretest.Timeout):
			return errors.New("Run did not return after cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}
}

func TestBirthAndInventoryRetained(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c, stop := startClient(t, broker.URL(), "agent-1", nil)
	wiretest.Eventually(t, "birth and inventory are acknowledged", func() bool { return c.Stats().Published >= 2 })

	// A subscriber arriving later still learns the agent and its devices.
	w := wiretest.Watch(t, broker.URL(), "agent-1")
	birth := w.State(wire.AgentOnline)
	if birth.Will || birth.Conn != 1 || birth.Seq == 0 || birth.Interval != 1 || birth.Site != "site-1" || birth.Version != "test" {
		t.Errorf("birth %+v", birth)
	}
	inv := w.Next(wire.ChannelInventory, nil).Inventory
	if len(inv.Devices) != 1 || inv.Devices[0].ID != "cam-1" || !reflect.DeepEqual(inv.Site, testSite) || inv.Seq <= birth.Seq {
		t.Errorf("inventory %+v after birth seq %d", inv, birth.Seq)
	}

	// A clean stop overwrites the birth with an offline state that is not
	// a will.
	stop()
	st := w.State(wire.AgentOffline)
	if st.Will || st.Conn != 1 || st.Seq <= inv.Seq {
		t.Errorf("clean offline state %+v", st)
	}
	late := wiretest.Watch(t, broker.URL(), "agent-1")
	if s := late.Next(wire.ChannelState, nil).State; s.State != wire.AgentOffline || s.Will {
		t.Errorf("retained state after a clean stop: %+v", s)
	}
}

func TestSequenceAcrossChannels(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-2")
	c, _ := startClient(t, broker.URL(), "agent-2", func(cfg *Config) { cfg.HealthQueue = 10 })
	w.Next(wire.ChannelInventory, nil)

	for i := range 50 {
		if i%10 == 0 {
			c.PublishHealth([]wire.DeviceHealth{{ID: "cam-1", Status: wire.StatusOnline, Since: time.Now()}})
		}
		c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, At: time.Now()})
	}
	var last uint64
	for range 55 {
		m := w.Any()
		if h := m.Header(); h.Seq <= last {
			t.Fatalf("seq %d after %d on %s", h.Seq, last, m.Channel)
		} else {
			last = h.Seq
		}
	}
	wiretest.Eventually(t, "all acknowledged", func() bool { return c.Stats().Published == 57 })
	if s := c.Stats(); s.Seq != 57 || s.Queued != 0 || s.Failed != 0 || !s.Connected || s.Conn != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestDropConnectionFiresWill(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-3")
	c, _ := startClient(t, broker.URL(), "agent-3", nil)
	w.State(wire.AgentOnline)
	w.Next(wire.ChannelInventory, nil)

	c.DropConnection()
	will := w.State(wire.AgentOffline)
	if !will.Will || will.Seq != 0 || will.Conn != 1 {
		t.Errorf("will %+v, want Will, Seq 0, Conn 1", will)
	}
	// paho may first resend the old birth if its ack was still in flight:
	// a duplicate the hub drops by its seq.
	w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 })
	w.Next(wire.ChannelInventory, nil)

	// The will of the second connection names it.
	c.DropConnection()
	if will = w.State(wire.AgentOffline); !will.Will || will.Conn != 2 {
		t.Errorf("second will %+v, want Conn 2", will)
	}
}

// TestBrokerDown: without a spool, reports made while the broker is down
// wait in memory, and the queue's policy decides what is dropped. They go
// out after the reconnect with the seqs and times they were made with:
// below the new birth's seq, and in order.
func TestBrokerDown(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-4")
	c, _ := startClient(t, broker.URL(), "agent-4", func(cfg *Config) { cfg.QueueSize = 20 })
	wiretest.Eventually(t, "connected", func() bool { return c.Stats().Published >= 2 })

	broker.Stop()
	wiretest.Eventually(t, "disconnected", func() bool { return !c.Stats().Connected })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventRestored, Detail: strconv.Itoa(i), At: time.Now()})
			c.PublishHealth([]wire.DeviceHealth{{ID: "cam-1", Status: wire.StatusOffline, Since: time.Now()}})
		}
	}()
	select {
	case <-done:
	case <-time.After(wiretest.Timeout):
		t.Fatal("publishing blocked while the broker was down")
	}
	// Alternating events and reports into a queue of 20: every report is
	// displaced by later events, and the 20 newest events stay.
	if s := c.Stats(); s.Queued != 20 || s.DroppedHealth != 100 || s.DroppedEvents != 80 {
		t.Errorf("stats while down: %+v; want 20 queued, 100 reports and 80 events dropped", s)
	}

	broker.Restart()
	birth := w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 }).State
	var last uint64
	for i := 80; i < 100; i++ {
		e := w.Next(wire.ChannelEvents, nil).Event
		if e.Detail != strconv.Itoa(i) || e.Seq <= last || e.Seq >= birth.Seq || !e.TS.Before(birth.TS) {
			t.Fatalf("event %q seq %d ts %v after seq %d; want event %d, made before the birth (seq %d, ts %v)",
				e.Detail, e.Seq, e.TS, last, i, birth.Seq, birth.TS)
		}
		last = e.Seq
	}
	wiretest.Eventually(t, "queue flushed", func() bool { return c.Stats().Queued == 0 })
	// The next report says what was lost at the edge.
	c.PublishHealth([]wire.DeviceHealth{{ID: "cam-1", Status: wire.StatusOnline, Since: time.Now()}})
	h := w.Next(wire.ChannelHealth, func(m wire.Message) bool { return m.Health.Seq > birth.Seq }).Health
	if h.Dropped == nil || *h.Dropped != (wire.Dropped{Health: 100, Events: 80}) {
		t.Errorf("health after the outage says dropped %+v, want 100 health, 80 events", h.Dropped)
	}
}

func TestCommands(t *testing.T) {
	broker := testenv.Mosquitto(t)
	var mu sync.Mutex
	var got []wire.Command
	c, _ := startClient(t, broker.URL(), "agent-5", func(cfg *Config) {
		cfg.Commands = map[string]CommandHandler{wire.CommandProbe: func(_ context.Context, cmd wire.Command) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, cmd)
		}}
	})
	w := wiretest.Watch(t, broker.URL(), "agent-5")
	wiretest.Eventually(t, "connected", func() bool { return c.Stats().Published >= 2 })

	topic := wire.Topic("agent-5", wire.ChannelCommands)
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	for _, payload := range []string{
		`{"v":1,"id":"cmd-1","ts":"` + ts + `","type":"probe","devices":["cam-1"]}`,
		`{"v":1,"id":"cmd-2","ts":"` + ts + `","type":"reboot"}`, // unsupported
		`{"v":1,"id":"cmd 3","ts":"` + ts + `","type":"probe"}`,  // invalid id
		`not json`,
	} {
		w.Publish(topic, payload)
	}
	wiretest.Eventually(t, "commands counted", func() bool { s := c.Stats(); return s.Commands == 1 && s.BadCommands == 3 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].ID != "cmd-1" || len(got[0].Devices) != 1 || got[0].Devices[0] != "cam-1" {
		t.Errorf("handled %+v", got)
	}
}

// TestNoLossAcrossDrop cuts the connection while events stream out and
// checks, with the hub's rule (a seq already seen is a replay; any other
// is accepted, late or not), that every event still gets through exactly
// once: what paho resends from the dropped connection, what waited in
// memory and, with a spool, what waited on disk.
func TestNoLossAcrossDrop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spool bool
	}{{"memory", false}, {"spool", true}} {
		t.Run(tc.name, func(t *testing.T) {
			broker := testenv.Mosquitto(t)
			agent := "agent-6-" + tc.name
			w := wiretest.Watch(t, broker.URL(), agent)
			c, _ := startClient(t, broker.URL(), agent, func(cfg *Config) {
				if tc.spool {
					cfg.SpoolDir, cfg.SpoolBytes, cfg.ResendRate = t.TempDir(), 64<<20, 1e6
				}
			})
			w.Next(wire.ChannelInventory, nil) // after the first birth

			const n = 2000
			for i := range n {
				if i == n/2 {
					c.DropConnection()
				}
				c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: strconv.Itoa(i), At: time.Now()})
			}
			seen := make(map[uint64]bool)
			accepted := make(map[string]bool)
			births := make(map[uint32]bool)
			defer func() {
				if t.Failed() {
					t.Logf("accepted %d events, stats %+v", len(accepted), c.Stats())
				}
			}()
			for len(accepted) < n || !births[2] {
				m := w.Any()
				h := m.Header()
				if m.State != nil && m.State.Will {
					continue // judged by conn, not seq
				}
				if seen[h.Seq] {
					continue // the hub drops it as a replay: fine for a duplicate
				}
				seen[h.Seq] = true
				switch {
				case m.State != nil:
					births[m.State.Conn] = true
				case m.Event != nil:
					if accepted[m.Event.Detail] {
						t.Fatalf("event %s accepted twice (seq %d)", m.Event.Detail, h.Seq)
					}
					accepted[m.Event.Detail] = true
				}
			}
			if s := c.Stats(); s.DroppedEvents != 0 || s.Conn != 2 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestLargeHealthReport: a report of the most devices an agent may have,
// each with a long detail, does not fit the hub's payload limit in one
// message; it arrives whole, in consecutive parts that each pass the hub's
// validation.
func TestLargeHealthReport(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-7")
	c, _ := startClient(t, broker.URL(), "agent-7", nil)
	last := w.Next(wire.ChannelInventory, nil).Inventory.Seq

	var devs []wire.DeviceHealth
	for i := range wire.MaxDevices {
		devs = append(devs, wire.DeviceHealth{ID: "cam-" + strconv.Itoa(i), Status: wire.StatusDegraded, Since: time.Now(),
			Reason: wire.ReasonLowFrameRate, Detail: strings.Repeat("d", wire.MaxDetailLen),
			Metrics: map[string]float64{wire.MetricFPS: 25, wire.MetricBitrateKbps: 1843.5, wire.MetricTCPMillis: 1.25,
				wire.MetricRTSPMillis: 8.5, wire.MetricFrameAge: 12.5, wire.MetricProbeFailures: 0}})
	}
	c.PublishHealth(devs)
	seen, parts := 0, 0
	for seen < len(devs) {
		h := w.Next(wire.ChannelHealth, nil).Health
		if h.Seq != last+1 {
			t.Fatalf("part seq %d after %d", h.Seq, last)
		}
		last = h.Seq
		seen += len(h.Devices)
		parts++
	}
	if seen != len(devs) || parts < 2 {
		t.Errorf("%d devices in %d parts", seen, parts)
	}
}

// TestPublishLive sends live signalling through the broker: the hub's
// wire.Decode accepts it (the watcher checks), and it shares the
// sequence and the queue with events.
func TestPublishLive(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-8")
	c, _ := startClient(t, broker.URL(), "agent-8", nil)
	inv := w.Next(wire.ChannelInventory, nil).Inventory

	mid, line := "0", uint16(0)
	c.PublishLive(wire.Live{Session: "ls-1", Device: "cam-1", Type: wire.LiveAnswer, SDP: "v=0\r\n"})
	c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, At: time.Now()})
	c.PublishLive(wire.Live{Session: "ls-1", Device: "cam-1", Type: wire.LiveCandidate,
		Candidate: &wire.ICECandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50123 typ host", SDPMid: &mid, SDPMLineIndex: &line}})
	c.PublishLive(wire.Live{Session: "ls-1", Device: "cam-1", Type: wire.LiveStopped, Reason: wire.ReasonRefused, Detail: "TCP connection refused"})

	last := inv.Seq
	var got []wire.LiveType
	for range 4 {
		m := w.Any()
		if h := m.Header(); h.Seq != last+1 {
			t.Errorf("seq %d after %d on %s", h.Seq, last, m.Channel)
		}
		last = m.Header().Seq
		if m.Channel == wire.ChannelLive {
			got = append(got, m.Live.Type)
			if m.Live.Session != "ls-1" || m.Live.Device != "cam-1" {
				t.Errorf("live %+v", m.Live)
			}
		}
	}
	if want := []wire.LiveType{wire.LiveAnswer, wire.LiveCandidate, wire.LiveStopped}; !slices.Equal(got, want) {
		t.Errorf("live messages %v, want %v", got, want)
	}
}

// With the brokers of a cluster listed, the agent connects to the first
// that answers, and when that broker goes, to another: its reports go on.
func TestBrokerList(t *testing.T) {
	first, second := testenv.Mosquitto(t), testenv.Mosquitto(t)
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))
	c, _ := startClient(t, dead+", "+first.URL()+","+second.URL(), "agent-1", nil)
	wiretest.Eventually(t, "birth and inventory acknowledged past the dead broker", func() bool { return c.Stats().Published >= 2 })
	if inv := wiretest.Watch(t, first.URL(), "agent-1").Next(wire.ChannelInventory, nil).Inventory; len(inv.Devices) != 1 {
		t.Fatalf("inventory on the first live broker: %+v", inv)
	}
	first.Stop()
	if st := wiretest.Watch(t, second.URL(), "agent-1").State(wire.AgentOnline); st.Conn < 2 {
		t.Errorf("birth on the second broker %+v, want a later connection's", st)
	}
}

// failingPublish fails the first publishes on topic as paho does when it
// cannot hand a message to a busy connection within the write timeout,
// without the connection dropping.
type failingPublish struct {
	paho.Client
	topic string
	times int32        // publishes to fail; 0 fails the first only
	calls atomic.Int32 // publishes on topic so far
}

func (f *failingPublish) Publish(topic string, qos byte, retained bool, payload any) paho.Token {
	if topic == f.topic && f.calls.Add(1) <= max(f.times, 1) {
		return failedToken{}
	}
	return f.Client.Publish(topic, qos, retained, payload)
}

type failedToken struct{}

func (failedToken) Wait() bool                     { return true }
func (failedToken) WaitTimeout(time.Duration) bool { return true }
func (failedToken) Error() error                   { return errors.New("publish was broken by timeout") }
func (failedToken) Done() <-chan struct{} {
	done := make(chan struct{})
	close(done)
	return done
}

// An inventory whose publish failed on a connection that stayed up goes
// again: the hub must not wait for a reconnect (or its own asking) to
// learn the agent's devices.
func TestInventoryRepublishedAfterFailedPublish(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := newClient(t, broker.URL(), "agent-1", nil)
	fail := &failingPublish{Client: c.mqtt, topic: wire.Topic("agent-1", wire.ChannelInventory)}
	c.mqtt = fail
	t.Cleanup(runClient(t, c))

	w := wiretest.Watch(t, broker.URL(), "agent-1")
	inv := w.Next(wire.ChannelInventory, nil).Inventory
	if len(inv.Devices) != 1 || inv.Devices[0].ID != "cam-1" {
		t.Errorf("inventory %+v", inv)
	}
	if fail.calls.Load() == 0 {
		t.Fatal("the inventory's publish never failed: the test proves nothing")
	}
	if s := c.Stats(); s.Conn != 1 || s.Retried != 1 || s.Failed != 0 {
		t.Errorf("stats %+v: want one connection and one failed publish, sent again", s)
	}
}

// A birth whose publish failed on a connection that stayed up goes again,
// the inventory after it: else the broker would keep the last
// connection's will as the agent's state.
func TestBirthRepublishedAfterFailedPublish(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := newClient(t, broker.URL(), "agent-1", nil)
	fail := &failingPublish{Client: c.mqtt, topic: wire.Topic("agent-1", wire.ChannelState)}
	c.mqtt = fail
	w := wiretest.Watch(t, broker.URL(), "agent-1")
	t.Cleanup(runClient(t, c))

	if s := w.Next(wire.ChannelState, nil).State; s.State != wire.AgentOnline || s.Will || s.Conn != 1 {
		t.Errorf("state %+v: want connection 1's birth", s)
	}
	w.Next(wire.ChannelInventory, nil)
	if fail.calls.Load() < 2 {
		t.Fatalf("%d publishes of the state: the test proves nothing", fail.calls.Load())
	}
	if s := c.Stats(); s.Conn != 1 || s.Retried != 1 || s.Failed != 0 {
		t.Errorf("stats %+v: want one connection and one failed publish, sent again", s)
	}
}

// A health report or event whose publish failed on a connection that
// stayed up goes again, with the seq and time it was made with, while
// later ones flow: from the spool if there is one, else from memory.
func TestReportRepublishedAfterFailedPublish(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ch    wire.Channel
		spool bool
	}{
		{"event in memory", wire.ChannelEvents, false},
		{"health report in the spool", wire.ChannelHealth, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := testenv.Mosquitto(t)
			agent := "agent-r-" + string(tc.ch)
			w := wiretest.Watch(t, broker.URL(), agent)
			start := time.Now().Add(-time.Hour)
			clk := newTestClock(start)
			c := newClient(t, broker.URL(), agent, func(cfg *Config) {
				cfg.now = clk.now
				if tc.spool {
					cfg.SpoolDir, cfg.SpoolBytes = t.TempDir(), 1<<20
				}
			})
			fail := &failingPublish{Client: c.mqtt, topic: wire.Topic(agent, tc.ch)}
			c.mqtt = fail
			stop := runClient(t, c)
			first := w.Next(wire.ChannelInventory, nil).Inventory.Seq + 1

			// The first fails; the second goes at once.
			want := make(map[string]int)
			for i := range 2 {
				clk.set(start.Add(time.Duration(i)*time.Second), 0)
				if tc.ch == wire.ChannelHealth {
					c.PublishHealth(healthLines(i, 1))
					want["h:"+strconv.Itoa(i)] = i
				} else {
					c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: strconv.Itoa(i), At: start})
					want["e:"+strconv.Itoa(i)] = i
				}
			}
			for len(want) > 0 {
				m := w.Next(tc.ch, nil)
				i, ok := want[msgLabel(m)]
				if !ok {
					t.Fatalf("%s arrived twice", msgLabel(m))
				}
				delete(want, msgLabel(m))
				if h := m.Header(); h.Seq != first+uint64(i) || !h.TS.Equal(start.Add(time.Duration(i)*time.Second)) {
					t.Errorf("%s seq %d ts %v; want seq %d ts %v as made", msgLabel(m), h.Seq, h.TS, first+uint64(i), start.Add(time.Duration(i)*time.Second))
				}
			}
			if fail.calls.Load() == 0 {
				t.Fatal("no publish failed: the test proves nothing")
			}
			// Birth, inventory and the two.
			wiretest.Eventually(t, "all acknowledged", func() bool { return c.Stats().Published == 4 })
			s := c.Stats()
			if s.Conn != 1 || s.Retried != 1 || s.Failed != 0 || s.DroppedHealth+s.DroppedEvents != 0 {
				t.Errorf("stats %+v: want one connection, one failed publish sent again, none dropped", s)
			}
			if tc.spool && (s.Spooled != 1 || s.Resent != 1 || s.SpoolQueued != 0) {
				t.Errorf("spool stats %+v: want the failed message spooled and resent", s)
			}
			stop()
		})
	}
}

// A message whose publish keeps failing on a live connection does not go
// round for ever, in memory or through the spool: after maxFailures it is
// dropped, counted, and the next health report says so.
func TestReportDroppedAfterRepeatedFailures(t *testing.T) {
	for _, spool := range []bool{false, true} {
		t.Run("spool="+strconv.FormatBool(spool), func(t *testing.T) {
			broker := testenv.Mosquitto(t)
			agent := "agent-f-" + strconv.FormatBool(spool)
			w := wiretest.Watch(t, broker.URL(), agent)
			c := newClient(t, broker.URL(), agent, func(cfg *Config) {
				if spool {
					cfg.SpoolDir, cfg.SpoolBytes = t.TempDir(), 1<<20
				}
			})
			fail := &failingPublish{Client: c.mqtt, topic: wire.Topic(agent, wire.ChannelEvents), times: maxFailures}
			c.mqtt = fail
			t.Cleanup(runClient(t, c))
			w.Next(wire.ChannelInventory, nil)

			c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, At: time.Now()})
			wiretest.Eventually(t, "the event dropped", func() bool { return c.Stats().DroppedEvents == 1 })
			c.PublishHealth(healthLines(0, 1))
			if h := w.Next(wire.ChannelHealth, nil).Health; h.Dropped == nil || *h.Dropped != (wire.Dropped{Events: 1}) {
				t.Errorf("the next report says dropped %+v, want one event", h.Dropped)
			}
			if s, n := c.Stats(), fail.calls.Load(); n != maxFailures || s.Retried != maxFailures-1 || s.Failed != 1 {
				t.Errorf("%d publishes, stats %+v: want %d publishes, all failed, the last given up", n, s, maxFailures)
			}
		})
	}
}
