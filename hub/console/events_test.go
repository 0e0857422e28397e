package console

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// wait is how long a test waits for something that should happen at once;
// it only bounds a failing test.
const wait = 20 * time.Second

// message is any message on /api/events.
type message struct {
	Type    string         `json:"type"`
	Seq     uint64         `json:"seq"`
	Summary *fleet.Summary `json:"summary"`
	Change  *fleet.Change  `json:"change"`
	Changes []fleet.Change `json:"changes"`
}

// dial opens the event stream, as an admin unless header says who.
func dial(t testing.TB, base string, header http.Header) *websocket.Conn {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer admin"}}
	for k, v := range header {
		h[k] = v
	}
	conn, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/api/events", h)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readMessage(t testing.TB, conn *websocket.Conn) message {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	var m message
	if err := conn.ReadJSON(&m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

// readHello reads the first message and checks it is a hello.
func readHello(t testing.TB, conn *websocket.Conn) message {
	t.Helper()
	m := readMessage(t, conn)
	if m.Type != "hello" || m.Summary == nil {
		t.Fatalf("first message is %+v, want a hello with a summary", m)
	}
	return m
}

// changesOf returns the changes a message carries.
func changesOf(t testing.TB, m message) []fleet.Change {
	t.Helper()
	switch m.Type {
	case "change":
		if m.Change == nil {
			t.Fatalf("change message without a change")
		}
		return []fleet.Change{*m.Change}
	case "changes":
		if len(m.Changes) < 2 {
			t.Fatalf("changes message with %d changes", len(m.Changes))
		}
		return m.Changes
	}
	t.Fatalf("unexpected message type %q", m.Type)
	return nil
}

// receiver reads changes in the background and hands their Seqs over in
// the order they arrived; the channel closes when the connection ends.
func receiver(t testing.TB, conn *websocket.Conn) <-chan uint64 {
	seqs := make(chan uint64, 1<<16)
	go func() {
		defer close(seqs)
		for {
			var m message
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			switch m.Type {
			case "change":
				seqs <- m.Change.Seq
			case "changes":
				for _, c := range m.Changes {
					seqs <- c.Seq
				}
			}
		}
	}()
	return seqs
}

func expectSeq(t testing.TB, seqs <-chan uint64, want uint64) {
	t.Helper()
	select {
	case got, ok := <-seqs:
		if !ok {
			t.Fatalf("connection ended waiting for change %d", want)
		}
		if got != want {
			t.Fatalf("got change %d, want %d", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("change %d did not arrive", want)
	}
}

func deviceChange(seq uint64) fleet.Change {
	d := testDevices[0]
	return fleet.Change{Seq: seq, At: t0.Add(time.Duration(seq) * time.Millisecond), Kind: fleet.ChangeDevice,
		From: wire.StatusOnline, To: wire.StatusOffline, Reason: string(wire.ReasonRefused), Device: &d}
}

// metric scrapes /metrics and returns the value of one series (name with
// labels, as written).
func metric(t testing.TB, base, series string) float64 {
	t.Helper()
	res, err := adminGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}

// eventually polls cond until it holds or the test's patience ends.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling, not waiting for time to pass
	}
}

func TestEventsHelloThenChangesInOrder(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	base, _ := running(t, s)

	// Changes before anyone listens move the starting point.
	for seq := uint64(1); seq <= 3; seq++ {
		s.Publish(deviceChange(seq))
	}
	conn := dial(t, base, nil)
	hello := readHello(t, conn)
	if hello.Seq != 3 {
		t.Errorf("hello seq = %d, want 3", hello.Seq)
	}
	if !reflect.DeepEqual(*hello.Summary, testSummary) {
		t.Errorf("hello summary = %+v, want %+v", *hello.Summary, testSummary)
	}

	// One change alone arrives as a "change" with the fleet's encoding.
	want := deviceChange(4)
	s.Publish(want)
	m := readMessage(t, conn)
	if m.Type != "change" || m.Change == nil || !reflect.DeepEqual(*m.Change, want) {
		t.Fatalf("got %+v, want change %+v", m, want)
	}

	// A burst arrives complete and in order, batched or not.
	const last = 2000
	for seq := uint64(5); seq <= last; seq++ {
		s.Publish(deviceChange(seq))
	}
	next, batches := uint64(5), 0
	for next <= last {
		for _, c := range changesOf(t, readMessage(t, conn)) {
			if c.Seq != next {
				t.Fatalf("got change %d, want %d", c.Seq, next)
			}
			next++
		}
		batches++
	}
	t.Logf("%d changes arrived in %d messages", last-4, batches)

	// A client connecting now starts after the burst.
	if hello := readHello(t, dial(t, base, nil)); hello.Seq != last {
		t.Errorf("second client's hello seq = %d, want %d", hello.Seq, last)
	}
}

func TestEventsSlowClientIsCut(t *testing.T) {
	s := mustNew(t, Config{SendQueue: 4, WriteTimeout: time.Minute, BatchWindow: time.Millisecond}, testDeps())
	base, _ := running(t, s)

	slow := dial(t, base, nil)
	readHello(t, slow) // registered; from now on it reads nothing
	fast := dial(t, base, nil)
	readHello(t, fast)
	fastSeqs := receiver(t, fast)
	eventually(t, "two clients", func() bool { return metric(t, base, "citywatch_ws_clients") == 2 })

	// Large changes fill the slow client's socket buffers, then its queue.
	// Publishing waits for the fast client each time, so only the slow
	// one can fall behind.
	big := strings.Repeat("x", 64<<10)
	seq := uint64(0)
	for metric(t, base, "citywatch_ws_dropped_clients_total") == 0 {
		if seq == 10000 {
			t.Fatalf("a client that reads nothing was not cut after %d changes of 64 KiB", seq)
		}
		seq++
		c := deviceChange(seq)
		c.Detail = big
		s.Publish(c)
		expectSeq(t, fastSeqs, seq)
	}
	t.Logf("cut after %d changes", seq)

	// The fast client is unaffected.
	for range 10 {
		seq++
		s.Publish(deviceChange(seq))
		expectSeq(t, fastSeqs, seq)
	}
	if got := metric(t, base, "citywatch_ws_dropped_clients_total"); got != 1 {
		t.Errorf("dropped clients = %v, want 1", got)
	}

	// Once it reads, the slow client finds what was on the wire, then a
	// close frame saying why.
	slow.SetReadDeadline(time.Now().Add(wait))
	var err error
	for err == nil {
		_, _, err = slow.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater || ce.Text != "too slow" {
		t.Fatalf("slow client ended with %v, want close 1013 too slow", err)
	}
	eventually(t, "one client left", func() bool { return metric(t, base, "citywatch_ws_clients") == 1 })
}

func TestEventsClientGaugeAndShutdown(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	base, stop := running(t, s)
	if got := metric(t, base, "citywatch_ws_clients"); got != 0 {
		t.Fatalf("clients = %v before any connected", got)
	}
	a, b, c := dial(t, base, nil), dial(t, base, nil), dial(t, base, nil)
	for _, conn := range []*websocket.Conn{a, b, c} {
		readHello(t, conn)
	}
	if got := metric(t, base, "citywatch_ws_clients"); got != 3 {
		t.Fatalf("clients = %v, want 3", got)
	}

	// A client that leaves properly is gone at once.
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wait))
	eventually(t, "two clients", func() bool { return metric(t, base, "citywatch_ws_clients") == 2 })
	// So is one that just drops the connection.
	b.Close()
	eventually(t, "one client", func() bool { return metric(t, base, "citywatch_ws_clients") == 1 })

	// Shutdown says goodbye with 1001. The client answers the close frame
	// (gorilla does while reading), which lets Run finish.
	closed := make(chan error, 1)
	go func() {
		a.SetReadDeadline(time.Now().Add(wait))
		for {
			if _, _, err := a.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	stop()
	err := <-closed
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("client ended with %v, want close 1001", err)
	}
}

func TestEventsPing(t *testing.T) {
	// The pong deadline (WriteTimeout) is long enough that a live client on a
	// loaded machine is never cut, short enough that the silent one soon is.
	s := mustNew(t, Config{PingInterval: 50 * time.Millisecond, WriteTimeout: 2 * time.Second}, testDeps())
	base, _ := running(t, s)

	// A client that reads answers pings and stays.
	live := dial(t, base, nil)
	pinged := make(chan struct{}, 1)
	live.SetPingHandler(func(data string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wait))
	})
	readHello(t, live)
	liveSeqs := receiver(t, live)
	for range 3 {
		select {
		case <-pinged:
		case <-time.After(wait):
			t.Fatal("no ping")
		}
	}

	// A client that never reads never answers, and is dropped.
	dial(t, base, nil)
	eventually(t, "two clients", func() bool { return metric(t, base, "citywatch_ws_clients") == 2 })
	eventually(t, "the silent client dropped", func() bool { return metric(t, base, "citywatch_ws_clients") == 1 })
	s.Publish(deviceChange(1))
	expectSeq(t, liveSeqs, 1)
}

