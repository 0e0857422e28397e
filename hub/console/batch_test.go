package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// dialBatch opens /api/events?batch=1 as an admin.
func dialBatch(t testing.TB, base string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/api/events?batch=1",
		http.Header{"Authorization": {"Bearer admin"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// item is a message as a client sees it, batched or not: a change's seq
// or an alarm's id.
type item struct {
	Type    string          `json:"type"`
	Change  *fleet.Change   `json:"change"`
	Changes []fleet.Change  `json:"changes"`
	Event   *alarm.Event    `json:"event"`
	Items   json.RawMessage `json:"items"`
}

// flatten lists what m carries, in order: "c<seq>" for a change and
// "a<id>" for an alarm event.
func flatten(t testing.TB, m item) []string {
	t.Helper()
	switch m.Type {
	case "change":
		return []string{fmt.Sprint("c", m.Change.Seq)}
	case "changes":
		var out []string
		for _, c := range m.Changes {
			out = append(out, fmt.Sprint("c", c.Seq))
		}
		return out
	case "alarm":
		return []string{"a" + m.Event.Alarm.ID}
	case "batch":
		var items []item
		if err := json.Unmarshal(m.Items, &items); err != nil || len(items) < 2 {
			t.Fatalf("batch of %d items (%v): %s", len(items), err, m.Items)
		}
		var out []string
		for _, it := range items {
			if it.Type == "batch" {
				t.Fatalf("batch in a batch")
			}
			out = append(out, flatten(t, it)...)
		}
		return out
	}
	t.Fatalf("unexpected message type %q", m.Type)
	return nil
}

// A burst of changes and alarm events reaches a batch client complete, in
// order, each exactly once, in fewer messages than a plain client gets,
// and both see the same stream.
func TestEventsBatchBurstInOrder(t *testing.T) {
	rules, err := alarm.ParseRules([]byte(instantRules))
	if err != nil {
		t.Fatal(err)
	}
	deps := testDeps()
	deps.Alarms = alarm.New(rules, alarm.Options{}) // alarm events go only to consoles of a hub with alarms
	// A long window gathers the burst behind its first change.
	s := mustNew(t, Config{BatchWindow: 200 * time.Millisecond}, deps)
	base, _ := running(t, s)
	batched, plain := dialBatch(t, base), dial(t, base, nil)
	readHello(t, batched)
	readHello(t, plain)

	var want []string
	for seq := uint64(1); seq <= 500; seq++ {
		s.Publish(deviceChange(seq))
		want = append(want, fmt.Sprint("c", seq))
		if seq%5 == 0 {
			id := fmt.Sprint("alarm-", seq)
			s.PublishAlarm(alarm.Event{Kind: alarm.EventRaise, Alarm: alarm.Alarm{ID: id, Severity: alarm.Warning, District: "Riverside", Site: "s1"}})
			want = append(want, "a"+id)
		}
	}
	read := func(conn *websocket.Conn) (got []string, messages int) {
		conn.SetReadDeadline(time.Now().Add(wait))
		for len(got) < len(want) {
			var m item
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatalf("after %d of %d: %v", len(got), len(want), err)
			}
			if m.Type == "ping" {
				continue
			}
			got = append(got, flatten(t, m)...)
			messages++
		}
		return got, messages
	}
	got, nb := read(batched)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("batch client got %v,\nwant %v", got, want)
	}
	gotPlain, np := read(plain)
	if !reflect.DeepEqual(gotPlain, want) {
		t.Fatalf("plain client got %v,\nwant %v", gotPlain, want)
	}
	if nb >= np || nb >= len(want) {
		t.Errorf("batch client read %d messages, plain %d, for %d items: want fewer", nb, np, len(want))
	}
	t.Logf("%d items: %d messages batched, %d plain", len(want), nb, np)
}

// A batch client that reads nothing still fills its queue and is cut with
// 1013; the others go on.
func TestEventsBatchSlowClientIsCut(t *testing.T) {
	s := mustNew(t, Config{SendQueue: 4, WriteTimeout: time.Minute, BatchWindow: time.Millisecond}, testDeps())
	base, _ := running(t, s)

	slow := dialBatch(t, base)
	readHello(t, slow) // from now on it reads nothing
	fast := dial(t, base, nil)
	readHello(t, fast)
	fastSeqs := receiver(t, fast)
	eventually(t, "two clients", func() bool { return metric(t, base, "citywatch_ws_clients") == 2 })

	big := strings.Repeat("x", 64<<10)
	seq := uint64(0)
	for metric(t, base, "citywatch_ws_dropped_clients_total") == 0 {
		if seq == 10000 {
			t.Fatalf("a batch client that reads nothing was not cut after %d changes of 64 KiB", seq)
		}
		seq++
		c := deviceChange(seq)
		c.Detail = big
		s.Publish(c)
		expectSeq(t, fastSeqs, seq) // one flush per change
	}
	t.Logf("cut after %d changes", seq)

	slow.SetReadDeadline(time.Now().Add(wait))
	var err error
	for err == nil {
		_, _, err = slow.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater || ce.Text != "too slow" {
		t.Fatalf("slow client ended with %v, want close 1013 too slow", err)
	}
}

// A batch client gets an agent change's devices grouped by what they have
// in common; expanded, they are the plain client's devices.
func TestGroupedAgentChange(t *testing.T) {
	since := t0.Add(time.Minute)
	dev := func(id string, reported wire.Status) fleet.Device {
		return fleet.Device{ID: id, Name: "n " + id, Site: "s1", District: "Riverside", Status: wire.StatusUnreachable,
			Reason: wire.ReasonAgentOffline, Since: since, Reported: reported}
	}
	c := fleet.Change{Seq: 9, Kind: fleet.ChangeAgent, To: wire.StatusOffline, Agent: &fleet.Agent{ID: "ag-1"},
		Affected: []fleet.Device{dev("cam-1", wire.StatusOnline), dev("cam-2", wire.StatusOffline), dev("cam-3", wire.StatusOnline)}}
	plain, err := json.Marshal(wireChange(c))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := groupedChange(c)
	if !ok {
		t.Fatal("an agent change of three devices is not grouped")
	}
	grouped, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Seq      uint64           `json:"seq"`
		Affected []map[string]any `json:"affected"`
	}
	var q struct {
		Seq      uint64           `json:"seq"`
		Affected []map[string]any `json:"affected"`
		Groups   []map[string]any `json:"affected_groups"`
	}
	if err := json.Unmarshal(plain, &p); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(grouped, &q); err != nil {
		t.Fatal(err)
	}
	if q.Seq != 9 || q.Affected != nil || len(q.Groups) != 2 {
		t.Fatalf("grouped change %s: want seq 9, no affected, two groups", grouped)
	}
	// What the console does (ui/live.js expand).
	var expanded []map[string]any
	for _, grp := range q.Groups {
		for _, id := range grp["ids"].([]any) {
			d := map[string]any{"id": id}
			for k, v := range grp {
				if k != "ids" {
					d[k] = v
				}
			}
			expanded = append(expanded, d)
		}
	}
	byID := func(ds []map[string]any) map[any]map[string]any {
		m := map[any]map[string]any{}
		for _, d := range ds {
			m[d["id"]] = d
		}
		return m
	}
	if !reflect.DeepEqual(byID(expanded), byID(p.Affected)) {
		t.Errorf("expanded groups %v,\nwant %v", expanded, p.Affected)
	}
	if len(grouped) >= len(plain) {
		t.Errorf("grouped %d bytes, plain %d: want fewer", len(grouped), len(plain))
	}
	// A device change is the same for everyone.
	if _, ok := groupedChange(deviceChange(1)); ok {
		t.Error("a device change is grouped")
	}
}

// When an agent change takes every device of the agent alike — an agent
// gone — its one group says "all" instead of listing them; if a device of
// the agent did not change, or changed otherwise, the ids are listed.
func TestGroupedAgentChangeAll(t *testing.T) {
	since := t0.Add(time.Minute)
	change := func(devices int, reported ...wire.Status) fleet.Change {
		c := fleet.Change{Seq: 9, Kind: fleet.ChangeAgent, To: wire.StatusOffline, Agent: &fleet.Agent{ID: "ag-1", Devices: devices}}
		for i, r := range reported {
			c.Affected = append(c.Affected, fleet.Device{ID: fmt.Sprintf("cam-%d", i+1), Agent: "ag-1", Status: wire.StatusUnreachable,
				Reason: wire.ReasonAgentOffline, Since: since, Reported: r})
		}
		return c
	}
	groups := func(c fleet.Change) []map[string]any {
		t.Helper()
		g, ok := groupedChange(c)
		if !ok {
			t.Fatal("not grouped")
		}
		b, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		var q struct {
			Groups []map[string]any `json:"affected_groups"`
		}
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		return q.Groups
	}
	on := wire.StatusOnline
	all := groups(change(3, on, on, on))
	if len(all) != 1 || all[0]["all"] != true || all[0]["ids"] != nil || all[0]["status"] != "unreachable" || all[0]["reason"] != "agent_offline" {
		t.Errorf("every device of the agent alike: groups %v, want one with all and no ids", all)
	}
	for name, c := range map[string]fleet.Change{
		"a device of the agent unchanged": change(4, on, on, on),
		"a device changed otherwise":      change(3, on, on, wire.StatusOffline),
	} {
		for _, g := range groups(c) {
			if g["all"] != nil || len(g["ids"].([]any)) == 0 {
				t.Errorf("%s: group %v, want ids and no all", name, g)
			}
		}
	}
}

// The frames the writers send straight to the socket are what a websocket
// client reads as whole text messages, at each of the three lengths the
// protocol encodes differently, and several written at once arrive as
// several messages.
func TestFramesReadAsMessages(t *testing.T) {
	payloads := [][]byte{[]byte(`{"type":"ping"}`), bytes.Repeat([]byte("a"), 126), bytes.Repeat([]byte("b"), 65535),
		bytes.Repeat([]byte("c"), 65536), bytes.Repeat([]byte("d"), maxMessage+10)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		bufs := net.Buffers{}
		for _, p := range payloads {
			bufs = append(bufs, newFrame(p).wire)
		}
		if _, err := bufs.WriteTo(conn.NetConn()); err != nil {
			t.Error(err)
		}
		conn.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadLimit(2 * maxMessage)
	for i, want := range payloads {
		typ, got, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(got, want) {
			t.Errorf("message %d: type %d, %d bytes; want text, %d bytes", i, typ, len(got), len(want))
		}
	}
}
