// Package alarm turns fleet changes into operator alarms. Conditions (a
// device offline, a sensor triggered, an agent lost…) come from
// fleet.Change; rules loaded from YAML decide the severity, how long a
// condition must hold before it is an alarm, how long it must be gone before
// the alarm clears itself, when a flapping condition becomes one "flapping"
// alarm, and when an unacknowledged alarm escalates. Alarms follow the
// ThingsBoard lifecycle (active/cleared × unacknowledged/acknowledged), are
// deduplicated by key (source and subject), and keep every transition with
// who, when and why. An alarm's data (Alarm) is kept apart from its
// condition bookkeeping, so suppression and persistence can be added as
// separate stages. The Engine owns all state under one mutex; time comes
// from an injected clock so tests never sleep.
package alarm

import (
	"fmt"
	"slices"
	"time"
)

// Severity orders alarms; a higher value is more severe. The zero value is
// "unset" and never appears on an alarm.
type Severity int

// Severities, least to most severe.
const (
	Warning Severity = iota + 1
	Minor
	Major
	Critical
)

// Severities lists every severity, least to most severe.
var Severities = []Severity{Warning, Minor, Major, Critical}

var severityNames = map[Severity]string{Warning: "warning", Minor: "minor", Major: "major", Critical: "critical"}

