package alarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// Errors of operator actions, meant to be shown to the operator: match them
// with errors.Is.
var (
	ErrNotFound = errors.New("no such alarm")
	ErrInvalid  = errors.New("not allowed in this state")
	// ErrNoteRequired: the alarm's rule wants a note with the
	// acknowledgement (Linkage.AckNote).
	ErrNoteRequired = errors.New("this alarm needs a note to be acknowledged")
	// ErrUnavailable: the alarm is held by another hub of a cluster that
	// cannot be reached now; trying again later may work.
	ErrUnavailable = errors.New("the alarm cannot be acted on right now")
)

// Options are the Engine's dependencies.
type Options struct {
	Now func() time.Time // the clock; nil means time.Now
	// OnEvent receives notifications. It is called without the engine's
	// lock held, in order per call, and must not block: hand the event to a
	// queue. Nil drops them.
	OnEvent func(Event)
	// OnTransition receives every transition with the alarm after it, for
	// persistence: unlike OnEvent it includes the silent ones of shelved
	// alarms. It is called with the engine's lock held, so calls arrive in
	// exactly the order the engine made the changes and a store never
	// writes an older alarm over a newer one; it must therefore not block
	// and must not call back into the engine. Nil drops them.
	OnTransition func(Alarm, Transition)
	// KeepClosed is how many closed alarms are kept in memory, oldest
	// dropped first, until persistence keeps them; 0 means 1000.
	KeepClosed int
	// Maintenance windows: alarms inside them are recorded, not raised.
	Maintenance *maintenance.Schedule
	// IDPrefix starts the ids of the alarms this engine opens; "" means
	// "A". The hubs of a cluster share one alarm store, each with its own
	// prefix (see ValidIDPrefix), so their ids never collide.
	IDPrefix string
	// Judges reports whether this engine judges the root cause of
	// partition key k (Alarm.PartitionKey; a power feed's is its alarm's
	// key): in a cluster, whether this hub owns the partition k hashes to.
	// Nil: every one.
	Judges func(k string) bool
}

// Engine keeps conditions and alarms. Observe feeds it fleet changes, Tick
// moves time, operators act through Ack, Assign, Shelve, Unshelve and Clear.
// It is safe for concurrent use.
type Engine struct {
	rules      Rules
	now        func() time.Time
	onEvent    func(Event)
	onTrans    func(Alarm, Transition)
	windows    *maintenance.Schedule
	keepClosed int
	thresholds []thresholdMetric // the metrics threshold rules name

	mu     sync.Mutex
	prefix string
	seq    uint64
	alarms map[string]*record
	closed []string         // ids of closed alarms, oldest first, for KeepClosed
	conds  map[string]*cond // by Alarm.Key
	sites  map[string]*site // by agent id, for root causes
	// others are the agents other hubs own (Follow), by id; elsewhere
	// the feeds' root causes they judge, by key.
	others    map[string]*followed
	elsewhere map[string]*cond
	judges    func(string) bool
	pending   []Event // collected under mu, delivered after unlocking
	keyBuf    []byte  // a condition key being looked up, reused
}

// record is an alarm with the engine's bookkeeping for it.
type record struct {
	a        Alarm
	trail    []Transition
	rule     Rule
	escalate time.Time  // next escalation, when unacknowledged
	children []childRef // root-cause alarms: the conditions they explain
}

// cond is one condition: what the fleet says now, apart from the alarm it
// raised, so hold, hysteresis and flapping work on the condition while the
// alarm keeps its operator-visible state.
type cond struct {
	rule     Rule
	tmpl     Alarm // subject and detail, copied into the alarm on raise
	active   bool
	since    time.Time // when active took its current value
	raised   bool      // this occurrence has been raised (or deliberately not re-raised)
	flips    []time.Time
	flapping bool
	rec      *record // the alarm of this key, possibly closed
	// suppressedBy is the root-cause condition that explains this one: it
	// is not raised while set. kids are a root cause's explained ones.
	suppressedBy *cond
	kids         []childRef
}

// SetRules replaces the rules (a configuration reload). Conditions under
// way keep the rule they started with until they clear; whatever starts
// from now on is judged by the new ones.
func (e *Engine) SetRules(rules Rules) {
	e.mu.Lock()
	defer e.unlock()
	e.rules = slices.Clone(rules)
	e.thresholds = thresholdMetrics(rules)
}

