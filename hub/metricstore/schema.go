package metricstore

import (
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// The InfluxDB schema (docs/metrics-schema.md says the same for readers of
// the data). Timestamps have millisecond precision.
//
//	device_health  one point per accepted device health line, at the agent's report time
//	  tags    agent, device, district, kind
//	  fields  status_code (int, see statusCodes),
//	          one float field per metric the agent reported (tcp_ms, fps, …)
//
// device_health is most of what InfluxDB stores, so it carries nothing
// twice: no string status beside status_code (a string field costs InfluxDB
// more to take and to store than the integer), and no site tag (an agent
// serves one site; agent_state and device_state carry the site).
//
//	device_state   one point per device status transition, at the change time
//	  tags    device, agent, site, district, kind
//	  fields  from, to, reason, detail (strings),
//	          cause ("device": the device itself changed; "agent": its agent
//	          went away or came back, and this device was one of Affected)
//
//	agent_state    one point per agent status transition, at the change time
//	  tags    agent, site, district
//	  fields  from, to, reason, detail (strings), affected (int: devices cascaded)
//
// Availability per device is computed exactly from device_state alone: every
// status change of every device, cascades included, is one point there.
const (
	measurementHealth      = "device_health"
	measurementDeviceState = "device_state"
	measurementAgentState  = "agent_state"

	// fieldStatus is the string status older hubs wrote beside status_code;
	// it is read back from old points, and no metric may take its name.
	fieldStatus     = "status"
	fieldStatusCode = "status_code"
)

// Causes of a device transition (fleet's).
const (
	CauseDevice = fleet.CauseDevice
	CauseAgent  = fleet.CauseAgent
)

// statusCodes maps status_code values to statuses; the index is the code.
// The order is part of the stored schema: append, never reorder.
var statusCodes = [...]wire.Status{
	wire.StatusOnline,      // 0
	wire.StatusDegraded,    // 1
	wire.StatusOffline,     // 2
	wire.StatusUnknown,     // 3
	wire.StatusUnreachable, // 4
}

const codeUnknown = 3

// statusCode returns s's status_code; statuses this hub does not know are
// stored as unknown rather than failing the point.
func statusCode(s wire.Status) uint8 {
	for i, known := range statusCodes {
		if known == s {
			return uint8(i)
		}
	}
	return codeUnknown
}

// appendHealth appends sample s as a device_health line to b and returns
// the buffer and whether a line was written (a sample always has its
// status_code, so it always is). It runs in the caller's goroutine and
// retains nothing of s.
func appendHealth(b []byte, s *fleet.Sample) ([]byte, bool) {
	start := len(b)
	l := newLine(b, measurementHealth)
	l.tag("agent", s.Agent)
	l.tag("device", s.Device)
	l.tag("district", s.District)
	l.tag("kind", string(s.Kind))
	l.int(fieldStatusCode, int64(statusCode(s.Status)))
	for name, v := range s.Metrics {
		// A metric named like a status field would clash with it; NaN and
		// Inf are left out by float (wire.Decode rejects them already).
		if name == fieldStatus || name == fieldStatusCode {
			continue
		}
		l.float(name, v)
	}
	return l.end(start, s.At)
}

// appendChange appends the change's agent_state line (agent changes only)
// and one device_state line per device transition, and returns the buffer
// and the number of lines.
func appendChange(b []byte, c *fleet.Change) ([]byte, int) {
	n := 0
	if c.Kind == fleet.ChangeAgent && c.Agent != nil {
		start := len(b)
		l := newLine(b, measurementAgentState)
		l.tag("agent", c.Agent.ID)
		l.tag("district", c.Agent.District)
		l.tag("site", c.Agent.Site)
		l.str("from", string(c.From))
		l.str("to", string(c.To))
		l.str("reason", c.Reason)
		l.str("detail", c.Detail)
		l.int("affected", int64(len(c.Affected)))
		var ok bool
		if b, ok = l.end(start, c.At); ok {
			n++
		}
	}
	for t := range fleet.Transitions(c) {
		var ok bool
		if b, ok = appendTransition(b, t.Device, &t.Transition); ok {
			n++
		}
	}
	return b, n
}

func appendTransition(b []byte, d *fleet.Device, t *Transition) ([]byte, bool) {
	start := len(b)
	l := newLine(b, measurementDeviceState)
	l.tag("agent", d.Agent)
	l.tag("device", d.ID)
	l.tag("district", d.District)
	l.tag("kind", string(d.Kind))
	l.tag("site", d.Site)
	l.str("from", string(t.From))
	l.str("to", string(t.To))
	l.str("reason", t.Reason)
	l.str("detail", t.Detail)
	l.str("cause", t.Cause)
	return l.end(start, t.At)
}

// statusOf reads a device_health row's status: status_code, or, in points
// written before the hub stopped writing it, the string status field.
func statusOf(row map[string]any) wire.Status {
	if code, ok := row[fieldStatusCode].(int64); ok {
		if code >= 0 && code < int64(len(statusCodes)) {
			return statusCodes[code]
		}
		return wire.StatusUnknown
	}
	if s, ok := row[fieldStatus].(string); ok {
		return wire.Status(s)
	}
	return wire.StatusUnknown
}
