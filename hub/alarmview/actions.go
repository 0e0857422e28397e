package alarmview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citywatch/citywatch/hub/alarm"
)

// Alarms returns the alarms f selects, this hub's and the others', highest
// priority first.
func (v *View) Alarms(f alarm.Filter) []alarm.Alarm {
	out := v.deps.Engine.Alarms(f)
	v.mu.Lock()
	for id, r := range v.remote {
		if f.Match(&r.a) && !v.heldLocally(id) {
			out = append(out, r.a)
		}
	}
	v.mu.Unlock()
	alarm.SortByPriority(out)
	return out
}

// heldLocally reports whether this hub's engine holds id; the view may
// still have a copy for a moment after adopting it.
func (v *View) heldLocally(id string) bool {
	_, _, ok := v.deps.Engine.Alarm(id)
	return ok
}

// Alarm returns one alarm and its trail, wherever it is held. The view's
// copy of another hub's alarm may lack the start of its trail (loaded at
// start without it, or an announcement lost): the shared store has it.
func (v *View) Alarm(id string) (alarm.Alarm, []alarm.Transition, bool) {
	if a, t, ok := v.deps.Engine.Alarm(id); ok {
		return a, t, true
	}
	v.mu.Lock()
	r, ok := v.remote[id]
	var a alarm.Alarm
	var trail []alarm.Transition
	if ok {
		a, trail = r.a, slices.Clone(r.trail)
	}
	store := v.deps.Store
	v.mu.Unlock()
	if !ok {
		return alarm.Alarm{}, nil, false
	}
	if store != nil && (a.Changes == 0 || len(trail) < a.Changes) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		if _, stored, err := store.Alarm(ctx, id); err != nil {
			v.log.Warn("trail of another hub's alarm not read from the shared store", "alarm", id, "err", err)
		} else if len(stored) > len(trail) {
			trail = stored
		}
	}
	return a, trail, true
}

// Children are a root-cause alarm's explained conditions, wherever it is
// held: only the holding hub knows them, and another hub asks it (nil if
// it cannot be asked now; logged).
func (v *View) Children(id string) []alarm.Child {
	if v.heldLocally(id) {
		return v.deps.Engine.Children(id)
	}
	v.mu.Lock()
	r0, ok := v.remote[id]
	root := ok && (r0.a.Source == alarm.SourceTopology || r0.a.Source == alarm.SourcePowerFeed)
	v.mu.Unlock()
	if !root {
		return nil // only a root cause has children: no need to ask
	}
	r, err := v.route(command{Action: "children", ID: id, Who: v.cfg.Hub})
	if err != nil {
		v.log.Warn("children of another hub's alarm not read", "alarm", id, "err", err)
		return nil
	}
	return r.Children
}

// Ack acknowledges an alarm wherever it is held.
func (v *View) Ack(id, who, note string) error {
	return v.act(command{Action: "ack", ID: id, Who: who, Note: note})
}

// Assign assigns an alarm wherever it is held.
func (v *View) Assign(id, who, to, note string) error {
	return v.act(command{Action: "assign", ID: id, Who: who, To: to, Note: note})
}

// Shelve shelves an alarm wherever it is held.
func (v *View) Shelve(id, who string, until time.Time, note string) error {
	return v.act(command{Action: "shelve", ID: id, Who: who, Until: until, Note: note})
}

// Unshelve unshelves an alarm wherever it is held.
func (v *View) Unshelve(id, who, note string) error {
	return v.act(command{Action: "unshelve", ID: id, Who: who, Note: note})
}

// Clear clears an alarm wherever it is held.
func (v *View) Clear(id, who, note string) error {
	return v.act(command{Action: "clear", ID: id, Who: who, Note: note})
}

type command struct {
	Action string    `json:"action"`
	ID     string    `json:"id"`
	Who    string    `json:"who"`
	Note   string    `json:"note,omitempty"`
	To     string    `json:"to,omitempty"`
	Until  time.Time `json:"until,omitzero"`
}

