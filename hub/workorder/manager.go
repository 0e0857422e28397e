package workorder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// Defaults.
const (
	DefaultGrace        = 10 * time.Minute
	DefaultHold         = 10 * time.Minute
	DefaultRepeatWindow = 24 * time.Hour
	tickEvery           = time.Second
)

// Options configure the Manager. Zero values take the defaults.
type Options struct {
	// Grace is how long an alarm must stay active before it opens an
	// order (or joins one).
	Grace time.Duration
	// Hold is how long every device of an order must stay healthy before
	// it closes itself.
	Hold time.Duration
	// RepeatWindow: a device of an order closed less than this long ago
	// that fails again reopens the order as a repeat.
	RepeatWindow time.Duration
	// SLA per priority; priorities left out take DefaultSLA's.
	SLA map[Priority]SLA
	// Maintenance: faults inside a window open nothing.
	Maintenance *maintenance.Schedule
	// Crews are the named groups orders are given to.
	Crews []Crew
	// Hours, when set, are the business hours deadlines count; nil: every
	// hour.
	Hours *Hours
	// Replica: in a cluster whose hubs share no database, a hub that does
	// not keep the orders stores what the keeper announces in its own, so
	// that it can carry them on if it becomes the keeper.
	Replica bool
	Now     func() time.Time
}

// Fleet is where the Manager reads devices (hub/fleet's Registry).
type Fleet interface {
	Device(id string) (fleet.Device, bool)
	DevicesWhere(keep func(district, site string) bool) []fleet.Device
}

// Store keeps orders, their trails and their photos durably (DBStore).
type Store interface {
	// Save writes the order as it is now and appends trail to its trail,
	// in one transaction.
	Save(o Order, trail []Transition) error
	// Load returns every order, their trails and the next order number.
	Load() (orders []Order, trails map[string][]Transition, next uint64, err error)
	// PutPhoto keeps a picture under its SHA-256 (hex).
	PutPhoto(sha, typ string, data []byte) error
	// Photo returns a picture PutPhoto kept, or ErrNotFound.
	Photo(sha string) ([]byte, error)
}

// EventKind says what an Event notifies.
type EventKind string

// Event kinds.
const (
	EventOpen   EventKind = "open"   // a new order
	EventUpdate EventKind = "update" // any change but the ones below
	EventClose  EventKind = "close"  // closed (verified or recovered) or cancelled
	EventBreach EventKind = "breach" // a deadline passed
)

// Event is a notification of one transition, with the order after it.
type Event struct {
	Kind       EventKind  `json:"kind"`
	Order      Order      `json:"order"`
	Transition Transition `json:"transition"`
	// Changes is the length of the order's trail after the event, which
	// orders a cluster's announcements of it.
	Changes int `json:"changes"`
}

// Deps are the Manager's collaborators.
type Deps struct {
	Log   *slog.Logger
	Fleet Fleet
	Store Store
	// Prober sends the probe command; nil: no re-probe.
	Prober Prober
	// Coverage, when the hub has the map, prices an order in coverage
	// lost for "fix first"; nil: in devices blind.
	Coverage Coverage
	// OnEvent receives every change after it is stored, in order, called
	// without the Manager's lock.
	OnEvent func(Event)
	// Leader, in a cluster, is how the hubs share the orders (one keeps
	// them, the others ask it); nil: this hub keeps them alone.
	Leader Leader
}

// Manager owns the work orders.
type Manager struct {
	opts Options
	deps Deps
	log  *slog.Logger

	intake  sync.Mutex
	pending map[string]alarm.Alarm // alarm id → the alarm, waiting for the grace to pass

	mu      sync.Mutex
	leading bool // this hub keeps the orders (always, alone)
	orders  map[string]*entry
	bySite  map[string]string // site → its order that is not terminal
	byDev   map[string]string // device → the latest order listing it
	next    uint64
	events  []Event // to deliver once the lock is released
	emit    sync.Mutex
	refused atomic.Uint64 // changes not made: the lease ran out under this hub
	gaps    atomic.Uint64 // announcements found missing

	snaps       snapshots
	closedShots chan string // orders closed verified, for their pictures
}

