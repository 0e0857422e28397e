package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

const instantRules = `
rules:
  - source: device_offline
    severity: major
  - source: sensor_triggered
    severity: critical
  - source: agent_offline
    severity: critical
`

// alarmServer returns a console over a real engine, whose events go to the
// console's websocket, with three alarms: A1 cam-gate-2 offline (major),
// A2 door-1 triggered (critical), A3 agent-east offline (critical).
func alarmServer(t *testing.T) (*Server, *alarm.Engine) {
	t.Helper()
	rules, err := alarm.ParseRules([]byte(instantRules))
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	e := alarm.New(rules, alarm.Options{OnEvent: func(ev alarm.Event) { s.PublishAlarm(ev) }})
	deps := testDeps()
	deps.Alarms = e
	s = mustNew(t, Config{}, deps)
	for _, d := range testDevices[:3] {
		e.Observe(fleet.Change{Kind: fleet.ChangeDevice, To: d.Status, Device: &d})
	}
	e.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOffline, Agent: &testAgents[1]})
	if n := len(e.Alarms(alarm.Filter{})); n != 3 {
		t.Fatalf("setup raised %d alarms, want 3", n)
	}
	return s, e
}

// alarmView decodes the fields of an alarm the tests check: alarm.Severity
// encodes as text but does not decode.
type alarmView struct {
	ID           string       `json:"id"`
	Source       alarm.Source `json:"source"`
	Agent        string       `json:"agent"`
	Device       string       `json:"device"`
	Severity     string       `json:"severity"`
	State        alarm.State  `json:"state"`
	AckedBy      string       `json:"acked_by"`
	AssignedTo   string       `json:"assigned_to"`
	ShelvedUntil time.Time    `json:"shelved_until"`
}

func post(t testing.TB, s *Server, target, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin")
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	s.router.Handler().ServeHTTP(rec, req)
	return rec
}

