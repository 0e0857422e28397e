package alarmstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
)

// MaxOpenListed bounds the open alarms a Shift lists one by one; the
// counts always cover all of them.
const MaxOpenListed = 200

// Shift is what happened to alarms within a window [From, To): the
// figures a shift handover reports. An alarm counts once per column
// however often it was raised, acknowledged or cleared in the window.
type Shift struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Total is the window's figures over every alarm in scope; the
	// severity and district rows split it (severity as the alarm has it
	// now: escalation may have raised it since).
	Total      Tally           `json:"total"`
	Severities []SeverityTally `json:"severities"`
	Districts  []DistrictTally `json:"districts"`
	Open       []OpenAlarm     `json:"open"`      // open at To, highest priority first, at most MaxOpenListed
	OpenMore   int             `json:"open_more"` // open alarms beyond the list
	Operators  []OperatorTally `json:"operators"` // who acknowledged or cleared in the window
	MTTAS      *float64        `json:"mtta_s"`    // mean seconds from raise to acknowledgement, over the window's acknowledgements; null when none
}

// Tally counts alarms: raised, acknowledged and cleared within the
// window, and open (active, or cleared but unacknowledged) at its end,
// of which Unacked still wanted an acknowledgement.
type Tally struct {
	Raised  int `json:"raised"`
	Acked   int `json:"acked"`
	Cleared int `json:"cleared"`
	Open    int `json:"open"`
	Unacked int `json:"unacked"`
}

// SeverityTally is one severity's row.
type SeverityTally struct {
	Severity alarm.Severity `json:"severity"`
	Tally
}

// DistrictTally is one district's row ("" for alarms of no district:
// the hub's own).
type DistrictTally struct {
	District string `json:"district"`
	Tally
}

// OperatorTally is what one person did to alarms in the window.
type OperatorTally struct {
	Who     string `json:"who"`
	Acked   int    `json:"acked"`
	Cleared int    `json:"cleared"`
}

// OpenAlarm is an alarm open at the window's end, as it was then.
type OpenAlarm struct {
	ID         string         `json:"id"`
	Source     alarm.Source   `json:"source"`
	Type       string         `json:"type"`
	Device     string         `json:"device,omitempty"`
	Agent      string         `json:"agent,omitempty"`
	Site       string         `json:"site,omitempty"`
	District   string         `json:"district,omitempty"`
	Severity   alarm.Severity `json:"severity"`
	Priority   int            `json:"priority"`
	State      alarm.State    `json:"state"` // at the window's end
	Since      time.Time      `json:"since"` // when it was last raised
	AckedBy    string         `json:"acked_by,omitempty"`
	AssignedTo string         `json:"assigned_to,omitempty"`
	Detail     string         `json:"detail,omitempty"`
}

// shiftAlarms are the alarms a window can concern: those with a
// transition at or after its start (within it, or later, so they were
// raised before its end and may have been open then), and those open now
// that began before its end (open through the whole window). ?1 is From,
// ?2 To, in Unix nanoseconds.
const shiftAlarms = `SELECT alarm_id FROM transitions WHERE at >= ?1
	UNION SELECT id FROM alarms WHERE ` + whereOpen + ` AND first_at < ?2`

const selectShiftAlarms = `SELECT ` + alarmColumns + ` FROM alarms WHERE first_at < ?2 AND id IN (` + shiftAlarms + `)`

const selectShiftTransitions = `SELECT alarm_id, at, who, action, to_state FROM transitions
	WHERE at < ?2 AND alarm_id IN (` + shiftAlarms + `) ORDER BY seq`

// ErrWindow is the error of a window that ends before it starts.
var ErrWindow = errors.New("alarmstore: a window must end after it starts")

// Shift reports the alarms of [from, to) that scope allows, from what is
// committed (a transition still in Record's queue, milliseconds old, is
// not yet counted). An alarm's state at to is the state its last
// transition before to left it in.
func (s *Store) Shift(ctx context.Context, from, to time.Time, scope auth.Scope) (Shift, error) {
	if !from.Before(to) {
		return Shift{}, ErrWindow
	}
	f, t := from.UnixNano(), to.UnixNano()
	alarms := map[string]alarm.Alarm{}
	err := s.each(ctx, s.rdb, selectShiftAlarms, []any{f, t}, func(rows *sql.Rows) error {
		a, err := scanAlarm(rows)
		if err == nil && scope.Allows(a.District, a.Site) {
			alarms[a.ID] = a
		}
		return err
	})
	if err != nil {
		return Shift{}, fmt.Errorf("alarmstore: shift: %w", err)
	}
	w := newWindow(f, t)
	err = s.each(ctx, s.rdb, selectShiftTransitions, []any{f, t}, func(rows *sql.Rows) error {
		var (
			id, who, act, state string
			at                  int64
		)
		if err := rows.Scan(&id, &at, &who, &act, &state); err != nil {
			return err
		}
		if _, ok := alarms[id]; ok {
			w.step(id, at, who, alarm.Action(act), alarm.State(state))
		}
		return nil
	})
	if err != nil {
		return Shift{}, fmt.Errorf("alarmstore: shift transitions: %w", err)
	}
	return w.shift(from, to, alarms), nil
}

