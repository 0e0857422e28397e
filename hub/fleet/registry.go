package fleet

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
	"unique"

	"github.com/citywatch/citywatch/wire"
)

// Options configure a Registry. Zero values take the defaults noted.
type Options struct {
	// Now is the hub clock (time.Now).
	Now func() time.Time
	// MissedHeartbeats is how many health intervals an online agent may stay
	// silent before Sweep marks it offline (3, as GB/T 28181 does).
	MissedHeartbeats int
	// DefaultInterval is assumed for agents that have not told their health
	// interval yet (10s).
	DefaultInterval time.Duration
	// OnChange receives every Change in Seq order, after the registry's lock
	// is released, possibly on the goroutine of another Apply or Sweep. It
	// must not block; it may read the registry.
	OnChange func(Change)
	// Live reports whether the hub can hear agents at all (its broker link
	// is up). Nil means always. It is called under the registry's lock and
	// must not call the registry.
	Live func() bool
	// Judges reports whether this hub judges an agent's silence (Sweep):
	// in a cluster, only those it owns, whose messages it hears; the others
	// come with their owner's judgement (ApplyRecord). Nil means every
	// agent. It is called under the registry's lock and must not call the
	// registry.
	Judges func(agent string) bool
}

// Registry is the state of every agent and device.
type Registry struct {
	opts Options
	loc  *time.Location // the hub clock's, in which devices' times are shown

	mu         sync.Mutex
	agents     map[string]*agent
	devices    deviceTable // hub-wide: a device id belongs to one agent
	idx        index       // devices by id and by status, kind, district and site (index.go)
	sortedOK   bool        // idx is current; adding or removing a device clears it
	seq        uint64      // last Change.Seq
	total      tally
	districts  map[string]*tally
	places     map[place]*tally // devices by district and site, for summaries of part of the city
	agentsBy   [numStatuses]int
	linkUp     time.Time // when Live last turned true; zero while it is false
	pending    []Change  // emitted, not yet delivered to OnChange
	delivering bool      // a goroutine is delivering pending
	lines      []*device // scratch for Apply, reused to keep health reports allocation-light
	touched    []touched
	trig       []*device
	dropped    wire.Dropped // rises of agents' Dropped, summed (AgentDrops)
}

type agent struct {
	view     Agent
	seqValid bool   // seen holds sequence numbers of view.Boot (a will carries none)
	seen     window // the seqs of view.Boot accepted; view.Seq is its highest
	lock     lockout
	newest   time.Time // the latest TS of a live message accepted in view.Boot
	// offFrom and offTo are the agent's last offline spell, over which
	// late reports are judged.
	offFrom, offTo time.Time
	live           bool // view.Seq came from a live message, so a jump after it is a gap
	// stateSeq and inventorySeq are the newest births and inventories of
	// view.Boot, against which retained copies are judged.
	stateSeq, inventorySeq uint64
	inventory              bool
	devices                []*device // sorted by id
	// names is the Localised of the agent's devices that have no names of
	// their own and are in the site's district, one for all of them;
	// elsewhere the one of those in another district. Nil when the site
	// names neither itself nor its district.
	names, elsewhere *Localised
	// metrics and metricSets are its devices' last health metrics
	// (metrics.go).
	metrics    []float64
	metricSets []unique.Handle[string]
	// faults are the failed live streams of its devices (SetStreamFault),
	// apart because they are few.
	faults map[*device]*reported
}

// device is the registry's record of a device, from which snapshot makes
// the public Device. A city keeps one per device, so it is laid out to fit
// a 112-byte allocation, where embedding a Device (eighteen strings and
// three time.Time) took 512: what devices of an agent share is one
// pointer to their attrs, statuses are bytes, times Unix nanoseconds, the
// reason shown is derived rather than kept, and the metrics and a failed
// stream live with the agent.
type device struct {
	// text is the device's id, name and serial in one string (one
	// allocation where three would round up three times): the id is
	// text[:nameAt], the name text[nameAt:serialAt], the serial the rest.
	// wire.Decode bounds an id to 64 bytes and a name to 128.
	text  string
	attrs *attrs
	// parent is interned apart from attrs: a device may hang off a PoE
	// port of its own.
	parent   unique.Handle[string]
	location wire.Location
	camera   *wire.CameraInfo
	// The agent's last report, kept while the hub shows something else
	// (unreachable) so the device returns to it when the agent does. Nil
	// when its reason and detail are both empty, as they are for every
	// working device.
	rep *reported
	// since, lastSeen and probed are Device's, repSince the since of the
	// agent's last report; see unixNano.
	since, lastSeen, probed, repSince int64
	// metricAt and metricSet place the last health report's metrics in
	// the agent's slab (metrics.go).
	metricAt         uint32
	rank             int32 // position in id order (index.go), once ranked
	metricSet        uint16
	nameAt, serialAt uint8
	// status is Device.Status and reported Device.Reported as indexes of
	// statuses, reported plus one (0 is none).
	status, reported uint8
	flags            flags
}