func TestAlarmList(t *testing.T) {
	s, e := alarmServer(t)
	if err := e.Clear("A1", "op", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.Ack("A1", "op", ""); err != nil { // closed: listed only when asked for
		t.Fatal(err)
	}
	tests := []struct {
		query  string
		ids    []string // in order
		total  int
		counts AlarmCounts
	}{
		{"", []string{"A2", "A3"}, 2, AlarmCounts{Critical: 2}}, // door-1 is the more critical device
		{"?state=cleared_ack", []string{"A1"}, 1, AlarmCounts{Major: 1}},
		{"?state=active_unack&state=cleared_ack", []string{"A2", "A3", "A1"}, 3, AlarmCounts{Critical: 2, Major: 1}},
		{"?severity=critical&severity=minor", []string{"A2", "A3"}, 2, AlarmCounts{Critical: 2}},
		{"?source=agent_offline", []string{"A3"}, 1, AlarmCounts{Critical: 1}},
		{"?district=Xicheng", []string{"A2"}, 1, AlarmCounts{Critical: 1}},
		{"?site=market&site=north-gate", []string{"A2", "A3"}, 2, AlarmCounts{Critical: 2}},
		{"?device=door-1", []string{"A2"}, 1, AlarmCounts{Critical: 1}},
		{"?agent=agent-east", []string{"A3"}, 1, AlarmCounts{Critical: 1}},
		{"?limit=1&offset=1", []string{"A3"}, 2, AlarmCounts{Critical: 2}},
		{"?offset=5", nil, 2, AlarmCounts{Critical: 2}},
		{"?device=nope&state=", nil, 0, AlarmCounts{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			rec := do(t, s, "GET", "/api/alarms"+tt.query, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			var got struct {
				Alarms []alarmView
				Total  int
				Counts AlarmCounts
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Alarms == nil {
				t.Error(`"alarms" is null, want a list`)
			}
			var ids []string
			for _, a := range got.Alarms {
				ids = append(ids, a.ID)
			}
			if !slices.Equal(ids, tt.ids) || got.Total != tt.total || got.Counts != tt.counts {
				t.Errorf("got %v total %d counts %+v; want %v total %d counts %+v", ids, got.Total, got.Counts, tt.ids, tt.total, tt.counts)
			}
		})
	}
	for _, q := range []string{"?state=open", "?severity=huge", "?source=x", "?limit=0", "?limit=1&limit=2", "?status=offline", "?device=a%20b", "?%zz"} {
		if rec := do(t, s, "GET", "/api/alarms"+q, nil); rec.Code != http.StatusBadRequest {
			t.Errorf("GET /api/alarms%s = %d, want 400", q, rec.Code)
		}
	}
}

func TestAlarmDetail(t *testing.T) {
	s, e := alarmServer(t)
	if err := e.Ack("A2", "alice", "on it"); err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "GET", "/api/alarms/A2", nil)
	var got struct {
		Alarm   alarmView
		History []alarm.Transition
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s %v", rec.Code, rec.Body, err)
	}
	if got.Alarm.ID != "A2" || got.Alarm.State != alarm.ActiveAck || len(got.History) != 2 ||
		got.History[1].Who != "alice" || got.History[1].Note != "on it" {
		t.Errorf("detail %+v", got)
	}
	for target, want := range map[string]int{
		"/api/alarms/A99":        http.StatusNotFound,
		"/api/alarms/A2?x=1":     http.StatusBadRequest,
		"/api/alarms/A2/ack":     http.StatusMethodNotAllowed,
		"/api/alarms/A2/unknown": http.StatusNotFound,
	} {
		if rec := do(t, s, "GET", target, nil); rec.Code != want {
			t.Errorf("GET %s = %d, want %d: %s", target, rec.Code, want, rec.Body)
		}
	}
	if rec := post(t, s, "/api/alarms", "{}", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/alarms = %d, want 405", rec.Code)
	}
}

func TestAlarmActions(t *testing.T) {
	long := strings.Repeat("x", 65)
	scoped := func(role, scope string) http.Header {
		return http.Header{"Authorization": {"Bearer " + role + "@" + scope}}
	}
	tests := []struct {
		name   string
		path   string // after /api/alarms/
		body   string
		header http.Header
		code   int
		check  func(t *testing.T, a alarmView)
	}{
		{"ack", "A1/ack", `{"note":"seen"}`, nil, 200, func(t *testing.T, a alarmView) {
			if a.State != alarm.ActiveAck || a.AckedBy != "admin" {
				t.Errorf("alarm %+v", a)
			}
		}},
		{"ack by an operator of the district", "A1/ack", `{}`, scoped("operator", "district:Xicheng"), 200, func(t *testing.T, a alarmView) {
			if a.AckedBy != "operator@district:Xicheng" {
				t.Errorf("acked by %q", a.AckedBy)
			}
		}},
		{"assign", "A1/assign", `{"to":"crew 7"}`, nil, 200, func(t *testing.T, a alarmView) {
			if a.AssignedTo != "crew 7" {
				t.Errorf("assigned to %q", a.AssignedTo)
			}
		}},
		{"shelve for", "A1/shelve", `{"for":"30m"}`, nil, 200, func(t *testing.T, a alarmView) {
			if d := time.Until(a.ShelvedUntil); d < 29*time.Minute || d > 31*time.Minute {
				t.Errorf("shelved until %s", a.ShelvedUntil)
			}
		}},
		{"shelve until", "A1/shelve", `{"until":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`, nil, 200, nil},
		{"clear", "A1/clear", `{}`, nil, 200, func(t *testing.T, a alarmView) {
			if a.State != alarm.ClearedUnack {
				t.Errorf("state %s", a.State)
			}
		}},

		{"anonymous", "A1/ack", `{}`, http.Header{"Authorization": {""}}, 401, nil},
		{"analyst may not ack", "A1/ack", `{}`, http.Header{"Authorization": {"Bearer analyst"}}, 403, nil},
		{"operator may not clear", "A1/clear", `{}`, http.Header{"Authorization": {"Bearer operator"}}, 403, nil},
		{"other district's alarm is not found", "A1/ack", `{}`, scoped("operator", "district:Dongcheng"), 404, nil},
		{"unknown id", "A99/ack", `{}`, nil, 404, nil},
		{"unshelve not shelved", "A1/unshelve", `{}`, nil, 409, nil},
		{"shelve until past", "A1/shelve", `{"until":"2001-01-01T00:00:00Z"}`, nil, 409, nil},
		{"shelve for a century", "A1/shelve", `{"for":"876000h"}`, nil, 400, nil},
		{"shelve until a far day", "A1/shelve", `{"until":"2126-01-01T00:00:00Z"}`, nil, 400, nil},
		{"bad JSON", "A1/ack", `{"note":`, nil, 400, nil},
		{"not an object", "A1/ack", `"alice"`, nil, 400, nil},
		{"who is not the body's to say", "A1/ack", `{"who":"system"}`, nil, 400, nil},
		{"unknown field", "A1/ack", `{"to":"bob"}`, nil, 400, nil},
		{"trailing data", "A1/ack", `{}{}`, nil, 400, nil},
		{"note too long", "A1/ack", `{"note":"` + strings.Repeat("é", 1001) + `"}`, nil, 400, nil},
		{"body too big", "A1/ack", `{"note":"` + strings.Repeat("x", 17<<10) + `"}`, nil, 400, nil},
		{"to too long", "A1/assign", `{"to":"` + long + `"}`, nil, 400, nil},
		{"shelve both", "A1/shelve", `{"for":"1h","until":"2030-01-01T00:00:00Z"}`, nil, 400, nil},
		{"shelve neither", "A1/shelve", `{}`, nil, 400, nil},
		{"shelve bad for", "A1/shelve", `{"for":"-1h"}`, nil, 400, nil},
		{"shelve bad until", "A1/shelve", `{"until":"tomorrow"}`, nil, 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e := alarmServer(t)
			before, trail, _ := e.Alarm("A1")
			rec := post(t, s, "/api/alarms/"+tt.path, tt.body, tt.header)
			if rec.Code != tt.code {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.code)
			}
			if tt.code != http.StatusOK {
				var body auth.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
					t.Errorf("error body %s", rec.Body)
				}
				if after, trail2, _ := e.Alarm("A1"); !reflect.DeepEqual(after, before) || len(trail2) != len(trail) {
					t.Errorf("a refused action changed the alarm: %+v", after)
				}
				return
			}
			var raw struct{ Alarm json.RawMessage }
			var got struct{ Alarm alarmView }
			if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			now, _, _ := e.Alarm("A1")
			if want, _ := json.Marshal(now); string(raw.Alarm) != string(want) {
				t.Errorf("reply %s, engine has %s", raw.Alarm, want)
			}
			if tt.check != nil {
				tt.check(t, got.Alarm)
			}
		})
	}
	t.Run("clear twice", func(t *testing.T) {
		s, _ := alarmServer(t)
		for i, want := range []int{200, 409} {
			if rec := post(t, s, "/api/alarms/A1/clear", `{"note":"fixed"}`, nil); rec.Code != want {
				t.Errorf("clear %d: %d %s, want %d", i+1, rec.Code, rec.Body, want)
			}
		}
		// Both attempts are in the trail, with who, what, outcome and why.
		recs := s.audit.(*recordingAuditor).records()
		if len(recs) != 2 {
			t.Fatalf("audited %d records, want 2: %+v", len(recs), recs)
		}
		ok, failed := recs[0], recs[1]
		if ok.Actor != "admin" || ok.Role != "admin" || ok.Action != "alarm.clear" || ok.Object != "alarm/A1" ||
			ok.Outcome != audit.Success || ok.Detail != "fixed" {
			t.Errorf("first clear audited as %+v", ok)
		}
		if failed.Outcome != audit.Failure || !strings.Contains(failed.Detail, "already cleared") {
			t.Errorf("second clear audited as %+v", failed)
		}
	})
}

