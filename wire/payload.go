package wire

import "time"

// Header starts every agent payload. Seq is monotonic per agent across all
// channels within one Boot; Boot is the agent process start time in Unix
// milliseconds, so a restarted agent is recognisably newer and a replayed
// message from an older boot is recognisably stale.
type Header struct {
	V     int       `json:"v"`
	Agent string    `json:"agent"`
	Boot  int64     `json:"boot"`
	Seq   uint64    `json:"seq"`
	TS    time.Time `json:"ts"`
}

// AgentState values carried on the state channel.
const (
	AgentOnline  = "online"
	AgentOffline = "offline"
)

// State is the agent's birth message (retained, published on every connect)
// and its Last Will (Will true, Seq 0). Conn numbers the connections of one
// boot, so a will left over from an older connection is recognised as stale.
// A will's TS is when it was registered (at connect), not when it fired.
type State struct {
	Header
	State    string  `json:"state"`
	Will     bool    `json:"will,omitempty"`
	Conn     uint32  `json:"conn"`
	Interval float64 `json:"interval_s,omitempty"` // health report interval, seconds
	Site     string  `json:"site,omitempty"`
	Version  string  `json:"version,omitempty"`
}

// Location is a WGS-84 position.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Site is where an agent's devices are installed.
type Site struct {
	ID       string   `json:"id"`
	Name     string   `json:"name,omitempty"`
	District string   `json:"district"`
	Location Location `json:"location"`
	// Names and DistrictNames are the site's and its district's names in
	// other languages, by language tag (optional; see Names).
	Names         Names `json:"names,omitempty"`
	DistrictNames Names `json:"district_names,omitempty"`
	// PowerFeed names the mains feed the site hangs off, shared by the
	// sites of a district, so the hub can tell one power cut from many
	// lost agents.
	PowerFeed string `json:"power_feed,omitempty"`
}

// Names are a thing's names in other languages, by language tag ("zh-CN",
// "en"): the console shows the one of the operator's language and falls
// back to the plain name, which stays the canonical one (districts are
// filtered and grouped by it). At most MaxNames entries, each a non-empty
// name of at most MaxNameLen bytes of UTF-8 without control characters.
type Names map[string]string

// NodeKind is what a topology node is.
type NodeKind string

// Node kinds.
const (
	NodeSwitch NodeKind = "switch"
	NodePoE    NodeKind = "poe" // one PoE port or injector
	NodeUplink NodeKind = "uplink"
	NodePower  NodeKind = "power" // a power supply or circuit on the site
)

// NodeKinds lists every node kind, for validation and documentation.
var NodeKinds = []NodeKind{NodeSwitch, NodePoE, NodeUplink, NodePower}

// Node is one piece of site infrastructure that devices depend on. Nodes
// form a tree through Parent (empty: a root); devices hang off nodes
// through Device.Parent, so the hub can raise one alarm for a failed
// switch instead of one per camera behind it.
type Node struct {
	ID     string   `json:"id"`
	Kind   NodeKind `json:"kind"`
	Name   string   `json:"name,omitempty"`
	Parent string   `json:"parent,omitempty"`
}

// CameraInfo describes what a camera looks at, for coverage maps and for
// finding the cameras nearest an alarm. Credentials never leave the agent.
type CameraInfo struct {
	Heading  float64 `json:"heading"`  // degrees clockwise from north
	FOV      float64 `json:"fov"`      // horizontal field of view, degrees
	Range    float64 `json:"range_m"`  // useful viewing distance, metres
	Snapshot bool    `json:"snapshot"` // a snapshot URL is configured
}

// Device is one entry of an agent's inventory.
type Device struct {
	ID          string      `json:"id"`
	Name        string      `json:"name,omitempty"`
	Names       Names       `json:"names,omitempty"` // Name in other languages
	Kind        DeviceKind  `json:"kind"`
	SensorKind  SensorKind  `json:"sensor_kind,omitempty"`
	District    string      `json:"district"`
	Location    Location    `json:"location"`
	Criticality int         `json:"criticality"` // 1 (low) … 5 (life safety)
	Camera      *CameraInfo `json:"camera,omitempty"`
	Parent      string      `json:"parent,omitempty"` // the topology node it hangs off
	// Vendor is the maker (Hikvision, Dahua…), optional: reports group
	// availability by it.
	Vendor string `json:"vendor,omitempty"`
	// Model, Firmware and Serial identify the unit (optional, up to 128
	// bytes each); Installed is the day it was put up (YYYY-MM-DD). The
	// hub records a changed serial or firmware in the device's history:
	// a camera replaced or upgraded.
	Model     string `json:"model,omitempty"`
	Firmware  string `json:"firmware,omitempty"`
	Serial    string `json:"serial,omitempty"`
	Installed string `json:"installed,omitempty"`
	// Streams are a camera's video streams as its probes found them
	// (none until the first probe answers): the agent sends its inventory
	// again when one changes.
	Streams []Stream `json:"streams,omitempty"`
}

// Inventory is the agent's retained device list, published on every connect
// and config reload, so the hub learns devices without its own copy of the
// agents' configs.
type Inventory struct {
	Header
	Site     Site     `json:"site"`
	Topology []Node   `json:"topology,omitempty"`
	Devices  []Device `json:"devices"`
}