// flags are a device's yes-or-no facts, in one byte.
type flags uint8

const (
	triggered flags = 1 << iota // Device.Triggered
	ranked                      // rank is set (index.go)
	counted                     // the device is present (index.go)
	inTouched                   // in Registry.touched
	faulted                     // agent.faults holds a failed stream of it
)

func (d *device) is(f flags) bool { return d.flags&f != 0 }

func (d *device) set(f flags, on bool) {
	if on {
		d.flags |= f
	} else {
		d.flags &^= f
	}
}

func (d *device) id() string     { return d.text[:d.nameAt] }
func (d *device) name() string   { return d.text[d.nameAt:d.serialAt] }
func (d *device) serial() string { return d.text[d.serialAt:] }
func (d *device) agent() *agent  { return d.attrs.agent }

// attrs are a device's attributes that many devices of an agent share:
// the agent, the site as the device last took it from an inventory, the
// district, what it is and its names in other languages. Never changed
// once made, so a renamed site is new attrs while the index and tallies
// still hold the device under the old ones.
type attrs struct {
	agent       *agent
	site        siteName
	district    string
	kind        wire.DeviceKind // hardware's, at hand for the index
	hardware    unique.Handle[hardware]
	criticality int32
	names       *Localised
}

// siteName is a site as its devices show it.
type siteName struct{ id, name string }

// hardware is what a device is, the same for a batch of devices installed
// together, so one value serves many.
type hardware struct {
	kind                               wire.DeviceKind
	sensorKind                         wire.SensorKind
	vendor, model, firmware, installed string
	streams                            unique.Handle[streamSet]
}

func hardwareOf(wd *wire.Device) hardware {
	var ss streamSet
	copy(ss[:], wd.Streams) // the decoder allows no more
	return hardware{kind: wd.Kind, sensorKind: wd.SensorKind, vendor: wd.Vendor, model: wd.Model, firmware: wd.Firmware,
		installed: wd.Installed, streams: unique.Make(ss)}
}

// streamSet is a camera's streams (wire.Device.Streams) in a comparable
// form, so that cameras of one model and set-up share one interned copy.
type streamSet [wire.MaxStreams]wire.Stream

// list is the set as the inventory gave it; nil when empty.
func (s streamSet) list() []wire.Stream {
	n := 0
	for n < len(s) && s[n].Codec != "" {
		n++
	}
	if n == 0 {
		return nil
	}
	return slices.Clone(s[:n])
}

func (s streamSet) main() wire.Stream { return mainStream(s[:]) }

// mainStream is the main stream of ss; zero when none is listed.
func mainStream(ss []wire.Stream) wire.Stream {
	for _, s := range ss {
		if s.Role == wire.StreamMain {
			return s
		}
	}
	return wire.Stream{}
}

// reported is a reason and detail for a device's status: an agent's, a
// failed stream's or the hub's. Never changed once made, so several
// fields (and devices) may share one.
type reported struct {
	reason wire.Reason
	detail string
}

// agentOffline is what devices behind an offline agent show.
var agentOffline = &reported{reason: wire.ReasonAgentOffline}

// unixNano is t as a device keeps it: Unix nanoseconds, 0 for the zero
// time. Its times lie between 2000 (wire.Decode) and the hub's now.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// timeOf is the time unixNano kept, in the hub clock's location, as the
// registry's own times are.
func (r *Registry) timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).In(r.loc)
}

func (d *device) statusOf() wire.Status { return statuses[d.status] }

func (d *device) reportedStatus() wire.Status {
	if d.reported == 0 {
		return ""
	}
	return statuses[d.reported-1]
}

