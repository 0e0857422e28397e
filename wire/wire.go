// Package wire is the MQTT contract between citywatch agents and the hub:
// topic names, versioned payload types and their validation. Both sides
// import it and nothing else of each other, so a change to the contract is a
// change to this package and to docs/protocol.md, never a private agreement.
package wire

import (
	"errors"
	"fmt"
	"time"
)

// Version is the schema major version carried in every payload as "v".
// Adding optional fields keeps the version; removing or changing the meaning
// of a field bumps it, and the hub rejects majors it does not know.
const Version = 1

// MaxPayload is the largest payload the hub accepts. The inventory of a
// site with MaxDevices devices fits (it is one retained message and cannot
// be split); anything larger is a fault or an attack.
const MaxPayload = 1 << 20

// MaxClockSkew is how far in the future an agent's timestamp may be before
// the message is rejected: agents keep NTP time, so minutes of skew means a
// broken clock whose data would corrupt "since" and history.
const MaxClockSkew = 2 * time.Minute

// Status is the health of a device or an agent.
type Status string

// Statuses. Agents report online, degraded, offline or unknown; the hub adds
// unreachable for devices behind an agent it has lost.
const (
	StatusOnline      Status = "online"
	StatusDegraded    Status = "degraded"
	StatusOffline     Status = "offline"
	StatusUnknown     Status = "unknown"
	StatusUnreachable Status = "unreachable"
)

// Statuses lists every status, for validation and translations.
var Statuses = []Status{StatusOnline, StatusDegraded, StatusOffline, StatusUnknown, StatusUnreachable}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Reason explains a status that is not online. Camera probes classify their
// failures so that a crew knows whether to bring a ladder, a laptop or a
// password; sensors report supervision loss like an alarm panel does.
type Reason string

// Reasons.
const (
	ReasonNone            Reason = ""
	ReasonUnreachable     Reason = "unreachable"      // no route / host down / no answer to TCP
	ReasonRefused         Reason = "refused"          // host up, port closed
	ReasonAuthFailed      Reason = "auth_failed"      // RTSP 401/403
	ReasonNoStream        Reason = "no_stream"        // RTSP answers but no usable media
	ReasonTimeout         Reason = "timeout"          // connected, then no answer in time
	ReasonLowFrameRate    Reason = "low_fps"          // stream plays, too few frames
	ReasonSupervisionLost Reason = "supervision_lost" // sensor stopped checking in
	ReasonTamper          Reason = "tamper"           // a sensor's tamper contact, or a camera's analytics: covered, turned away
	ReasonImageQuality    Reason = "image_quality"    // a camera's analytics: its picture too blurry, dark or bright
	ReasonAgentOffline    Reason = "agent_offline"    // set by the hub for unreachable devices
	ReasonProbeError      Reason = "probe_error"      // anything else; Detail says what
)

// Reasons lists every reason of a device's status (not ReasonNone), for
// documentation and translations; live sessions end for LiveReasons too.
var Reasons = []Reason{
	ReasonUnreachable, ReasonRefused, ReasonAuthFailed, ReasonNoStream, ReasonTimeout,
	ReasonLowFrameRate, ReasonSupervisionLost, ReasonTamper, ReasonAgentOffline, ReasonProbeError, ReasonImageQuality,
}

// DeviceKind is what a device is.
type DeviceKind string

// Device kinds.
const (
	KindCamera DeviceKind = "camera"
	KindSensor DeviceKind = "sensor"
)

// DeviceKinds lists every device kind, for documentation and translations.
var DeviceKinds = []DeviceKind{KindCamera, KindSensor}

// SensorKind is what a sensor detects.
type SensorKind string

// Sensor kinds.
const (
	SensorIntrusion  SensorKind = "intrusion"
	SensorDoor       SensorKind = "door"
	SensorSmoke      SensorKind = "smoke"
	SensorVibration  SensorKind = "vibration" // vibration / tamper
	SensorGlassBreak SensorKind = "glass_break"
	SensorPower      SensorKind = "power"
)

// SensorKinds lists every sensor kind, for validation and documentation.
var SensorKinds = []SensorKind{SensorIntrusion, SensorDoor, SensorSmoke, SensorVibration, SensorGlassBreak, SensorPower}

// Valid reports whether k is a known sensor kind.
func (k SensorKind) Valid() bool {
	for _, v := range SensorKinds {
		if k == v {
			return true
		}
	}
	return false
}

// RejectReason names why the hub refused a message; it is a metric label, so
// the set is small and fixed.
type RejectReason string

// Reject reasons.
const (
	RejectTooLarge      RejectReason = "too_large"
	RejectBadTopic      RejectReason = "bad_topic"
	RejectMalformed     RejectReason = "malformed"
	RejectBadVersion    RejectReason = "bad_version"
	RejectAgentMismatch RejectReason = "agent_mismatch"
	RejectUnknownDevice RejectReason = "unknown_device"
	RejectInvalid       RejectReason = "invalid"
	RejectFuture        RejectReason = "future_timestamp"
	RejectReplay        RejectReason = "replay"
	RejectOverload      RejectReason = "overload"
	// RejectRevoked: the agent's credential was revoked; whatever a broker
	// that could not cut it off at once still delivers is refused.
	RejectRevoked RejectReason = "revoked"
)

// RejectReasons lists every reject reason, so metrics can show zeros.
var RejectReasons = []RejectReason{
	RejectTooLarge, RejectBadTopic, RejectMalformed, RejectBadVersion, RejectAgentMismatch,
	RejectUnknownDevice, RejectInvalid, RejectFuture, RejectReplay, RejectOverload, RejectRevoked,
}

// Error is a rejected message: the reason is for counting, the message for
// the (rate-limited) log.
type Error struct {
	Reason RejectReason
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Msg) }

func reject(r RejectReason, format string, args ...any) error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reject reason of err, or RejectInvalid when err is not
// a *Error.
func ReasonOf(err error) RejectReason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return RejectInvalid
}
