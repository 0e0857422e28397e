package wire

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Message is one decoded, validated message. Exactly one of the payload
// pointers is set, matching Channel.
type Message struct {
	Agent     string
	Channel   Channel
	State     *State
	Inventory *Inventory
	Health    *Health
	Event     *Event
	Command   *Command
	Live      *Live
	Snapshot  *Snapshot
}

// Header returns the common header of an agent message (nil for commands).
func (m Message) Header() *Header {
	switch {
	case m.State != nil:
		return &m.State.Header
	case m.Inventory != nil:
		return &m.Inventory.Header
	case m.Health != nil:
		return &m.Health.Header
	case m.Event != nil:
		return &m.Event.Header
	case m.Live != nil:
		return &m.Live.Header
	case m.Snapshot != nil:
		return &m.Snapshot.Header
	}
	return nil
}

// Limits on collections inside a payload, so that a valid-looking message
// cannot make the hub allocate without bound.
const (
	MaxDevices   = 2000
	MaxMetrics   = 32
	MaxDetailLen = 512
	MaxNameLen   = 128
	MaxNames     = 8 // languages of one Names
)

// Decode parses and validates a payload received on topic at time now. It
// checks everything that can be checked without hub state: size, topic,
// JSON shape, schema version, agent id in topic versus payload, ids, enums,
// finite numbers and timestamps no further than MaxClockSkew ahead of now.
// Whether device ids are known to the agent and whether Seq is fresh is for
// the hub to judge. Errors are *Error.
func Decode(topic string, payload []byte, now time.Time) (Message, error) {
	if len(payload) > MaxPayload {
		return Message{}, reject(RejectTooLarge, "payload of %d bytes exceeds %d", len(payload), MaxPayload)
	}
	agent, ch, err := ParseTopic(topic)
	if err != nil {
		return Message{}, err
	}
	m := Message{Agent: agent, Channel: ch}
	switch ch {
	case ChannelState:
		m.State = new(State)
		err = decodeInto(payload, m.State)
		if err == nil {
			err = m.State.validate(agent, now)
		}
	case ChannelInventory:
		m.Inventory = new(Inventory)
		err = decodeInto(payload, m.Inventory)
		if err == nil {
			err = m.Inventory.validate(agent, now)
		}
	case ChannelHealth:
		m.Health = new(Health)
		err = decodeHealth(payload, m.Health)
		if err == nil {
			err = m.Health.validate(agent, now)
		}
	case ChannelEvents:
		m.Event = new(Event)
		err = decodeInto(payload, m.Event)
		if err == nil {
			err = m.Event.validate(agent, now)
		}
	case ChannelLive:
		m.Live = new(Live)
		err = decodeInto(payload, m.Live)
		if err == nil {
			err = m.Live.validate(agent, now)
		}
	case ChannelSnapshot:
		m.Snapshot = new(Snapshot)
		err = decodeInto(payload, m.Snapshot)
		if err == nil {
			err = m.Snapshot.validate(agent, now)
		}
	case ChannelCommands:
		m.Command = new(Command)
		err = decodeInto(payload, m.Command)
		if err == nil {
			err = m.Command.validate(now)
		}
	}
	if err != nil {
		return Message{}, err
	}
	return m, nil
}

// decodeInto decodes one JSON object and refuses trailing data. Unknown
// fields are allowed: that is how minor versions add fields.
func decodeInto(payload []byte, v any) error {
	// Check the version first, so a v2 payload is reported as such rather
	// than as whatever shape error its new fields cause.
	var probe struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return reject(RejectMalformed, "%v", err)
	}
	if probe.V == nil {
		return reject(RejectBadVersion, "missing schema version \"v\"")
	}
	if *probe.V != Version {
		return reject(RejectBadVersion, "schema version %d, want %d", *probe.V, Version)
	}
	// Unmarshal, not a Decoder: it refuses trailing data as the probe
	// did, and decodes from payload instead of copying it into a buffer
	// it grows (an inventory of 100 devices is ~15 KB).
	if err := json.Unmarshal(payload, v); err != nil {
		return reject(RejectMalformed, "%v", err)
	}
	return nil
}

