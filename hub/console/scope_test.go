package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// xicheng is a caller scoped to the Xicheng district (cam-gate-1/2, door-1,
// agent-north); Dongcheng (cam-market, smoke-1, agent-east) is not theirs.
var xicheng = http.Header{"Authorization": {"Bearer operator@district:Xicheng"}}

func ids[T any](list []T, id func(T) string) []string {
	var out []string
	for _, x := range list {
		out = append(out, id(x))
	}
	slices.Sort(out)
	return out
}

// TestScopeLimitsEveryAnswer checks the lists, details and summary a
// scoped caller gets: nothing of another district, not even its ids.
func TestScopeLimitsEveryAnswer(t *testing.T) {
	s, e := alarmServer(t)
	var devs DeviceList
	if rec := do(t, s, "GET", "/api/devices", xicheng); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &devs) != nil {
		t.Fatalf("devices: %d %s", rec.Code, rec.Body)
	}
	if got := ids(devs.Devices, func(d *fleet.Device) string { return d.ID }); !slices.Equal(got, []string{"cam-gate-1", "cam-gate-2", "door-1"}) || devs.Total != 3 {
		t.Errorf("scoped devices %v (total %d)", got, devs.Total)
	}
	var agents AgentList
	do(t, s, "GET", "/api/agents", xicheng)
	if rec := do(t, s, "GET", "/api/agents", xicheng); json.Unmarshal(rec.Body.Bytes(), &agents) != nil || len(agents.Agents) != 1 || agents.Agents[0].ID != "agent-north" {
		t.Errorf("scoped agents %s", rec.Body)
	}
	for _, p := range []string{"/api/devices/cam-market", "/api/agents/agent-east", "/api/alarms/A3"} {
		if rec := do(t, s, "GET", p, xicheng); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s out of scope = %d, want 404", p, rec.Code)
		}
		if rec := do(t, s, "GET", p, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s for the whole city = %d", p, rec.Code)
		}
	}
	var sum fleet.Summary
	if rec := do(t, s, "GET", "/api/summary", xicheng); json.Unmarshal(rec.Body.Bytes(), &sum) != nil || sum.Devices != 3 ||
		len(sum.Districts) != 1 || sum.Districts[0].District != "Xicheng" || sum.Agents[wire.StatusOnline] != 1 || sum.Agents[wire.StatusOffline] != 0 {
		t.Errorf("scoped summary %s", rec.Body)
	}
	// A district filter narrows the scope, never widens it.
	for _, tt := range []struct {
		header  http.Header
		query   string
		code    int
		devices int
	}{
		{nil, "?district=Dongcheng", 200, 2},
		{nil, "?district=Dongcheng&district=Xicheng", 200, 5},
		{nil, "?site=depot", 200, 1},
		{xicheng, "?district=Dongcheng", 200, 0},
		{xicheng, "?district=Xicheng&site=north-gate", 200, 3},
		{nil, "?from=2026-01-01T00:00:00Z", 400, 0},
		{nil, "?site=not%20an%20id", 400, 0},
	} {
		rec := do(t, s, "GET", "/api/summary"+tt.query, tt.header)
		var got fleet.Summary
		if rec.Code != tt.code || (tt.code == 200 && (json.Unmarshal(rec.Body.Bytes(), &got) != nil || got.Devices != tt.devices)) {
			t.Errorf("summary%s = %d %s, want %d with %d devices", tt.query, rec.Code, rec.Body, tt.code, tt.devices)
		}
	}
	var list AlarmList
	if rec := do(t, s, "GET", "/api/alarms", xicheng); json.Unmarshal(rec.Body.Bytes(), &list) != nil ||
		!slices.Equal(ids(list.Alarms, func(a alarm.Alarm) string { return a.ID }), []string{"A1", "A2"}) || list.Counts.Critical != 1 {
		t.Errorf("scoped alarms %s", rec.Body)
	}
	// A sensor alarm suggests only cameras the caller may see.
	var d AlarmDetail
	if rec := do(t, s, "GET", "/api/alarms/A2", http.Header{"Authorization": {"Bearer operator@district:Dongcheng,site:north-gate"}}); json.Unmarshal(rec.Body.Bytes(), &d) != nil {
		t.Fatalf("alarm A2: %s", rec.Body)
	}
	for _, c := range d.Cameras {
		if c.ID == "cam-market" {
			continue
		}
		if dev, _ := s.fleet.Device(c.ID); dev.Site != "north-gate" && dev.District != "Dongcheng" {
			t.Errorf("suggested camera %s is out of scope", c.ID)
		}
	}
	if _, _, ok := e.Alarm("A3"); !ok {
		t.Fatal("A3 missing")
	}
	// Roles without status.read see no fleet at all.
	for _, role := range []string{"auditor", "security_admin"} {
		if rec := do(t, s, "GET", "/api/devices", http.Header{"Authorization": {"Bearer " + role}}); rec.Code != http.StatusForbidden {
			t.Errorf("%s lists devices: %d", role, rec.Code)
		}
	}
}

