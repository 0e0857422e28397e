package alarmstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
)

// step is one transition of a shift scenario: alarm id, minutes from t0,
// who, action and the state it leaves.
type step struct {
	id    string
	min   int
	who   string
	act   alarm.Action
	state alarm.State
}

// record writes the steps through Record and Run, as the engine would,
// each alarm in district d1 except those named in d2.
func record(t *testing.T, s *Store, steps []step, d2 ...string) {
	t.Helper()
	for _, st := range steps {
		a := alarm.Alarm{ID: st.id, Key: "k:" + st.id, Source: alarm.SourceDeviceOffline, Type: "camera_offline",
			Device: "cam-" + st.id, Agent: "ag1", Site: "s1", District: "d1", Severity: alarm.Major, Criticality: 3,
			Priority: 33, State: st.state, FirstAt: t0.Add(-24 * time.Hour)}
		for _, d := range d2 {
			if d == st.id {
				a.District, a.Site, a.Severity, a.Priority = "d2", "s2", alarm.Critical, 43
			}
		}
		at := t0.Add(time.Duration(st.min) * time.Minute)
		if st.act == alarm.ActRaise && a.FirstAt.Before(at) {
			a.FirstAt = at
		}
		if !s.Record(a, alarm.Transition{At: at, Who: st.who, Action: st.act, To: st.state}) {
			t.Fatal("Record dropped a transition")
		}
	}
}

func TestShift(t *testing.T) { eachBackend(t, testShift) }

func testShift(t *testing.T, path string) {
	s := open(t, path)
	stop := run(t, s)
	// The window is [t0, t0+8h).
	record(t, s, []step{
		{"A5", -300, "system", alarm.ActRaise, alarm.ActiveUnack}, // closed before the window
		{"A5", -290, "ann", alarm.ActAck, alarm.ActiveAck},
		{"A5", -280, "system", alarm.ActAutoClear, alarm.ClearedAck},
		{"A1", -60, "system", alarm.ActRaise, alarm.ActiveUnack}, // acknowledged and cleared in it
		{"A4", -30, "system", alarm.ActRaise, alarm.ActiveUnack}, // open throughout
		{"A1", 10, "ann", alarm.ActAck, alarm.ActiveAck},
		{"A1", 20, "system", alarm.ActAutoClear, alarm.ClearedAck},
		{"A2", 60, "system", alarm.ActRaise, alarm.ActiveUnack}, // raised, still unacknowledged
		{"A3", 120, "system", alarm.ActRaise, alarm.ActiveUnack},
		{"A3", 125, "bob", alarm.ActAck, alarm.ActiveAck},
		{"A6", 200, "system", alarm.ActRaise, alarm.ActiveUnack}, // raised; cleared only after the window
		{"A6", 210, "ann", alarm.ActAck, alarm.ActiveAck},
		{"A8", 300, "system", alarm.ActRaise, alarm.ActiveUnack}, // another district, cleared by hand
		{"A8", 301, "bob", alarm.ActClear, alarm.ClearedUnack},
		{"A6", 540, "bob", alarm.ActClear, alarm.ClearedAck},
		{"A7", 600, "system", alarm.ActRaise, alarm.ActiveUnack}, // after the window
	}, "A8")
	stop()
	s = open(t, path)
	defer s.Close()

	got, err := s.Shift(context.Background(), t0, t0.Add(8*time.Hour), auth.Everything)
	if err != nil {
		t.Fatal(err)
	}
	want := Tally{Raised: 4, Acked: 3, Cleared: 2, Open: 5, Unacked: 3}
	if got.Total != want {
		t.Errorf("total = %+v, want %+v", got.Total, want)
	}
	// MTTA: A1 70 min, A3 5 min, A6 10 min.
	if got.MTTAS == nil || *got.MTTAS != (70+5+10)*60/3.0 {
		t.Errorf("MTTA = %v s, want %v", got.MTTAS, (70+5+10)*60/3.0)
	}
	var ids []string
	for _, o := range got.Open {
		ids = append(ids, o.ID+":"+string(o.State))
	}
	// Critical A8 first, then by the time each was raised.
	if w := "[A8:cleared_unack A4:active_unack A2:active_unack A3:active_ack A6:active_ack]"; fmt.Sprint(ids) != w {
		t.Errorf("open = %v, want %v", ids, w)
	}
	if len(got.Severities) != 2 || got.Severities[0].Severity != alarm.Critical || got.Severities[0].Tally != (Tally{Raised: 1, Cleared: 1, Open: 1, Unacked: 1}) {
		t.Errorf("severities = %+v", got.Severities)
	}
	if len(got.Districts) != 2 || got.Districts[0].District != "d1" || got.Districts[0].Tally != (Tally{Raised: 3, Acked: 3, Cleared: 1, Open: 4, Unacked: 2}) {
		t.Errorf("districts = %+v", got.Districts)
	}
	if w := []OperatorTally{{Who: "ann", Acked: 2}, {Who: "bob", Acked: 1, Cleared: 1}}; fmt.Sprint(got.Operators) != fmt.Sprint(w) {
		t.Errorf("operators = %+v, want %+v", got.Operators, w)
	}
	if o := got.Open[4]; o.AckedBy != "ann" || !o.Since.Equal(t0.Add(200*time.Minute)) {
		t.Errorf("A6 open = %+v, want acked by ann, since t0+200m", o)
	}

	scoped, err := s.Shift(context.Background(), t0, t0.Add(8*time.Hour), auth.Scope{Districts: []string{"d2"}})
	if err != nil {
		t.Fatal(err)
	}
	if scoped.Total != (Tally{Raised: 1, Cleared: 1, Open: 1, Unacked: 1}) || len(scoped.Open) != 1 || scoped.MTTAS != nil {
		t.Errorf("scoped to d2: %+v", scoped)
	}
	if _, err := s.Shift(context.Background(), t0, t0, auth.Everything); !errors.Is(err, ErrWindow) {
		t.Errorf("empty window: err = %v, want ErrWindow", err)
	}
}