// derive is the status the hub shows for d, from its agent's status and
// the agent's last report, and the reason and detail shown with it (nil:
// none). refresh keeps d.status to it; the reason is derived when asked
// rather than kept, which would take another word per device.
func (d *device) derive() (wire.Status, *reported) {
	switch d.agent().view.Status {
	case wire.StatusOnline:
		st := cmp.Or(d.reportedStatus(), wire.StatusUnknown)
		if f := d.fault(); st == wire.StatusOnline && f != nil {
			return wire.StatusDegraded, f
		}
		return st, d.rep
	case wire.StatusOffline:
		return wire.StatusUnreachable, agentOffline
	}
	return wire.StatusUnknown, nil
}

// fault is d's failed live stream, nil when none.
func (d *device) fault() *reported {
	if !d.is(faulted) {
		return nil
	}
	return d.agent().faults[d]
}

func (d *device) reason() wire.Reason {
	if _, shown := d.derive(); shown != nil {
		return shown.reason
	}
	return wire.ReasonNone
}

// report keeps the agent's last word on d.
func (d *device) report(status wire.Status, reason wire.Reason, detail string, since time.Time) {
	d.reported, d.repSince = uint8(statusIndex(status)+1), unixNano(since)
	switch {
	case reason == "" && detail == "":
		d.rep = nil
	case d.rep == nil || *d.rep != reported{reason, detail}:
		d.rep = &reported{reason, detail}
	}
}

// snapshot is the device as callers get it: a Device of its own, with its
// metrics in a map of its own.
func (r *Registry) snapshot(d *device) Device {
	at := d.attrs
	hw := at.hardware.Value()
	v := Device{
		ID: d.id(), Name: d.name(), Kind: hw.kind, SensorKind: hw.sensorKind,
		Agent: at.agent.view.ID, Site: at.site.id, SiteName: at.site.name, District: at.district,
		Location: d.location, Criticality: int(at.criticality),
		Vendor: hw.vendor, Model: hw.model, Firmware: hw.firmware, Serial: d.serial(),
		Installed: hw.installed, Camera: d.camera, Streams: hw.streams.Value().list(), Parent: d.parent.Value(),
		Status: d.statusOf(), Since: r.timeOf(d.since), LastSeen: r.timeOf(d.lastSeen), Probed: r.timeOf(d.probed),
		Reported: d.reportedStatus(), Triggered: d.is(triggered), Localised: at.names,
	}
	if _, shown := d.derive(); shown != nil {
		v.Reason, v.Detail = shown.reason, shown.detail
	}
	v.Metrics = d.metrics()
	return v
}

// New returns an empty registry.
func New(opts Options) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MissedHeartbeats <= 0 {
		opts.MissedHeartbeats = 3
	}
	if opts.DefaultInterval <= 0 {
		opts.DefaultInterval = 10 * time.Second
	}
	return &Registry{
		opts:      opts,
		loc:       opts.Now().Location(),
		agents:    make(map[string]*agent),
		devices:   newDeviceTable(),
		districts: make(map[string]*tally),
		places:    make(map[place]*tally),
	}
}

// Run calls Sweep every second until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Sweep(r.opts.Now())
		}
	}
}

// Sweep marks offline (reason "heartbeat") every online agent that has sent
// nothing for MissedHeartbeats of its intervals — the backstop for a Last
// Will the broker never published.
func (r *Registry) Sweep(now time.Time) {
	r.mu.Lock()
	defer r.unlock()
	if r.opts.Live != nil {
		if !r.opts.Live() {
			r.linkUp = time.Time{}
			return
		}
		if r.linkUp.IsZero() {
			r.linkUp = now
		}
	}
	var expired []*agent
	for _, a := range r.agents {
		if a.view.Status != wire.StatusOnline || r.opts.Judges != nil && !r.opts.Judges(a.view.ID) {
			continue
		}
		last := a.view.LastSeen
		if a.view.Since.After(last) {
			last = a.view.Since // a retained birth sets Since but not LastSeen
		}
		if r.linkUp.After(last) {
			last = r.linkUp
		}
		if now.Sub(last) > time.Duration(r.opts.MissedHeartbeats)*r.interval(a) {
			expired = append(expired, a)
		}
	}
	// Map order is random; Changes should not be.
	slices.SortFunc(expired, func(x, y *agent) int { return cmp.Compare(x.view.ID, y.view.ID) })
	for _, a := range expired {
		r.setAgent(a, wire.StatusOffline, "heartbeat", now)
	}
}

