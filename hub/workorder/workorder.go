// Package workorder closes the loop from "telemetry sees a fault" to
// "telemetry confirms the fix". Alarms that outlast a grace period open
// work orders, one per site (a switch with eight cameras behind it is one
// order listing eight devices; a second fault at the site joins the open
// order); crews and supervisors move them through an audited lifecycle;
// an order a crew marks fixed closes itself only once every device has
// been healthy for a hold period, and a device that fails again soon after
// reopens it as a repeat. Response and fix deadlines per priority pause
// while an order is on hold with a reason, and a breach is an event.
//
// The Manager owns all state under one mutex, persists every change before
// it is announced, and takes its time from an injected clock, so tests
// never sleep.
package workorder

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// State is where an order is in its lifecycle.
type State string

// States. Closed and cancelled are terminal until reopened.
const (
	Open       State = "open"        // waiting for someone to take it
	Assigned   State = "assigned"    // given to a crew or a person
	InProgress State = "in_progress" // someone is on it
	OnHold     State = "on_hold"     // waiting for power, access, parts (a reason is required)
	Fixed      State = "fixed"       // a crew says it is fixed; telemetry has not confirmed it yet
	Closed     State = "closed"      // every device healthy for the hold period
	Cancelled  State = "cancelled"   // not to be done (a reason is required)
)

// States lists every state, for validation, tests and translations.
var States = []State{Open, Assigned, InProgress, OnHold, Fixed, Closed, Cancelled}

// Terminal reports whether nothing more happens to an order in s unless
// it is reopened.
func (s State) Terminal() bool { return s == Closed || s == Cancelled }

// Action is what a transition did.
type Action string

// Actions people take (POST /api/workorders/{id}/{action}).
const (
	ActAssign Action = "assign" // to a crew or a person
	ActAccept Action = "accept" // the assignee acknowledges: the response clock stops
	ActStart  Action = "start"  // work begins (taking the order if nobody has it)
	ActHold   Action = "hold"   // pause, with a reason
	ActResume Action = "resume" // back from hold to where it was
	ActFix    Action = "fix"    // the crew says it is fixed
	ActCancel Action = "cancel" // with a reason
	ActReopen Action = "reopen" // a closed, cancelled or fixed order is not done
	ActNote   Action = "note"   // a note, no change of state
)

// Actions the Manager takes by itself.
const (
	ActOpen    Action = "open"    // opened from alarms, or by hand
	ActJoin    Action = "join"    // a device joined the order
	ActVerify  Action = "verify"  // every device healthy for the hold period: closed
	ActRepeat  Action = "repeat"  // a device of a recently closed order failed again: reopened
	ActBreach  Action = "breach"  // a deadline passed
	ActHealthy Action = "healthy" // a device became healthy
	ActFault   Action = "fault"   // a device became unhealthy again
	ActProbe   Action = "probe"   // a person had the devices probed now; the note has the results
	ActAsset   Action = "asset"   // a device's serial or firmware changed: replaced or upgraded
	ActPhoto   Action = "photo"   // a person added a photo
)

// PersonActions are the actions of POST /api/workorders/{id}/{action}.
var PersonActions = []Action{ActAssign, ActAccept, ActStart, ActHold, ActResume, ActFix, ActCancel, ActReopen, ActNote}

// Actions lists every action an order's trail may show: PersonActions,
// then the Manager's own.
var Actions = []Action{
	ActAssign, ActAccept, ActStart, ActHold, ActResume, ActFix, ActCancel, ActReopen, ActNote,
	ActOpen, ActJoin, ActVerify, ActRepeat, ActBreach, ActHealthy, ActFault, ActProbe, ActAsset, ActPhoto,
}

// System is the Who of transitions the Manager makes.
const System = "system"

// Transition is one entry of an order's trail: the whole history of an
// order is its trail.
type Transition struct {
	At     time.Time `json:"at"`
	Who    string    `json:"who"`
	Action Action    `json:"action"`
	From   State     `json:"from,omitempty"` // empty when the order was opened
	To     State     `json:"to"`
	Note   string    `json:"note,omitempty"`
}