// TestAlarmBulkActions acknowledges several alarms in one request: each
// is acted on, audited and answered for on its own, in the order given;
// one the caller may not see or that does not exist is refused in its
// result without stopping the others; the path that names one alarm
// refuses ids, and a bulk request needs at least one.
func TestAlarmBulkActions(t *testing.T) {
	s, e := alarmServer(t)
	// A3 is in another district than the operator's (Xicheng).
	operator := http.Header{"Authorization": {"Bearer operator@district:Xicheng"}}
	rec := post(t, s, "/api/alarm-actions/ack", `{"ids":["A1","A99","A3","A2"],"note":"night shift"}`, operator)
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var got BulkReply
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, r := range got.Results {
		summary = append(summary, fmt.Sprintf("%s:%d", r.ID, r.Status))
		if (r.Status == http.StatusOK) != (r.Alarm != nil) || (r.Status == http.StatusOK) == (r.Error != "") {
			t.Errorf("result %+v: an alarm for 200, an error otherwise", r)
		}
	}
	if s := strings.Join(summary, " "); s != "A1:200 A99:404 A3:404 A2:200" {
		t.Fatalf("results %s, want A1:200 A99:404 A3:404 A2:200", s)
	}
	for id, want := range map[string]alarm.State{"A1": alarm.ActiveAck, "A2": alarm.ActiveAck, "A3": alarm.ActiveUnack} {
		if a, _, _ := e.Alarm(id); a.State != want || (want == alarm.ActiveAck) != (a.AckedBy == "operator@district:Xicheng") {
			t.Errorf("%s: %s by %q", id, a.State, a.AckedBy)
		}
	}
	recs := s.audit.(*recordingAuditor).records()
	var audited []string
	for _, r := range recs {
		if r.Action != "alarm.ack" || r.Detail != "night shift" || r.Outcome != audit.Success {
			t.Errorf("audited %+v", r)
		}
		audited = append(audited, r.Object)
	}
	if a := strings.Join(audited, " "); a != "alarm/A1 alarm/A2" {
		t.Errorf("audited %s, want alarm/A1 alarm/A2", a)
	}

	for _, tt := range []struct {
		name, path, body string
		header           http.Header
		code             int
	}{
		{"ids on one alarm's path", "/api/alarms/A1/ack", `{"ids":["A2"]}`, nil, 400},
		{"no ids", "/api/alarm-actions/ack", `{"note":"x"}`, nil, 400},
		{"too many ids", "/api/alarm-actions/ack", `{"ids":[` + strings.Repeat(`"A1",`, maxBulk) + `"A1"]}`, nil, 400},
		{"analyst may not ack", "/api/alarm-actions/ack", `{"ids":["A1"]}`, http.Header{"Authorization": {"Bearer analyst"}}, 403},
		{"shelve needs a time", "/api/alarm-actions/shelve", `{"ids":["A1"]}`, nil, 400},
		{"shelve", "/api/alarm-actions/shelve", `{"ids":["A1","A2"],"for":"30m"}`, nil, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := alarmServer(t)
			if rec := post(t, s, tt.path, tt.body, tt.header); rec.Code != tt.code {
				t.Errorf("%d %s, want %d", rec.Code, rec.Body, tt.code)
			}
		})
	}
}

