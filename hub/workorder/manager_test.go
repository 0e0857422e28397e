package workorder

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

var t0 = time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)

// fakeFleet is a fixed set of devices whose status tests change.
type fakeFleet struct {
	mu      sync.Mutex
	devices map[string]fleet.Device
}

func (f *fakeFleet) Device(id string) (fleet.Device, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	return d, ok
}

func (f *fakeFleet) DevicesWhere(keep func(district, site string) bool) []fleet.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fleet.Device
	for _, d := range f.devices {
		if keep == nil || keep(d.District, d.Site) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b fleet.Device) int { return compareStrings(a.ID, b.ID) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rig is a Manager over a fake fleet and a real SQLite store, with a
// clock the test moves.
type rig struct {
	t      *testing.T
	now    time.Time
	fleet  *fakeFleet
	path   string
	m      *Manager
	events []Event
	opts   Options
	// coverage prices orders when set before open.
	coverage Coverage
	// leader, set before open, puts the Manager in a cluster; announce
	// hears its events (as hub/workview would send them).
	leader   Leader
	announce func(Event)
}

func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	r := &rig{t: t, now: t0, fleet: &fakeFleet{devices: map[string]fleet.Device{}}, path: filepath.Join(t.TempDir(), "workorders.db"), opts: opts}
	for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
		r.fleet.devices[id] = fleet.Device{ID: id, Kind: wire.KindCamera, Site: "S1", SiteName: "Gate", District: "North", Agent: "a1", Status: wire.StatusOnline}
	}
	r.fleet.devices["cam-9"] = fleet.Device{ID: "cam-9", Kind: wire.KindCamera, Site: "S2", District: "South", Agent: "a2", Status: wire.StatusOnline}
	r.open()
	return r
}

// open (re)starts the Manager on the rig's database, as a hub restart does.
func (r *rig) open() {
	r.t.Helper()
	st, err := OpenStore(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { st.Close() })
	opts := r.opts
	opts.Now = func() time.Time { return r.now }
	if opts.Crews == nil {
		opts.Crews = []Crew{{Name: "north", Members: []string{"wang", "zhao"}, Districts: []string{"North"}}}
	}
	r.m, err = New(opts, Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Fleet: r.fleet, Store: st, Coverage: r.coverage,
		Leader: r.leader, OnEvent: func(ev Event) {
			r.events = append(r.events, ev)
			if r.announce != nil {
				r.announce(ev)
			}
		}})
	if err != nil {
		r.t.Fatal(err)
	}
}

// at moves the clock to t0+d and ticks.
func (r *rig) at(d time.Duration) {
	r.now = t0.Add(d)
	r.m.Tick(r.now)
}

// status sets a device's status as telemetry reports it.
func (r *rig) status(id string, s wire.Status, reason wire.Reason) {
	r.fleet.mu.Lock()
	d := r.fleet.devices[id]
	from := d.Status
	d.Status, d.Reason, d.Since = s, reason, r.now
	r.fleet.devices[id] = d
	r.fleet.mu.Unlock()
	r.m.Observe(fleet.Change{At: r.now, Kind: fleet.ChangeDevice, From: from, To: s, Device: &d})
}

var nextAlarm = 0

// raise is the alarm engine raising a fault alarm now.
func (r *rig) raise(src alarm.Source, device, site string, sev alarm.Severity) alarm.Alarm {
	nextAlarm++
	a := alarm.Alarm{ID: "A" + string(rune('0'+nextAlarm%10)) + device + site, Source: src, Device: device, Site: site, District: "North",
		Severity: sev, State: alarm.ActiveUnack, FirstAt: r.now, LastAt: r.now}
	r.m.ObserveAlarm(alarm.Event{Kind: alarm.EventRaise, Alarm: a})
	return a
}

// cameraOrder takes camera id of site S1 offline (refused) with an alarm
// of sev, lets the grace pass and returns the order it opened.
func (r *rig) cameraOrder(id string, sev alarm.Severity) string {
	r.t.Helper()
	r.status(id, wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, id, "S1", sev)
	r.at(r.now.Sub(t0) + 10*time.Minute)
	return r.open1().ID
}

func (r *rig) clear(a alarm.Alarm) {
	a.State = alarm.ClearedUnack
	r.m.ObserveAlarm(alarm.Event{Kind: alarm.EventClear, Alarm: a})
}