type entry struct {
	order Order
	trail []Transition
}

// faultSources are the alarms that are maintenance work; a sensor's
// intrusion or a security event is not.
var faultSources = []alarm.Source{
	alarm.SourceDeviceOffline, alarm.SourceAgentOffline, alarm.SourceStreamFailure, alarm.SourceSupervisionLost,
	alarm.SourcePowerLost, alarm.SourceTopology, alarm.SourcePowerFeed,
}

// New validates opts and loads the stored orders.
func New(opts Options, deps Deps) (*Manager, error) {
	var errs []error
	if deps.Log == nil || deps.Fleet == nil || deps.Store == nil {
		errs = append(errs, errors.New("workorder: Deps.Log, Fleet and Store are required"))
	}
	opts.Grace = cmp.Or(opts.Grace, DefaultGrace)
	opts.Hold = cmp.Or(opts.Hold, DefaultHold)
	opts.RepeatWindow = cmp.Or(opts.RepeatWindow, DefaultRepeatWindow)
	if opts.Grace < 0 || opts.Hold < 0 || opts.RepeatWindow < 0 {
		errs = append(errs, errors.New("workorder: grace, hold and repeat window must not be negative"))
	}
	sla := map[Priority]SLA{}
	for p, s := range DefaultSLA {
		sla[p] = s
	}
	for p, s := range opts.SLA {
		if !p.Valid() || s.Respond <= 0 || s.Fix < s.Respond {
			errs = append(errs, fmt.Errorf("workorder: SLA of P%d: respond must be positive and fix at least respond", p))
		}
		sla[p] = s
	}
	opts.SLA = sla
	names := map[string]bool{}
	for i, c := range opts.Crews {
		if c.Name == "" || names[c.Name] || len(c.Members) == 0 {
			errs = append(errs, fmt.Errorf("workorder: crew %d: a unique name and at least one member are required", i))
		}
		names[c.Name] = true
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := &Manager{opts: opts, deps: deps, log: deps.Log.With("component", "workorder"), leading: deps.Leader == nil,
		pending: map[string]alarm.Alarm{}, snaps: snapshots{waiting: map[string]chan wire.Snapshot{}}, closedShots: make(chan string, 64)}
	if err := m.load(); err != nil {
		return nil, err
	}
	return m, nil
}

// load replaces what the Manager holds with what the store has.
func (m *Manager) load() error {
	orders, trails, next, err := m.deps.Store.Load()
	if err != nil {
		return fmt.Errorf("workorder: load: %w", err)
	}
	slices.SortFunc(orders, func(a, b Order) int { return a.OpenedAt.Compare(b.OpenedAt) })
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next = next
	m.orders, m.bySite, m.byDev = make(map[string]*entry, len(orders)), map[string]string{}, map[string]string{}
	for _, o := range orders {
		m.put(o, trails[o.ID])
	}
	return nil
}

// put holds order o with its trail, and indexes it.
func (m *Manager) put(o Order, trail []Transition) *entry {
	e := &entry{order: o, trail: trail}
	m.orders[o.ID] = e
	if !o.State.Terminal() {
		m.bySite[o.Site] = o.ID
	} else if m.bySite[o.Site] == o.ID {
		delete(m.bySite, o.Site)
	}
	for _, d := range o.Devices {
		m.byDev[d.ID] = o.ID
	}
	return e
}

// Run ticks the Manager every second until ctx ends: grace periods,
// verification holds and deadlines.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { m.verifyShots(ctx) })
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Tick(m.opts.Now())
		}
	}
}

// ObserveAlarm takes an alarm event: a fault alarm raised starts its
// grace; one cleared before the grace ends opens nothing. It never waits
// for the Manager's main lock, so the alarm engine may call it from
// anywhere.
func (m *Manager) ObserveAlarm(ev alarm.Event) {
	a := ev.Alarm
	if !slices.Contains(faultSources, a.Source) || !m.leads() {
		return
	}
	m.intake.Lock()
	defer m.intake.Unlock()
	switch {
	case ev.Kind == alarm.EventRaise && a.State.Active():
		m.pending[a.ID] = a
	case !a.State.Active():
		delete(m.pending, a.ID)
	}
}

