package fleet

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unique"

	"github.com/citywatch/citywatch/wire"
)

// Apply judges and applies one decoded message; retained says the broker
// delivered it with the MQTT retained flag. It returns one Sample per health
// line. A rejected message (a *wire.Error) changes nothing.
func (r *Registry) Apply(m wire.Message, retained bool) ([]Sample, error) {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.unlock()
	return r.apply(m, retained, now)
}

func reject(reason wire.RejectReason, format string, args ...any) error {
	return &wire.Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

func (r *Registry) apply(m wire.Message, retained bool, now time.Time) ([]Sample, error) {
	h := m.Header()
	// wire.Decode guarantees this; a hand-built message must not reach
	// another agent's state through a mismatched header either.
	if h == nil || h.Agent != m.Agent {
		return nil, reject(wire.RejectInvalid, "not a message of agent %q", m.Agent)
	}

	// Only state and inventory are retained by contract; anything else
	// published with the retain flag is judged like a live message, so a
	// broker replaying it on every hub reconnect cannot roll state back.
	if m.State == nil && m.Inventory == nil {
		retained = false
	}
	// Judge everything before changing anything.
	a := r.agents[m.Agent]
	interval := r.opts.DefaultInterval
	if a != nil && a.view.Interval > 0 {
		interval = time.Duration(a.view.Interval * float64(time.Second))
	}
	v, err := checkSeq(a, h, m.State, m.Inventory != nil, retained, now, interval)
	if errors.Is(err, errStaleRetained) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	switch {
	case m.Inventory != nil:
		err = r.checkInventory(m.Agent, m.Inventory)
	case m.Health != nil:
		err = r.checkLines(a, m.Health.Devices)
	case m.Event != nil:
		err = r.checkDevice(a, m.Event.Device)
	case m.Live != nil && m.Live.Type != wire.LiveStopped:
		// A stopped message may name a camera a reload just removed (or
		// one never there: no_camera); the live relay matches it to a
		// session of this agent, which is what protects other agents.
		err = r.checkDevice(a, m.Live.Device)
	case m.Snapshot != nil:
		err = r.checkDevice(a, m.Snapshot.Device)
	}
	if err != nil {
		return nil, err
	}

	if a == nil {
		a = &agent{view: Agent{ID: m.Agent, Status: wire.StatusUnknown, Since: now}}
		r.agents[m.Agent] = a
		r.agentsBy[statusIndex(wire.StatusUnknown)]++
	}
	a.advance(h, m.State, m.Inventory != nil, retained, v)

	if s := m.State; s != nil {
		r.applyState(a, s, retained, now)
		return nil, nil
	}
	// A live message proves the agent alive whatever we believed; retained
	// ones are the broker's memory, not the agent speaking now.
	if !retained {
		a.view.LastSeen = now
	}
	revive := !retained && a.view.Status != wire.StatusOnline
	if m.Health != nil {
		r.noteDropped(a, m.Health.Dropped, now)
	}
	r.touched, r.trig = r.touched[:0], r.trig[:0]
	var samples []Sample
	switch {
	case m.Inventory != nil:
		r.applyInventory(a, m.Inventory, now)
	case m.Health != nil && v.late:
		// Kept by the agent through an outage: its metrics are history,
		// its statuses are not the present.
		samples = r.samples(a, m.Health)
	case m.Health != nil:
		samples = r.applyHealth(a, m.Health, now)
	case m.Event != nil && v.late:
		r.lateEvent(a, m.Event, now)
	case m.Event != nil:
		r.applyEvent(m.Event, now)
	}
	if revive {
		r.setAgent(a, wire.StatusOnline, "", now)
	}
	detail := ""
	if m.Event != nil {
		detail = m.Event.Detail
	}
	r.emitTouched(revive, detail, now)
	return samples, nil
}

// emitTouched emits a Change for each device the message being applied
// touched whose status or reason it changed, and for each sensor whose
// contact it changed (with detail). After revive, the agent's Change told
// of its devices.
func (r *Registry) emitTouched(revive bool, detail string, now time.Time) {
	for _, t := range r.touched {
		d := t.device
		d.set(inTouched, false)
		if revive {
			continue // setAgent told
		}
		// A new reason under the same status is news for the crew
		// (refused → auth_failed needs a password, not a ladder): it is
		// a Change with From == To.
		if from, changed := r.refresh(d, now); changed || d.reason() != t.reason {
			v := r.snapshot(d)
			r.emit(Change{Kind: ChangeDevice, From: from, To: v.Status, Reason: string(v.Reason), Detail: v.Detail, Device: &v}, now)
		}
	}
	for _, d := range r.trig {
		v := r.snapshot(d)
		c := Change{Kind: ChangeTrigger, Reason: string(wire.EventRestored), Detail: detail, Device: &v}
		if v.Triggered {
			c.Reason = string(wire.EventTriggered)
		}
		r.emit(c, now)
	}
}

func (r *Registry) applyState(a *agent, s *wire.State, retained bool, now time.Time) {
	switch {
	case s.Will:
		r.setAgent(a, wire.StatusOffline, "will", now)
	case s.State == wire.AgentOffline:
		if !retained {
			a.view.LastSeen = now
		}
		r.setAgent(a, wire.StatusOffline, "shutdown", now)
	default:
		if !retained {
			a.view.LastSeen = now
		}
		if s.Interval > 0 {
			a.view.Interval = s.Interval
		}
		a.view.Version = s.Version
		if !a.inventory && s.Site != "" {
			a.view.Site = s.Site // the inventory's site is authoritative
		}
		r.setAgent(a, wire.StatusOnline, "", now)
	}
}

// setAgent moves an agent to a status and its devices with it, as one Change.
func (r *Registry) setAgent(a *agent, to wire.Status, reason string, now time.Time) {
	from := a.view.Status
	if from == to {
		a.view.Reason = reason // e.g. a will after the heartbeat backstop says why more precisely
		return
	}
	r.agentsBy[statusIndex(from)]--
	r.agentsBy[statusIndex(to)]++
	if from == wire.StatusOffline {
		a.offFrom, a.offTo = a.view.Since, now
	}
	a.view.Status, a.view.Reason, a.view.Since = to, reason, now
	var affected []Device
	for _, d := range a.devices {
		if _, changed := r.refresh(d, now); changed {
			affected = append(affected, r.snapshot(d))
		}
	}
	v := a.view
	r.emit(Change{Kind: ChangeAgent, From: from, To: to, Reason: reason, Agent: &v, Affected: affected}, now)
}

// touched is a device a message reports on, with the reason the hub
// showed before.
type touched struct {
	device *device
	reason wire.Reason
}

// touch notes that the message being applied reports on d, before it does.
func (r *Registry) touch(d *device) {
	if !d.is(inTouched) {
		d.set(inTouched, true)
		r.touched = append(r.touched, touched{d, d.reason()})
	}
}

// refresh derives a device's shown status from its agent's status and the
// agent's last report, and reports whether the status changed.
func (r *Registry) refresh(d *device, now time.Time) (from wire.Status, changed bool) {
	st, _ := d.derive()
	from = d.statusOf()
	if st == from {
		return from, false
	}
	prev, at := d.since, now.UnixNano()
	r.setStatus(d, st)
	d.since = at
	if hint := d.repSince; st == d.reportedStatus() && hint < at && hint > prev {
		d.since = hint
	}
	return from, true
}

func (r *Registry) checkInventory(agentID string, inv *wire.Inventory) error {
	for i := range inv.Devices {
		id := inv.Devices[i].ID
		if d := r.devices.get(id); d != nil && d.agent().view.ID != agentID {
			return reject(wire.RejectInvalid, "device %q belongs to agent %q", id, d.agent().view.ID)
		}
	}
	return nil
}

func (r *Registry) applyInventory(a *agent, inv *wire.Inventory, now time.Time) {
	site := &inv.Site
	siteChanged := a.view.Site != site.ID || a.view.SiteName != site.Name ||
		a.view.District != site.District || a.view.Location != site.Location ||
		!maps.Equal(a.view.SiteNames, site.Names) || !maps.Equal(a.view.DistrictNames, site.DistrictNames)
	a.view.Site, a.view.SiteName, a.view.District, a.view.Location = site.ID, site.Name, site.District, site.Location
	if siteChanged {
		a.setNames(site)
	}
	// A new topology or feed changes which alarms explain which, so it is
	// news even when no device changed.
	rewired := a.view.PowerFeed != site.PowerFeed || !slices.Equal(a.view.Topology, inv.Topology)
	a.view.PowerFeed, a.view.Topology = site.PowerFeed, slices.Clone(inv.Topology)

	listed := make(map[string]bool, len(inv.Devices))
	devs := make([]*device, 0, len(inv.Devices))
	var affected []Device
	var assets []AssetChange
	shared := sharing{agent: a}
	for i := range inv.Devices {
		wd := &inv.Devices[i]
		listed[wd.ID] = true
		d := r.devices.get(wd.ID)
		switch {
		case d == nil:
			d = &device{status: uint8(statusIndex(wire.StatusUnknown)), since: now.UnixNano()}
			d.setAttrs(wd, &shared)
			r.devices.put(d)
			r.count(d, 1)
			r.refresh(d, now) // unreachable at once behind an offline agent
			r.sortedOK = false
			affected = appendSnapshot(affected, r.snapshot(d), len(inv.Devices)-i)
		case siteChanged || !d.sameAttrs(wd):
			assets = append(assets, d.assetChanges(wd, now)...)
			r.count(d, -1) // the district may change
			d.setAttrs(wd, &shared)
			r.count(d, 1)
			affected = appendSnapshot(affected, r.snapshot(d), len(inv.Devices)-i)
		}
		devs = append(devs, d)
	}
	var removed []string
	for _, d := range a.devices {
		if !listed[d.id()] {
			delete(a.faults, d)
			r.count(d, -1)
			r.devices.remove(d.id())
			r.sortedOK = false
			removed = append(removed, d.id())
		}
	}
	slices.SortFunc(devs, func(x, y *device) int { return cmp.Compare(x.id(), y.id()) })
	slices.SortFunc(affected, func(x, y Device) int { return cmp.Compare(x.ID, y.ID) })
	a.devices, a.inventory, a.view.Devices = devs, true, len(devs)
	if len(removed) > 0 {
		a.compactMetrics(0) // let go of the values of removed devices
	}
	if len(affected) > 0 || len(removed) > 0 || rewired {
		v := a.view
		r.emit(Change{Kind: ChangeInventory, Agent: &v, Affected: affected, Removed: removed, Assets: assets}, now)
	}
}

// appendSnapshot appends v to affected, making room at once for the rest
// of the inventory's lines (left, v's among them) that may follow: grown
// by appends, a new agent's 100 snapshots of 440 bytes cost 2.5 times
// their size in copies.
func appendSnapshot(affected []Device, v Device, left int) []Device {
	if affected == nil {
		affected = make([]Device, 0, left)
	}
	return append(affected, v)
}

// setAttrs takes a device's attributes from its inventory line of agent
// s.agent. What devices share is shared, and the parent interned:
// decoding gives every line its own copy, which a city of 100,000 devices
// would otherwise keep 100,000 times.
func (d *device) setAttrs(wd *wire.Device, s *sharing) {
	d.text, d.nameAt, d.serialAt = wd.ID+wd.Name+wd.Serial, uint8(len(wd.ID)), uint8(len(wd.ID)+len(wd.Name))
	d.attrs, d.location, d.camera = s.attrsOf(wd), wd.Location, s.camera(wd.Camera)
	d.parent = unique.Make(wd.Parent)
}

// sharing finds, for an inventory of agent, what its devices may share
// with others of the agent: attrs, and a camera's details (a site's
// cameras are often set up alike). Made when first asked from the agent's
// devices, it holds an entry for each value; a value no other device has
// stays the line's own.
type sharing struct {
	agent   *agent
	attrs   map[attrs]*attrs
	cameras map[wire.CameraInfo]*wire.CameraInfo
}

func (s *sharing) attrsOf(wd *wire.Device) *attrs {
	a := s.agent
	if s.attrs == nil {
		s.attrs = make(map[attrs]*attrs)
		for _, d := range a.devices {
			s.attrs[*d.attrs] = d.attrs
		}
	}
	v := attrs{agent: a, site: siteName{a.view.Site, a.view.SiteName}, district: wd.District, kind: wd.Kind,
		hardware: unique.Make(hardwareOf(wd)), criticality: int32(wd.Criticality), names: a.localised(wd.Names, wd.District == a.view.District)}
	at := s.attrs[v]
	if at == nil {
		at = &v
		s.attrs[v] = at
	}
	return at
}

// camera returns c or an equal CameraInfo a device of the agent has.
func (s *sharing) camera(c *wire.CameraInfo) *wire.CameraInfo {
	if c == nil {
		return nil
	}
	if s.cameras == nil {
		s.cameras = make(map[wire.CameraInfo]*wire.CameraInfo)
		for _, d := range s.agent.devices {
			if d.camera != nil {
				s.cameras[*d.camera] = d.camera
			}
		}
	}
	if shared := s.cameras[*c]; shared != nil {
		return shared
	}
	s.cameras[*c] = c
	return c
}

// setNames takes the site's names in other languages, shared by the agent
// view and every device of the site.
func (a *agent) setNames(site *wire.Site) {
	a.view.SiteNames, a.view.DistrictNames = ownNames(site.Names), ownNames(site.DistrictNames)
	a.names, a.elsewhere = nil, nil
	if a.view.SiteNames != nil || a.view.DistrictNames != nil {
		a.names = &Localised{SiteNames: a.view.SiteNames, DistrictNames: a.view.DistrictNames}
	}
	if a.view.SiteNames != nil {
		a.elsewhere = &Localised{SiteNames: a.view.SiteNames}
	}
}

// localised is the Localised of a device of a's site with names own, in
// the site's district or not (its district's names are the site's only
// when it is the site's district).
func (a *agent) localised(own wire.Names, siteDistrict bool) *Localised {
	own = ownNames(own)
	switch {
	case own == nil && siteDistrict:
		return a.names
	case own == nil:
		return a.elsewhere
	case siteDistrict:
		return &Localised{Names: own, SiteNames: a.view.SiteNames, DistrictNames: a.view.DistrictNames}
	}
	return &Localised{Names: own, SiteNames: a.view.SiteNames}
}

// ownNames is a copy of names the registry may keep (the message's maps
// are its caller's), nil when there are none.
func ownNames(names wire.Names) wire.Names {
	if len(names) == 0 {
		return nil
	}
	return maps.Clone(names)
}

// AssetChange is a known device's serial or firmware changing (the unit
// was replaced or upgraded), or its main stream's codec or resolution (it
// was reconfigured, or replaced by another model).
type AssetChange struct {
	Device string    `json:"device"`
	Field  string    `json:"field"` // serial, firmware, main_stream
	From   string    `json:"from"`
	To     string    `json:"to"`
	At     time.Time `json:"at"`
}

// assetChanges lists what the inventory changes of a device's identity;
// a value given for the first time is no change, nor is a main stream's
// profile alone, or a size where one of the two is unknown (an SDP
// without parameter sets).
func (d *device) assetChanges(wd *wire.Device, now time.Time) []AssetChange {
	var out []AssetChange
	hw := d.attrs.hardware.Value()
	for _, f := range []struct{ field, from, to string }{{"serial", d.serial(), wd.Serial}, {"firmware", hw.firmware, wd.Firmware}} {
		if f.from != "" && f.from != f.to {
			out = append(out, AssetChange{Device: d.id(), Field: f.field, From: f.from, To: f.to, At: now})
		}
	}
	was, is := hw.streams.Value().main(), mainStream(wd.Streams)
	sized := was.Width > 0 && is.Width > 0
	if was.Codec != "" && is.Codec != "" && (was.Codec != is.Codec || sized && (was.Width != is.Width || was.Height != is.Height)) {
		out = append(out, AssetChange{Device: d.id(), Field: "main_stream", From: was.String(), To: is.String(), At: now})
	}
	return out
}

func (d *device) sameAttrs(wd *wire.Device) bool {
	sameCam := d.camera == nil && wd.Camera == nil ||
		d.camera != nil && wd.Camera != nil && *d.camera == *wd.Camera
	at := d.attrs
	return sameCam && d.name() == wd.Name && at.district == wd.District && d.location == wd.Location &&
		int(at.criticality) == wd.Criticality && d.parent.Value() == wd.Parent && d.serial() == wd.Serial &&
		at.hardware.Value() == hardwareOf(wd) &&
		maps.Equal(at.names.own(), wd.Names)
}

// checkLines resolves every health line to a device of agent a into
// r.lines, or rejects the message.
func (r *Registry) checkLines(a *agent, lines []wire.DeviceHealth) error {
	if a == nil || !a.inventory {
		return reject(wire.RejectUnknownDevice, "no inventory from this agent yet")
	}
	r.lines = r.lines[:0]
	for i := range lines {
		d := r.devices.get(lines[i].ID)
		if d == nil || d.agent() != a {
			return reject(wire.RejectUnknownDevice, "device %q is not in the agent's inventory", lines[i].ID)
		}
		r.lines = append(r.lines, d)
	}
	return nil
}

func (r *Registry) applyHealth(a *agent, h *wire.Health, now time.Time) []Sample {
	a.view.Interval = h.Interval
	a.takeMetrics(h.Devices, r.lines)
	for i := range h.Devices {
		l := &h.Devices[i]
		d := r.lines[i]
		r.touch(d)
		d.report(l.Status, l.Reason, l.Detail, l.Since)
		d.lastSeen = now.UnixNano()
		if !l.Probed.IsZero() {
			d.probed = l.Probed.UnixNano()
		}
		if d.is(triggered) != l.Triggered {
			d.set(triggered, l.Triggered)
			r.trig = append(r.trig, d)
		}
	}
	return r.samples(a, h)
}

// noteDropped takes what an agent says it dropped since its boot. The
// counts only grow within a boot, so a late report's smaller ones change
// nothing; a rise is added to the hub-wide total and dated.
func (r *Registry) noteDropped(a *agent, d *wire.Dropped, now time.Time) {
	if d == nil {
		return
	}
	had := &a.view.Dropped
	health, events := d.Health-min(d.Health, had.Health), d.Events-min(d.Events, had.Events)
	if health == 0 && events == 0 {
		return
	}
	had.Health += health
	had.Events += events
	r.dropped.Health += health
	r.dropped.Events += events
	a.view.DroppedAt = now
}

// AgentDrops is the sum of what agents said they dropped, as rises seen
// by this hub since it started: a counter.
func (r *Registry) AgentDrops() wire.Dropped {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// samples are a health report's lines for the metric store, resolved to
// devices by checkLines.
func (r *Registry) samples(a *agent, h *wire.Health) []Sample {
	samples := make([]Sample, len(h.Devices))
	for i := range h.Devices {
		l, d := &h.Devices[i], r.lines[i]
		samples[i] = Sample{
			Device: d.id(), Agent: a.view.ID, Site: d.attrs.site.id, District: d.attrs.district,
			Kind: d.attrs.kind, Status: l.Status, Reason: l.Reason, Metrics: l.Metrics, At: h.TS,
		}
	}
	return samples
}

// lateEvent records a status change the agent kept through an outage and
// sent after newer messages: history at the time it happened, not the
// present. A device the agent saw working while its own link was down was
// still unreachable from here, so a recovery inside the agent's last
// offline spell is recorded as unreachable: the outage was the link's.
func (r *Registry) lateEvent(a *agent, e *wire.Event, now time.Time) {
	if e.Type != wire.EventStatus {
		return
	}
	d := r.devices.get(e.Device)
	to, reason := e.To, string(e.Reason)
	if (to == wire.StatusOnline || to == wire.StatusDegraded) && !e.At.Before(a.offFrom) && e.At.Before(a.offTo) {
		to, reason = wire.StatusUnreachable, string(wire.ReasonAgentOffline)
	}
	v := r.snapshot(d)
	v.Status, v.Reason, v.Detail, v.Since = to, wire.Reason(reason), e.Detail, e.At
	r.emit(Change{Kind: ChangeLate, From: e.From, To: to, Reason: reason, Detail: e.Detail, Device: &v, Happened: e.At}, now)
}

// checkDevice accepts only devices of a's own inventory.
func (r *Registry) checkDevice(a *agent, id string) error {
	if a == nil || !a.inventory {
		return reject(wire.RejectUnknownDevice, "no inventory from this agent yet")
	}
	if d := r.devices.get(id); d == nil || d.agent() != a {
		return reject(wire.RejectUnknownDevice, "device %q is not in the agent's inventory", id)
	}
	return nil
}

func (r *Registry) applyEvent(e *wire.Event, now time.Time) {
	d := r.devices.get(e.Device)
	d.lastSeen = now.UnixNano()
	switch e.Type {
	case wire.EventStatus:
		r.touch(d)
		d.report(e.To, e.Reason, e.Detail, e.At)
	case wire.EventTriggered, wire.EventRestored:
		d.set(triggered, e.Type == wire.EventTriggered)
		r.trig = append(r.trig, d)
	}
}
