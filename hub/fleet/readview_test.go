package fleet_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// follow hands the follower the owner's record of agent, through JSON as
// between hubs.
func follow(t *testing.T, owner, follower *harness, agent string) {
	t.Helper()
	rec, ok := owner.r.Record(agent)
	if !ok {
		t.Fatalf("no record of %s", agent)
	}
	b, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := fleet.DecodeRecord(b, follower.clk.Now())
	if err != nil {
		t.Fatalf("DecodeRecord: %v\n%s", err, b)
	}
	if err := follower.r.ApplyRecord(got); err != nil {
		t.Fatalf("ApplyRecord: %v", err)
	}
}

// sameView asserts that the follower shows every device and the agent as
// the owner does.
func sameView(t *testing.T, owner, follower *harness, agent string) {
	t.Helper()
	want, got := owner.r.Devices(), follower.r.Devices()
	if len(want) != len(got) {
		t.Fatalf("follower has %d devices, owner %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if !w.Since.Equal(g.Since) || !w.LastSeen.Equal(g.LastSeen) || !w.Probed.Equal(g.Probed) {
			t.Errorf("%s: times since %v/%v last seen %v/%v probed %v/%v (follower/owner)", w.ID,
				g.Since, w.Since, g.LastSeen, w.LastSeen, g.Probed, w.Probed)
		}
		w.Since, w.LastSeen, w.Probed = g.Since, g.LastSeen, g.Probed
		if !reflect.DeepEqual(w, g) {
			t.Errorf("device %s on the follower:\n%+v\nowner:\n%+v", w.ID, g, w)
		}
	}
	wa, ga := owner.agent(agent), follower.agent(agent)
	if ga.Status != wa.Status || ga.Reason != wa.Reason || !ga.Since.Equal(wa.Since) || !ga.LastSeen.Equal(wa.LastSeen) ||
		ga.Version != wa.Version || ga.Interval != wa.Interval {
		t.Errorf("agent on the follower %+v, owner %+v", ga, wa)
	}
	checkInvariants(t, follower.r)
}

func TestRecordCarriesTheOwnersView(t *testing.T) {
	owner, follower := newHarness(t), newHarness(t)
	owner.setup("a1", "north") // birth; the inventory below lists the devices
	inv := owner.inventory("a1", "north", "cam-1", "cam-2", "cam-3")
	owner.must(inv)
	if _, err := follower.r.Apply(inv, true); err != nil { // as the view stream gives it
		t.Fatal(err)
	}
	follower.take()

	// Reports: one offline with a reason, one degraded with a metric set of
	// its own; a stream fault on the third; a sensor-style contact.
	owner.clk.Add(5 * time.Second)
	follower.clk.Add(5 * time.Second)
	l2 := line("cam-2", wire.StatusDegraded, wire.ReasonLowFrameRate)
	l2.Metrics, l2.Probed = map[string]float64{"fps": 3, "bitrate_kbps": 800}, t0
	owner.must(owner.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused), l2, line("cam-3", wire.StatusOnline, "")))
	owner.r.SetStreamFault("cam-3", wire.ReasonNoStream, "no frame in 10 s")
	owner.take()

	follow(t, owner, follower, "a1")
	sameView(t, owner, follower, "a1")
	changes := follower.take()
	kinds := map[string]wire.Status{}
	for _, c := range changes {
		if c.Kind == fleet.ChangeAgent {
			kinds["agent"] = c.To
			for _, d := range c.Affected {
				kinds[d.ID] = d.Status
			}
		}
		if c.Kind == fleet.ChangeDevice {
			kinds[c.Device.ID] = c.To
		}
	}
	// The agent comes online, its devices with it, each as the owner shows
	// it.
	if len(changes) != 1 || kinds["agent"] != wire.StatusOnline || kinds["cam-1"] != wire.StatusOffline ||
		kinds["cam-2"] != wire.StatusDegraded || kinds["cam-3"] != wire.StatusDegraded {
		t.Errorf("follower's changes %+v", changes)
	}

	// The fault clears and the agent goes: the follower follows.
	owner.clk.Add(time.Second)
	follower.clk.Add(time.Second)
	owner.r.ClearStreamFault("cam-3")
	owner.must(owner.will("a1", 1))
	follow(t, owner, follower, "a1")
	sameView(t, owner, follower, "a1")
	if d := follower.device("cam-2"); d.Status != wire.StatusUnreachable || d.Reported != wire.StatusDegraded {
		t.Errorf("cam-2 behind an offline agent on the follower: %+v", d)
	}

	// A record that changes nothing emits nothing.
	follower.take()
	follow(t, owner, follower, "a1")
	if c := follower.take(); len(c) != 0 {
		t.Errorf("an unchanged record emitted %+v", c)
	}
}