// Observe takes a fleet change: the health of the devices orders are
// about. In a cluster the hub that leads takes every agent's changes,
// whichever hub owns the agent (the read view has them all).
func (m *Manager) Observe(c fleet.Change) {
	if c.Kind == fleet.ChangeLate {
		return // history the agent kept through an outage: orders follow the present
	}
	m.mu.Lock()
	if !m.writableLocked() {
		m.mu.Unlock()
		return
	}
	for t := range fleet.Transitions(&c) {
		m.health(t.Device, t.At)
	}
	for _, a := range c.Assets {
		m.asset(a)
	}
	m.mu.Unlock()
	m.flush()
}

// asset notes in an open order that one of its devices was replaced or
// upgraded: evidence of the work done.
func (m *Manager) asset(a fleet.AssetChange) {
	oid, ok := m.byDev[a.Device]
	if !ok {
		return
	}
	e := m.orders[oid]
	if o := &e.order; !o.State.Terminal() {
		what := "upgraded"
		if a.Field == "serial" {
			what = "replaced"
		}
		m.record(e, Transition{At: a.At, Who: System, Action: ActAsset, From: o.State, To: o.State,
			Note: fmt.Sprintf("%s %s: %s %s → %s", a.Device, what, a.Field, a.From, a.To)}, EventUpdate)
	}
}

// healthy reports whether a device in status s needs no work.
func healthy(s wire.Status) bool { return s == wire.StatusOnline }

// health records a device's status on the order it belongs to, if any: a
// device of an order closed within the repeat window that fails again
// reopens it.
func (m *Manager) health(d *fleet.Device, at time.Time) {
	e := m.orderOfDevice(d.ID, d.Site)
	if e == nil {
		return
	}
	o := &e.order
	dev := o.device(d.ID)
	ok := healthy(d.Status)
	was := dev.Healthy
	dev.Status, dev.Reason, dev.Since, dev.Healthy = string(d.Status), string(d.Reason), d.Since, ok
	if was == ok {
		m.save(e, EventUpdate) // status or reason changed within healthy/unhealthy
		return
	}
	if !ok && o.State == Closed {
		// Failed again soon after the close: the same work, not new work.
		o.Repeats++
		o.Reopens++
		o.State, o.ClosedAt, o.Resolution, o.FixedAt, o.HealthyAt, o.RespondedAt = Open, time.Time{}, "", time.Time{}, time.Time{}, time.Time{}
		o.DetectedAt, o.Paused, o.Breached = at, 0, nil
		m.setDeadlines(o)
		m.bySite[o.Site] = o.ID
		m.record(e, Transition{At: at, Who: System, Action: ActRepeat, From: Closed, To: Open,
			Note: fmt.Sprintf("%s failed again (%s) within %s of the close", d.ID, cmp.Or(string(d.Reason), string(d.Status)), m.opts.RepeatWindow)}, EventUpdate)
		return
	}
	act, note := ActFault, fmt.Sprintf("%s %s %s", d.ID, d.Status, d.Reason)
	if ok {
		act, note = ActHealthy, d.ID+" online"
	}
	if o.Healthy() {
		o.HealthyAt = at
	} else {
		o.HealthyAt = time.Time{}
	}
	m.record(e, Transition{At: at, Who: System, Action: act, From: o.State, To: o.State, Note: note}, EventUpdate)
}

// orderOfDevice is the order a device's health matters to: the site's
// open order if it lists the device; else, when the site has no open
// order, the order closed within the repeat window that lists it.
func (m *Manager) orderOfDevice(id, site string) *entry {
	if oid, ok := m.bySite[site]; ok {
		if e := m.orders[oid]; e.order.device(id) != nil {
			return e
		}
		return nil // a new fault at the site joins its open order through its alarm
	}
	oid, ok := m.byDev[id]
	if !ok {
		return nil
	}
	e := m.orders[oid]
	if o := &e.order; o.State == Closed && o.Site == site && m.opts.Now().Sub(o.ClosedAt) < m.opts.RepeatWindow {
		return e
	}
	return nil
}