// Device is one device an order is about.
type Device struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`           // as telemetry last said
	Reason  string `json:"reason,omitempty"` // why it is not healthy: refused, auth_failed, no_stream…
	Healthy bool   `json:"healthy"`
	// Criticality is the device's, 1–5, from the inventory when it joined.
	Criticality int       `json:"criticality,omitempty"`
	Since       time.Time `json:"since"`           // when its status began
	Alarm       string    `json:"alarm,omitempty"` // the alarm that brought it in, if any
	JoinedAt    time.Time `json:"joined_at"`
}

// Priority orders work: P1 is the most urgent. It comes from the alarm's
// severity (critical → P1 … warning → P4); a hand-opened order is P3
// unless said otherwise.
type Priority int

// Priorities.
const (
	P1 Priority = iota + 1
	P2
	P3
	P4
)

// Valid reports whether p is P1 to P4.
func (p Priority) Valid() bool { return p >= P1 && p <= P4 }

// SLA is a priority's deadlines: Respond from detection to an assignee's
// accept or start; Fix from detection to the verified close.
type SLA struct {
	Respond time.Duration `json:"respond"`
	Fix     time.Duration `json:"fix"`
}

// DefaultSLA is used for priorities the configuration leaves out.
var DefaultSLA = map[Priority]SLA{
	P1: {Respond: 30 * time.Minute, Fix: 4 * time.Hour},
	P2: {Respond: time.Hour, Fix: 8 * time.Hour},
	P3: {Respond: 4 * time.Hour, Fix: 24 * time.Hour},
	P4: {Respond: 8 * time.Hour, Fix: 72 * time.Hour},
}

// Order is one work order. Values are snapshots.
type Order struct {
	ID       string   `json:"id"`
	Site     string   `json:"site"`
	SiteName string   `json:"site_name,omitempty"`
	District string   `json:"district"`
	Title    string   `json:"title"`
	Priority Priority `json:"priority"`
	State    State    `json:"state"`
	// HoldFrom is the state an order on hold returns to.
	HoldFrom   State    `json:"hold_from,omitempty"`
	HoldReason string   `json:"hold_reason,omitempty"`
	Crew       string   `json:"crew,omitempty"`
	Assignee   string   `json:"assignee,omitempty"`
	Devices    []Device `json:"devices"`
	Alarms     []string `json:"alarms,omitempty"`
	OpenedBy   string   `json:"opened_by"`
	// Manual: opened by hand for a fault telemetry cannot see; it closes
	// only after a person marks it fixed and the devices stay healthy.
	Manual bool `json:"manual,omitempty"`

	DetectedAt  time.Time `json:"detected_at"` // the earliest fault it is about
	OpenedAt    time.Time `json:"opened_at"`
	RespondedAt time.Time `json:"responded_at,omitzero"` // first accept or start
	FixedAt     time.Time `json:"fixed_at,omitzero"`     // the crew's last "fixed"
	HealthyAt   time.Time `json:"healthy_at,omitzero"`   // every device healthy since
	ClosedAt    time.Time `json:"closed_at,omitzero"`
	// Paused is the time spent on hold, which the deadlines do not count;
	// HoldSince is when the current hold began.
	Paused    time.Duration `json:"paused"`
	HoldSince time.Time     `json:"hold_since,omitzero"`
	RespondBy time.Time     `json:"respond_by"` // deadlines, moved on by holds
	FixBy     time.Time     `json:"fix_by"`
	// Breached names the deadlines that passed: "respond", "fix".
	Breached []string `json:"breached,omitempty"`
	Photos   []Photo  `json:"photos,omitempty"`
	Repeats  int      `json:"repeats"` // times a device failed again soon after a close
	Reopens  int      `json:"reopens"` // times the order was reopened, by hand or by a repeat
	// Resolution says how it ended: "verified" (fixed, then healthy for
	// the hold), "recovered" (healthy for the hold with no fix recorded),
	// "cancelled".
	Resolution string    `json:"resolution,omitempty"`
	Updated    time.Time `json:"updated"`
}

// Healthy reports whether every device of the order is healthy.
func (o *Order) Healthy() bool {
	for _, d := range o.Devices {
		if !d.Healthy {
			return false
		}
	}
	return len(o.Devices) > 0
}

func (o *Order) device(id string) *Device {
	for i := range o.Devices {
		if o.Devices[i].ID == id {
			return &o.Devices[i]
		}
	}
	return nil
}

// Breaches lists the deadlines an order may miss, as Order.Breached
// names them: the response and the fix.
var Breaches = []string{"respond", "fix"}

// Request is what a person sends with an action.
type Request struct {
	Who  string // the account acting
	Note string
	// Assign: the crew and/or the account to give the order to (at least
	// one). Start with neither takes the order for Who.
	Crew, To string
}

// Errors of actions. The HTTP layer maps them to status codes.
var (
	ErrNotFound      = errors.New("workorder: no such order")
	ErrNotAllowed    = errors.New("workorder: not allowed in this state")
	ErrReasonMissing = errors.New("workorder: a reason is required")
	ErrBadRequest    = errors.New("workorder: bad request")
)

// rule is one row of the lifecycle table: from which states a person's
// action is allowed, and where it leads ("" stays).
type rule struct {
	from []State
	to   State
}

// lifecycle is the table every person's action is checked against.
var lifecycle = map[Action]rule{
	ActAssign: {from: []State{Open, Assigned, InProgress}, to: Assigned},
	ActAccept: {from: []State{Assigned}},
	ActStart:  {from: []State{Open, Assigned}, to: InProgress},
	ActHold:   {from: []State{Open, Assigned, InProgress}, to: OnHold},
	ActResume: {from: []State{OnHold}}, // back to HoldFrom
	ActFix:    {from: []State{Open, Assigned, InProgress}, to: Fixed},
	ActCancel: {from: []State{Open, Assigned, InProgress, OnHold, Fixed}, to: Cancelled},
	ActReopen: {from: []State{Fixed, Closed, Cancelled}, to: Open},
	ActNote:   {from: States},
}

// apply checks a person's action against the table and the request, and
// changes o; it returns the transition to record. now is the clock; hours
// (nil: every hour) what the deadlines count.
func apply(o *Order, act Action, req Request, now time.Time, hours *Hours) (Transition, error) {
	r, ok := lifecycle[act]
	if !ok {
		return Transition{}, fmt.Errorf("%w: no action %q", ErrBadRequest, act)
	}
	if !slices.Contains(r.from, o.State) {
		return Transition{}, fmt.Errorf("%w: %s an order that is %s", ErrNotAllowed, act, o.State)
	}
	tr := Transition{At: now, Who: req.Who, Action: act, From: o.State, Note: req.Note}
	to := r.to
	switch act {
	case ActAssign:
		if req.Crew == "" && req.To == "" {
			return Transition{}, fmt.Errorf("%w: assign needs a crew or an account", ErrBadRequest)
		}
		o.Crew, o.Assignee = req.Crew, req.To
	case ActAccept:
		if o.Assignee != "" && o.Assignee != req.Who && o.Crew == "" {
			return Transition{}, fmt.Errorf("%w: the order is %s's to accept", ErrNotAllowed, o.Assignee)
		}
		if o.Assignee == "" {
			o.Assignee = req.Who
		}
		responded(o, now)
	case ActStart:
		if o.Assignee == "" {
			o.Assignee = req.Who
		}
		responded(o, now)
	case ActHold, ActCancel:
		if req.Note == "" {
			return Transition{}, fmt.Errorf("%w to %s an order", ErrReasonMissing, act)
		}
		if act == ActHold {
			o.HoldFrom, o.HoldReason, o.HoldSince = o.State, req.Note, now
		} else {
			endHold(o, now, hours)
			o.Resolution, o.ClosedAt = "cancelled", now
		}
	case ActResume:
		to = o.HoldFrom
		endHold(o, now, hours)
	case ActFix:
		o.FixedAt = now
		responded(o, now)
	case ActReopen:
		o.Reopens++
		o.ClosedAt, o.Resolution, o.FixedAt = time.Time{}, "", time.Time{}
	}
	if to == "" {
		to = o.State
	}
	o.State, tr.To, o.Updated = to, to, now
	return tr, nil
}

// responded stops the response clock the first time.
func responded(o *Order, now time.Time) {
	if o.RespondedAt.IsZero() {
		o.RespondedAt = now
	}
}

// endHold moves the deadlines on by the time the current hold took (of
// business time, with hours).
func endHold(o *Order, now time.Time, hours *Hours) {
	if o.HoldSince.IsZero() {
		return
	}
	d := hours.between(o.HoldSince, now)
	o.Paused += d
	o.RespondBy, o.FixBy = hours.add(o.RespondBy, d), hours.add(o.FixBy, d)
	o.HoldSince, o.HoldFrom, o.HoldReason = time.Time{}, "", ""
}