// New returns an engine applying rules. It starts nothing; see Run.
func New(rules Rules, opts Options) *Engine {
	e := &Engine{
		rules:      slices.Clone(rules),
		now:        opts.Now,
		onEvent:    opts.OnEvent,
		onTrans:    opts.OnTransition,
		keepClosed: opts.KeepClosed,
		windows:    opts.Maintenance,
		alarms:     map[string]*record{},
		conds:      map[string]*cond{},
		sites:      map[string]*site{},
		others:     map[string]*followed{},
		elsewhere:  map[string]*cond{},
		judges:     opts.Judges,
		thresholds: thresholdMetrics(rules),
		prefix:     cmp.Or(opts.IDPrefix, idPrefix),
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.keepClosed <= 0 {
		e.keepClosed = 1000
	}
	return e
}

// Run calls Tick every second until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.Tick(e.now())
		}
	}
}

// unlock releases the lock and then delivers the events collected under it,
// so OnEvent may call back into the engine.
func (e *Engine) unlock() {
	evs := e.pending
	e.pending = nil
	e.mu.Unlock()
	if e.onEvent != nil {
		for _, ev := range evs {
			e.onEvent(ev)
		}
	}
}

// StreamReasons are the degraded reasons that mean the video itself fails:
// the Types of SourceStreamFailure alarms.
var StreamReasons = []wire.Reason{wire.ReasonNoStream, wire.ReasonLowFrameRate, wire.ReasonTimeout, wire.ReasonImageQuality}

// Observe maps one fleet change to conditions (metric thresholds come from
// ObserveSamples). Unknown and unreachable
// statuses leave a device's conditions as they were: the hub does not know,
// and an unreachable device is explained by its agent's agent_offline alarm
// rather than raised on its own.
func (e *Engine) Observe(ch fleet.Change) {
	at := ch.At
	if at.IsZero() {
		at = e.now()
	}
	e.mu.Lock()
	defer e.unlock()
	switch ch.Kind {
	case fleet.ChangeDevice, fleet.ChangeTrigger:
		if ch.Device != nil {
			e.learn(nil, []fleet.Device{*ch.Device}, nil)
			e.observeDevice(*ch.Device, at)
			e.evalAgent(ch.Device.Agent, at)
		}
	case fleet.ChangeAgent:
		if ch.Agent != nil {
			was := e.others[ch.Agent.ID]
			e.learn(ch.Agent, ch.Affected, nil)
			crit := 0
			for _, d := range ch.Affected {
				crit = max(crit, d.Criticality)
			}
			e.observeAgent(ch.Agent, crit, at, was)
			e.evalFeed(ch.Agent.PowerFeed, at)
		}
	case fleet.ChangeInventory:
		if ch.Retired && ch.Agent != nil {
			e.retire(ch.Agent.ID, at)
		}
		for _, id := range ch.Removed {
			// A removed device cannot recover: let its alarms clear.
			for _, c := range e.conds {
				if c.tmpl.Device == id {
					e.update(c, false, at)
				}
			}
		}
		if ch.Agent != nil {
			var feed string
			if s := e.sites[ch.Agent.ID]; s != nil {
				feed = s.feed
			}
			e.learn(ch.Agent, ch.Affected, ch.Removed)
			e.evalAgent(ch.Agent.ID, at)
			// Both the feed the site left and the one it joined change.
			e.evalFeed(feed, at)
			if feed != ch.Agent.PowerFeed {
				e.evalFeed(ch.Agent.PowerFeed, at)
			}
		}
	}
}

// Notice raises an alarm for something that happened rather than a
// condition that holds (SourceSecurity): it is raised and cleared at once,
// so it waits, cleared but unacknowledged, for an operator. A notice whose
// key matches an alarm not yet closed folds into it as a repeat. Rules may
// set its severity; a rules file that names no rule for the source gets
// noticeRule, because a security event must never vanish for want of one.
func (e *Engine) Notice(tmpl Alarm) {
	at := e.now()
	e.mu.Lock()
	defer e.unlock()
	if _, ok := e.conds[tmpl.Key]; !ok {
		if _, ok := e.rules.match(tmpl.Source, "", "", ""); !ok {
			e.conds[tmpl.Key] = &cond{rule: noticeRule(tmpl.Source)}
		}
	}
	e.set(tmpl, "", "", true, at)
	if c := e.conds[tmpl.Key]; c != nil {
		e.update(c, false, at)
	}
}

