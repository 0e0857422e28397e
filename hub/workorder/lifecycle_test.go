package workorder

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Every person's action from every state, written out by hand: where it
// leads, or that it is refused. A change to the lifecycle table that is
// not also made here fails.
func TestLifecycleTable(t *testing.T) {
	const no = State("refused")
	want := map[Action]map[State]State{
		ActAssign: {Open: Assigned, Assigned: Assigned, InProgress: Assigned, OnHold: no, Fixed: no, Closed: no, Cancelled: no},
		ActAccept: {Open: no, Assigned: Assigned, InProgress: no, OnHold: no, Fixed: no, Closed: no, Cancelled: no},
		ActStart:  {Open: InProgress, Assigned: InProgress, InProgress: no, OnHold: no, Fixed: no, Closed: no, Cancelled: no},
		ActHold:   {Open: OnHold, Assigned: OnHold, InProgress: OnHold, OnHold: no, Fixed: no, Closed: no, Cancelled: no},
		ActResume: {Open: no, Assigned: no, InProgress: no, OnHold: InProgress, Fixed: no, Closed: no, Cancelled: no},
		ActFix:    {Open: Fixed, Assigned: Fixed, InProgress: Fixed, OnHold: no, Fixed: no, Closed: no, Cancelled: no},
		ActCancel: {Open: Cancelled, Assigned: Cancelled, InProgress: Cancelled, OnHold: Cancelled, Fixed: Cancelled, Closed: no, Cancelled: no},
		ActReopen: {Open: no, Assigned: no, InProgress: no, OnHold: no, Fixed: Open, Closed: Open, Cancelled: Open},
		ActNote:   {Open: Open, Assigned: Assigned, InProgress: InProgress, OnHold: OnHold, Fixed: Fixed, Closed: Closed, Cancelled: Cancelled},
	}
	if len(want) != len(PersonActions) {
		t.Fatalf("the table covers %d actions, people have %d", len(want), len(PersonActions))
	}
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	for _, act := range PersonActions {
		for _, from := range States {
			t.Run(fmt.Sprintf("%s from %s", act, from), func(t *testing.T) {
				o := Order{ID: "WO-1", State: from, Assignee: "wang", RespondBy: now.Add(time.Hour), FixBy: now.Add(4 * time.Hour)}
				if from == OnHold {
					o.HoldFrom, o.HoldReason, o.HoldSince = InProgress, "parts", now.Add(-30*time.Minute)
				}
				req := Request{Who: "wang", Note: "a reason", Crew: "north"}
				tr, err := apply(&o, act, req, now, nil)
				exp := want[act][from]
				if exp == no {
					if !errors.Is(err, ErrNotAllowed) || o.State != from {
						t.Fatalf("want refused, got %v, state %s", err, o.State)
					}
					return
				}
				if err != nil || o.State != exp || tr.From != from || tr.To != exp || tr.Who != "wang" || tr.Action != act || !tr.At.Equal(now) {
					t.Fatalf("want %s, got %s, %+v, %v", exp, o.State, tr, err)
				}
			})
		}
	}
}

// Hold and cancel need a reason; assign needs someone; a hold pauses the
// deadlines by exactly its length; accept stops the response clock once.
func TestLifecycleRules(t *testing.T) {
	at := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	o := Order{State: Open, RespondBy: at.Add(time.Hour), FixBy: at.Add(4 * time.Hour)}
	for _, act := range []Action{ActHold, ActCancel} {
		if _, err := apply(&o, act, Request{Who: "wang"}, at, nil); !errors.Is(err, ErrReasonMissing) {
			t.Errorf("%s without a reason: %v", act, err)
		}
	}
	if _, err := apply(&o, ActAssign, Request{Who: "chen"}, at, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("assign to nobody: %v", err)
	}
	if _, err := apply(&o, ActAssign, Request{Who: "chen", To: "wang"}, at, nil); err != nil || o.Assignee != "wang" {
		t.Fatalf("assign: %v %+v", err, o)
	}
	if _, err := apply(&o, ActAccept, Request{Who: "li"}, at, nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("li accepts wang's order: %v", err)
	}
	if _, err := apply(&o, ActAccept, Request{Who: "wang"}, at.Add(10*time.Minute), nil); err != nil || !o.RespondedAt.Equal(at.Add(10*time.Minute)) {
		t.Fatalf("accept: %v %+v", err, o)
	}
	if _, err := apply(&o, ActHold, Request{Who: "wang", Note: "waiting for the power company"}, at.Add(20*time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(&o, ActResume, Request{Who: "wang"}, at.Add(110*time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if o.State != Assigned || o.Paused != 90*time.Minute || !o.FixBy.Equal(at.Add(5*time.Hour+30*time.Minute)) || o.HoldReason != "" {
		t.Errorf("after a 90 min hold: %+v", o)
	}
	if _, err := apply(&o, ActStart, Request{Who: "wang"}, at.Add(2*time.Hour), nil); err != nil || !o.RespondedAt.Equal(at.Add(10*time.Minute)) {
		t.Errorf("start moved the response time: %v %+v", err, o)
	}
}