func (r *rig) open1() Order {
	r.t.Helper()
	os := r.m.Orders(Filter{})
	if len(os) != 1 {
		r.t.Fatalf("%d open orders, want 1: %+v", len(os), os)
	}
	return os[0]
}

func (r *rig) act(id string, act Action, req Request) Order {
	r.t.Helper()
	o, err := r.m.Act(id, act, req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", act, id, err)
	}
	return o
}

// A camera offline opens one order after the grace, not before; a fault
// cleared within the grace opens nothing.
func TestGraceOpensOneOrder(t *testing.T) {
	r := newRig(t, Options{})
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Major)
	r.status("cam-9", wire.StatusOffline, wire.ReasonTimeout)
	short := r.raise(alarm.SourceDeviceOffline, "cam-9", "S2", alarm.Major)
	r.at(9 * time.Minute)
	r.clear(short)
	if n := len(r.m.Orders(Filter{})); n != 0 {
		t.Fatalf("%d orders within the grace", n)
	}
	r.at(10 * time.Minute)
	o := r.open1()
	if o.Site != "S1" || o.Priority != P2 || len(o.Devices) != 1 || o.Devices[0].Reason != "refused" || o.Devices[0].Healthy ||
		!o.DetectedAt.Equal(t0) || !o.RespondBy.Equal(t0.Add(time.Hour)) || !o.FixBy.Equal(t0.Add(8*time.Hour)) || o.OpenedBy != System {
		t.Errorf("order %+v", o)
	}
	if len(r.events) != 1 || r.events[0].Kind != EventOpen {
		t.Errorf("events %+v", r.events)
	}
}

// A switch down behind which three cameras went dark is one order listing
// the three; a fault at the same site later joins it.
func TestOneOrderPerSite(t *testing.T) {
	r := newRig(t, Options{})
	for _, id := range []string{"cam-1", "cam-2"} {
		r.status(id, wire.StatusOffline, wire.ReasonUnreachable)
		r.raise(alarm.SourceDeviceOffline, id, "S1", alarm.Minor)
	}
	r.raise(alarm.SourceTopology, "", "S1", alarm.Critical)
	r.at(10 * time.Minute)
	o := r.open1()
	if len(o.Devices) != 2 || o.Priority != P1 || len(o.Alarms) != 3 {
		t.Fatalf("order %+v", o)
	}
	r.status("cam-3", wire.StatusOffline, wire.ReasonAuthFailed)
	r.raise(alarm.SourceDeviceOffline, "cam-3", "S1", alarm.Minor)
	r.at(21 * time.Minute)
	o = r.open1()
	if len(o.Devices) != 3 || o.Devices[2].ID != "cam-3" || o.Priority != P1 {
		t.Errorf("after the third camera: %+v", o)
	}
}

// The loop: fixed while the camera is still down stays pending; the camera
// recovers and the order closes itself after the hold, not before; it
// fails again within the repeat window and the order reopens as a repeat.
func TestVerifiedCloseAndRepeat(t *testing.T) {
	r := newRig(t, Options{})
	id := r.cameraOrder("cam-1", alarm.Major)
	r.act(id, ActStart, Request{Who: "wang"})
	r.at(30 * time.Minute)
	r.act(id, ActFix, Request{Who: "wang", Note: "replaced the PoE injector"})
	r.at(45 * time.Minute)
	if o := r.open1(); o.State != Fixed {
		t.Fatalf("fixed while still down: %s", o.State)
	}
	r.status("cam-1", wire.StatusOnline, "")
	r.at(54 * time.Minute)
	if o := r.open1(); o.State != Fixed || !o.Healthy() {
		t.Fatalf("healthy 9 of 10 minutes: %+v", o)
	}
	r.at(55 * time.Minute)
	o, trail, _ := r.m.Order(id)
	if o.State != Closed || o.Resolution != "verified" || !o.ClosedAt.Equal(t0.Add(55*time.Minute)) || len(r.m.Orders(Filter{})) != 0 {
		t.Fatalf("after the hold: %+v", o)
	}
	if last := r.events[len(r.events)-1]; last.Kind != EventClose || last.Order.State != Closed {
		t.Errorf("last event %+v", last)
	}
	acts := []Action{}
	for _, tr := range trail {
		acts = append(acts, tr.Action)
	}
	if !slices.Equal(acts, []Action{ActOpen, ActStart, ActFix, ActHealthy, ActVerify}) {
		t.Errorf("trail %v", acts)
	}

	r.at(3 * time.Hour)
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	o = r.open1()
	if o.ID != id || o.State != Open || o.Repeats != 1 || o.Reopens != 1 || !o.RespondedAt.IsZero() || !o.DetectedAt.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("a failure 2 h after the close: %+v", o)
	}
	// Its alarm past the grace joins the reopened order, not a new one.
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Major)
	r.at(3*time.Hour + 10*time.Minute)
	if o := r.open1(); o.ID != id {
		t.Errorf("a second order %s", o.ID)
	}
}