// noticeRule is the rule of a notice whose source no rule names.
func noticeRule(src Source) Rule { return Rule{Source: src, Severity: Major} }

// retire lets every condition of a retired agent and its devices clear:
// they have left the fleet and cannot recover.
func (e *Engine) retire(agent string, at time.Time) {
	for _, c := range e.conds {
		if c.tmpl.Agent == agent {
			e.update(c, false, at)
		}
	}
}

func (e *Engine) observeDevice(d fleet.Device, at time.Time) {
	known := d.Status == wire.StatusOnline || d.Status == wire.StatusDegraded || d.Status == wire.StatusOffline
	set := func(src Source, typ string, active bool) {
		tmpl := Alarm{
			Key: string(src) + ":device/" + d.ID, Source: src, Type: typ,
			Device: d.ID, Agent: d.Agent, Site: d.Site, District: d.District,
			Criticality: d.Criticality, Detail: d.Detail,
		}
		if src == SourceMotion {
			tmpl.Detail = "" // the detail is of the camera's status, not of what it saw
		}
		e.set(tmpl, d.Kind, d.SensorKind, active, at)
	}
	// A sensor that stopped checking in is offline for that reason: one
	// alarm saying so, not a second device_offline one, nor a power loss
	// for a power sensor (the sensor's link failed, not the mains).
	supervision := known && d.Reason == wire.ReasonSupervisionLost && d.Status != wire.StatusOnline
	power := d.Kind == wire.KindSensor && d.SensorKind == wire.SensorPower
	switch {
	case power:
		// A power sensor reports mains loss through its contact, and a
		// power sensor that went dead for any other reason most likely
		// lost power too.
		if d.Triggered || d.Status == wire.StatusOffline && !supervision {
			set(SourcePowerLost, string(SourcePowerLost), true)
		} else if known {
			set(SourcePowerLost, string(SourcePowerLost), false)
		}
	case d.Kind == wire.KindSensor:
		set(SourceSensorTriggered, string(d.SensorKind), d.Triggered)
	case d.Kind == wire.KindCamera:
		// A camera is triggered by its own motion detection (events with
		// reason motion); whatever its status, it saw what it saw.
		set(SourceMotion, string(SourceMotion), d.Triggered)
	}
	if !known {
		return
	}
	set(SourceSupervisionLost, string(SourceSupervisionLost), supervision)
	if !power {
		set(SourceDeviceOffline, string(d.Kind)+"_offline", d.Status == wire.StatusOffline && !supervision)
	}
	// A sensor's tamper contact, or a camera's own analytics (covered,
	// sprayed, turned away): the type is the sensor kind, or "camera".
	tampered := d.Status == wire.StatusDegraded && d.Reason == wire.ReasonTamper
	switch d.Kind {
	case wire.KindSensor:
		set(SourceTamper, string(d.SensorKind), tampered)
	case wire.KindCamera:
		set(SourceTamper, string(wire.KindCamera), tampered)
	}
	stream := d.Status == wire.StatusDegraded && slices.Contains(StreamReasons, d.Reason)
	set(SourceStreamFailure, string(d.Reason), stream)
}

// observeAgent takes an agent's status; crit is the highest criticality of
// its devices: the agent's alarm matters as much as the most critical
// device it takes down with it. was is the agent as this hub followed it
// before it took it over (nil: none): offline then, its condition began
// when the other hub saw it go offline.
func (e *Engine) observeAgent(a *fleet.Agent, crit int, at time.Time, was *followed) {
	var active bool
	switch a.Status {
	case wire.StatusOffline:
		active = true
	case wire.StatusOnline:
	default:
		return
	}
	tmpl := Alarm{
		Key: string(SourceAgentOffline) + ":agent/" + a.ID, Source: SourceAgentOffline, Type: string(SourceAgentOffline),
		Agent: a.ID, Site: a.Site, District: a.District, Criticality: crit, Detail: a.Reason,
	}
	if active && was != nil && was.offline && e.conds[tmpl.Key] == nil {
		at = was.since
	}
	e.set(tmpl, "", "", active, at)
}

