package workorder

import (
	"errors"
	"fmt"
	"slices"

	"github.com/citywatch/citywatch/hub/alarm"
)

// Leader is how the hubs of a cluster share the work orders (hub/workview
// over NATS). One hub at a time keeps them — it opens them from every
// hub's alarms, follows every device's health through the read view,
// keeps the clocks and writes the shared store — and the others show what
// it announces (Mirror) and ask it to make their users' changes (Ask). A
// Manager with a Leader follows until TakeLead.
type Leader interface {
	// Leads reports whether this hub may write the orders now: it holds
	// the lease, by its own clock.
	Leads() bool
	// Ask has the hub that keeps the orders execute c and returns its
	// answer; its errors wrap this package's (ErrNotFound…).
	Ask(c Command) (Event, error)
}

// Op names the kind of change a Command makes.
type Op string

// The changes people make.
const (
	OpAct   Op = "act"   // an action of the lifecycle (ID, Action, Note, Crew, To)
	OpOpen  Op = "open"  // an order by hand (Devices, Title, Priority)
	OpPhoto Op = "photo" // a photo already in the store (ID, Photo)
	OpProbe Op = "probe" // re-probe results for the trail (ID, Note)
)

// Command is one change a person makes, as a hub that does not keep the
// orders sends it to the one that does.
type Command struct {
	Op       Op       `json:"op"`
	ID       string   `json:"id,omitempty"`
	Who      string   `json:"who"`
	Action   Action   `json:"action,omitempty"`
	Note     string   `json:"note,omitempty"`
	Crew     string   `json:"crew,omitempty"`
	To       string   `json:"to,omitempty"`
	Devices  []string `json:"devices,omitempty"`
	Title    string   `json:"title,omitempty"`
	Priority Priority `json:"priority,omitempty"`
	Photo    *Photo   `json:"photo,omitempty"`
}

// ErrUnavailable is the error of a change no hub can make now: the one
// keeping the orders cannot be reached, or they are changing hands.
// Trying again a few seconds later works.
var ErrUnavailable = errors.New("workorder: the hub keeping the work orders cannot be reached now (they may be changing hands); try again in a few seconds")

// ErrNotLeading is Execute's error on a hub that does not keep the orders
// (now).
var ErrNotLeading = fmt.Errorf("this hub does not keep the work orders: %w", ErrUnavailable)

// do makes a person's change here, or has the hub that keeps the orders
// make it; the answer is in this hub's view when do returns.
func (m *Manager) do(c Command) (Order, error) {
	if m.deps.Leader == nil || m.leads() {
		a, err := m.Execute(c)
		return a.Order, err
	}
	a, err := m.deps.Leader.Ask(c)
	if err != nil {
		return Order{}, err
	}
	m.Mirror(a)
	return a.Order, nil
}

// Execute makes a change another hub's user asked for, or one of this
// hub's: only on the hub that keeps the orders (ErrNotLeading elsewhere).
// The answer is the change's event (its Kind aside).
func (m *Manager) Execute(c Command) (Event, error) {
	m.mu.Lock()
	if !m.writableLocked() {
		m.mu.Unlock()
		return Event{}, ErrNotLeading
	}
	var e *entry
	var err error
	switch c.Op {
	case OpAct:
		e, err = m.act(c)
	case OpOpen:
		e, err = m.openByHand(c)
	case OpPhoto:
		e, err = m.notePhoto(c)
	case OpProbe:
		e, err = m.note(c)
	default:
		err = fmt.Errorf("%w: no change %q", ErrBadRequest, c.Op)
	}
	var a Event
	if err == nil {
		a = Event{Kind: EventUpdate, Order: clone(e.order), Changes: len(e.trail)}
		if a.Changes > 0 {
			a.Transition = e.trail[a.Changes-1]
		}
	}
	m.mu.Unlock()
	m.flush()
	return a, err
}

// leads reports whether this Manager keeps the orders.
func (m *Manager) leads() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

// writableLocked reports whether this Manager may change the orders now:
// it keeps them and, in a cluster, still holds the lease. A change
// refused is counted (Refused).
func (m *Manager) writableLocked() bool {
	if !m.leading {
		return false
	}
	if m.deps.Leader != nil && !m.deps.Leader.Leads() {
		n := m.refused.Add(1)
		m.log.Warn("work-order change not made: this hub's lease ran out under it; the hub keeping the orders now makes it", "refused_total", n)
		return false
	}
	return true
}

// Refused is how many changes this hub did not make because its lease
// ran out under it (a hub paused past its lease); the hub that leads
// since makes them from the same alarms and health.
func (m *Manager) Refused() uint64 { return m.refused.Load() }