// trail is what one alarm did as far as a window is concerned.
type trail struct {
	state                  alarm.State // after its last transition so far
	raisedAt               int64       // its last raise so far
	raised, acked, cleared bool        // within the window
	lastAckedBy            string      // since its last raise
}

// window folds alarm transitions, in commit order, into a Shift.
type window struct {
	from, to int64
	trails   map[string]*trail
	ops      map[string]*OperatorTally
	ackWait  int64 // summed raise → acknowledgement, ns
	acks     int
}

func newWindow(from, to int64) *window {
	return &window{from: from, to: to, trails: map[string]*trail{}, ops: map[string]*OperatorTally{}}
}

func (w *window) op(who string) *OperatorTally {
	o := w.ops[who]
	if o == nil {
		o = &OperatorTally{Who: who}
		w.ops[who] = o
	}
	return o
}

func (w *window) step(id string, at int64, who string, act alarm.Action, state alarm.State) {
	tr := w.trails[id]
	if tr == nil {
		tr = &trail{}
		w.trails[id] = tr
	}
	tr.state = state
	in := at >= w.from && at < w.to
	switch act {
	case alarm.ActRaise:
		tr.raisedAt = at
		tr.raised = tr.raised || in
		tr.lastAckedBy = ""
	case alarm.ActAck:
		tr.lastAckedBy = who
		if in {
			tr.acked = true
			w.op(who).Acked++
			if tr.raisedAt > 0 {
				w.ackWait += at - tr.raisedAt
				w.acks++
			}
		}
	case alarm.ActClear, alarm.ActAutoClear:
		if in {
			tr.cleared = true
			if act == alarm.ActClear {
				w.op(who).Cleared++
			}
		}
	}
}

func (w *window) shift(from, to time.Time, alarms map[string]alarm.Alarm) Shift {
	out := Shift{From: from, To: to, Severities: []SeverityTally{}, Districts: []DistrictTally{}, Open: []OpenAlarm{}, Operators: []OperatorTally{}}
	sev := map[alarm.Severity]*Tally{}
	dist := map[string]*Tally{}
	var open []OpenAlarm
	for id, tr := range w.trails {
		a := alarms[id]
		var x Tally
		if tr.raised {
			x.Raised = 1
		}
		if tr.acked {
			x.Acked = 1
		}
		if tr.cleared {
			x.Cleared = 1
		}
		if tr.state != alarm.ClearedAck {
			x.Open = 1
			if tr.state == alarm.ActiveUnack || tr.state == alarm.ClearedUnack {
				x.Unacked = 1
			}
			open = append(open, OpenAlarm{ID: a.ID, Source: a.Source, Type: a.Type, Device: a.Device, Agent: a.Agent,
				Site: a.Site, District: a.District, Severity: a.Severity, Priority: a.Priority, State: tr.state,
				Since: time.Unix(0, tr.raisedAt).UTC(), AckedBy: tr.lastAckedBy, AssignedTo: a.AssignedTo, Detail: a.Detail})
		}
		if x == (Tally{}) {
			continue // open and closed before the window
		}
		out.Total.add(x)
		tally(sev, a.Severity).add(x)
		tally(dist, a.District).add(x)
	}
	for _, s := range alarm.Severities {
		if t := sev[s]; t != nil {
			out.Severities = append(out.Severities, SeverityTally{Severity: s, Tally: *t})
		}
	}
	slices.Reverse(out.Severities) // most severe first
	for d, t := range dist {
		out.Districts = append(out.Districts, DistrictTally{District: d, Tally: *t})
	}
	slices.SortFunc(out.Districts, func(a, b DistrictTally) int { return cmp.Compare(a.District, b.District) })
	slices.SortFunc(open, func(a, b OpenAlarm) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
	})
	if len(open) > MaxOpenListed {
		out.OpenMore = len(open) - MaxOpenListed
		open = open[:MaxOpenListed]
	}
	out.Open = append(out.Open, open...)
	for _, o := range w.ops {
		out.Operators = append(out.Operators, *o)
	}
	slices.SortFunc(out.Operators, func(a, b OperatorTally) int { return cmp.Compare(a.Who, b.Who) })
	if w.acks > 0 {
		m := float64(w.ackWait) / float64(w.acks) / 1e9
		out.MTTAS = &m
	}
	return out
}

func tally[K comparable](m map[K]*Tally, k K) *Tally {
	t := m[k]
	if t == nil {
		t = &Tally{}
		m[k] = t
	}
	return t
}

func (t *Tally) add(x Tally) {
	t.Raised += x.Raised
	t.Acked += x.Acked
	t.Cleared += x.Cleared
	t.Open += x.Open
	t.Unacked += x.Unacked
}
