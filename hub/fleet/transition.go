package fleet

import (
	"cmp"
	"iter"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Transition is one device's change of status.
type Transition struct {
	At     time.Time   `json:"at"`
	From   wire.Status `json:"from"`
	To     wire.Status `json:"to"`
	Reason string      `json:"reason,omitempty"`
	Detail string      `json:"detail,omitempty"`
	Cause  string      `json:"cause"` // CauseDevice, CauseAgent or CauseLate
}

// Causes of a device transition.
const (
	CauseDevice = "device" // the device's own status changed
	CauseAgent  = "agent"  // its agent was lost or came back
	CauseLate   = "late"   // the device's own change, reported late by its agent (ChangeLate)
)

// DeviceTransition is a Transition with the device it happened to, as the
// Change that carried it shows it.
type DeviceTransition struct {
	Device *Device
	Transition
}

// Transitions yields the device status changes c carries: its Device for
// a device change, each Affected device for an agent change. Triggers and
// inventory changes are not status changes and yield nothing. Every store
// of transitions (InfluxDB, the memory window, the availability history,
// coverage, work orders) reads them from here, so they agree; one by one,
// not as a slice each of them would have made of every change (at a
// city's start, 40,000 first transitions made 26 MB of them).
//
// An agent change carries the devices' new statuses only; their previous
// one follows from the agent's previous status, as the registry derives
// it: under an online agent a device shows what the agent last reported
// (Device.Reported, which the agent change leaves alone), under an offline
// one it is unreachable, under an unknown one unknown.
func Transitions(c *Change) iter.Seq[DeviceTransition] {
	return func(yield func(DeviceTransition) bool) {
		switch c.Kind {
		case ChangeDevice, ChangeLate:
			if c.Device == nil {
				return
			}
			at, cause := c.At, CauseDevice
			if c.Kind == ChangeLate {
				at, cause = c.Happened, CauseLate
			}
			yield(DeviceTransition{c.Device, Transition{
				At: at, From: c.From, To: c.To, Reason: c.Reason, Detail: c.Detail, Cause: cause,
			}})
		case ChangeAgent:
			for i := range c.Affected {
				d := &c.Affected[i]
				var from wire.Status
				switch c.From {
				case wire.StatusOnline:
					from = cmp.Or(d.Reported, wire.StatusUnknown)
				case wire.StatusOffline:
					from = wire.StatusUnreachable
				default:
					from = wire.StatusUnknown
				}
				if !yield(DeviceTransition{d, Transition{
					At:     c.At,
					From:   from,
					To:     d.Status,
					Reason: cmp.Or(string(d.Reason), c.Reason),
					Detail: cmp.Or(d.Detail, c.Detail),
					Cause:  CauseAgent,
				}}) {
					return
				}
			}
		}
	}
}

// StatusSpan is a time range [From, To) during which a device had one
// status: what a device's history is made of.
type StatusSpan struct {
	From   time.Time   `json:"from"`
	To     time.Time   `json:"to"`
	Status wire.Status `json:"status"`
}
