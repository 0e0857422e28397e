package fleet

import (
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Device is the hub's view of one device, as the API and the console show
// it. Values are snapshots: changing one does not change the registry. Its
// times are in the location of the hub clock (Options.Now), also those its
// agent reported.
type Device struct {
	ID          string             `json:"id"`
	Name        string             `json:"name,omitempty"`
	Kind        wire.DeviceKind    `json:"kind"`
	SensorKind  wire.SensorKind    `json:"sensor_kind,omitempty"`
	Agent       string             `json:"agent"`
	Site        string             `json:"site"`
	SiteName    string             `json:"site_name,omitempty"`
	District    string             `json:"district"`
	Location    wire.Location      `json:"location"`
	Criticality int                `json:"criticality"`
	Vendor      string             `json:"vendor,omitempty"`
	Model       string             `json:"model,omitempty"`
	Firmware    string             `json:"firmware,omitempty"`
	Serial      string             `json:"serial,omitempty"`
	Installed   string             `json:"installed,omitempty"` // YYYY-MM-DD
	Camera      *wire.CameraInfo   `json:"camera,omitempty"`
	Streams     []wire.Stream      `json:"streams,omitempty"` // a camera's, as its inventory lists them
	Parent      string             `json:"parent,omitempty"`  // topology node, see Agent.Topology
	Status      wire.Status        `json:"status"`
	Reason      wire.Reason        `json:"reason,omitempty"`
	Detail      string             `json:"detail,omitempty"`
	Since       time.Time          `json:"since"`               // when Status began
	LastSeen    time.Time          `json:"last_seen,omitzero"`  // last report that mentioned the device
	Probed      time.Time          `json:"probed,omitzero"`     // when the agent last probed it
	Reported    wire.Status        `json:"reported,omitempty"`  // the agent's last word, kept while unreachable
	Triggered   bool               `json:"triggered,omitempty"` // sensor alarm contact active
	Metrics     map[string]float64 `json:"metrics,omitempty"`
	// Localised holds the names in other languages; nil when neither the
	// device nor its site has any. A pointer, shared by the devices of a
	// site that have no names of their own, because the registry keeps it
	// for every device of the city.
	*Localised
}

// Localised is a device's, its site's and its district's names in other
// languages, by language tag, from the inventory (wire.Names). The maps
// are replaced, never changed in place, so snapshots may share them.
type Localised struct {
	Names         wire.Names `json:"names,omitempty"`
	SiteNames     wire.Names `json:"site_names,omitempty"`
	DistrictNames wire.Names `json:"district_names,omitempty"` // for Device.District, when it is the site's
}

// OwnNames returns the device's own names in other languages, nil if none.
func (d *Device) OwnNames() wire.Names { return d.Localised.own() }

// own is l's device's own names; l may be nil.
func (l *Localised) own() wire.Names {
	if l == nil {
		return nil
	}
	return l.Names
}

// Agent is the hub's view of one agent.
type Agent struct {
	ID       string        `json:"id"`
	Site     string        `json:"site"`
	SiteName string        `json:"site_name,omitempty"`
	District string        `json:"district"`
	Location wire.Location `json:"location"`
	// SiteNames and DistrictNames are the inventory's names of the site
	// and its district in other languages; replaced, never changed in
	// place, so snapshots may share them.
	SiteNames     wire.Names `json:"site_names,omitempty"`
	DistrictNames wire.Names `json:"district_names,omitempty"`
	// PowerFeed and Topology are from the inventory: which mains feed the
	// site hangs off and the switches, ports, uplink and supplies its
	// devices depend on, for root-cause alarms. Topology is replaced, never
	// changed in place, so snapshots may share it.
	PowerFeed string      `json:"power_feed,omitempty"`
	Topology  []wire.Node `json:"topology,omitempty"`
	Status    wire.Status `json:"status"`           // online, offline or unknown
	Reason    string      `json:"reason,omitempty"` // "will", "heartbeat", "shutdown"
	Since     time.Time   `json:"since"`
	LastSeen  time.Time   `json:"last_seen,omitzero"`
	Boot      int64       `json:"boot"`
	Conn      uint32      `json:"conn"`
	Seq       uint64      `json:"seq"`
	Gaps      uint64      `json:"seq_gaps"`              // messages missed, from sequence numbers
	Late      uint64      `json:"seq_late,omitempty"`    // messages that came after newer ones (kept through an outage)
	Resyncs   uint64      `json:"seq_resyncs,omitempty"` // times the hub adopted the agent's seq after refusing it too long
	Interval  float64     `json:"interval_s"`
	Version   string      `json:"version,omitempty"`
	Devices   int         `json:"devices"`
	// Dropped is what the agent says it threw away since Boot (its queue
	// or on-disk spool full, a disk error); DroppedAt is when the hub last
	// saw that count rise.
	Dropped   wire.Dropped `json:"dropped,omitzero"`
	DroppedAt time.Time    `json:"dropped_at,omitzero"`
}

// AgentReasons lists every Agent.Reason: why an agent is offline (its
// Last Will, missed heartbeats, or a clean shutdown; see the package doc).
var AgentReasons = []string{"will", "heartbeat", "shutdown"}

// ChangeKind says what a Change is about.
type ChangeKind string

// Change kinds.
const (
	ChangeDevice  ChangeKind = "device"  // one device changed status
	ChangeAgent   ChangeKind = "agent"   // an agent changed status; Affected lists its devices
	ChangeTrigger ChangeKind = "trigger" // a sensor's alarm contact changed; Device.Triggered says how
	// ChangeLate is a device's status change its agent kept through an
	// outage and sent late: history at Happened, not the present. Device
	// is the device as it was then; what the hub shows now is unchanged.
	ChangeLate ChangeKind = "late"
	// An agent's inventory changed: Affected lists the devices added or
	// whose attributes changed, Removed the ids that are gone.
	ChangeInventory ChangeKind = "inventory"
)

// Change is one fact the hub learned: a device or agent changed status, or a
// sensor triggered. When an agent goes offline that is one Change whose
// Affected lists the devices now unreachable — one failure upstream is one
// fact, not hundreds.
type Change struct {
	Seq      uint64      `json:"seq"` // hub-wide, increasing
	At       time.Time   `json:"at"`
	Kind     ChangeKind  `json:"kind"`
	From     wire.Status `json:"from,omitempty"`
	To       wire.Status `json:"to,omitempty"`
	Reason   string      `json:"reason,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Device   *Device     `json:"device,omitempty"`
	Agent    *Agent      `json:"agent,omitempty"`
	Affected []Device    `json:"affected,omitempty"`
	Removed  []string    `json:"removed,omitempty"` // ChangeInventory: device ids no longer listed
	// Assets are ChangeInventory's changed serials and firmware of known
	// devices: a unit replaced or upgraded.
	Assets []AssetChange `json:"assets,omitempty"`
	// Retired marks the inventory change of an agent that left the fleet
	// (its credential was revoked): Removed lists all its devices and the
	// agent itself is gone.
	Retired bool `json:"retired,omitempty"`
	// Happened is when a ChangeLate's transition took place at the agent.
	Happened time.Time `json:"happened,omitzero"`
}

// Sample is one accepted device health line, enriched with what the metric
// store tags it by.
type Sample struct {
	Device   string
	Agent    string
	Site     string
	District string
	Kind     wire.DeviceKind
	Status   wire.Status
	Reason   wire.Reason
	Metrics  map[string]float64
	At       time.Time // the agent's report time
}

// Summary counts devices by status, overall and per district.
type Summary struct {
	At         time.Time           `json:"at"`
	Devices    int                 `json:"devices"`
	ByStatus   map[wire.Status]int `json:"by_status"`
	OnlineRate float64             `json:"online_rate"` // (online+degraded)/devices: 在线率
	IntactRate float64             `json:"intact_rate"` // online/devices: 完好率
	Agents     map[wire.Status]int `json:"agents"`
	Districts  []DistrictSummary   `json:"districts"`
}

// DistrictSummary is Summary for one district.
type DistrictSummary struct {
	District   string              `json:"district"`
	Devices    int                 `json:"devices"`
	ByStatus   map[wire.Status]int `json:"by_status"`
	OnlineRate float64             `json:"online_rate"`
	IntactRate float64             `json:"intact_rate"`
}