// TestScopedEventStream checks that a scoped client gets only its
// district's changes and alarms, with after/upto accounting for the rest,
// while a whole-city client gets everything.
func TestScopedEventStream(t *testing.T) {
	s, e := alarmServer(t)
	base, _ := running(t, s)
	city := dial(t, base, nil)
	scoped := dial(t, base, xicheng)
	hello := readHello(t, city)
	if h := readHello(t, scoped); h.Summary.Devices != 3 {
		t.Errorf("scoped hello summary: %+v", h.Summary)
	}
	market, gate := testDevices[3], testDevices[0]
	seq := hello.Seq
	s.Publish(fleet.Change{Seq: seq + 1, Kind: fleet.ChangeDevice, To: wire.StatusOffline, Device: &market})
	s.Publish(fleet.Change{Seq: seq + 2, Kind: fleet.ChangeDevice, To: wire.StatusOffline, Device: &gate})
	s.Publish(fleet.Change{Seq: seq + 3, Kind: fleet.ChangeAgent, To: wire.StatusOffline, Agent: &testAgents[1]})

	type raw struct {
		Type    string         `json:"type"`
		After   *uint64        `json:"after"`
		Upto    uint64         `json:"upto"`
		Change  *fleet.Change  `json:"change"`
		Changes []fleet.Change `json:"changes"`
	}
	read := func(conn *websocket.Conn, upto uint64) (got []uint64, last raw) {
		for last.Upto < upto {
			conn.SetReadDeadline(deadline())
			last = raw{}
			if err := conn.ReadJSON(&last); err != nil {
				t.Fatalf("read: %v", err)
			}
			if last.Type == "alarm" || last.Type == "ping" {
				continue
			}
			if last.After == nil {
				t.Fatalf("a change message without after: %+v", last)
			}
			if last.Change != nil {
				got = append(got, last.Change.Seq)
			}
			for _, c := range last.Changes {
				got = append(got, c.Seq)
			}
		}
		return got, last
	}
	if got, _ := read(city, seq+3); !slices.Equal(got, []uint64{seq + 1, seq + 2, seq + 3}) {
		t.Errorf("the whole city got %v", got)
	}
	got, last := read(scoped, seq+2)
	if !slices.Equal(got, []uint64{seq + 2}) || last.Upto < seq+2 || *last.After > seq {
		t.Errorf("the district got %v (after %d, upto %d), want only %d", got, *last.After, last.Upto, seq+2)
	}
	// A batch with nothing for the district sends it nothing; the next
	// message it gets still starts where its last ended, so it does not
	// look like missed changes.
	prev := last.Upto
	s.Publish(fleet.Change{Seq: seq + 4, Kind: fleet.ChangeDevice, To: wire.StatusOnline, Device: &market})
	read(city, seq+4)
	s.Publish(fleet.Change{Seq: seq + 5, Kind: fleet.ChangeDevice, To: wire.StatusOnline, Device: &gate})
	read(city, seq+5)
	got, last = read(scoped, seq+5)
	if !slices.Equal(got, []uint64{seq + 5}) || *last.After != prev {
		t.Errorf("after a batch it could not see, the district got %v with after %d, want %d after %d", got, *last.After, seq+5, prev)
	}

	// Alarm events: the district's, not the other's.
	if err := e.Ack("A3", "op", ""); err != nil { // agent-east: Dongcheng
		t.Fatal(err)
	}
	if err := e.Ack("A1", "op", ""); err != nil { // cam-gate-2: Xicheng
		t.Fatal(err)
	}
	for {
		scoped.SetReadDeadline(deadline())
		var m wsMessage
		if err := scoped.ReadJSON(&m); err != nil {
			t.Fatalf("read: %v", err)
		}
		if m.Type != "alarm" {
			continue
		}
		if m.Event.Alarm.ID != "A1" {
			t.Fatalf("the district got alarm %s's event", m.Event.Alarm.ID)
		}
		break
	}
}

// TestEventStreamLimitsAndSessions caps the streams of one account and
// ends a stream when its login session ends.
func TestEventStreamLimitsAndSessions(t *testing.T) {
	s := mustNew(t, Config{MaxWebsockets: 2}, testDeps())
	base, _ := running(t, s)
	a := dial(t, base, nil)
	readHello(t, a)
	readHello(t, dial(t, base, nil))
	_, res, err := websocket.DefaultDialer.Dial("ws"+base[len("http"):]+"/api/events", http.Header{"Authorization": {"Bearer admin"}})
	if err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third stream: %v %v, want 429", res, err)
	}
	// Another account is not held back by admin's streams.
	readHello(t, dial(t, base, xicheng))

	s.EndSessions([]string{"s-admin"})
	a.SetReadDeadline(deadline())
	for {
		_, _, err := a.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != closeSessionEnded {
			t.Fatalf("stream ended with %v, want close code %d", err, closeSessionEnded)
		}
		break
	}
	// Its slot is free again.
	eventually(t, "a slot freed", func() bool {
		c, _, err := websocket.DefaultDialer.Dial("ws"+base[len("http"):]+"/api/events", http.Header{"Authorization": {"Bearer admin"}})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func deadline() time.Time { return time.Now().Add(wait) }