// set records a condition's current value. Conditions without a rule are
// not tracked at all.
func (e *Engine) set(tmpl Alarm, dk wire.DeviceKind, sk wire.SensorKind, active bool, at time.Time) {
	c := e.conds[tmpl.Key]
	if c == nil {
		if !active {
			return
		}
		rule, ok := e.rules.match(tmpl.Source, dk, sk, "")
		if !ok {
			return
		}
		c = &cond{rule: rule}
		e.conds[tmpl.Key] = c
	}
	if active {
		// Keep what the subject looked like when it failed: a recovery
		// carries no detail worth showing.
		c.tmpl = tmpl
	}
	e.update(c, active, at)
}

func (e *Engine) update(c *cond, active bool, at time.Time) {
	if c.active == active {
		return
	}
	c.active, c.since = active, at
	if active {
		c.raised = false
	}
	if f := c.rule.Flap; f.Transitions > 0 {
		c.flips = append(pruneBefore(c.flips, at.Add(-f.Window)), at)
		if !c.flapping && len(c.flips) >= f.Transitions {
			e.startFlap(c, at)
		}
	}
	e.step(c, at)
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	return ts[i:]
}

// step applies hold, hysteresis and the end of flapping to one condition.
func (e *Engine) step(c *cond, now time.Time) {
	if c.flapping {
		if now.Sub(c.since) < c.rule.Flap.Window {
			return
		}
		e.endFlap(c, now)
	}
	if c.active && !c.raised && c.suppressedBy == nil && now.Sub(c.since) >= c.rule.Hold {
		e.raise(c, now)
		c.raised = true
		adopt(c.rec, c.kids)
	}
	if r := c.rec; !c.active && r != nil && r.a.State.Active() && now.Sub(c.since) >= c.rule.ClearHold {
		e.autoClear(r, now, "")
	}
}

// autoClear clears active alarm r by itself, noting why if not for the usual
// reason (its condition gone for clear_hold).
func (e *Engine) autoClear(r *record, now time.Time, note string) {
	to := ClearedUnack
	if r.a.State.Acked() {
		to = ClearedAck
	}
	r.a.ClearedAt = now
	e.transition(r, now, System, ActAutoClear, to, note)
}

// open makes a new alarm for c; act is what created it (raise or flap).
func (e *Engine) open(c *cond, now time.Time, act Action, note string) {
	e.seq++
	a := c.tmpl
	a.ID = e.prefix + strconv.FormatUint(e.seq, 10)
	a.Severity = c.rule.Severity
	a.Criticality = min(max(a.Criticality, 1), 5)
	a.Priority = Priority(a.Severity, a.Criticality)
	a.Count, a.FirstAt, a.LastAt = 1, now, now
	a.Flapping = c.flapping
	a.Linkage = c.rule.Linkage
	r := &record{a: a, rule: c.rule, escalate: now.Add(c.rule.EscalateAfter)}
	if why := e.maintain(r, now); why != "" {
		note = strings.TrimPrefix(note+"; "+why, "; ")
	}
	r.trail = append(r.trail, Transition{At: now, Who: System, Action: act, To: ActiveUnack, Note: note})
	r.a.State = ActiveUnack
	e.alarms[a.ID] = r
	c.rec = r
	e.emit(r, r.trail[0])
}

// raise is a new occurrence of c: a new alarm, a repeat of the active one
// (dedupe), or the cleared one active again.
func (e *Engine) raise(c *cond, now time.Time) {
	r := c.rec
	if r == nil || r.a.State.Closed() {
		e.open(c, now, ActRaise, "")
		return
	}
	r.a.Count++
	r.a.Type, r.a.Detail, r.a.Args = c.tmpl.Type, c.tmpl.Detail, c.tmpl.Args
	if r.a.State.Active() {
		e.transition(r, now, System, ActRepeat, r.a.State, "")
		return
	}
	e.reactivate(r, now)
	e.transition(r, now, System, ActRaise, ActiveUnack, e.maintain(r, now))
}

func (e *Engine) reactivate(r *record, now time.Time) {
	r.a.ClearedAt = time.Time{}
	r.escalate = now.Add(r.rule.EscalateAfter)
}