// Tick moves time on: alarms past their grace open or join orders; orders
// healthy for the hold close; deadlines passed are breaches.
func (m *Manager) Tick(now time.Time) {
	if !m.leads() {
		return
	}
	m.intake.Lock()
	var due []alarm.Alarm
	for id, a := range m.pending {
		if now.Sub(a.FirstAt) >= m.opts.Grace && !m.inMaintenance(a, now) {
			due = append(due, a)
			delete(m.pending, id)
		}
	}
	m.intake.Unlock()
	slices.SortFunc(due, func(a, b alarm.Alarm) int { return a.FirstAt.Compare(b.FirstAt) })

	m.mu.Lock()
	if !m.writableLocked() {
		m.mu.Unlock()
		return
	}
	for _, a := range due {
		m.fromAlarm(a, now)
	}
	for _, e := range m.orders {
		o := &e.order
		if o.State.Terminal() {
			continue
		}
		// An order opened by hand is about what telemetry cannot see:
		// only a person's "fixed" lets telemetry close it.
		if !o.HealthyAt.IsZero() && now.Sub(o.HealthyAt) >= m.opts.Hold && o.Healthy() && (o.State == Fixed || !o.Manual) {
			m.close(e, now)
			continue
		}
		if o.State == OnHold {
			continue // the clocks are paused
		}
		if o.RespondedAt.IsZero() && now.After(o.RespondBy) && !slices.Contains(o.Breached, "respond") {
			m.breach(e, "respond", o.RespondBy, now)
		}
		if now.After(o.FixBy) && !slices.Contains(o.Breached, "fix") {
			m.breach(e, "fix", o.FixBy, now)
		}
	}
	m.mu.Unlock()
	m.flush()
}

func (m *Manager) inMaintenance(a alarm.Alarm, now time.Time) bool {
	for _, w := range m.opts.Maintenance.Windows() {
		if _, ok := w.Covers(maintenance.Subject{Device: a.Device, Agent: a.Agent, Site: a.Site, District: a.District}, now); ok {
			return true
		}
	}
	return false
}

// fromAlarm opens an order for a fault alarm past its grace, or adds its
// devices to the site's open order.
func (m *Manager) fromAlarm(a alarm.Alarm, now time.Time) {
	var devs []fleet.Device
	if a.Device != "" {
		if d, ok := m.deps.Fleet.Device(a.Device); ok && !healthy(d.Status) {
			devs = append(devs, d)
		}
	} else if a.Site != "" {
		for _, d := range m.deps.Fleet.DevicesWhere(func(_, site string) bool { return site == a.Site }) {
			if !healthy(d.Status) {
				devs = append(devs, d)
			}
		}
	}
	if len(devs) == 0 {
		return // healthy again by the end of the grace: nothing to do
	}
	title := string(a.Source)
	if a.Type != "" {
		title += ": " + a.Type
	}
	m.openOrJoin(devs, a.ID, title, priorityOf(a.Severity), System, "", a.FirstAt, now, false)
}

func priorityOf(s alarm.Severity) Priority {
	switch s {
	case alarm.Critical:
		return P1
	case alarm.Major:
		return P2
	case alarm.Minor:
		return P3
	}
	return P4
}

