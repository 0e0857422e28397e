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

// idPrefix starts every alarm id; the rest is the engine's sequence number.
const idPrefix = "A"

// IDSeq returns the sequence number in an alarm id the engine made ("A17"
// → 17), so a store can remember the highest one issued.
func IDSeq(id string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, idPrefix), 10, 64)
	return n, err == nil && strings.HasPrefix(id, idPrefix)
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
	now := e.now()
	e.mu.Lock()
	defer e.unlock()
	if len(e.alarms) > 0 || len(e.conds) > 0 {
		return errors.New("alarm: restore: the engine is already in use")
	}
	var errs []error
	seq := max(next, 1) - 1
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
		if n, ok := IDSeq(a.ID); ok {
			seq = max(seq, n)
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
		a.Linkage = rule.Linkage
		recs[a.ID] = &record{a: a, trail: trail, rule: rule, escalate: escalateBase(a, trail).Add(rule.EscalateAfter)}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("alarm: restore: %w", err)
	}
	e.seq = seq
	var closed []*record
	for _, r := range recs {
		if r.a.State.Closed() {
			closed = append(closed, r)
			continue
		}
		// One open alarm per key; should the saved state hold two, the
		// newer one is the one new occurrences fold into.
		if c := e.conds[r.a.Key]; c != nil && c.rec.a.LastAt.After(r.a.LastAt) {
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
	return nil
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
		e.observeAgent(&agents[i], crit[agents[i].ID], now)
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