func (r *Registry) interval(a *agent) time.Duration {
	if a.view.Interval > 0 {
		return time.Duration(a.view.Interval * float64(time.Second))
	}
	return r.opts.DefaultInterval
}

// emit records a Change for delivery once the lock is released.
func (r *Registry) emit(c Change, now time.Time) {
	r.seq++
	c.Seq, c.At = r.seq, now
	if r.opts.OnChange != nil {
		r.pending = append(r.pending, c)
	}
}

// unlock releases r.mu and delivers pending Changes. Only one goroutine
// delivers at a time, so OnChange sees Changes in Seq order; it runs
// without the lock, so it may read the registry.
func (r *Registry) unlock() {
	if r.delivering || len(r.pending) == 0 {
		r.mu.Unlock()
		return
	}
	r.delivering = true
	for len(r.pending) > 0 {
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		for _, c := range batch {
			r.opts.OnChange(c)
		}
		r.mu.Lock()
	}
	r.delivering = false
	r.mu.Unlock()
}

// Devices returns every device sorted by id. The Camera pointers are
// shared with the registry (which replaces, never modifies them) and must
// not be modified; the Metrics maps are the caller's.
func (r *Registry) Devices() []Device { return r.DevicesWhere(nil) }

// DevicesWhere is Devices limited to those whose district and site keep
// accepts (nil keeps all): copying only those is what makes a console
// scoped to one district cheap in a city of 100,000 devices.
func (r *Registry) DevicesWhere(keep func(district, site string) bool) []Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index()
	if keep == nil {
		out := make([]Device, len(r.idx.sorted))
		for i, d := range r.idx.sorted {
			out[i] = r.snapshot(d)
		}
		return out
	}
	var out []Device
	for _, d := range r.idx.sorted {
		if keep(d.attrs.district, d.attrs.site.id) {
			out = append(out, r.snapshot(d))
		}
	}
	return out
}

// Device returns one device; see Devices about shared fields.
func (r *Registry) Device(id string) (Device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devices.get(id)
	if d == nil {
		return Device{}, false
	}
	return r.snapshot(d), true
}

// DeviceNames returns the names of the devices ids, in their order, ""
// for one the fleet does not have: what a caller showing many devices by
// id needs, without copying them.
func (r *Registry) DeviceNames(ids []string) []string {
	out := make([]string, len(ids))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, id := range ids {
		if d := r.devices.get(id); d != nil {
			out[i] = d.name()
		}
	}
	return out
}

// Agents returns every agent sorted by id.
func (r *Registry) Agents() []Agent {
	r.mu.Lock()
	out := make([]Agent, 0, len(r.agents))
	for _, a := range r.agents {
		out = append(out, a.view)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(x, y Agent) int { return cmp.Compare(x.ID, y.ID) })
	return out
}

// Agent returns one agent.
func (r *Registry) Agent(id string) (Agent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.agents[id]
	if !ok {
		return Agent{}, false
	}
	return a.view, true
}

// Summary counts devices by status, overall and per district (sorted by
// name), from counts kept as statuses change, so it costs the number of
// districts, not devices.
func (r *Registry) Summary() Summary {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(now, r.total, r.districts, r.agentsBy)
}

// place is a district and a site: where a device is counted.
type place struct{ district, site string }

// SummaryWhere is Summary over the devices and agents whose district and
// site keep accepts: the part of the city an account may see. It costs the
// number of sites and agents, not devices, because devices are counted by
// district and site as their statuses change.
func (r *Registry) SummaryWhere(keep func(district, site string) bool) Summary {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var total tally
	districts := map[string]*tally{}
	for pl, t := range r.places {
		if !keep(pl.district, pl.site) {
			continue
		}
		total.merge(t)
		dt := districts[pl.district]
		if dt == nil {
			dt = new(tally)
			districts[pl.district] = dt
		}
		dt.merge(t)
	}
	var agentsBy [numStatuses]int
	for _, a := range r.agents {
		if keep(a.view.District, a.view.Site) {
			agentsBy[statusIndex(a.view.Status)]++
		}
	}
	return summarize(now, total, districts, agentsBy)
}