// Leading reports whether this hub keeps the orders.
func (m *Manager) Leading() bool { return m.leads() }

// TakeLead makes this hub the one that keeps the orders: it reads them
// from the shared store, as the last hub to keep them left them, brings
// their devices' health up to date with the fleet, and takes active, the
// alarms open now, whose faults open or join orders once their grace has
// passed, as if raised here (an alarm an order already names is left
// alone).
func (m *Manager) TakeLead(active []alarm.Alarm) error {
	if err := m.load(); err != nil {
		return err
	}
	m.mu.Lock()
	named := map[string]bool{}
	for _, e := range m.orders {
		for _, id := range e.order.Alarms {
			named[id] = true
		}
	}
	m.leading = true
	// Devices whose health changed while no hub kept the orders (between
	// the last keeper's end and now) count from now.
	now := m.opts.Now()
	for _, e := range m.orders {
		for _, dev := range e.order.Devices {
			if d, ok := m.deps.Fleet.Device(dev.ID); ok && !e.order.State.Terminal() && string(d.Status) != dev.Status {
				m.health(&d, now)
			}
		}
	}
	m.mu.Unlock()
	m.flush()
	m.intake.Lock()
	m.pending = map[string]alarm.Alarm{}
	for _, a := range active {
		if slices.Contains(faultSources, a.Source) && a.State.Active() && !named[a.ID] {
			m.pending[a.ID] = a
		}
	}
	n := len(m.pending)
	m.intake.Unlock()
	m.log.Info("keeping the work orders", "orders", m.count(), "alarms in their grace", n)
	return nil
}

// StandDown makes this hub stop keeping the orders (its lease is gone):
// it reads them back from the store, which holds every change it made.
func (m *Manager) StandDown() error {
	m.mu.Lock()
	m.leading = false
	m.mu.Unlock()
	m.intake.Lock()
	m.pending = map[string]alarm.Alarm{}
	m.intake.Unlock()
	m.log.Info("no longer keeping the work orders")
	return m.load()
}

// Reload reads the orders from the store again, on a hub that does not
// keep them: another hub took them over, and may have changed what this
// hub last heard.
func (m *Manager) Reload() error {
	if m.leads() {
		return nil
	}
	return m.load()
}

func (m *Manager) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.orders)
}

// Mirror applies, on a hub that does not keep the orders, a change the
// one that does announced: ev's order, after its transition, the
// ev.Changes-th of its trail (a change without a transition leaves the
// trail as it is). What the view already has is left alone, so an answer
// applied by do and its announcement count once. A change applied goes
// to OnEvent, as this hub's own do; it reports whether there was one. A
// change after a gap (an announcement lost on the way) makes the Manager
// read the orders again from the store, which has every change the keeper
// announced (counted: Gaps).
func (m *Manager) Mirror(ev Event) bool {
	changed, gap := m.mirror(ev)
	if changed && m.opts.Replica {
		var trail []Transition
		if !ev.Transition.At.IsZero() {
			trail = []Transition{ev.Transition}
		}
		if err := m.deps.Store.Save(ev.Order, trail); err != nil {
			m.log.Error("work-order change not kept in this hub's replica; a takeover by this hub would miss it", "order", ev.Order.ID, "err", err)
		}
	}
	if gap {
		n := m.gaps.Add(1)
		if err := m.load(); err != nil {
			m.log.Error("work-order announcement missed, and the orders not read again; the view lacks it until the next change", "order", ev.Order.ID, "gaps_total", n, "err", err)
		} else {
			m.log.Info("work-order announcement missed: orders read again from the store", "order", ev.Order.ID, "gaps_total", n)
		}
	}
	if changed {
		m.flush()
	}
	return changed
}

// Gaps is how many announcements this hub found missing (Mirror).
func (m *Manager) Gaps() uint64 { return m.gaps.Load() }

func (m *Manager) mirror(ev Event) (changed, gap bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leading {
		return false, false // this hub's own orders are the record
	}
	n, have := ev.Changes, 0
	e := m.orders[ev.Order.ID]
	if e != nil {
		have = len(e.trail)
	}
	if n < have || (n == have && !ev.Transition.At.IsZero()) {
		return false, false
	}
	var trail []Transition
	if e != nil {
		trail = e.trail
	}
	if !ev.Transition.At.IsZero() {
		trail = append(trail, ev.Transition)
	}
	m.put(clone(ev.Order), trail)
	m.events = append(m.events, ev)
	return true, n > len(trail)
}
