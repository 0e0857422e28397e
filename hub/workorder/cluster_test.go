package workorder

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// testCluster stands in for hub/workview and the lease: which Manager
// keeps the orders, and the others' Ask goes to it.
type testCluster struct {
	mu      sync.Mutex
	leader  *Manager
	expired bool // the leader's lease ran out under it (it was paused)
}

type member struct {
	c *testCluster
	r *rig
}

func (m member) Leads() bool {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return m.c.leader == m.r.m && !m.c.expired
}

func (m member) Ask(c Command) (Event, error) {
	m.c.mu.Lock()
	l := m.c.leader
	m.c.mu.Unlock()
	if l == nil {
		return Event{}, ErrUnavailable
	}
	return l.Execute(c)
}

// twoHubs are two Managers on one shared store (dsn) and one read view
// of the fleet; a's announcements reach b and b's reach a.
func twoHubs(t *testing.T, dsn string) (a, b *rig, c *testCluster) {
	t.Helper()
	c = &testCluster{}
	a = &rig{t: t, now: t0, fleet: &fakeFleet{devices: map[string]fleet.Device{}}, path: dsn, opts: Options{Hold: time.Minute}}
	for _, id := range []string{"cam-1", "cam-2"} {
		a.fleet.devices[id] = fleet.Device{ID: id, Kind: wire.KindCamera, Site: "S1", District: "North", Agent: "a1", Status: wire.StatusOnline}
	}
	b = &rig{t: t, now: t0, fleet: a.fleet, path: dsn, opts: a.opts}
	a.leader, b.leader = member{c, a}, member{c, b}
	a.announce = func(ev Event) { b.m.Mirror(ev) }
	b.announce = func(ev Event) { a.m.Mirror(ev) }
	a.open()
	b.open()
	return a, b, c
}

// engines runs f on the work-order store of one hub (SQLite) and on the
// PostgreSQL database a cluster shares.
func engines(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "workorders.db")) })
	t.Run("postgres", func(t *testing.T) { f(t, testenv.Postgres(t)) })
}