func summarize(at time.Time, total tally, districts map[string]*tally, agentsBy [numStatuses]int) Summary {
	s := Summary{
		At:        at,
		Devices:   total.devices,
		ByStatus:  total.byStatus(),
		Agents:    map[wire.Status]int{},
		Districts: make([]DistrictSummary, 0, len(districts)),
	}
	s.OnlineRate, s.IntactRate = total.rates()
	for i, n := range agentsBy {
		if st := statuses[i]; st != wire.StatusDegraded && st != wire.StatusUnreachable {
			s.Agents[st] = n
		}
	}
	for name, t := range districts {
		ds := DistrictSummary{District: name, Devices: t.devices, ByStatus: t.byStatus()}
		ds.OnlineRate, ds.IntactRate = t.rates()
		s.Districts = append(s.Districts, ds)
	}
	slices.SortFunc(s.Districts, func(x, y DistrictSummary) int { return cmp.Compare(x.District, y.District) })
	return s
}

// Retire removes an agent and its devices from the fleet, because its
// credential was revoked. It emits one inventory change that removes every
// device, with Retired set. It reports whether the agent was known.
func (r *Registry) Retire(id string) bool {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.unlock()
	a := r.agents[id]
	if a == nil {
		return false
	}
	removed := make([]string, 0, len(a.devices))
	for _, d := range a.devices {
		r.count(d, -1)
		r.devices.remove(d.id())
		removed = append(removed, d.id())
	}
	r.sortedOK = false
	r.agentsBy[statusIndex(a.view.Status)]--
	delete(r.agents, id)
	v := a.view
	v.Devices = 0
	r.emit(Change{Kind: ChangeInventory, Agent: &v, Removed: removed, Retired: true}, now)
	return true
}

const numStatuses = 5

// statuses is the index order of tally counts.
var statuses = [numStatuses]wire.Status{
	wire.StatusOnline, wire.StatusDegraded, wire.StatusOffline, wire.StatusUnknown, wire.StatusUnreachable,
}

func statusIndex(s wire.Status) int {
	switch s {
	case wire.StatusOnline:
		return 0
	case wire.StatusDegraded:
		return 1
	case wire.StatusOffline:
		return 2
	case wire.StatusUnreachable:
		return 4
	}
	return 3 // unknown; wire.Decode admits nothing else
}

// tally counts devices by status.
type tally struct {
	devices int
	by      [numStatuses]int
}

func (t *tally) merge(o *tally) {
	t.devices += o.devices
	for i, n := range o.by {
		t.by[i] += n
	}
}

func (t *tally) byStatus() map[wire.Status]int {
	m := make(map[wire.Status]int, numStatuses)
	for i, n := range t.by {
		m[statuses[i]] = n
	}
	return m
}

// rates returns 在线率 (online or degraded) and 完好率 (online).
func (t *tally) rates() (online, intact float64) {
	if t.devices == 0 {
		return 0, 0
	}
	n := float64(t.devices)
	return float64(t.by[0]+t.by[1]) / n, float64(t.by[0]) / n
}

// count adds (n = 1) or removes (n = -1) d in the tallies.
func (r *Registry) count(d *device, n int) {
	i := int(d.status)
	district := d.attrs.district
	r.total.devices += n
	r.total.by[i] += n
	add := func(t *tally) bool {
		t.devices += n
		t.by[i] += n
		return t.devices == 0
	}
	t := r.districts[district]
	if t == nil {
		t = new(tally)
		r.districts[district] = t
	}
	if add(t) {
		delete(r.districts, district)
	}
	pl := place{district, d.attrs.site.id}
	pt := r.places[pl]
	if pt == nil {
		pt = new(tally)
		r.places[pl] = pt
	}
	if add(pt) {
		delete(r.places, pl)
	}
	r.indexCount(d, n)
}

func (r *Registry) setStatus(d *device, s wire.Status) {
	from, to := int(d.status), statusIndex(s)
	district := d.attrs.district
	for _, t := range []*tally{&r.total, r.districts[district], r.places[place{district, d.attrs.site.id}]} {
		t.by[from]--
		t.by[to]++
	}
	r.indexStatus(d, from, to)
	d.status = uint8(to)
}