// DeviceHealth is one device's line in a health report.
type DeviceHealth struct {
	ID        string             `json:"id"`
	Status    Status             `json:"status"`
	Reason    Reason             `json:"reason,omitempty"`
	Detail    string             `json:"detail,omitempty"`
	Since     time.Time          `json:"since"`             // when the agent first saw this status
	Probed    time.Time          `json:"probed,omitzero"`   // when the last probe finished
	Metrics   map[string]float64 `json:"metrics,omitempty"` // names: the Metric… constants below
	Triggered bool               `json:"triggered,omitempty"`
}

// Metric names agents report. Others are accepted if they are valid names,
// so agents can add metrics before the hub knows them.
const (
	MetricTCPMillis     = "tcp_ms"        // TCP connect time
	MetricRTSPMillis    = "rtsp_ms"       // OPTIONS+DESCRIBE round trip
	MetricFPS           = "fps"           // frames per second in the last stream sample
	MetricBitrateKbps   = "bitrate_kbps"  // kbit/s in the last stream sample
	MetricFrameAge      = "frame_age_s"   // seconds since the last frame was seen
	MetricCheckinAge    = "checkin_age_s" // seconds since a sensor last checked in
	MetricBatteryPct    = "battery_pct"
	MetricSignalDBm     = "rssi_dbm"
	MetricProbeFailures = "probe_failures" // consecutive failed probes
	// MetricClockDrift is how far a camera's clock is from its agent's,
	// in seconds either way (ONVIF): video evidence with a wrong clock is
	// contested evidence.
	MetricClockDrift = "clock_drift_s"
)

// Metrics lists every metric name above, for documentation and translations.
var Metrics = []string{
	MetricTCPMillis, MetricRTSPMillis, MetricFPS, MetricBitrateKbps, MetricFrameAge,
	MetricCheckinAge, MetricBatteryPct, MetricSignalDBm, MetricProbeFailures, MetricClockDrift,
	MetricSubFPS, MetricSubBitrateKbps,
}

// Health is the periodic report of every device of an agent. It doubles as
// the agent's heartbeat: three missed intervals mark the agent offline. An
// agent whose report would exceed MaxPayload splits it into several
// messages, each with its own Seq; a report is not a complete device list.
type Health struct {
	Header
	Interval float64        `json:"interval_s"`
	Devices  []DeviceHealth `json:"devices"`
	// Dropped counts, since Boot, what the agent could neither send nor
	// keep (its queue or its on-disk spool full). Optional; absent means
	// nothing dropped or an agent that does not say.
	Dropped *Dropped `json:"dropped,omitempty"`
}

// Dropped is what an agent had to throw away, by kind, since it started.
type Dropped struct {
	Health uint64 `json:"health"` // health reports (oldest first)
	Events uint64 `json:"events"` // events, live and snapshot messages (last resort)
}

// EventType says what an event reports.
type EventType string

// Event types.
const (
	EventStatus    EventType = "status"    // From → To status change
	EventTriggered EventType = "triggered" // a sensor's alarm contact went active, or a camera saw motion
	EventRestored  EventType = "restored"  // …and returned to normal
)

// ReasonMotion is the reason of a camera's triggered and restored events:
// its own motion detection (ONVIF MotionAlarm, CellMotionDetector) saw
// something move, and then nothing. Motion is not a fault: the camera's
// status stays what its probes say, and its health lines carry Triggered
// while the motion lasts. A sensor's events carry no reason: its kind
// says what went off. Hubs that predate it take the events as any
// device's alarm contact.
const ReasonMotion Reason = "motion"

// Event is one device change, sent as soon as the agent sees it.
type Event struct {
	Header
	Device string    `json:"device"`
	Type   EventType `json:"type"`
	From   Status    `json:"from,omitempty"`
	To     Status    `json:"to,omitempty"`
	Reason Reason    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"` // when the change happened at the agent
}

// Command types the hub may send. Agents count and ignore types they do not
// know, so a newer hub can talk to older agents.
const (
	CommandProbe = "probe" // probe the named devices now
	// CommandInventory asks an agent to publish its inventory again: the
	// hub heard from it without knowing its devices (a retained inventory
	// lost by the broker, a hub started on an empty one).
	CommandInventory = "inventory"
	// CommandReport asks an agent for a health report now: the hub knows
	// it only from its retained birth (the hub or its broker link just
	// started) and should not wait a whole interval to show its devices.
	CommandReport = "report"
)

// Command is a request from the hub to one agent. Session, SDP, Candidate
// and Reason are used by the live video commands.
type Command struct {
	V         int           `json:"v"`
	ID        string        `json:"id"`
	TS        time.Time     `json:"ts"`
	Type      string        `json:"type"`
	Devices   []string      `json:"devices,omitempty"`
	Session   string        `json:"session,omitempty"`
	SDP       string        `json:"sdp,omitempty"`
	Candidate *ICECandidate `json:"candidate,omitempty"`
	Reason    Reason        `json:"reason,omitempty"`
}