// A fault beyond the repeat window is new work; a device that recovers
// by itself closes its order as recovered.
func TestRecoveredAndLateFailure(t *testing.T) {
	r := newRig(t, Options{Hold: time.Minute, RepeatWindow: time.Hour})
	r.status("cam-2", wire.StatusOffline, wire.ReasonTimeout)
	r.raise(alarm.SourceDeviceOffline, "cam-2", "S1", alarm.Warning)
	r.at(10 * time.Minute)
	id := r.open1().ID
	r.status("cam-2", wire.StatusOnline, "")
	r.at(11 * time.Minute)
	if o, _, _ := r.m.Order(id); o.State != Closed || o.Resolution != "recovered" {
		t.Fatalf("recovered: %+v", o)
	}
	r.at(2 * time.Hour)
	r.status("cam-2", wire.StatusOffline, wire.ReasonTimeout)
	r.raise(alarm.SourceDeviceOffline, "cam-2", "S1", alarm.Warning)
	r.at(2*time.Hour + 10*time.Minute)
	if o := r.open1(); o.ID == id || o.Repeats != 0 {
		t.Errorf("a failure after the repeat window: %+v", o)
	}
}

// Deadlines: the response breach comes once, at its time; a hold with a
// reason pauses both clocks; the fix breach comes at the moved deadline.
func TestSLABreachAndPause(t *testing.T) {
	r := newRig(t, Options{SLA: map[Priority]SLA{P1: {Respond: 30 * time.Minute, Fix: 2 * time.Hour}}})
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Critical)
	r.at(10 * time.Minute)
	id := r.open1().ID
	r.at(30 * time.Minute)
	if o := r.open1(); len(o.Breached) != 0 {
		t.Fatalf("breached at the deadline itself: %v", o.Breached)
	}
	r.at(30*time.Minute + time.Second)
	r.at(40 * time.Minute)
	breaches := 0
	for _, ev := range r.events {
		if ev.Kind == EventBreach {
			breaches++
		}
	}
	if o := r.open1(); !slices.Equal(o.Breached, []string{"respond"}) || breaches != 1 {
		t.Fatalf("response breach: %v, %d events", o.Breached, breaches)
	}
	r.act(id, ActStart, Request{Who: "wang"})
	r.act(id, ActHold, Request{Who: "wang", Note: "waiting for the landlord's key"})
	r.at(5 * time.Hour) // on hold past the fix deadline: no breach
	if o := r.open1(); len(o.Breached) != 1 {
		t.Fatalf("a breach on hold: %v", o.Breached)
	}
	r.act(id, ActResume, Request{Who: "wang"})
	o := r.open1()
	if want := t0.Add(2*time.Hour + 4*time.Hour + 20*time.Minute); !o.FixBy.Equal(want) || o.Paused != 4*time.Hour+20*time.Minute {
		t.Fatalf("fix deadline %v after a 4 h 20 min hold, want %v", o.FixBy, want)
	}
	r.at(6*time.Hour + 20*time.Minute)
	if o := r.open1(); len(o.Breached) != 1 {
		t.Errorf("breached before the moved deadline: %v", o.Breached)
	}
	r.at(6*time.Hour + 21*time.Minute)
	if o := r.open1(); !slices.Equal(o.Breached, []string{"respond", "fix"}) {
		t.Errorf("fix breach: %v", o.Breached)
	}
}