// One hub keeps the orders; the other shows them as announced and has
// its users' actions made there, each recorded once.
func TestFollowerShowsAndAsksTheLeader(t *testing.T) {
	engines(t, func(t *testing.T, dsn string) {
		a, b, c := twoHubs(t, dsn)
		c.leader = a.m
		if err := a.m.TakeLead(nil); err != nil {
			t.Fatal(err)
		}
		id := a.cameraOrder("cam-1", alarm.Major)
		if o, trail, ok := b.m.Order(id); !ok || o.State != Open || len(trail) != 1 {
			t.Fatalf("the follower's view of %s: %v %+v %d", id, ok, o, len(trail))
		}
		if _, err := b.m.Act(id, ActStart, Request{Who: "wang"}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*rig{a, b} {
			o, trail, _ := r.m.Order(id)
			starts := slices.IndexFunc(trail, func(tr Transition) bool { return tr.Action == ActStart })
			if o.State != InProgress || o.Assignee != "wang" || len(trail) != 2 || starts != 1 {
				t.Fatalf("after a start on the follower: %s %s %+v", o.State, o.Assignee, trail)
			}
		}
		// The follower neither opens work from alarms nor follows health:
		// the leader does, for every hub.
		b.raise(alarm.SourceDeviceOffline, "cam-2", "S1", alarm.Major)
		b.status("cam-2", wire.StatusOffline, wire.ReasonRefused)
		b.at(time.Hour)
		if o, trail, _ := a.m.Order(id); len(trail) != 2 || len(o.Devices) != 1 {
			t.Fatalf("the follower changed the order: %+v %+v", o, trail)
		}
		if _, err := b.m.Act("WO-99", ActStart, Request{Who: "wang"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("an action on no order through the leader: %v", err)
		}
		c.mu.Lock()
		c.leader = nil
		c.mu.Unlock()
		if _, err := b.m.Act(id, ActNote, Request{Who: "wang", Note: "on my way"}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("an action while no hub keeps the orders: %v", err)
		}
	})
}

// When the hub keeping the orders dies, the one taking over carries on
// from the store: an alarm still in its grace opens one order, numbered
// after the last; the device's recovery closes it. The old hub, paused
// past its lease, changes nothing when it wakes and reads the store back
// when it stands down.
func TestNewLeaderCarriesOn(t *testing.T) {
	engines(t, func(t *testing.T, dsn string) {
		a, b, c := twoHubs(t, dsn)
		c.leader = a.m
		if err := a.m.TakeLead(nil); err != nil {
			t.Fatal(err)
		}
		first := a.cameraOrder("cam-1", alarm.Major)
		a.status("cam-2", wire.StatusOffline, wire.ReasonRefused)
		al := a.raise(alarm.SourceDeviceOffline, "cam-2", "S1", alarm.Minor)

		// a stops (paused past its lease); b takes over with the alarms open now.
		c.mu.Lock()
		c.leader, c.expired = b.m, false
		c.mu.Unlock()
		b.now = a.now
		if err := b.m.TakeLead([]alarm.Alarm{al}); err != nil {
			t.Fatal(err)
		}
		b.at(b.now.Sub(t0) + 10*time.Minute)
		orders := b.m.Orders(Filter{})
		if len(orders) != 1 || orders[0].ID != first || len(orders[0].Devices) != 2 {
			t.Fatalf("after the takeover: %+v", orders)
		}
		// a wakes: its tick would have joined cam-2 itself.
		a.now = b.now
		a.m.Tick(a.now)
		if a.m.Refused() == 0 {
			t.Error("the paused hub's tick was not refused")
		}
		if _, err := a.m.Execute(Command{Op: OpAct, ID: first, Who: "li", Action: ActNote, Note: "late"}); !errors.Is(err, ErrNotLeading) {
			t.Errorf("the paused hub made a change: %v", err)
		}
		if err := a.m.StandDown(); err != nil {
			t.Fatal(err)
		}
		if o, _, _ := a.m.Order(first); len(o.Devices) != 2 {
			t.Errorf("the stood-down hub's view: %+v", o.Devices)
		}

		// A new order is numbered after the last one.
		o, err := a.m.OpenByHand("chen", []string{"cam-9"}, "lens dirty", P3)
		if err == nil {
			t.Fatalf("an order on a device the fleet does not have: %+v", o)
		}
		b.fleet.mu.Lock()
		b.fleet.devices["cam-9"] = fleet.Device{ID: "cam-9", Kind: wire.KindCamera, Site: "S2", District: "South", Agent: "a2", Status: wire.StatusOnline}
		b.fleet.mu.Unlock()
		if o, err = a.m.OpenByHand("chen", []string{"cam-9"}, "lens dirty", P3); err != nil || o.ID == first {
			t.Fatalf("an order by hand through the new leader: %+v %v", o, err)
		}

		// Recovery closes the order on the new leader, and a sees it.
		b.status("cam-1", wire.StatusOnline, "")
		b.status("cam-2", wire.StatusOnline, "")
		b.at(b.now.Sub(t0) + time.Minute)
		if o, _, _ := a.m.Order(first); o.State != Closed || o.Resolution != "recovered" {
			t.Fatalf("after recovery, on the other hub: %s %q", o.State, o.Resolution)
		}
	})
}

// A store refuses a second order under an id another hub took.
func TestStoreRefusesATakenID(t *testing.T) {
	engines(t, func(t *testing.T, dsn string) {
		st, err := OpenStore(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		open := []Transition{{At: t0, Who: System, Action: ActOpen, To: Open}}
		if err := st.Save(Order{ID: "WO-7", Site: "S1", State: Open}, open); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(Order{ID: "WO-7", Site: "S2", State: Open}, open); !errors.Is(err, ErrTaken) {
			t.Fatalf("a second WO-7: %v", err)
		}
		if err := st.Save(Order{ID: "WO-7", Site: "S1", State: InProgress}, []Transition{{At: t0, Who: "wang", Action: ActStart}}); err != nil {
			t.Fatal(err)
		}
		orders, trails, next, err := st.Load()
		if err != nil || len(orders) != 1 || orders[0].State != InProgress || len(trails["WO-7"]) != 2 || next != 7 {
			t.Fatalf("%v %+v %+v %d", err, orders, trails, next)
		}
		pic := []byte("\xFF\xD8\xFF\xE0 a picture")
		for range 2 {
			if err := st.PutPhoto("ab12", "image/jpeg", pic); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := st.Photo("ab12"); err != nil || string(got) != string(pic) {
			t.Errorf("photo: %q %v", got, err)
		}
		if _, err := st.Photo("cd34"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a photo never kept: %v", err)
		}
	})
}

// Photos an earlier hub kept as files move into the database, once; a
// file that is not the picture its name says stays, and is reported.
func TestImportPhotos(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "photos")
	pic := []byte("\xFF\xD8\xFF\xE0 an old picture")
	sum := sha256.Sum256(pic)
	sha := hex.EncodeToString(sum[:])
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, sha[:2], sha+".jpg"), pic)
	st, err := OpenStore(filepath.Join(t.TempDir(), "workorders.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.ImportPhotos(dir); err != nil || n != 1 {
		t.Fatalf("import: %d %v", n, err)
	}
	if got, err := st.Photo(sha); err != nil || string(got) != string(pic) {
		t.Fatalf("imported photo: %q %v", got, err)
	}
	if _, err := os.Stat(dir + ".imported"); err != nil {
		t.Errorf("the imported directory was not set aside: %v", err)
	}
	if n, err := st.ImportPhotos(dir); err != nil || n != 0 {
		t.Errorf("a second start imported %d (%v)", n, err)
	}
	bad := strings.Repeat("ab", 32)
	write(filepath.Join(dir, "ab", bad+".jpg"), pic)
	if n, err := st.ImportPhotos(dir); err == nil || n != 0 || !strings.Contains(err.Error(), bad) {
		t.Errorf("a file that is not its name's picture: %d %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ab", bad+".jpg")); err != nil {
		t.Errorf("the refused file was moved: %v", err)
	}
}

// An announcement lost on the way: the next one shows the gap, and the
// follower reads the orders again, whole.
func TestFollowerFillsAGap(t *testing.T) {
	a, b, c := twoHubs(t, filepath.Join(t.TempDir(), "workorders.db"))
	c.leader = a.m
	if err := a.m.TakeLead(nil); err != nil {
		t.Fatal(err)
	}
	id := a.cameraOrder("cam-1", alarm.Major)
	announce := a.announce
	a.announce = nil // the start's announcement is lost
	if _, err := a.m.Act(id, ActStart, Request{Who: "wang"}); err != nil {
		t.Fatal(err)
	}
	a.announce = announce
	if _, err := a.m.Act(id, ActNote, Request{Who: "wang", Note: "parts ordered"}); err != nil {
		t.Fatal(err)
	}
	o, trail, _ := b.m.Order(id)
	if o.State != InProgress || len(trail) != 3 || trail[1].Action != ActStart || b.m.Gaps() != 1 {
		t.Fatalf("the follower after a lost announcement: %s, trail %+v, gaps %d", o.State, trail, b.m.Gaps())
	}
}

// A device that recovers while no hub keeps the orders (the keeper dead,
// its lease not yet taken): the next keeper sees it and closes the order
// after the hold.
func TestNewKeeperCatchesUpWithHealth(t *testing.T) {
	a, b, c := twoHubs(t, filepath.Join(t.TempDir(), "workorders.db"))
	c.leader = a.m
	if err := a.m.TakeLead(nil); err != nil {
		t.Fatal(err)
	}
	id := a.cameraOrder("cam-1", alarm.Major)
	c.mu.Lock()
	c.leader = nil
	c.mu.Unlock()
	b.now = a.now
	b.status("cam-1", wire.StatusOnline, "") // nobody keeps the orders: nobody hears it
	c.mu.Lock()
	c.leader = b.m
	c.mu.Unlock()
	if err := b.m.TakeLead(nil); err != nil {
		t.Fatal(err)
	}
	b.at(b.now.Sub(t0) + time.Minute)
	if o, _, _ := b.m.Order(id); o.State != Closed || o.Resolution != "recovered" {
		t.Fatalf("the order of a device that recovered between keepers: %s %q", o.State, o.Resolution)
	}
}

// A cluster whose hubs share no database: the follower keeps what the
// keeper announces in its own store, and carries the orders on when it
// takes over.
func TestReplicaCarriesOn(t *testing.T) {
	c := &testCluster{}
	opts := Options{Hold: time.Minute, Replica: true}
	a := &rig{t: t, now: t0, fleet: &fakeFleet{devices: map[string]fleet.Device{}}, path: filepath.Join(t.TempDir(), "a.db"), opts: opts}
	a.fleet.devices["cam-1"] = fleet.Device{ID: "cam-1", Kind: wire.KindCamera, Site: "S1", District: "North", Agent: "a1", Status: wire.StatusOnline}
	b := &rig{t: t, now: t0, fleet: a.fleet, path: filepath.Join(t.TempDir(), "b.db"), opts: opts}
	a.leader, b.leader = member{c, a}, member{c, b}
	a.announce = func(ev Event) { b.m.Mirror(ev) }
	a.open()
	b.open()
	c.leader = a.m
	if err := a.m.TakeLead(nil); err != nil {
		t.Fatal(err)
	}
	id := a.cameraOrder("cam-1", alarm.Major)
	if _, err := b.m.Act(id, ActStart, Request{Who: "wang"}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.leader = b.m
	c.mu.Unlock()
	if err := b.m.TakeLead(nil); err != nil {
		t.Fatal(err)
	}
	o, trail, ok := b.m.Order(id)
	if !ok || o.State != InProgress || len(trail) != 2 {
		t.Fatalf("the new keeper's order from its replica: %v %s %+v", ok, o.State, trail)
	}
	if o2, err := b.m.OpenByHand("chen", []string{"cam-1"}, "lens dirty", P3); err != nil || o2.ID != id {
		t.Errorf("a fault by hand joins the carried order: %+v %v", o2, err)
	}
}
