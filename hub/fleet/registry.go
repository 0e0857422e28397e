package fleet

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

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
}

// Registry is the state of every agent and device.
type Registry struct {
	opts Options

	mu         sync.Mutex
	agents     map[string]*agent
	devices    map[string]*device // hub-wide: a device id belongs to one agent
	idx        index              // devices by id and by status, kind, district and site (index.go)
	sortedOK   bool               // idx is current; adding or removing a device clears it
	seq        uint64             // last Change.Seq
	total      tally
	districts  map[string]*tally
	places     map[place]*tally // devices by district and site, for summaries of part of the city
	agentsBy   [numStatuses]int
	linkUp     time.Time // when Live last turned true; zero while it is false
	pending    []Change  // emitted, not yet delivered to OnChange
	delivering bool      // a goroutine is delivering pending
	lines      []*device // scratch for Apply, reused to keep health reports allocation-light
	touched    []*device
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
	// their own and are in the site's district, one for all of them; nil
	// when the site names neither itself nor its district.
	names *Localised
}

type device struct {
	view  Device
	agent *agent
	// The agent's last report, kept while the hub shows something else
	// (unreachable) so the device returns to it when the agent does. Its
	// reason and detail are nil when both are empty, as they are for
	// every working device: inline they would push the device into a
	// larger allocation size.
	rep      *reported
	repSince time.Time
	// fault is a failed live stream (see SetStreamFault); nil when none.
	fault *streamFault
	// Index bookkeeping (index.go): the device's position in id order,
	// whether it has one, whether it is counted (present), and the
	// lower-cased text a search looks in.
	rank            int32
	ranked, counted bool
	hay             string
	// metrics are the last health report's, in place of view.Metrics
	// (always nil here): a map of a few metrics costs some 250 bytes, this
	// slice 24 a metric and is reused report after report — at city scale
	// the difference is a good part of a device's memory.
	metrics []metric
}

// reported is an agent's reason and detail for a device's status.
type reported struct {
	reason wire.Reason
	detail string
}

// report keeps the agent's last word on d.
func (d *device) report(status wire.Status, reason wire.Reason, detail string, since time.Time) {
	d.view.Reported, d.repSince = status, since
	switch {
	case reason == "" && detail == "":
		d.rep = nil
	case d.rep == nil || *d.rep != reported{reason, detail}:
		d.rep = &reported{reason, detail}
	}
}

// metric is one value of a device's last health report.
type metric struct {
	name  string
	value float64
}

// snapshot is the device's view as callers get it: a copy, with its
// metrics in a map of its own.
func (d *device) snapshot() Device {
	v := d.view
	if d.metrics != nil {
		v.Metrics = make(map[string]float64, len(d.metrics))
		for _, m := range d.metrics {
			v.Metrics[m.name] = m.value
		}
	}
	return v
}

// setMetrics keeps a health line's metrics; nil stays nil and an empty
// map stays empty, as the snapshot then shows them.
func (d *device) setMetrics(m map[string]float64) {
	if m == nil {
		d.metrics = nil
		return
	}
	if d.metrics == nil {
		d.metrics = make([]metric, 0, len(m))
	}
	d.metrics = d.metrics[:0]
	for name, v := range m {
		d.metrics = append(d.metrics, metric{name, v})
	}
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
		agents:    make(map[string]*agent),
		devices:   make(map[string]*device),
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
		if a.view.Status != wire.StatusOnline {
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
			out[i] = d.snapshot()
		}
		return out
	}
	var out []Device
	for _, d := range r.idx.sorted {
		if keep(d.view.District, d.view.Site) {
			out = append(out, d.snapshot())
		}
	}
	return out
}

// Device returns one device; see Devices about shared fields.
func (r *Registry) Device(id string) (Device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[id]
	if !ok {
		return Device{}, false
	}
	return d.snapshot(), true
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
		delete(r.devices, d.view.ID)
		removed = append(removed, d.view.ID)
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
	i := statusIndex(d.view.Status)
	r.total.devices += n
	r.total.by[i] += n
	add := func(t *tally) bool {
		t.devices += n
		t.by[i] += n
		return t.devices == 0
	}
	t := r.districts[d.view.District]
	if t == nil {
		t = new(tally)
		r.districts[d.view.District] = t
	}
	if add(t) {
		delete(r.districts, d.view.District)
	}
	pl := place{d.view.District, d.view.Site}
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
	from, to := statusIndex(d.view.Status), statusIndex(s)
	for _, t := range []*tally{&r.total, r.districts[d.view.District], r.places[place{d.view.District, d.view.Site}]} {
		t.by[from]--
		t.by[to]++
	}
	r.indexStatus(d, from, to)
	d.view.Status = s
}