// Inside a maintenance window a fault opens nothing; after it, it does.
func TestMaintenanceOpensNothing(t *testing.T) {
	w := maintenance.Window{Name: "pole", Sites: []string{"S1"}, From: t0.Add(-time.Hour), To: t0.Add(time.Hour)}
	r := newRig(t, Options{Maintenance: maintenance.MustSchedule(w)})
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Major)
	r.at(30 * time.Minute)
	if n := len(r.m.Orders(Filter{})); n != 0 {
		t.Fatalf("%d orders in maintenance", n)
	}
	r.at(time.Hour + time.Second)
	r.open1()
}

// An order by hand is for what telemetry cannot see: online devices do
// not close it; after "fixed" telemetry verifies it.
func TestOrderByHand(t *testing.T) {
	r := newRig(t, Options{Hold: time.Minute})
	o, err := r.m.OpenByHand("chen", []string{"cam-3"}, "lens dirty", P3)
	if err != nil || !o.Manual || o.OpenedBy != "chen" || o.Devices[0].Healthy {
		t.Fatalf("%v %+v", err, o)
	}
	if _, err := r.m.OpenByHand("chen", []string{"cam-3", "cam-9"}, "two sites", P3); err == nil {
		t.Error("an order by hand over two sites")
	}
	r.at(time.Hour)
	if got := r.open1(); got.State != Open {
		t.Fatalf("closed by itself: %+v", got)
	}
	r.act(o.ID, ActFix, Request{Who: "wang", Note: "cleaned"})
	r.at(time.Hour + time.Minute)
	if got, _, _ := r.m.Order(o.ID); got.State != Closed || got.Resolution != "verified" {
		t.Errorf("after the fix and the hold: %+v", got)
	}
}