// openOrJoin adds devices to their site's open order, or opens one.
// By hand (manual), the devices count as unhealthy whatever telemetry says.
func (m *Manager) openOrJoin(devs []fleet.Device, alarmID, title string, p Priority, who, note string, detected, now time.Time, manual bool) *entry {
	add := func(o *Order, d fleet.Device) {
		dev := newDevice(d, alarmID, now)
		if manual {
			dev.Healthy, dev.Reason = false, "reported by hand"
		}
		o.Devices = append(o.Devices, dev)
		m.byDev[d.ID] = o.ID
	}
	site := devs[0].Site
	if oid, ok := m.bySite[site]; ok {
		e := m.orders[oid]
		o := &e.order
		var joined []string
		for _, d := range devs {
			if dev := o.device(d.ID); dev == nil {
				add(o, d)
				joined = append(joined, d.ID)
			} else if manual {
				dev.Healthy, dev.Reason = false, "reported by hand"
			}
		}
		if alarmID != "" && !slices.Contains(o.Alarms, alarmID) {
			o.Alarms = append(o.Alarms, alarmID)
		}
		if p < o.Priority { // more urgent: the deadlines tighten
			o.Priority = p
			m.setDeadlines(o)
		}
		o.HealthyAt = time.Time{}
		if len(joined) > 0 || note != "" {
			m.record(e, Transition{At: now, Who: who, Action: ActJoin, From: o.State, To: o.State,
				Note: joinNote(joined, title, note)}, EventUpdate)
		}
		return e
	}
	m.next++
	o := Order{ID: "WO-" + strconv.FormatUint(m.next, 10), Site: site, SiteName: devs[0].SiteName, District: devs[0].District,
		Title: title, Priority: p, State: Open, OpenedBy: who, DetectedAt: detected, OpenedAt: now, Manual: manual}
	for _, d := range devs {
		add(&o, d)
		if d.Since.Before(o.DetectedAt) && !d.Since.IsZero() {
			o.DetectedAt = d.Since
		}
	}
	if alarmID != "" {
		o.Alarms = []string{alarmID}
	}
	m.setDeadlines(&o)
	e := &entry{order: o}
	m.orders[o.ID] = e
	m.bySite[site] = o.ID
	m.record(e, Transition{At: now, Who: who, Action: ActOpen, To: Open, Note: joinNote(ids(devs), title, note)}, EventOpen)
	return e
}

func joinNote(devices []string, title, note string) string {
	s := title
	if len(devices) > 0 {
		s += fmt.Sprintf(" (%d: %s)", len(devices), joinMax(devices, 8))
	}
	if note != "" {
		s += "; " + note
	}
	return s
}

func joinMax(list []string, n int) string {
	if len(list) <= n {
		return fmt.Sprint(list)
	}
	return fmt.Sprintf("%v and %d more", list[:n], len(list)-n)
}

func ids(devs []fleet.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out
}

func newDevice(d fleet.Device, alarmID string, now time.Time) Device {
	return Device{ID: d.ID, Name: d.Name, Kind: string(d.Kind), Status: string(d.Status), Reason: string(d.Reason),
		Healthy: healthy(d.Status), Criticality: d.Criticality, Since: d.Since, Alarm: alarmID, JoinedAt: now}
}

// setDeadlines sets the order's deadlines from its priority, detection
// and the time it has spent on hold.
func (m *Manager) setDeadlines(o *Order) {
	s, h := m.opts.SLA[o.Priority], m.opts.Hours
	o.RespondBy = h.add(o.DetectedAt, s.Respond+o.Paused)
	o.FixBy = h.add(o.DetectedAt, s.Fix+o.Paused)
}

// close ends an order whose devices have been healthy for the hold.
func (m *Manager) close(e *entry, now time.Time) {
	o := &e.order
	from := o.State
	endHold(o, now, m.opts.Hours)
	o.Resolution = "recovered"
	note := fmt.Sprintf("every device healthy for %s; no fix was recorded", m.opts.Hold)
	if from == Fixed {
		o.Resolution = "verified"
		note = fmt.Sprintf("verified: every device healthy for %s after the fix", m.opts.Hold)
		if m.deps.Prober != nil {
			select {
			case m.closedShots <- o.ID:
			default:
				m.log.Warn("no snapshot on verification: too many waiting", "order", o.ID)
			}
		}
	}
	o.State, o.ClosedAt = Closed, now
	delete(m.bySite, o.Site)
	m.record(e, Transition{At: now, Who: System, Action: ActVerify, From: from, To: Closed, Note: note}, EventClose)
}

func (m *Manager) breach(e *entry, which string, due, now time.Time) {
	o := &e.order
	o.Breached = append(o.Breached, which)
	m.record(e, Transition{At: now, Who: System, Action: ActBreach, From: o.State, To: o.State,
		Note: fmt.Sprintf("%s deadline %s passed (P%d)", which, due.UTC().Format(time.RFC3339), o.Priority)}, EventBreach)
}