func (h *Header) validate(topicAgent string, now time.Time) error {
	if h.Agent != topicAgent {
		return reject(RejectAgentMismatch, "payload agent %q published on the topic of agent %q", clip(h.Agent), topicAgent)
	}
	if h.Boot < minBoot || h.Boot > now.Add(MaxClockSkew).UnixMilli() {
		return reject(RejectInvalid, "boot %d is not a Unix millisecond time between 2000 and now", h.Boot)
	}
	return checkTime("ts", h.TS, now, true)
}

// minBoot is 2000-01-01 in Unix milliseconds.
const minBoot = 946684800000

func checkTime(field string, t, now time.Time, required bool) error {
	if t.IsZero() {
		if required {
			return reject(RejectInvalid, "%s is missing", field)
		}
		return nil
	}
	if t.Year() < 2000 {
		return reject(RejectInvalid, "%s %s is before 2000", field, t.Format(time.RFC3339))
	}
	if t.Sub(now) > MaxClockSkew {
		return reject(RejectFuture, "%s %s is %s ahead of the hub clock", field, t.Format(time.RFC3339), t.Sub(now).Round(time.Second))
	}
	return nil
}

func (s *State) validate(agent string, now time.Time) error {
	if err := s.Header.validate(agent, now); err != nil {
		return err
	}
	switch s.State {
	case AgentOnline:
		if s.Will {
			return reject(RejectInvalid, "a will must say offline")
		}
	case AgentOffline:
	default:
		return reject(RejectInvalid, "state %q is neither online nor offline", clip(s.State))
	}
	if !finite(s.Interval) || s.Interval < 0 || s.Interval > 3600 {
		return reject(RejectInvalid, "interval_s %v out of range 0–3600", s.Interval)
	}
	if s.Site != "" {
		if err := ValidID(s.Site); err != nil {
			return reject(RejectInvalid, "site: %v", err)
		}
	}
	return checkLen("version", s.Version, MaxNameLen)
}

func (inv *Inventory) validate(agent string, now time.Time) error {
	if err := inv.Header.validate(agent, now); err != nil {
		return err
	}
	if err := ValidID(inv.Site.ID); err != nil {
		return reject(RejectInvalid, "site: %v", err)
	}
	if err := checkLen("site name", inv.Site.Name, MaxNameLen); err != nil {
		return err
	}
	if err := checkDistrict(inv.Site.District); err != nil {
		return err
	}
	if err := inv.Site.Names.validate("site names"); err != nil {
		return err
	}
	if err := inv.Site.DistrictNames.validate("site district_names"); err != nil {
		return err
	}
	if err := inv.Site.Location.validate(); err != nil {
		return err
	}
	if inv.Site.PowerFeed != "" {
		if err := ValidID(inv.Site.PowerFeed); err != nil {
			return reject(RejectInvalid, "site power_feed: %v", err)
		}
	}
	if len(inv.Devices) > MaxDevices {
		return reject(RejectInvalid, "%d devices exceed the limit of %d", len(inv.Devices), MaxDevices)
	}
	nodes, err := checkTopology(inv.Topology)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(inv.Devices))
	for i := range inv.Devices {
		d := &inv.Devices[i]
		if err := d.validate(); err != nil {
			return err
		}
		if seen[d.ID] {
			return reject(RejectInvalid, "device %q listed twice", d.ID)
		}
		seen[d.ID] = true
		if d.Parent == "" {
			continue
		}
		if _, ok := nodes[d.Parent]; !ok {
			return reject(RejectInvalid, "device %q: parent %q is not a topology node", d.ID, clip(d.Parent))
		}
	}
	for _, n := range inv.Topology {
		if seen[n.ID] {
			return reject(RejectInvalid, "topology node %q has the id of a device", n.ID)
		}
	}
	return nil
}