type reply struct {
	Alarm    *alarm.Alarm     `json:"alarm,omitempty"`
	Children []alarm.Child    `json:"children,omitempty"` // of a "children" query
	N        int              `json:"n,omitempty"`        // the trail's length after the action
	Last     alarm.Transition `json:"last,omitzero"`
	Error    string           `json:"error,omitempty"`
	Code     string           `json:"code,omitempty"` // not_found, invalid, note_required
}

var codes = map[string]error{"not_found": alarm.ErrNotFound, "invalid": alarm.ErrInvalid, "note_required": alarm.ErrNoteRequired}

// run applies c to this hub's engine.
func (v *View) run(c command) error {
	e := v.deps.Engine
	switch c.Action {
	case "ack":
		return e.Ack(c.ID, c.Who, c.Note)
	case "assign":
		return e.Assign(c.ID, c.Who, c.To, c.Note)
	case "shelve":
		return e.Shelve(c.ID, c.Who, c.Until, c.Note)
	case "unshelve":
		return e.Unshelve(c.ID, c.Who, c.Note)
	case "clear":
		return e.Clear(c.ID, c.Who, c.Note)
	case "children":
		return nil // a question, answered by onCommand
	}
	return fmt.Errorf("alarm action %q: %w", c.Action, alarm.ErrInvalid)
}

// act runs c here if this hub holds the alarm, else on the hub that does.
func (v *View) act(c command) error {
	if v.heldLocally(c.ID) {
		return v.run(c)
	}
	r, err := v.route(c)
	if err != nil {
		return err
	}
	if r.Alarm != nil {
		// The console shows the result at once, before the holder's
		// announcement arrives.
		v.apply(*r.Alarm, r.Last)
	}
	return nil
}

// route sends c to the hub holding the alarm and returns its answer.
func (v *View) route(c command) (reply, error) {
	v.mu.Lock()
	nc := v.nc
	_, known := v.remote[c.ID]
	v.mu.Unlock()
	if !known {
		return reply{}, fmt.Errorf("alarm %s: %w", c.ID, alarm.ErrNotFound)
	}
	if nc == nil {
		return reply{}, fmt.Errorf("alarm %s: %w", c.ID, ErrNoHolder)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return reply{}, fmt.Errorf("alarm %s: %w", c.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	v.routed.Add(1)
	m, err := nc.RequestWithContext(ctx, commandSubject, b)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) {
			return reply{}, fmt.Errorf("alarm %s: %w", c.ID, ErrNoHolder)
		}
		return reply{}, fmt.Errorf("alarm %s: routing the %s: %w", c.ID, c.Action, err)
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return reply{}, fmt.Errorf("alarm %s: the holding hub's answer: %w", c.ID, err)
	}
	if r.Error != "" {
		if base, ok := codes[r.Code]; ok {
			return reply{}, fmt.Errorf("%s: %w", r.Error, base)
		}
		return reply{}, errors.New(r.Error)
	}
	return r, nil
}

// onCommand answers a routed action if this hub holds the alarm; the
// others stay silent.
func (v *View) onCommand(m *nats.Msg) {
	var c command
	if err := json.Unmarshal(m.Data, &c); err != nil || c.ID == "" || c.Who == "" {
		v.log.Warn("routed alarm action not understood; ignored", "err", err)
		return
	}
	if !v.heldLocally(c.ID) {
		return
	}
	var r reply
	if c.Action == "children" {
		r.Children = v.deps.Engine.Children(c.ID)
	} else if err := v.run(c); err != nil {
		r.Error = err.Error()
		for code, base := range codes {
			if errors.Is(err, base) {
				r.Code = code
			}
		}
	} else if a, trail, ok := v.deps.Engine.Alarm(c.ID); ok {
		r.Alarm = &a
		if len(trail) > 0 {
			r.Last = trail[len(trail)-1]
		}
	}
	b, err := json.Marshal(r)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		v.log.Warn("answer to a routed alarm action not sent", "alarm", c.ID, "err", err)
	}
}