func TestRecordOfDevicesNotListedHere(t *testing.T) {
	owner, follower := newHarness(t), newHarness(t)
	owner.setup("a1", "north", "cam-1", "cam-2")
	rec, _ := owner.r.Record("a1")
	var we *wire.Error
	if err := follower.r.ApplyRecord(&rec); !errors.As(err, &we) || we.Reason != wire.RejectUnknownDevice {
		t.Fatalf("a record before the inventory: %v", err)
	}
	// The follower's inventory is older: it lists cam-1 only.
	if _, err := follower.r.Apply(follower.inventory("a1", "north", "cam-1"), true); err != nil {
		t.Fatal(err)
	}
	if err := follower.r.ApplyRecord(&rec); err != nil {
		t.Fatal(err)
	}
	if d := follower.device("cam-1"); d.Status != wire.StatusOnline {
		t.Errorf("cam-1 %s", d.Status)
	}
	if _, ok := follower.r.Device("cam-2"); ok {
		t.Error("a record made a device the inventory does not list")
	}
}

func TestDecodeRecordRefuses(t *testing.T) {
	owner := newHarness(t)
	owner.setup("a1", "north", "cam-1")
	good, _ := owner.r.Record("a1")
	for name, spoil := range map[string]func(*fleet.Record){
		"status":         func(r *fleet.Record) { r.Status = wire.StatusDegraded },
		"reason":         func(r *fleet.Record) { r.Reason = "because" },
		"future":         func(r *fleet.Record) { r.Since = t0.Add(time.Hour) },
		"seen":           func(r *fleet.Record) { r.Seen = nil },
		"line":           func(r *fleet.Record) { r.Health.Devices[0].Status = wire.StatusUnreachable },
		"fault":          func(r *fleet.Record) { r.Faults = []fleet.Fault{{Device: "no such/id"}} },
		"report's agent": func(r *fleet.Record) { r.Health.Agent = "a2" },
	} {
		rec := good
		rec.Health.Devices = append([]wire.DeviceHealth(nil), good.Health.Devices...)
		spoil(&rec)
		b, err := rec.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fleet.DecodeRecord(b, t0); !errors.Is(err, fleet.ErrBadRecord) {
			t.Errorf("%s: DecodeRecord = %v, want ErrBadRecord", name, err)
		}
	}
	if _, err := fleet.DecodeRecord([]byte(`{"agent":"a1"`), t0); !errors.Is(err, fleet.ErrBadRecord) {
		t.Errorf("truncated: %v", err)
	}
}

func TestSweepJudgesOnlyItsAgents(t *testing.T) {
	clk := &clock{now: t0}
	r := fleet.New(fleet.Options{Now: clk.Now, Judges: func(agent string) bool { return agent == "mine" }})
	h := &harness{t: t, clk: clk, r: r, seq: map[string]uint64{}}
	h.setup("mine", "north", "cam-1")
	h.setup("theirs", "north", "cam-2")
	r.Sweep(clk.Add(time.Hour))
	if a := h.agent("mine"); a.Status != wire.StatusOffline || a.Reason != "heartbeat" {
		t.Errorf("own silent agent: %s %s", a.Status, a.Reason)
	}
	if a := h.agent("theirs"); a.Status != wire.StatusOnline {
		t.Errorf("another hub's agent judged here: %s", a.Status)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	h := newHarness(f)
	h.setup("a1", "north", "cam-1", "cam-2")
	rec, _ := h.r.Record("a1")
	b, _ := rec.Encode()
	f.Add(b)
	f.Add([]byte(`{"agent":"a1","status":"online","report":{},"seen":[]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := fleet.DecodeRecord(payload, t0)
		if err != nil {
			if !errors.Is(err, fleet.ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		// What decodes applies without a panic, and keeps the registry
		// consistent.
		r := newHarness(t)
		r.setup(got.Agent, "north", "cam-1", "cam-2")
		_ = r.r.ApplyRecord(got)
		checkInvariants(t, r.r)
	})
}

// BenchmarkRecord is one agent of 50 cameras through a record: made and
// encoded on its owner, decoded and applied on a follower.
func BenchmarkRecord(b *testing.B) {
	owner, follower := newHarness(b), newHarness(b)
	var ids []string
	var lines []wire.DeviceHealth
	for i := range 50 {
		id := fmt.Sprintf("cam-%02d", i)
		ids = append(ids, id)
		l := line(id, wire.StatusOnline, "")
		l.Metrics = map[string]float64{"fps": 25, "bitrate_kbps": 2048, "rtsp_ms": 12, "tcp_ms": 3, "frame_age_s": 0.1}
		lines = append(lines, l)
	}
	owner.must(owner.birth("a1", 1))
	inv := owner.inventory("a1", "north", ids...)
	owner.must(inv)
	owner.must(owner.health("a1", lines...))
	if _, err := follower.r.Apply(inv, true); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec, _ := owner.r.Record("a1")
		p, err := rec.Encode()
		if err != nil {
			b.Fatal(err)
		}
		got, err := fleet.DecodeRecord(p, t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := follower.r.ApplyRecord(got); err != nil {
			b.Fatal(err)
		}
	}
}