// checkTopology checks that nodes form a forest: valid unique ids, known
// kinds, parents that exist and no cycles, so the hub can walk it upwards
// without guarding against loops. It returns each node's parent by id.
func checkTopology(nodes []Node) (map[string]string, error) {
	if len(nodes) > MaxDevices {
		return nil, reject(RejectInvalid, "%d topology nodes exceed the limit of %d", len(nodes), MaxDevices)
	}
	parent := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if err := ValidID(n.ID); err != nil {
			return nil, reject(RejectInvalid, "topology node: %v", err)
		}
		if !slices.Contains(NodeKinds, n.Kind) {
			return nil, reject(RejectInvalid, "topology node %q: unknown kind %q", n.ID, clip(string(n.Kind)))
		}
		if err := checkLen("node name", n.Name, MaxNameLen); err != nil {
			return nil, err
		}
		if _, dup := parent[n.ID]; dup {
			return nil, reject(RejectInvalid, "topology node %q listed twice", n.ID)
		}
		parent[n.ID] = n.Parent
	}
	for _, n := range nodes {
		if _, ok := parent[n.Parent]; n.Parent != "" && !ok {
			return nil, reject(RejectInvalid, "topology node %q: parent %q is not a topology node", n.ID, clip(n.Parent))
		}
	}
	// Walk up from every node; nodes already known to reach a root end the
	// walk early, so the whole check stays linear.
	rooted := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		onPath := map[string]bool{}
		for at := n.ID; at != "" && !rooted[at]; at = parent[at] {
			if onPath[at] {
				return nil, reject(RejectInvalid, "topology node %q is its own ancestor", at)
			}
			onPath[at] = true
		}
		for at := range onPath {
			rooted[at] = true
		}
	}
	return parent, nil
}

func (d *Device) validate() error {
	if err := ValidID(d.ID); err != nil {
		return reject(RejectInvalid, "device: %v", err)
	}
	for _, f := range []struct{ what, v string }{{"vendor", d.Vendor}, {"model", d.Model}, {"firmware", d.Firmware}, {"serial", d.Serial}} {
		if err := checkLen("device "+f.what, f.v, MaxNameLen); err != nil {
			return err
		}
	}
	if d.Installed != "" {
		if _, err := time.Parse(time.DateOnly, d.Installed); err != nil {
			return reject(RejectInvalid, "device %s: installed %q is not a date YYYY-MM-DD", d.ID, clip(d.Installed))
		}
	}
	if err := checkLen("device name", d.Name, MaxNameLen); err != nil {
		return err
	}
	if err := d.Names.validate("device " + d.ID + " names"); err != nil {
		return err
	}
	if err := checkDistrict(d.District); err != nil {
		return err
	}
	if err := d.Location.validate(); err != nil {
		return reject(RejectInvalid, "device %q: %v", d.ID, err)
	}
	if d.Criticality < 1 || d.Criticality > 5 {
		return reject(RejectInvalid, "device %q: criticality %d out of range 1–5", d.ID, d.Criticality)
	}
	switch d.Kind {
	case KindCamera:
		if d.SensorKind != "" {
			return reject(RejectInvalid, "camera %q has a sensor_kind", d.ID)
		}
		if err := validStreams(d.ID, d.Streams); err != nil {
			return err
		}
		if d.Camera != nil {
			c := d.Camera
			if !finite(c.Heading) || !finite(c.FOV) || !finite(c.Range) ||
				c.Heading < 0 || c.Heading >= 360 || c.FOV <= 0 || c.FOV > 360 || c.Range < 0 || c.Range > 10000 {
				return reject(RejectInvalid, "camera %q: heading, fov or range_m out of range", d.ID)
			}
		}
	case KindSensor:
		if !d.SensorKind.Valid() {
			return reject(RejectInvalid, "sensor %q: unknown sensor_kind %q", d.ID, clip(string(d.SensorKind)))
		}
		if d.Camera != nil || d.Streams != nil {
			return reject(RejectInvalid, "sensor %q has camera details", d.ID)
		}
	default:
		return reject(RejectInvalid, "device %q: unknown kind %q", d.ID, clip(string(d.Kind)))
	}
	return nil
}

func (l Location) validate() error {
	if !finite(l.Lat) || !finite(l.Lon) || l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180 {
		return reject(RejectInvalid, "location %v,%v is not a WGS-84 position", l.Lat, l.Lon)
	}
	return nil
}

