package alarm

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// idPrefix starts every alarm id of a hub on its own (Options.IDPrefix);
// the rest is the engine's sequence number.
const idPrefix = "A"

// IDSeq returns the sequence number in an alarm id a hub on its own made
// ("A17" → 17), so a store can remember the highest one issued.
func IDSeq(id string) (uint64, bool) { return seqOf(idPrefix, id) }

// seqOf returns the sequence number of an id made with prefix.
func seqOf(prefix, id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// ValidIDPrefix checks an Options.IDPrefix: a letter, then letters, digits,
// '-' or '_', ending in one that is not a digit, so an id splits back into
// the prefix and its number and is safe in a URL path.
func ValidIDPrefix(p string) error {
	if p == "" || len(p) > 40 {
		return fmt.Errorf("alarm id prefix %q: want 1 to 40 characters", p)
	}
	for i, r := range p {
		letter := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '-' || r == '_')) {
			return fmt.Errorf("alarm id prefix %q: want a letter, then letters, digits, '-' or '_'", p)
		}
	}
	if last := p[len(p)-1]; last >= '0' && last <= '9' {
		return fmt.Errorf("alarm id prefix %q: must not end in a digit", p)
	}
	return nil
}

// Snapshot returns every alarm the engine holds (closed ones it still keeps
// included), their trails, and the sequence number the next new alarm's id
// will carry: what Restore takes.
func (e *Engine) Snapshot() (alarms []Alarm, trails map[string][]Transition, next uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	trails = make(map[string][]Transition, len(e.alarms))
	for id, r := range e.alarms {
		alarms = append(alarms, r.a)
		trails[id] = slices.Clone(r.trail)
	}
	slices.SortFunc(alarms, func(a, b Alarm) int { return cmp.Compare(a.ID, b.ID) })
	return alarms, trails, e.seq + 1
}

// Restore loads alarms saved before a restart into a new engine, before it
// observes anything. next is the sequence number the next new alarm's id
// will carry; ids of the restored alarms raise it if needed, so new ids
// never collide with old ones.
//
// Rules are matched again, so edited rules apply to old alarms; an alarm
// whose rule is gone never escalates and clears as soon as its condition is
// gone. Escalation timers restart from the last transition that set them.
// An active alarm's condition is taken to be still present until the live
// state says otherwise: call Reconcile once the fleet is known, and changes
// observed afterwards clear it through the usual clear_hold hysteresis.
func (e *Engine) Restore(alarms []Alarm, trails map[string][]Transition, next uint64) error {
	e.mu.Lock()
	defer e.unlock()
	if len(e.alarms) > 0 || len(e.conds) > 0 {
		return errors.New("alarm: restore: the engine is already in use")
	}
	e.seq = max(e.seq, max(next, 1)-1)
	_, err := e.adopt(alarms, trails)
	if err != nil {
		return fmt.Errorf("alarm: restore: %w", err)
	}
	return nil
}

// Adopt takes over alarms another hub of a cluster kept, while the engine
// runs: those of the agents whose partitions this hub has just taken over,
// as the shared store and the other hubs' announcements have them. It
// records no transition: the alarms go on where the other hub left them.
// Ids the engine already holds are skipped, and so is an open alarm whose
// condition already has a newer open one here. Call Reconcile for the
// adopted agents afterwards, as after Restore. It returns how many alarms
// it took.
func (e *Engine) Adopt(alarms []Alarm, trails map[string][]Transition) (int, error) {
	e.mu.Lock()
	defer e.unlock()
	var fresh []Alarm
	for _, a := range alarms {
		if _, held := e.alarms[a.ID]; !held {
			fresh = append(fresh, a)
		}
	}
	n, err := e.adopt(fresh, trails)
	if err != nil {
		return n, fmt.Errorf("alarm: adopt: %w", err)
	}
	return n, nil
}