// record appends a transition, stores the order and queues its event.
// Called with the lock held.
func (m *Manager) record(e *entry, tr Transition, kind EventKind) {
	e.order.Updated = tr.At
	e.trail = append(e.trail, tr)
	if err := m.deps.Store.Save(e.order, []Transition{tr}); err != nil {
		// The order stays right in memory; a restart would lose this
		// change, which the log and the health check say.
		m.log.Error("work order not stored", "order", e.order.ID, "action", tr.Action, "err", err)
	}
	m.events = append(m.events, Event{Kind: kind, Order: clone(e.order), Transition: tr, Changes: len(e.trail)})
}

// save stores a change that needs no transition of its own.
func (m *Manager) save(e *entry, kind EventKind) {
	if err := m.deps.Store.Save(e.order, nil); err != nil {
		m.log.Error("work order not stored", "order", e.order.ID, "err", err)
	}
	m.events = append(m.events, Event{Kind: kind, Order: clone(e.order), Changes: len(e.trail)})
}

// flush delivers the queued events in order, without the main lock.
func (m *Manager) flush() {
	m.emit.Lock()
	defer m.emit.Unlock()
	m.mu.Lock()
	evs := m.events
	m.events = nil
	m.mu.Unlock()
	if m.deps.OnEvent == nil {
		return
	}
	for _, ev := range evs {
		m.deps.OnEvent(ev)
	}
}

func clone(o Order) Order {
	o.Devices = slices.Clone(o.Devices)
	o.Alarms = slices.Clone(o.Alarms)
	o.Breached = slices.Clone(o.Breached)
	o.Photos = slices.Clone(o.Photos)
	return o
}

// Act applies a person's action to order id.
func (m *Manager) Act(id string, act Action, req Request) (Order, error) {
	if req.Who == "" {
		return Order{}, fmt.Errorf("%w: nobody acts unidentified", ErrBadRequest)
	}
	return m.do(Command{Op: OpAct, ID: id, Action: act, Who: req.Who, Note: req.Note, Crew: req.Crew, To: req.To})
}

// act applies a person's action; called with the lock held, on the hub
// that keeps the orders.
func (m *Manager) act(c Command) (*entry, error) {
	e, ok := m.orders[c.ID]
	if !ok {
		return nil, ErrNotFound
	}
	if c.Crew != "" && m.crew(c.Crew) == nil {
		return nil, fmt.Errorf("%w: no crew %q", ErrBadRequest, c.Crew)
	}
	now := m.opts.Now()
	before := e.order
	tr, err := apply(&e.order, c.Action, Request{Who: c.Who, Note: c.Note, Crew: c.Crew, To: c.To}, now, m.opts.Hours)
	if err != nil {
		return nil, err
	}
	o := &e.order
	kind := EventUpdate
	switch {
	case o.State == Cancelled:
		delete(m.bySite, o.Site)
		kind = EventClose
	case c.Action == ActFix && o.Manual:
		// What a person reported, telemetry now verifies: the devices as
		// they are.
		for i := range o.Devices {
			if d, ok := m.deps.Fleet.Device(o.Devices[i].ID); ok {
				o.Devices[i].Status, o.Devices[i].Healthy = string(d.Status), healthy(d.Status)
			}
		}
		if o.Healthy() {
			o.HealthyAt = now
		}
	case c.Action == ActReopen:
		if other, busy := m.bySite[o.Site]; busy && other != o.ID {
			e.order = before
			return nil, fmt.Errorf("%w: the site has open order %s; add to it instead", ErrNotAllowed, other)
		}
		m.bySite[o.Site] = o.ID
		m.setDeadlines(o)
		o.Breached = nil
		if o.Healthy() {
			o.HealthyAt = now
		}
	}
	m.record(e, tr, kind)
	return e, nil
}

// OpenByHand opens an order for faults telemetry cannot see (a camera
// knocked askew, a dirty lens) on devices of one site, or adds them to the
// site's open order.
func (m *Manager) OpenByHand(who string, devices []string, title string, p Priority) (Order, error) {
	if who == "" || len(devices) == 0 || title == "" || (p != 0 && !p.Valid()) {
		return Order{}, fmt.Errorf("%w: an order by hand needs who, devices (of one site), a title and a priority 1–4", ErrBadRequest)
	}
	return m.do(Command{Op: OpOpen, Who: who, Devices: devices, Title: title, Priority: cmp.Or(p, P3)})
}