func (h *Health) validate(agent string, now time.Time) error {
	if err := h.Header.validate(agent, now); err != nil {
		return err
	}
	if !finite(h.Interval) || h.Interval <= 0 || h.Interval > 3600 {
		return reject(RejectInvalid, "interval_s %v out of range (0, 3600]", h.Interval)
	}
	if len(h.Devices) > MaxDevices {
		return reject(RejectInvalid, "%d devices exceed the limit of %d", len(h.Devices), MaxDevices)
	}
	seen := make(map[string]bool, len(h.Devices))
	for i := range h.Devices {
		d := &h.Devices[i]
		if err := d.validate(now); err != nil {
			return err
		}
		if seen[d.ID] {
			return reject(RejectInvalid, "device %q reported twice", d.ID)
		}
		seen[d.ID] = true
	}
	return nil
}

func (d *DeviceHealth) validate(now time.Time) error {
	if err := ValidID(d.ID); err != nil {
		return reject(RejectInvalid, "device: %v", err)
	}
	if err := checkReport(d.Status, d.Reason, d.Detail); err != nil {
		return reject(RejectInvalid, "device %q: %v", d.ID, err)
	}
	if err := checkTime("since", d.Since, now, true); err != nil {
		return err
	}
	if err := checkTime("probed", d.Probed, now, false); err != nil {
		return err
	}
	if len(d.Metrics) > MaxMetrics {
		return reject(RejectInvalid, "device %q: %d metrics exceed the limit of %d", d.ID, len(d.Metrics), MaxMetrics)
	}
	for name, v := range d.Metrics {
		if err := ValidID(name); err != nil {
			return reject(RejectInvalid, "device %q: metric name: %v", d.ID, err)
		}
		if !finite(v) {
			return reject(RejectInvalid, "device %q: metric %s is not a finite number", d.ID, name)
		}
	}
	return nil
}

// checkReport validates what an agent may say about a device's status:
// unreachable is the hub's judgement, never an agent's.
func checkReport(s Status, r Reason, detail string) error {
	if !s.Valid() || s == StatusUnreachable {
		return fmt.Errorf("status %q is not one an agent reports", clip(string(s)))
	}
	if len(r) > MaxNameLen {
		return fmt.Errorf("reason longer than %d", MaxNameLen)
	}
	if len(detail) > MaxDetailLen {
		return fmt.Errorf("detail longer than %d", MaxDetailLen)
	}
	return nil
}

func (e *Event) validate(agent string, now time.Time) error {
	if err := e.Header.validate(agent, now); err != nil {
		return err
	}
	if err := ValidID(e.Device); err != nil {
		return reject(RejectInvalid, "device: %v", err)
	}
	switch e.Type {
	case EventStatus:
		if !e.From.Valid() || e.From == StatusUnreachable {
			return reject(RejectInvalid, "event from status %q is not one an agent reports", clip(string(e.From)))
		}
		if err := checkReport(e.To, e.Reason, e.Detail); err != nil {
			return reject(RejectInvalid, "event: %v", err)
		}
	case EventTriggered, EventRestored:
		if err := checkLen("detail", e.Detail, MaxDetailLen); err != nil {
			return err
		}
	default:
		return reject(RejectInvalid, "unknown event type %q", clip(string(e.Type)))
	}
	return checkTime("at", e.At, now, true)
}

func (c *Command) validate(now time.Time) error {
	if err := ValidID(c.ID); err != nil {
		return reject(RejectInvalid, "command id: %v", err)
	}
	if err := checkTime("ts", c.TS, now, true); err != nil {
		return err
	}
	if c.Type == "" || len(c.Type) > MaxNameLen {
		return reject(RejectInvalid, "command type missing or too long")
	}
	if len(c.Devices) > MaxDevices {
		return reject(RejectInvalid, "too many devices in command")
	}
	for _, d := range c.Devices {
		if err := ValidID(d); err != nil {
			return reject(RejectInvalid, "command device: %v", err)
		}
	}
	switch c.Type {
	case CommandLiveStart, CommandLiveCandidate, CommandLiveStop:
		if err := ValidID(c.Session); err != nil {
			return reject(RejectInvalid, "live session: %v", err)
		}
	}
	if c.Type == CommandSnapshot && len(c.Devices) != 1 {
		return reject(RejectInvalid, "snapshot needs one device")
	}
	if c.Type == CommandLiveStart && (len(c.Devices) != 1 || c.SDP == "") {
		return reject(RejectInvalid, "live_start needs one device and an SDP offer")
	}
	if c.Type == CommandLiveCandidate && c.Candidate == nil {
		return reject(RejectInvalid, "live_candidate needs a candidate")
	}
	return checkSignalling(c.SDP, c.Candidate, c.Reason)
}