// Orders and their trails survive a restart; the site's open order is
// still the one a new fault joins.
func TestRestartKeepsOrders(t *testing.T) {
	r := newRig(t, Options{})
	id := r.cameraOrder("cam-1", alarm.Major)
	r.act(id, ActAssign, Request{Who: "chen", Crew: "north", To: "wang"})
	before, trail, _ := r.m.Order(id)

	r.open()
	after, trail2, ok := r.m.Order(id)
	if !ok || after.State != Assigned || after.Crew != "north" || len(trail2) != len(trail) || !after.FixBy.Equal(before.FixBy) {
		t.Fatalf("after a restart: %+v %d/%d", after, len(trail2), len(trail))
	}
	r.status("cam-2", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-2", "S1", alarm.Major)
	r.at(30 * time.Minute)
	if o := r.open1(); o.ID != id || len(o.Devices) != 2 {
		t.Errorf("a new fault after the restart: %+v", o)
	}
	o, err := r.m.OpenByHand("chen", []string{"cam-9"}, "tilted", P2)
	if err != nil || o.ID == id || o.ID == "WO-1" {
		t.Errorf("numbering after a restart: %v %s", err, o.ID)
	}
}

// fakeCoverage prices each camera's outage.
type fakeCoverage map[string]float64

func (f fakeCoverage) LostBy(cams []string) (ha, weighted float64) {
	for _, c := range cams {
		ha += f[c]
		weighted += 2 * f[c]
	}
	return ha, weighted
}

// Fix first: without the map, the order with more devices blind comes
// first; with it, the one whose camera costs more coverage does, and
// every order says why.
func TestFixFirst(t *testing.T) {
	setup := func(cov Coverage) *rig {
		r := newRig(t, Options{})
		r.coverage = cov
		r.open()
		for _, id := range []string{"cam-1", "cam-2"} {
			r.status(id, wire.StatusOffline, wire.ReasonRefused)
			r.raise(alarm.SourceDeviceOffline, id, "S1", alarm.Minor)
		}
		r.status("cam-9", wire.StatusOffline, wire.ReasonRefused)
		r.raise(alarm.SourceDeviceOffline, "cam-9", "S2", alarm.Minor)
		r.at(10 * time.Minute)
		return r
	}
	r := setup(nil)
	got := r.m.RankedOrders(Filter{})
	if len(got) != 2 || got[0].Site != "S1" || got[0].Rank.BlindCameras != 2 || got[0].Rank.Score <= got[1].Rank.Score {
		t.Fatalf("without coverage: %+v", got)
	}
	r = setup(fakeCoverage{"cam-1": 0.1, "cam-2": 0.1, "cam-9": 2})
	got = r.m.RankedOrders(Filter{})
	if got[0].Site != "S2" || got[0].Rank.CoverageLostHa != 2 || got[0].Rank.WeightedHa != 4 ||
		!strings.Contains(got[0].Rank.Why, "2.00 ha of coverage lost") || !strings.Contains(got[0].Rank.Why, "to the fix deadline") {
		t.Fatalf("with coverage: %+v", got[0].Rank)
	}
	// Past the deadline the score rises and the reason says so.
	before := got[1].Rank.Score
	r.at(30 * time.Hour)
	got = r.m.RankedOrders(Filter{})
	if s1 := got[slices.IndexFunc(got, func(x Ranked) bool { return x.Site == "S1" })]; s1.Rank.Score <= before || !strings.Contains(s1.Rank.Why, "deadline passed") {
		t.Errorf("after the deadline: %+v (was %v)", s1.Rank, before)
	}
}

// "My orders": assigned to me, to my crew, or nobody's yet in my crew's
// districts; not someone else's.
func TestMine(t *testing.T) {
	r := newRig(t, Options{})
	r.status("cam-1", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-1", "S1", alarm.Minor)
	r.status("cam-9", wire.StatusOffline, wire.ReasonRefused)
	r.raise(alarm.SourceDeviceOffline, "cam-9", "S2", alarm.Minor)
	r.at(10 * time.Minute)
	if got := r.m.Orders(Filter{Mine: "wang"}); len(got) != 1 || got[0].Site != "S1" {
		t.Fatalf("wang's before dispatch: %+v", got)
	}
	s2 := r.m.Orders(Filter{Site: "S2"})[0].ID
	r.act(s2, ActAssign, Request{Who: "chen", To: "wang"})
	s1 := r.m.Orders(Filter{Site: "S1"})[0].ID
	r.act(s1, ActAssign, Request{Who: "chen", To: "li"})
	if got := r.m.Orders(Filter{Mine: "wang"}); len(got) != 1 || got[0].ID != s2 {
		t.Errorf("wang's after dispatch: %+v", got)
	}
	if _, err := r.m.Act(s1, ActAssign, Request{Who: "chen", Crew: "south"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("assign to a crew that does not exist: %v", err)
	}
}

// A camera replaced while its order is open is in the order's history.
func TestReplacedInTrail(t *testing.T) {
	r := newRig(t, Options{})
	id := r.cameraOrder("cam-1", alarm.Major)
	r.m.Observe(fleet.Change{Kind: fleet.ChangeInventory, At: r.now, Assets: []fleet.AssetChange{{Device: "cam-1", Field: "serial", From: "SN-1", To: "SN-2", At: r.now}}})
	_, trail, _ := r.m.Order(id)
	if last := trail[len(trail)-1]; last.Action != ActAsset || last.Note != "cam-1 replaced: serial SN-1 → SN-2" {
		t.Errorf("last of the trail %+v", last)
	}
}

// A failure the agent reports late (kept through an outage) is history:
// it neither reopens a closed order nor holds up verification.
func TestLateChangesAreHistory(t *testing.T) {
	r := newRig(t, Options{})
	id := r.cameraOrder("cam-1", alarm.Major)
	r.status("cam-1", wire.StatusOnline, "")
	r.at(r.now.Sub(t0) + 5*time.Minute)
	d, _ := r.fleet.Device("cam-1")
	past := d
	past.Status = wire.StatusOffline
	r.m.Observe(fleet.Change{At: r.now, Kind: fleet.ChangeLate, From: wire.StatusOnline, To: wire.StatusOffline, Device: &past, Happened: r.now.Add(-time.Minute)})
	r.at(r.now.Sub(t0) + 5*time.Minute)
	o, _, _ := r.m.Order(id)
	if o.State != Closed || o.Repeats != 0 {
		t.Fatalf("order %s repeats %d after a late failure report, want closed by the hold with no repeat", o.State, o.Repeats)
	}
	r.m.Observe(fleet.Change{At: r.now, Kind: fleet.ChangeLate, From: wire.StatusOnline, To: wire.StatusOffline, Device: &past, Happened: r.now.Add(-time.Minute)})
	if n := len(r.m.Orders(Filter{})); n != 0 {
		t.Fatalf("a late failure after the close reopened %d orders", n)
	}
}