// openByHand opens the order of c; called with the lock held, on the hub
// that keeps the orders.
func (m *Manager) openByHand(c Command) (*entry, error) {
	var devs []fleet.Device
	for _, id := range c.Devices {
		d, ok := m.deps.Fleet.Device(id)
		if !ok {
			return nil, fmt.Errorf("%w: no device %q", ErrBadRequest, id)
		}
		if len(devs) > 0 && d.Site != devs[0].Site {
			return nil, fmt.Errorf("%w: %s is at site %s, not %s: one order per site", ErrBadRequest, id, d.Site, devs[0].Site)
		}
		devs = append(devs, d)
	}
	if len(devs) == 0 || c.Title == "" || !c.Priority.Valid() {
		return nil, fmt.Errorf("%w: an order by hand needs devices (of one site), a title and a priority 1–4", ErrBadRequest)
	}
	now := m.opts.Now()
	return m.openOrJoin(devs, "", c.Title, c.Priority, c.Who, "opened by hand", now, now, true), nil
}

// Order returns one order and its trail.
func (m *Manager) Order(id string) (Order, []Transition, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.orders[id]
	if !ok {
		return Order{}, nil, false
	}
	return clone(e.order), slices.Clone(e.trail), true
}

// Filter selects orders; zero fields match everything. Without States,
// orders closed or cancelled are left out.
type Filter struct {
	States   []State
	District string
	Site     string
	Crew     string
	Assignee string
	Device   string
	Keep     func(district, site string) bool // the caller's scope
	// Mine, an account name, keeps the orders of that person: assigned to
	// them, to one of their crews, or nobody's yet in a district one of
	// their crews covers.
	Mine string
}

func (f *Filter) match(o *Order, crews []Crew) bool {
	if f.Mine != "" && !mine(o, f.Mine, crews) {
		return false
	}
	if len(f.States) == 0 {
		if o.State.Terminal() {
			return false
		}
	} else if !slices.Contains(f.States, o.State) {
		return false
	}
	return (f.District == "" || f.District == o.District) && (f.Site == "" || f.Site == o.Site) &&
		(f.Crew == "" || f.Crew == o.Crew) && (f.Assignee == "" || f.Assignee == o.Assignee) &&
		(f.Device == "" || o.device(f.Device) != nil) && (f.Keep == nil || f.Keep(o.District, o.Site))
}

// Crew is a named group of maintainer accounts covering districts.
type Crew struct {
	Name      string   `json:"name"`
	Members   []string `json:"members"`
	Districts []string `json:"districts"`
}

func (m *Manager) crew(name string) *Crew {
	for i := range m.opts.Crews {
		if m.opts.Crews[i].Name == name {
			return &m.opts.Crews[i]
		}
	}
	return nil
}

// Crews lists the crews.
func (m *Manager) Crews() []Crew { return slices.Clone(m.opts.Crews) }

func mine(o *Order, who string, crews []Crew) bool {
	if o.Assignee == who {
		return true
	}
	for _, c := range crews {
		if !slices.Contains(c.Members, who) {
			continue
		}
		if o.Crew == c.Name || (o.Crew == "" && o.Assignee == "" && slices.Contains(c.Districts, o.District)) {
			return true
		}
	}
	return false
}

// Orders returns the orders f selects, most urgent first: priority, then
// the fix deadline.
func (m *Manager) Orders(f Filter) []Order {
	m.mu.Lock()
	var out []Order
	for _, e := range m.orders {
		if f.match(&e.order, m.opts.Crews) {
			out = append(out, clone(e.order))
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Order) int { return byPriority(&a, &b) })
	return out
}

// byPriority orders by priority, then the fix deadline, then id.
func byPriority(a, b *Order) int {
	return cmp.Or(cmp.Compare(a.Priority, b.Priority), a.FixBy.Compare(b.FixBy), cmp.Compare(a.ID, b.ID))
}
