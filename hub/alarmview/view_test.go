package alarmview

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

const partitions = 4

// partitionOf puts agent "agN" in partition N.
func partitionOf(agent string, n int) int {
	p, _ := strconv.Atoi(strings.TrimPrefix(agent, "ag"))
	return p % n
}

// hub is one hub's engine and view, on a real NATS server.
type hub struct {
	engine *alarm.Engine
	view   *View
	stop   context.CancelFunc
	done   chan error

	mu     sync.Mutex
	events []alarm.Event // other hubs' events, as the console gets them
}

func startHub(t *testing.T, url, id string, store Store, owned ...int) *hub {
	t.Helper()
	rules, err := alarm.ParseRules([]byte("rules:\n  - source: device_offline\n    severity: major\n    clear_hold: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := &hub{done: make(chan error, 1)}
	h.engine = alarm.New(rules, alarm.Options{IDPrefix: "A" + id + "-", OnTransition: func(a alarm.Alarm, tr alarm.Transition) {
		h.view.Record(a, tr)
	}})
	h.view, err = New(Config{NATSURL: url, Hub: id, Partitions: partitions, Partition: partitionOf},
		Deps{Engine: h.engine, Store: store, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), OnEvent: func(ev alarm.Event) {
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- h.view.Run(ctx) }()
	t.Cleanup(func() { h.halt(t) })
	testenv.Eventually(t, 10*time.Second, func() error {
		if h.view.Stats() == (Stats{}) && !h.connected() {
			return errors.New("not connected")
		}
		return nil
	})
	h.view.Own(context.Background(), owned)
	return h
}

func (h *hub) connected() bool {
	h.view.mu.Lock()
	defer h.view.mu.Unlock()
	return h.view.nc != nil
}

func (h *hub) halt(t *testing.T) {
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after its context ended")
	}
}

func (h *hub) camera(agent, id string, st wire.Status) {
	d := fleet.Device{ID: id, Agent: agent, Kind: wire.KindCamera, Status: st, Criticality: 3}
	h.engine.Observe(fleet.Change{Kind: fleet.ChangeDevice, To: st, Device: &d})
}

// TestOneCityOfAlarms runs two hubs' views on one NATS server: an alarm
// hub b raises shows on hub a with its event; acknowledging it on a acts
// on b's engine and shows at once on both; a refused action says why;
// when b is gone and a takes b's partitions over, a's engine carries the
// same alarm on (no second one for the same condition), and b's next
// announcements, should a stale b still send any, are ignored.
func TestOneCityOfAlarms(t *testing.T) {
	nats := testenv.NATS(t)
	a := startHub(t, nats.URL(), "a", nil, 0, 1)
	b := startHub(t, nats.URL(), "b", nil, 2, 3)

	b.camera("ag2", "cam1", wire.StatusOffline)
	testenv.Eventually(t, 10*time.Second, func() error {
		if got, _, ok := a.view.Alarm("Ab-1"); !ok || got.State != alarm.ActiveUnack {
			return errors.New("hub a does not show hub b's alarm")
		}
		return nil
	})
	a.mu.Lock()
	if len(a.events) != 1 || a.events[0].Kind != alarm.EventRaise || a.events[0].Alarm.ID != "Ab-1" {
		t.Errorf("hub a's console heard %+v, want the raise of Ab-1", a.events)
	}
	a.mu.Unlock()
	if got := a.view.Alarms(alarm.Filter{}); len(got) != 1 || got[0].Device != "cam1" {
		t.Fatalf("hub a lists %+v, want cam1's alarm", got)
	}

	if err := a.view.Ack("Ab-1", "ann", "seen on the wall"); err != nil {
		t.Fatalf("ack on hub a of hub b's alarm: %v", err)
	}
	if got, _, _ := a.view.Alarm("Ab-1"); got.State != alarm.ActiveAck || got.AckedBy != "ann" {
		t.Fatalf("hub a shows %s by %q right after its ack, want active_ack by ann", got.State, got.AckedBy)
	}
	if got, trail, _ := b.engine.Alarm("Ab-1"); got.State != alarm.ActiveAck || len(trail) != 2 || trail[1].Note != "seen on the wall" {
		t.Fatalf("hub b holds %s with trail %+v, want active_ack with ann's note", got.State, trail)
	}
	if err := a.view.Ack("Ab-1", "ann", ""); !errors.Is(err, alarm.ErrInvalid) {
		t.Fatalf("second ack routed: %v, want ErrInvalid (409)", err)
	}
	if err := a.view.Ack("Ab-99", "ann", ""); !errors.Is(err, alarm.ErrNotFound) {
		t.Fatalf("ack of an unknown alarm: %v, want ErrNotFound", err)
	}

	// b dies; a takes b's partitions over.
	b.halt(t)
	if err := a.view.Ack("Ab-1", "ann", "again"); !errors.Is(err, ErrNoHolder) {
		t.Fatalf("action while nobody holds the alarm: %v, want ErrNoHolder", err)
	}
	a.view.Own(context.Background(), []int{0, 1, 2, 3})
	got, trail, ok := a.engine.Alarm("Ab-1")
	if !ok || got.State != alarm.ActiveAck || len(trail) != 2 {
		t.Fatalf("hub a's engine holds %+v (trail %d), want Ab-1 active_ack with its 2 transitions", got, len(trail))
	}
	a.camera("ag2", "cam1", wire.StatusOffline)
	if all := a.view.Alarms(alarm.Filter{States: alarm.States}); len(all) != 1 {
		t.Fatalf("hub a lists %d alarms after taking over, want 1: %+v", len(all), all)
	}
	a.camera("ag2", "cam1", wire.StatusOnline)
	time.Sleep(10 * time.Millisecond)
	a.engine.Tick(time.Now().Add(2 * time.Second))
	if got, _, _ := a.view.Alarm("Ab-1"); got.State != alarm.ClearedAck {
		t.Fatalf("taken-over alarm is %s after its camera recovered, want cleared_ack", got.State)
	}
	if st := a.view.Stats(); st.Routed != 3 || st.Applied == 0 {
		t.Errorf("stats %+v: want 3 routed actions (an unknown id is not routed) and applied announcements", st)
	}
}

// fakeStore is the shared store as a dead hub left it.
type fakeStore struct {
	alarms []alarm.Alarm
	trails map[string][]alarm.Transition
	asked  [][]int
}

func (s *fakeStore) LoadOpen(context.Context) ([]alarm.Alarm, error) {
	return s.alarms, nil
}

func (s *fakeStore) Alarm(_ context.Context, id string) (alarm.Alarm, []alarm.Transition, error) {
	for _, a := range s.alarms {
		if a.ID == id {
			return a, s.trails[id], nil
		}
	}
	return alarm.Alarm{}, nil, errors.New("no such alarm")
}

func (s *fakeStore) LoadPartitions(_ context.Context, parts []int) ([]alarm.Alarm, map[string][]alarm.Transition, error) {
	s.asked = append(s.asked, parts)
	var out []alarm.Alarm
	for _, a := range s.alarms {
		for _, p := range parts {
			if partitionOf(a.Agent, partitions) == p {
				out = append(out, a)
			}
		}
	}
	return out, s.trails, nil
}

// TestTakeOverFromStore: a hub that starts after another died shows the
// dead hub's open alarms from the shared store, and adopts those of the
// partitions it takes — a power feed's by the partition of its key, as
// one hub judges each feed.
func TestTakeOverFromStore(t *testing.T) {
	at := time.Now().Add(-time.Minute).UTC()
	raise := alarm.Transition{At: at, Who: alarm.System, Action: alarm.ActRaise, To: alarm.ActiveUnack}
	st := &fakeStore{
		alarms: []alarm.Alarm{
			{ID: "Ax-7", Key: "device_offline:device/cam7", Source: alarm.SourceDeviceOffline, Type: "camera_offline", Device: "cam7", Agent: "ag3",
				Severity: alarm.Major, Criticality: 3, Priority: 33, State: alarm.ActiveUnack, Count: 1, FirstAt: at, LastAt: at},
			{ID: "Ax-8", Key: "device_offline:device/cam8", Source: alarm.SourceDeviceOffline, Type: "camera_offline", Device: "cam8", Agent: "ag1",
				Severity: alarm.Major, Criticality: 3, Priority: 33, State: alarm.ActiveUnack, Count: 1, FirstAt: at, LastAt: at},
			// Its key is in partition 0 (partitionOf reads no number in it).
			{ID: "Ax-9", Key: "power_feed:feed/f2", Source: alarm.SourcePowerFeed, Type: "power_feed",
				Severity: alarm.Critical, Criticality: 3, Priority: 53, State: alarm.ActiveUnack, Count: 1, FirstAt: at, LastAt: at},
		},
		trails: map[string][]alarm.Transition{"Ax-7": {raise}, "Ax-8": {raise}, "Ax-9": {raise}},
	}
	nats := testenv.NATS(t)
	a := startHub(t, nats.URL(), "a", st, 0, 1)
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, _, ok := a.view.Alarm("Ax-7"); !ok {
			return errors.New("the store's open alarm of a partition another hub owns is not in view")
		}
		return nil
	})
	if _, trail, ok := a.view.Alarm("Ax-7"); !ok || len(trail) != 1 || trail[0].Action != alarm.ActRaise {
		t.Fatalf("another hub's alarm in view shows trail %+v, want its raise read from the store", trail)
	}
	if _, _, ok := a.engine.Alarm("Ax-8"); !ok {
		t.Fatal("the alarm of an owned partition was not adopted from the store")
	}
	if _, _, ok := a.engine.Alarm("Ax-9"); !ok {
		t.Fatal("the power feed alarm of an owned partition was not adopted from the store")
	}
	if _, _, ok := a.engine.Alarm("Ax-7"); ok {
		t.Fatal("the engine adopted an alarm of a partition it does not own")
	}
	a.view.Own(context.Background(), []int{0, 1, 3})
	if _, trail, ok := a.engine.Alarm("Ax-7"); !ok || len(trail) != 1 {
		t.Fatal("Ax-7 was not adopted when its partition was taken over")
	}
	if last := st.asked[len(st.asked)-1]; len(last) != 1 || last[0] != 3 {
		t.Errorf("the store was asked for %v, want only the partition gained [3]", last)
	}
	// Giving partition 1 up hands Ax-8 back to the view without a transition.
	a.view.Own(context.Background(), []int{0, 3})
	if _, _, ok := a.engine.Alarm("Ax-8"); ok {
		t.Fatal("Ax-8 stayed in the engine after its partition was given up")
	}
	if got, trail, ok := a.view.Alarm("Ax-8"); !ok || got.State != alarm.ActiveUnack || len(trail) != 1 {
		t.Fatalf("Ax-8 is not in view as it was: %+v, %d transitions", got, len(trail))
	}
	// And partition 0, the feed's: another hub judges it now.
	a.view.Own(context.Background(), []int{3})
	if _, _, ok := a.engine.Alarm("Ax-9"); ok {
		t.Fatal("the feed's alarm stayed in the engine after its partition was given up")
	}
	if _, _, ok := a.view.Alarm("Ax-9"); !ok {
		t.Fatal("the feed's alarm is not in view after its partition was given up")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("New accepted an empty config")
	}
}