func (l *Live) validate(agent string, now time.Time) error {
	if err := l.Header.validate(agent, now); err != nil {
		return err
	}
	if err := ValidID(l.Session); err != nil {
		return reject(RejectInvalid, "live session: %v", err)
	}
	if err := ValidID(l.Device); err != nil {
		return reject(RejectInvalid, "live device: %v", err)
	}
	switch l.Type {
	case LiveAnswer:
		if l.SDP == "" {
			return reject(RejectInvalid, "live answer without SDP")
		}
	case LiveCandidate:
		if l.Candidate == nil {
			return reject(RejectInvalid, "live candidate without a candidate")
		}
	case LiveStopped:
	default:
		return reject(RejectInvalid, "unknown live message type %q", clip(string(l.Type)))
	}
	if l.Stream != "" && (l.Type != LiveAnswer || l.Stream != StreamMain && l.Stream != StreamSub) {
		return reject(RejectInvalid, "live %s with stream %q: only an answer names a stream, main or sub", l.Type, clip(string(l.Stream)))
	}
	if err := checkLen("detail", l.Detail, MaxDetailLen); err != nil {
		return err
	}
	return checkSignalling(l.SDP, l.Candidate, l.Reason)
}

func checkSignalling(sdp string, c *ICECandidate, r Reason) error {
	if len(sdp) > MaxSDPLen {
		return reject(RejectInvalid, "SDP longer than %d bytes", MaxSDPLen)
	}
	if c != nil && len(c.Candidate) > 1024 {
		return reject(RejectInvalid, "ICE candidate longer than 1024 bytes")
	}
	if c != nil && c.SDPMid != nil && len(*c.SDPMid) > MaxNameLen {
		return reject(RejectInvalid, "sdpMid longer than %d bytes", MaxNameLen)
	}
	return checkLen("reason", string(r), MaxNameLen)
}

func checkDistrict(d string) error {
	if d == "" {
		return reject(RejectInvalid, "district is missing")
	}
	return checkLen("district", d, MaxNameLen)
}

// langTag is a BCP 47 language tag as far as names need one: a language
// and optional subtags ("zh", "zh-CN", "zh-Hant-TW", "en").
var langTag = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8}){0,3}$`)

// Check reports why n breaks the contract (see Names), or nil; agents
// check their configuration with it before they send a name.
func (n Names) Check() error {
	if len(n) > MaxNames {
		return fmt.Errorf("%d languages exceed the limit of %d", len(n), MaxNames)
	}
	for tag, name := range n {
		switch {
		case !langTag.MatchString(tag):
			return fmt.Errorf("%q is not a language tag like zh-CN", clip(tag))
		case name == "":
			return fmt.Errorf("the %s name is empty", tag)
		case len(name) > MaxNameLen:
			return fmt.Errorf("the %s name is longer than %d bytes", tag, MaxNameLen)
		case !utf8.ValidString(name):
			return fmt.Errorf("the %s name is not valid UTF-8", tag)
		case strings.IndexFunc(name, unicode.IsControl) >= 0:
			return fmt.Errorf("the %s name holds a control character", tag)
		}
	}
	return nil
}

func (n Names) validate(field string) error {
	if err := n.Check(); err != nil {
		return reject(RejectInvalid, "%s: %v", field, err)
	}
	return nil
}

func checkLen(field, s string, n int) error {
	if len(s) > n {
		return reject(RejectInvalid, "%s longer than %d bytes", field, n)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