func (e *Engine) startFlap(c *cond, now time.Time) {
	c.flapping = true
	note := fmt.Sprintf("%d transitions within %s", len(c.flips), c.rule.Flap.Window)
	r := c.rec
	if r == nil || r.a.State.Closed() {
		e.open(c, now, ActFlap, note)
		return
	}
	r.a.Flapping = true
	to := r.a.State
	if !to.Active() {
		to = ActiveUnack
		e.reactivate(r, now)
	}
	e.transition(r, now, System, ActFlap, to, note)
}

func (e *Engine) endFlap(c *cond, now time.Time) {
	c.flapping = false
	r := c.rec
	if r.a.State.Closed() {
		// An operator closed it while it flapped: a condition still
		// present is a new occurrence.
		c.raised = false
		return
	}
	// The open alarm stands for the current occurrence; step clears it if
	// the condition has settled away.
	c.raised = true
	r.a.Flapping = false
	e.transition(r, now, System, ActFlap, r.a.State, "flapping ended")
}

// transition moves r to state to and records why.
func (e *Engine) transition(r *record, now time.Time, who string, act Action, to State, note string) {
	t := Transition{At: now, Who: who, Action: act, From: r.a.State, To: to, Note: note}
	r.trail = append(r.trail, t)
	r.a.State, r.a.LastAt = to, now
	if to.Closed() && !t.From.Closed() {
		e.closed = append(e.closed, r.a.ID)
		e.trimClosed()
	}
	e.emit(r, t)
}

// trimClosed forgets the oldest closed alarms beyond keepClosed.
func (e *Engine) trimClosed() {
	for len(e.closed) > e.keepClosed {
		delete(e.alarms, e.closed[0])
		e.closed = e.closed[1:]
	}
}

var eventKinds = map[Action]EventKind{
	ActRaise: EventRaise, ActRepeat: EventUpdate, ActAck: EventUpdate, ActAssign: EventUpdate,
	ActShelve: EventUpdate, ActUnshelve: EventUpdate, ActClear: EventClear, ActAutoClear: EventClear,
	ActEscalate: EventEscalate, ActFlap: EventFlap,
}

// emit queues the event of t. The engine's own transitions on a shelved
// alarm are silent: that is what shelving is for. Operator actions are
// always reported so every console stays in step.
func (e *Engine) emit(r *record, t Transition) {
	r.a.Changes = len(r.trail)
	if e.onTrans != nil {
		e.onTrans(r.a, t)
	}
	if t.Who == System && r.a.Shelved(t.At) {
		return
	}
	e.pending = append(e.pending, Event{Kind: eventKinds[t.Action], Alarm: r.a, Transition: t})
}

// Tick advances time: hold timers, hysteresis, flap windows, shelving and
// escalation.
func (e *Engine) Tick(now time.Time) {
	e.mu.Lock()
	defer e.unlock()
	e.evalRoots(now)
	for key, c := range e.conds {
		e.step(c, now)
		c.flips = pruneBefore(c.flips, now.Add(-c.rule.Flap.Window))
		// Nothing left to time, and no open alarm a new occurrence would
		// re-activate: forget it.
		if !c.active && !c.flapping && len(c.flips) == 0 && (c.rec == nil || c.rec.a.State.Closed()) {
			delete(e.conds, key)
		}
	}
	for _, r := range e.alarms {
		if !r.a.ShelvedUntil.IsZero() && !now.Before(r.a.ShelvedUntil) {
			r.a.ShelvedUntil = time.Time{}
			r.escalate = now.Add(r.rule.EscalateAfter)
			e.transition(r, now, System, ActUnshelve, r.a.State, "shelving expired")
		}
		if r.a.State == ActiveUnack && r.rule.EscalateAfter > 0 && !r.a.Shelved(now) && !now.Before(r.escalate) {
			from := r.a.Severity
			r.a.Severity = from.Up()
			r.a.Priority = Priority(r.a.Severity, r.a.Criticality)
			r.a.Escalations++
			r.escalate = now.Add(r.rule.EscalateAfter)
			e.transition(r, now, System, ActEscalate, r.a.State,
				fmt.Sprintf("tier %d, %s → %s", r.a.Escalations, from, r.a.Severity))
		}
	}
}