func TestPublishWithoutClientsKeepsNothing(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	for seq := uint64(1); seq <= 1000; seq++ {
		s.Publish(deviceChange(seq))
	}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if len(s.hub.pending) != 0 || s.hub.sent != 1000 {
		t.Errorf("pending %d, sent %d; want 0 and 1000", len(s.hub.pending), s.hub.sent)
	}
}

// Browsers never see protocol pings, so the hub also sends a text ping the
// console can time out on.
func TestEventsTextPing(t *testing.T) {
	s := mustNew(t, Config{PingInterval: 50 * time.Millisecond}, testDeps())
	base, _ := running(t, s)
	c := dial(t, base, nil)
	readHello(t, c)
	c.SetReadDeadline(time.Now().Add(wait))
	var m struct {
		Type string `json:"type"`
	}
	if err := c.ReadJSON(&m); err != nil || m.Type != "ping" {
		t.Fatalf("next message %+v, %v; want a text ping", m, err)
	}
}

// An agent change tells consoles only what changed of each affected
// device; an inventory change still carries whole devices.
func TestAgentChangeAffectedIsCompact(t *testing.T) {
	dev := fleet.Device{ID: "cam-1", Name: "Gate east", Site: "s1", District: "Riverside", Status: wire.StatusUnreachable,
		Reason: wire.ReasonAgentOffline, Reported: wire.StatusOnline, Metrics: map[string]float64{"fps": 15}}
	for _, tc := range []struct {
		kind  fleet.ChangeKind
		whole bool
	}{{fleet.ChangeAgent, false}, {fleet.ChangeInventory, true}} {
		b, err := json.Marshal(wireChange(fleet.Change{Seq: 7, Kind: tc.kind, Affected: []fleet.Device{dev}}))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Seq      uint64           `json:"seq"`
			Affected []map[string]any `json:"affected"`
		}
		if err := json.Unmarshal(b, &got); err != nil || got.Seq != 7 || len(got.Affected) != 1 {
			t.Fatalf("%s: %s (%v)", tc.kind, b, err)
		}
		a := got.Affected[0]
		if a["id"] != "cam-1" || a["status"] != "unreachable" || a["reason"] != "agent_offline" || a["reported"] != "online" {
			t.Errorf("%s: affected %v lacks the new status", tc.kind, a)
		}
		if _, hasName := a["name"]; hasName != tc.whole {
			t.Errorf("%s: affected %v, want whole devices = %v", tc.kind, a, tc.whole)
		}
	}
}

