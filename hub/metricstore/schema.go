package metricstore

import (
	"math"
	"strings"

	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// The InfluxDB schema (docs/metrics-schema.md says the same for readers of
// the data). Timestamps have millisecond precision.
//
//	device_health  one point per accepted device health line, at the agent's report time
//	  tags    agent, site, district, device, kind
//	  fields  status (string), status_code (int, see statusCodes),
//	          one float field per metric the agent reported (tcp_ms, fps, …)
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

// healthPoint converts one sample to a device_health point. It runs in the
// caller's goroutine, so the sample's metrics map is not retained.
func healthPoint(s *fleet.Sample) *write.Point {
	p := write.NewPointWithMeasurement(measurementHealth).
		AddTag("agent", tagValue(s.Agent)).
		AddTag("device", tagValue(s.Device)).
		AddTag("district", tagValue(s.District)).
		AddTag("kind", tagValue(string(s.Kind))).
		AddTag("site", tagValue(s.Site)).
		AddField(fieldStatus, string(s.Status)).
		AddField(fieldStatusCode, int64(statusCode(s.Status))).
		SetTime(s.At)
	for name, v := range s.Metrics {
		// A metric named like a status field would overwrite it, and NaN or
		// Inf fails the encoding of the whole batch; wire.Decode rejects
		// non-finite values already, this keeps one bad value local.
		if name == fieldStatus || name == fieldStatusCode || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		p.AddField(name, v)
	}
	return p
}

// changePoints converts a Change to its agent_state point (agent changes
// only) followed by one device_state point per device transition.
func changePoints(c *fleet.Change) []*write.Point {
	transitions := fleet.Transitions(c)
	points := make([]*write.Point, 0, len(transitions)+1)
	if c.Kind == fleet.ChangeAgent && c.Agent != nil {
		points = append(points, write.NewPointWithMeasurement(measurementAgentState).
			AddTag("agent", tagValue(c.Agent.ID)).
			AddTag("district", tagValue(c.Agent.District)).
			AddTag("site", tagValue(c.Agent.Site)).
			AddField("from", string(c.From)).
			AddField("to", string(c.To)).
			AddField("reason", c.Reason).
			AddField("detail", c.Detail).
			AddField("affected", int64(len(c.Affected))).
			SetTime(c.At))
	}
	for _, t := range transitions {
		points = append(points, transitionPoint(t.Device, &t.Transition))
	}
	return points
}

func transitionPoint(d *fleet.Device, t *Transition) *write.Point {
	return write.NewPointWithMeasurement(measurementDeviceState).
		AddTag("agent", tagValue(d.Agent)).
		AddTag("device", tagValue(d.ID)).
		AddTag("district", tagValue(d.District)).
		AddTag("kind", tagValue(string(d.Kind))).
		AddTag("site", tagValue(d.Site)).
		AddField("from", string(t.From)).
		AddField("to", string(t.To)).
		AddField("reason", t.Reason).
		AddField("detail", t.Detail).
		AddField("cause", t.Cause).
		SetTime(t.At)
}

// tagValue makes s safe as a tag value. The line-protocol encoder escapes
// spaces, commas and equals signs but not backslashes, so a value ending in
// (or containing, before an escaped character) a backslash produces a line
// InfluxDB cannot parse — and it rejects the whole batch with it. IDs are
// backslash-free by wire validation; district names are free text.
func tagValue(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	return strings.ReplaceAll(s, `\`, "/")
}