// act runs one operator action on alarm id: do checks the state, changes
// the alarm's fields and returns the transition to record.
func (e *Engine) act(id, who, note string, do func(r *record, now time.Time) (Action, State, error)) error {
	now := e.now()
	e.mu.Lock()
	defer e.unlock()
	r, ok := e.alarms[id]
	if !ok {
		return fmt.Errorf("alarm %s: %w", id, ErrNotFound)
	}
	act, to, err := do(r, now)
	if err != nil {
		return fmt.Errorf("alarm %s (%s): %w", id, r.a.State, err)
	}
	e.transition(r, now, who, act, to, note)
	return nil
}

// Ack acknowledges an alarm, active or cleared.
func (e *Engine) Ack(id, who, note string) error {
	return e.act(id, who, note, func(r *record, now time.Time) (Action, State, error) {
		var to State
		if r.a.Linkage.AckNote && strings.TrimSpace(note) == "" && r.a.State.Active() {
			return "", "", fmt.Errorf("ack: %w", ErrNoteRequired)
		}
		switch r.a.State {
		case ActiveUnack:
			to = ActiveAck
		case ClearedUnack:
			to = ClearedAck
		default:
			return "", "", fmt.Errorf("ack: already acknowledged: %w", ErrInvalid)
		}
		r.a.AckedBy, r.a.AckedAt = who, now
		return ActAck, to, nil
	})
}

// Assign gives an open alarm to someone; an empty to unassigns it.
func (e *Engine) Assign(id, who, to, note string) error {
	return e.act(id, who, note, func(r *record, _ time.Time) (Action, State, error) {
		if r.a.State.Closed() {
			return "", "", fmt.Errorf("assign: closed: %w", ErrInvalid)
		}
		r.a.AssignedTo = to
		return ActAssign, r.a.State, nil
	})
}

// Shelve mutes an open alarm's notifications and escalation until until.
func (e *Engine) Shelve(id, who string, until time.Time, note string) error {
	return e.act(id, who, note, func(r *record, now time.Time) (Action, State, error) {
		if r.a.State.Closed() {
			return "", "", fmt.Errorf("shelve: closed: %w", ErrInvalid)
		}
		if !until.After(now) {
			return "", "", fmt.Errorf("shelve: until %s is not in the future: %w", until.Format(time.RFC3339), ErrInvalid)
		}
		r.a.ShelvedUntil = until
		return ActShelve, r.a.State, nil
	})
}

// Unshelve ends shelving early.
func (e *Engine) Unshelve(id, who, note string) error {
	return e.act(id, who, note, func(r *record, now time.Time) (Action, State, error) {
		if !r.a.Shelved(now) {
			return "", "", fmt.Errorf("unshelve: not shelved: %w", ErrInvalid)
		}
		r.a.ShelvedUntil = time.Time{}
		r.escalate = now.Add(r.rule.EscalateAfter)
		return ActUnshelve, r.a.State, nil
	})
}

// Clear clears an active alarm by hand. The condition is not re-raised
// until it goes away and comes back.
func (e *Engine) Clear(id, who, note string) error {
	return e.act(id, who, note, func(r *record, now time.Time) (Action, State, error) {
		var to State
		switch r.a.State {
		case ActiveUnack:
			to = ClearedUnack
		case ActiveAck:
			to = ClearedAck
		default:
			return "", "", fmt.Errorf("clear: already cleared: %w", ErrInvalid)
		}
		r.a.ClearedAt = now
		return ActClear, to, nil
	})
}

// Alarms returns the alarms f selects, highest priority first, then the
// most recently changed.
func (e *Engine) Alarms(f Filter) []Alarm {
	e.mu.Lock()
	var out []Alarm
	for _, r := range e.alarms {
		if f.Match(&r.a) {
			out = append(out, r.a)
		}
	}
	e.mu.Unlock()
	SortByPriority(out)
	return out
}

// SortByPriority sorts alarms as lists show them: highest priority first,
// then the most recently changed.
func SortByPriority(alarms []Alarm) {
	slices.SortFunc(alarms, func(a, b Alarm) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		if c := b.LastAt.Compare(a.LastAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// KindOf is the kind of event a transition's action makes.
func KindOf(a Action) EventKind { return eventKinds[a] }

// Alarm returns one alarm and its trail, oldest first.
func (e *Engine) Alarm(id string) (Alarm, []Transition, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.alarms[id]
	if !ok {
		return Alarm{}, nil, false
	}
	return r.a, slices.Clone(r.trail), true
}