// An agent change (plain or grouped) says where the agent is and its
// status, reason included when it has none; the rest of its record
// (topology, counters) stays out. An inventory change carries it whole.
func TestAgentChangeAgentIsItsState(t *testing.T) {
	ag := &fleet.Agent{ID: "ag-1", Site: "s1", District: "Riverside", SiteNames: wire.Names{"zh-CN": "一号站"}, Status: wire.StatusOnline,
		Since: time.Unix(1000, 0).UTC(), Devices: 2, Topology: []wire.Node{{ID: "sw-1", Kind: wire.NodeSwitch}}, PowerFeed: "feed-9", Seq: 88, Version: "1.2.3"}
	devs := []fleet.Device{{ID: "cam-1", Status: wire.StatusOnline}, {ID: "cam-2", Status: wire.StatusOnline}}
	grouped, _ := groupedChange(fleet.Change{Seq: 7, Kind: fleet.ChangeAgent, Agent: ag, Affected: devs})
	for _, tc := range []struct {
		name  string
		msg   any
		whole bool
	}{
		{"agent", wireChange(fleet.Change{Seq: 7, Kind: fleet.ChangeAgent, Agent: ag, Affected: devs}), false},
		{"agent, no devices", wireChange(fleet.Change{Seq: 7, Kind: fleet.ChangeAgent, Agent: ag}), false},
		{"agent, grouped", grouped, false},
		{"inventory", wireChange(fleet.Change{Seq: 7, Kind: fleet.ChangeInventory, Agent: ag, Affected: devs}), true},
	} {
		b, err := json.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Agent map[string]any `json:"agent"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		a := got.Agent
		if a["id"] != "ag-1" || a["status"] != "online" || a["site"] != "s1" || a["district"] != "Riverside" || a["devices"] != 2.0 ||
			a["since"] != "1970-01-01T00:16:40Z" || a["site_names"] == nil {
			t.Errorf("%s: agent %v lacks its place or status", tc.name, a)
		}
		if r, ok := a["reason"]; !tc.whole && (!ok || r != "") {
			t.Errorf("%s: agent %v, want an empty reason sent", tc.name, a)
		}
		for _, k := range []string{"topology", "power_feed", "seq", "version"} {
			if _, ok := a[k]; ok != tc.whole {
				t.Errorf("%s: agent has %s: %v, want %v", tc.name, k, ok, tc.whole)
			}
		}
	}
}