// adopt adds alarms and their conditions, all or none; e.mu is held.
func (e *Engine) adopt(alarms []Alarm, trails map[string][]Transition) (int, error) {
	now := e.now()
	var errs []error
	recs := make(map[string]*record, len(alarms))
	for _, a := range alarms {
		switch {
		case a.ID == "" || a.Key == "":
			errs = append(errs, fmt.Errorf("alarm %q: no id or key", a.ID))
			continue
		case !slices.Contains(States, a.State):
			errs = append(errs, fmt.Errorf("alarm %s: unknown state %q", a.ID, a.State))
			continue
		case recs[a.ID] != nil:
			errs = append(errs, fmt.Errorf("alarm %s: twice", a.ID))
			continue
		}
		if n, ok := seqOf(e.prefix, a.ID); ok {
			e.seq = max(e.seq, n)
		}
		dk, sk := kindsOf(a)
		rule, ok := e.rules.match(a.Source, dk, sk, "")
		if a.Source == SourceThreshold {
			// The alarm does not say its device kind: any rule of the metric.
			rule, ok = thresholdRule(e.thresholds, a.Type, "")
		}
		if !ok {
			rule = Rule{Source: a.Source, Severity: a.Severity}
		}
		trail := slices.Clone(trails[a.ID])
		a.Linkage, a.Changes = rule.Linkage, len(trail)
		recs[a.ID] = &record{a: a, trail: trail, rule: rule, escalate: escalateBase(a, trail).Add(rule.EscalateAfter)}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	var closed []*record
	for _, r := range recs {
		if r.a.State.Closed() {
			closed = append(closed, r)
			continue
		}
		// One open alarm per key; should there be two, the newer one is
		// the one new occurrences fold into.
		if c := e.conds[r.a.Key]; c != nil && c.rec != nil && !c.rec.a.State.Closed() && c.rec.a.LastAt.After(r.a.LastAt) {
			e.alarms[r.a.ID] = r
			continue
		}
		e.conds[r.a.Key] = &cond{
			rule: r.rule, tmpl: subject(r.a), active: r.a.State.Active(), since: now,
			raised: true, flapping: r.a.Flapping, rec: r,
		}
		e.alarms[r.a.ID] = r
	}
	slices.SortFunc(closed, func(a, b *record) int {
		return cmp.Or(a.a.LastAt.Compare(b.a.LastAt), cmp.Compare(a.a.ID, b.a.ID))
	})
	closed = closed[max(0, len(closed)-e.keepClosed):]
	for _, r := range closed {
		e.alarms[r.a.ID] = r
		e.closed = append(e.closed, r.a.ID)
	}
	e.trimClosed()
	return len(recs), nil
}

// Release gives up the alarms whose partition key (Alarm.PartitionKey)
// mine does not accept, and their conditions, without a transition:
// another hub of the cluster owns those agents and feeds now and carries
// their alarms on. It returns the open ones it held, with their trails.
// Alarms of no key (the hub's own notices) stay. The agents given up are
// followed from then on, as they were when given up.
func (e *Engine) Release(mine func(key string) bool) (alarms []Alarm, trails map[string][]Transition) {
	e.mu.Lock()
	defer e.unlock()
	gone := func(key string) bool { return key != "" && !mine(key) }
	trails = map[string][]Transition{}
	for id, r := range e.alarms {
		if !gone(r.a.PartitionKey()) {
			continue
		}
		if !r.a.State.Closed() {
			alarms = append(alarms, r.a)
			trails[id] = r.trail
		}
		delete(e.alarms, id)
	}
	e.closed = slices.DeleteFunc(e.closed, func(id string) bool { return e.alarms[id] == nil })
	for agent, s := range e.sites {
		if !gone(agent) {
			continue
		}
		if _, ok := e.others[agent]; !ok {
			f := &followed{feed: s.feed}
			if c := e.conds[string(SourceAgentOffline)+":agent/"+agent]; c != nil {
				f.offline, f.since, f.district, f.crit = c.active, c.since, c.tmpl.District, c.tmpl.Criticality
			}
			e.others[agent] = f
		}
		delete(e.sites, agent)
	}
	for key, c := range e.conds {
		if gone(c.tmpl.PartitionKey()) {
			delete(e.conds, key)
		}
	}
	for _, c := range e.conds {
		if c.suppressedBy != nil && gone(c.suppressedBy.tmpl.PartitionKey()) {
			c.suppressedBy = nil // Tick judges its feed again before stepping it
		}
	}
	slices.SortFunc(alarms, func(a, b Alarm) int { return cmp.Compare(a.ID, b.ID) })
	return alarms, trails
}

// Reconcile observes the live state of every device and agent at once, as
// after a restart: a restored active alarm whose subject is now healthy
// starts its clear_hold and clears on a later Tick, and a failure nobody
// had an alarm for starts its hold. Subjects left out, and unknown or
// unreachable statuses, leave their conditions as they are.
func (e *Engine) Reconcile(devices []fleet.Device, agents []fleet.Agent) {
	now := e.now()
	crit := make(map[string]int, len(agents))
	for i := range devices {
		d := &devices[i]
		crit[d.Agent] = max(crit[d.Agent], d.Criticality)
	}
	e.mu.Lock()
	defer e.unlock()
	for i := range agents {
		a := &agents[i]
		was := e.others[a.ID]
		e.learn(a, nil, nil)
		e.observeAgent(a, crit[a.ID], now, was)
	}
	for _, d := range devices {
		e.observeDevice(d, now)
	}
}

// kindsOf recovers the device and sensor kind a condition was matched with
// from what observeDevice put in the alarm.
func kindsOf(a Alarm) (wire.DeviceKind, wire.SensorKind) {
	switch a.Source {
	case SourceTamper:
		if a.Type == string(wire.KindCamera) {
			return wire.KindCamera, ""
		}
		return wire.KindSensor, wire.SensorKind(a.Type)
	case SourceSensorTriggered:
		return wire.KindSensor, wire.SensorKind(a.Type)
	case SourcePowerLost:
		return wire.KindSensor, wire.SensorPower
	case SourceSupervisionLost:
		return wire.KindSensor, ""
	case SourceDeviceOffline:
		return wire.DeviceKind(strings.TrimSuffix(a.Type, "_offline")), ""
	case SourceStreamFailure, SourceMotion:
		return wire.KindCamera, ""
	}
	return "", ""
}

// subject is the part of an alarm a condition copies into a new alarm.
func subject(a Alarm) Alarm {
	return Alarm{
		Key: a.Key, Source: a.Source, Type: a.Type, Device: a.Device, Agent: a.Agent,
		Site: a.Site, District: a.District, Criticality: a.Criticality, Detail: a.Detail, Args: a.Args,
	}
}

// escalateBase is when an alarm's escalation timer last restarted. The
// timer is not saved, but the trail tells: opening, re-activation,
// escalation and unshelving restart it.
func escalateBase(a Alarm, trail []Transition) time.Time {
	for _, t := range slices.Backward(trail) {
		if t.Action == ActEscalate || t.Action == ActUnshelve || (!t.From.Active() && t.To.Active()) {
			return t.At
		}
	}
	return a.FirstAt
}