func (s Severity) String() string {
	if n, ok := severityNames[s]; ok {
		return n
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Valid reports whether s is one of the four severities.
func (s Severity) Valid() bool { return s >= Warning && s <= Critical }

// Up returns the next severity, capped at Critical: escalation makes an
// ignored alarm louder but never invents a level above the top.
func (s Severity) Up() Severity {
	if s >= Critical {
		return Critical
	}
	return s + 1
}

// MarshalText writes the severity's name, so JSON shows "major", not 3.
func (s Severity) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("alarm: invalid severity %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a severity name, so an Alarm decodes as it encodes.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity reads a severity name.
func ParseSeverity(name string) (Severity, error) {
	for s, n := range severityNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want critical, major, minor or warning)", name)
}

// State is where an alarm is in its lifecycle.
type State string

// States. A cleared-acknowledged alarm is closed: nothing more happens to
// it, and a new occurrence of its condition makes a new alarm.
const (
	ActiveUnack  State = "active_unack"
	ActiveAck    State = "active_ack"
	ClearedUnack State = "cleared_unack"
	ClearedAck   State = "cleared_ack"
)

// States lists every state, for validation and tests.
var States = []State{ActiveUnack, ActiveAck, ClearedUnack, ClearedAck}

// Active reports whether the alarm's condition is (still) considered present.
func (s State) Active() bool { return s == ActiveUnack || s == ActiveAck }

// Acked reports whether an operator has acknowledged the alarm.
func (s State) Acked() bool { return s == ActiveAck || s == ClearedAck }

// Closed reports whether the alarm is finished.
func (s State) Closed() bool { return s == ClearedAck }

// Source is what kind of condition raised an alarm. It is an open set: a
// new source is a new constant here plus a mapping in the engine.
type Source string

// Sources.
const (
	SourceDeviceOffline   Source = "device_offline"
	SourceAgentOffline    Source = "agent_offline"
	SourceStreamFailure   Source = "stream_failure"
	SourceSensorTriggered Source = "sensor_triggered"
	SourceSupervisionLost Source = "supervision_lost"
	SourcePowerLost       Source = "power_lost"
	// A sensor's own tamper contact is open (someone opened or moved it;
	// Type is the sensor kind), or a camera's analytics say it is covered,
	// sprayed or turned away (Type "camera").
	SourceTamper Source = "tamper"
	// A camera's own motion detection (ONVIF) saw something move: news
	// for an operator, not a fault; it clears when the camera says the
	// motion ended.
	SourceMotion    Source = "motion"
	SourceThreshold Source = "threshold"
	// Root causes (see Engine.Children): a failed topology node whose
	// devices are all offline, and a power feed whose sites are all lost.
	SourceTopology  Source = "topology"
	SourcePowerFeed Source = "power_feed"
	// Security events (Engine.Notice): an agent's credential revoked,
	// audit records that could not be written, an audit trail that no
	// longer verifies. Type says which.
	SourceSecurity Source = "security"
	// The hub's own trouble keeping records (Engine.Notice): device
	// transitions the history lost, so reports miss them. Type says which.
	SourceSystem Source = "system"
	// A work order's deadline passed (hub/workorder). Type says which:
	// respond_breach or fix_breach.
	SourceWorkOrder Source = "work_order"
)

// Sources lists every known source; rules naming another are rejected so a
// typo does not silently disable an alarm.
var Sources = []Source{
	SourceDeviceOffline, SourceAgentOffline, SourceStreamFailure, SourceSensorTriggered,
	SourceSupervisionLost, SourcePowerLost, SourceTamper, SourceMotion, SourceThreshold, SourceTopology, SourcePowerFeed,
	SourceSecurity, SourceSystem, SourceWorkOrder,
}

// Type is finer than Source. Per source it is: device_offline, the device
// kind and "_offline"; stream_failure, one of StreamReasons;
// sensor_triggered and tamper, the sensor kind; threshold, the metric;
// topology, the node kind and "_down"; security, system and work_order,
// one of the lists below; any other source, the source itself.

// Types of SourceSecurity alarms (raised by the hub's app through
// Engine.Notice).
const (
	TypeAgentRevoked  = "agent_revoked"  // an agent's credential was revoked
	TypeAuditFailure  = "audit_failure"  // audit records could not be written
	TypeAuditTampered = "audit_tampered" // the audit trail does not verify
)

// SecurityTypes lists the Types of SourceSecurity alarms.
var SecurityTypes = []string{TypeAgentRevoked, TypeAuditFailure, TypeAuditTampered}

// Types of SourceSystem alarms (raised by the hub's app): records the hub
// or an agent could not keep.
const (
	TypeHistoryDropping = "history_dropping"
	TypeMetricsDropping = "metrics_dropping"
	TypeAgentDropping   = "agent_dropping"
)

// SystemTypes lists the Types of SourceSystem alarms.
var SystemTypes = []string{TypeHistoryDropping, TypeMetricsDropping, TypeAgentDropping}

// WorkOrderTypes lists the Types of SourceWorkOrder alarms: a breached
// deadline of hub/workorder (workorder.Breaches) and "_breach".
var WorkOrderTypes = []string{"respond_breach", "fix_breach"}

// Alarm is one alarm as operators see it. Values are snapshots.
type Alarm struct {
	ID string `json:"id"`
	// Key identifies the condition: "<source>:device/<id>" or
	// "<source>:agent/<id>". One open alarm per key (dedupe); Agent is set
	// on device alarms too, so a later suppression stage can mute device
	// alarms whose agent has an active agent_offline alarm.
	Key          string    `json:"key"`
	Source       Source    `json:"source"`
	Type         string    `json:"type"` // finer than Source: the sensor kind, the stream failure reason
	Device       string    `json:"device,omitempty"`
	Agent        string    `json:"agent,omitempty"`
	Site         string    `json:"site,omitempty"`
	District     string    `json:"district,omitempty"`
	Severity     Severity  `json:"severity"`
	Criticality  int       `json:"criticality"` // of the device (agent alarms: the most critical affected device), 1–5
	Priority     int       `json:"priority"`    // see Priority; higher first
	State        State     `json:"state"`
	Count        int       `json:"count"` // occurrences folded into this alarm
	FirstAt      time.Time `json:"first_at"`
	LastAt       time.Time `json:"last_at"` // last occurrence or change
	ClearedAt    time.Time `json:"cleared_at,omitzero"`
	AckedBy      string    `json:"acked_by,omitempty"`
	AckedAt      time.Time `json:"acked_at,omitzero"`
	AssignedTo   string    `json:"assigned_to,omitempty"`
	ShelvedUntil time.Time `json:"shelved_until,omitzero"`
	Escalations  int       `json:"escalations"` // also the notification tier reached
	// Changes is how many transitions its trail holds: of two copies of
	// one alarm (hubs of a cluster), the one with more is newer.
	Changes  int    `json:"changes,omitempty"`
	Flapping bool   `json:"flapping,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// Args are the figures of a detail the hub wrote (a node, a count, a
	// metric and its limit), by name, so a console can say it in the
	// operator's language; Detail says it in English.
	Args map[string]string `json:"args,omitempty"`
	// Linkage is its rule's (not stored: matched again on restart).
	Linkage Linkage `json:"linkage,omitzero"`
}

// PartitionKey is what a cluster partitions the alarm by, so that one hub
// holds it: its agent; for a power feed's root cause, which spans agents
// perhaps of several hubs, its key ("power_feed:feed/<feed>"); "" for a
// hub's own notices, which stay with the hub that raised them.
func (a Alarm) PartitionKey() string {
	switch {
	case a.Agent != "":
		return a.Agent
	case a.Source == SourcePowerFeed:
		return a.Key
	}
	return ""
}

// Shelved reports whether the alarm is shelved at now.
func (a Alarm) Shelved(now time.Time) bool { return now.Before(a.ShelvedUntil) }

// Priority combines severity and device criticality: severity rank (1–4)
// × 10 + criticality (1–5), so severity always dominates and criticality
// orders alarms of the same severity. A critical alarm on the most critical
// device is 45, a warning on the least is 11. Criticality outside 1–5 is
// clamped (unset, 0, counts as 1).
func Priority(s Severity, criticality int) int {
	return int(s)*10 + min(max(criticality, 1), 5)
}

// Action is what a transition did.
type Action string

// Actions.
const (
	ActRaise     Action = "raise"      // a new alarm, or a cleared one active again
	ActRepeat    Action = "repeat"     // the condition occurred again while active: Count+1
	ActAck       Action = "ack"        // operator acknowledged
	ActAssign    Action = "assign"     // operator assigned it
	ActShelve    Action = "shelve"     // operator muted it until a time
	ActUnshelve  Action = "unshelve"   // shelving ended (operator or time)
	ActClear     Action = "clear"      // operator cleared it
	ActAutoClear Action = "auto_clear" // the condition was gone for clear_hold, or a root cause explains it (note)
	ActEscalate  Action = "escalate"   // unacknowledged too long: severity up, next tier
	ActFlap      Action = "flap"       // flapping began or ended
)

// Actions lists every action a transition may record.
var Actions = []Action{ActRaise, ActRepeat, ActAck, ActAssign, ActShelve, ActUnshelve, ActClear, ActAutoClear, ActEscalate, ActFlap}

// System is the Who of transitions the engine makes by itself.
const System = "system"

// Transition is one entry of an alarm's trail.
type Transition struct {
	At     time.Time `json:"at"`
	Who    string    `json:"who"`
	Action Action    `json:"action"`
	From   State     `json:"from,omitempty"` // empty when the alarm was created
	To     State     `json:"to"`
	Note   string    `json:"note,omitempty"`
}

// EventKind says what an Event notifies.
type EventKind string

// Event kinds.
const (
	EventRaise    EventKind = "raise"    // new or re-activated alarm
	EventUpdate   EventKind = "update"   // repeat, ack, assign, shelve, unshelve
	EventClear    EventKind = "clear"    // cleared by an operator or automatically
	EventEscalate EventKind = "escalate" // notify tier Alarm.Escalations
	EventFlap     EventKind = "flap"     // flapping began or ended (Alarm.Flapping says which)
)

// Event is a notification of one transition, with the alarm after it.
type Event struct {
	Kind       EventKind  `json:"kind"`
	Alarm      Alarm      `json:"alarm"`
	Transition Transition `json:"transition"`
}

// Filter selects alarms. Zero fields match everything; without States,
// closed alarms are left out.
type Filter struct {
	States      []State
	Source      Source
	Device      string
	Agent       string
	Site        string
	District    string
	MinSeverity Severity
}

// Match reports whether f selects a.
func (f Filter) Match(a *Alarm) bool {
	if len(f.States) == 0 {
		if a.State.Closed() {
			return false
		}
	} else if !slices.Contains(f.States, a.State) {
		return false
	}
	return (f.Source == "" || f.Source == a.Source) &&
		(f.Device == "" || f.Device == a.Device) &&
		(f.Agent == "" || f.Agent == a.Agent) &&
		(f.Site == "" || f.Site == a.Site) &&
		(f.District == "" || f.District == a.District) &&
		a.Severity >= f.MinSeverity
}