// wsMessage is a message on /api/events as a client decodes it.
type wsMessage struct {
	Type   string        `json:"type"`
	Change *fleet.Change `json:"change"`
	Event  *struct {
		Kind       alarm.EventKind  `json:"kind"`
		Alarm      alarmView        `json:"alarm"`
		Transition alarm.Transition `json:"transition"`
	} `json:"event"`
	Alarms *AlarmCounts `json:"alarms"`
}

func TestAlarmEvents(t *testing.T) {
	s, e := alarmServer(t)
	if err := e.Shelve("A3", "op", time.Now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	base, _ := running(t, s)
	conn := dial(t, base, nil)
	read := func() wsMessage {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(wait))
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Active and not shelved: A3 is muted.
	if m := read(); m.Type != "hello" || m.Alarms == nil || *m.Alarms != (AlarmCounts{Critical: 1, Major: 1}) {
		t.Fatalf("hello %+v, alarms %+v; want critical 1, major 1", m, m.Alarms)
	}

	// An alarm event keeps its place between changes.
	s.Publish(deviceChange(1))
	if err := e.Ack("A1", "alice", ""); err != nil {
		t.Fatal(err)
	}
	s.Publish(deviceChange(2))
	var got []string
	for len(got) < 3 {
		// Batching may join the two changes only if the event is not
		// between them; count every change a message carries.
		var m struct {
			wsMessage
			Changes []fleet.Change `json:"changes"`
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Change != nil:
			got = append(got, "change")
		case m.Event != nil:
			got = append(got, "alarm:"+string(m.Event.Kind)+":"+string(m.Event.Alarm.State)+":"+m.Event.Transition.Who)
		}
		for range m.Changes {
			got = append(got, "change")
		}
	}
	want := []string{"change", "alarm:update:active_ack:alice", "change"}
	if !slices.Equal(got, want) {
		t.Errorf("messages %v, want %v", got, want)
	}
}

func TestAlarmsOptional(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	if rec := do(t, s, "GET", "/api/alarms", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET /api/alarms without alarms = %d, want 404", rec.Code)
	}
	base, _ := running(t, s)
	conn := dial(t, base, nil)
	conn.SetReadDeadline(time.Now().Add(wait))
	var hello map[string]json.RawMessage
	if err := conn.ReadJSON(&hello); err != nil {
		t.Fatal(err)
	}
	if _, ok := hello["alarms"]; ok {
		t.Errorf("hello carries alarm counts without an alarm engine: %s", hello["alarms"])
	}
}

func TestAlarmDetailChildren(t *testing.T) {
	rules, err := alarm.ParseRules([]byte(`
rules:
  - source: device_offline
    severity: major
    hold: 10s
  - source: topology
    severity: critical
`))
	if err != nil {
		t.Fatal(err)
	}
	e := alarm.New(rules, alarm.Options{})
	deps := testDeps()
	deps.Alarms = e
	s := mustNew(t, Config{}, deps)
	at := time.Now()
	devs := []fleet.Device{
		{ID: "cam-1", Agent: "ag1", Kind: wire.KindCamera, Parent: "sw-1", Status: wire.StatusOffline},
		{ID: "cam-2", Agent: "ag1", Kind: wire.KindCamera, Parent: "sw-1", Status: wire.StatusOffline},
	}
	e.Observe(fleet.Change{At: at, Kind: fleet.ChangeInventory, Affected: devs,
		Agent: &fleet.Agent{ID: "ag1", Topology: []wire.Node{{ID: "sw-1", Kind: wire.NodeSwitch}}}})
	for _, d := range devs {
		e.Observe(fleet.Change{At: at, Kind: fleet.ChangeDevice, To: d.Status, Device: &d})
	}
	e.Tick(at.Add(10 * time.Second))

	rec := do(t, s, "GET", "/api/alarms/A1", nil)
	var got struct {
		Alarm    alarmView
		Children []struct {
			ID       string `json:"id"`
			Device   string `json:"device"`
			Source   string `json:"source"`
			Severity string `json:"severity"`
			Status   string `json:"status"`
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s %v", rec.Code, rec.Body, err)
	}
	if got.Alarm.Source != alarm.SourceTopology || len(got.Children) != 2 {
		t.Fatalf("detail %s", rec.Body)
	}
	for _, c := range got.Children {
		if c.Status != "suppressed" || c.ID != "" || c.Source != "device_offline" || c.Severity != "major" {
			t.Errorf("child %+v", c)
		}
	}
}
