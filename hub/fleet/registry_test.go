package fleet_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

func TestBirthInventoryHealth(t *testing.T) {
	h := newHarness(t)

	h.must(h.birth("a1", 1))
	a := h.agent("a1")
	if a.Status != wire.StatusOnline || a.Conn != 1 || a.Interval != 10 || a.Version != "test" || !a.LastSeen.Equal(t0) {
		t.Fatalf("after birth: %+v", a)
	}
	ch := h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeAgent || ch[0].From != wire.StatusUnknown || ch[0].To != wire.StatusOnline {
		t.Fatalf("birth changes = %+v", ch)
	}

	h.must(h.inventory("a1", "Riverside", "cam-2", "cam-1"))
	ch = h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeInventory || len(ch[0].Affected) != 2 || ch[0].Affected[0].ID != "cam-1" {
		t.Fatalf("inventory changes = %+v", ch)
	}
	if got := statuses(h.r.Devices()); !slices.Equal(got, []string{"cam-1=unknown", "cam-2=unknown"}) {
		t.Fatalf("devices after inventory = %v", got)
	}

	now := h.clk.Add(5 * time.Second)
	probed := now.Add(-time.Second)
	l1 := line("cam-1", wire.StatusOnline, "")
	l1.Probed = probed
	l2 := line("cam-2", wire.StatusOffline, wire.ReasonRefused)
	l2.Detail = "connection refused"
	samples := h.must(h.health("a1", l1, l2))

	if len(samples) != 2 || !reflect.DeepEqual(samples[1], fleet.Sample{
		Device: "cam-2", Agent: "a1", Site: "site-a1", District: "Riverside", Kind: wire.KindCamera,
		Status: wire.StatusOffline, Reason: wire.ReasonRefused, Metrics: map[string]float64{"fps": 15}, At: now,
	}) {
		t.Fatalf("samples = %+v", samples)
	}
	ch = h.take()
	if len(ch) != 2 || ch[0].Kind != fleet.ChangeDevice || ch[0].Device.ID != "cam-1" || ch[0].To != wire.StatusOnline ||
		ch[1].Device.ID != "cam-2" || ch[1].From != wire.StatusUnknown || ch[1].To != wire.StatusOffline || ch[1].Reason != "refused" {
		t.Fatalf("health changes = %+v", ch)
	}
	if ch[0].Seq >= ch[1].Seq || !ch[0].At.Equal(now) {
		t.Fatalf("change seq/at: %+v", ch)
	}
	d := h.device("cam-2")
	if d.Status != wire.StatusOffline || d.Reason != wire.ReasonRefused || d.Detail != "connection refused" ||
		d.Reported != wire.StatusOffline || !d.LastSeen.Equal(now) || d.Site != "site-a1" || d.SiteName != "Site a1" {
		t.Fatalf("cam-2 = %+v", d)
	}
	// The agent's since (an hour ago) predates the device's creation: the
	// hub's view changed now.
	if !d.Since.Equal(now) {
		t.Fatalf("cam-2 since = %v, want %v", d.Since, now)
	}
	if d := h.device("cam-1"); !d.Probed.Equal(probed) {
		t.Fatalf("cam-1 probed = %v", d.Probed)
	}
	if a := h.agent("a1"); a.Devices != 2 || a.Site != "site-a1" || a.District != "Riverside" || !a.LastSeen.Equal(now) {
		t.Fatalf("agent = %+v", a)
	}

	// Same statuses again: no Changes. A status change uses the agent's
	// since when it lies between the previous change and now.
	h.must(h.health("a1", l1, l2))
	at := h.clk.Add(10 * time.Second)
	l2 = line("cam-2", wire.StatusOnline, "")
	l2.Since = at.Add(-3 * time.Second)
	h.must(h.health("a1", l1, l2))
	ch = h.take()
	if len(ch) != 1 || ch[0].Device.ID != "cam-2" || ch[0].To != wire.StatusOnline || !ch[0].Device.Since.Equal(l2.Since) {
		t.Fatalf("recovery changes = %+v", ch)
	}
	checkInvariants(t, h.r)
}

func TestAgentOfflineCascade(t *testing.T) {
	for _, tc := range []struct {
		name   string
		down   func(h *harness) wire.Message
		reason string
	}{
		{"will", func(h *harness) wire.Message { return h.will("a1", 1) }, "will"},
		{"clean shutdown", func(h *harness) wire.Message { return h.shutdown("a1", 1) }, "shutdown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.setup("a1", "Riverside", "cam-1", "cam-2", "cam-3")
			h.setup("b1", "Hillside", "cam-9")
			h.must(h.health("a1",
				line("cam-1", wire.StatusOnline, ""),
				line("cam-2", wire.StatusDegraded, wire.ReasonLowFrameRate),
				line("cam-3", wire.StatusOffline, wire.ReasonRefused)))
			h.take()

			down := h.clk.Add(time.Second)
			h.must(tc.down(h))
			ch := h.take()
			if len(ch) != 1 {
				t.Fatalf("agent offline: %d changes, want ONE: %+v", len(ch), ch)
			}
			c := ch[0]
			if c.Kind != fleet.ChangeAgent || c.From != wire.StatusOnline || c.To != wire.StatusOffline || c.Reason != tc.reason ||
				c.Agent.ID != "a1" || c.Agent.Status != wire.StatusOffline {
				t.Fatalf("change = %+v", c)
			}
			if got := statuses(c.Affected); !slices.Equal(got, []string{"cam-1=unreachable", "cam-2=unreachable", "cam-3=unreachable"}) {
				t.Fatalf("affected = %v", got)
			}
			want := map[string]wire.Status{"cam-1": wire.StatusOnline, "cam-2": wire.StatusDegraded, "cam-3": wire.StatusOffline}
			for _, d := range c.Affected {
				if d.Reason != wire.ReasonAgentOffline || d.Reported != want[d.ID] || !d.Since.Equal(down) {
					t.Fatalf("affected %s = %+v", d.ID, d)
				}
			}
			if d := h.device("cam-9"); d.Status != wire.StatusOnline {
				t.Fatalf("other agent's device = %s", d.Status)
			}
			checkInvariants(t, h.r)

			// Back: ONE Change, devices return to the agent's last word.
			h.clk.Add(time.Second)
			h.must(h.birth("a1", 2))
			ch = h.take()
			if len(ch) != 1 || ch[0].Kind != fleet.ChangeAgent || ch[0].To != wire.StatusOnline {
				t.Fatalf("agent back: %+v", ch)
			}
			if got := statuses(ch[0].Affected); !slices.Equal(got, []string{"cam-1=online", "cam-2=degraded", "cam-3=offline"}) {
				t.Fatalf("affected = %v", got)
			}
			if d := h.device("cam-3"); d.Reason != wire.ReasonRefused {
				t.Fatalf("cam-3 reason after return = %q", d.Reason)
			}
			checkInvariants(t, h.r)
		})
	}
}

func TestStaleWillIgnored(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	h.must(h.birth("a1", 2)) // quick reconnect
	h.take()

	h.rejected(h.will("a1", 1), false, wire.RejectReplay)
	h.rejected(h.will("a1", 1), true, wire.RejectReplay)
	if a := h.agent("a1"); a.Status != wire.StatusOnline || a.Conn != 2 {
		t.Fatalf("after stale will: %+v", a)
	}
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("stale will changed: %+v", ch)
	}

	old := h.will("a1", 2)
	old.State.Boot = boot - 1 // the previous incarnation's will
	h.rejected(old, true, wire.RejectReplay)

	h.must(h.will("a1", 2))
	if a := h.agent("a1"); a.Status != wire.StatusOffline || a.Reason != "will" {
		t.Fatalf("after current will: %+v", a)
	}
}

func TestSequence(t *testing.T) {
	type step struct {
		boot     int64
		seq      uint64
		retained bool
		reject   wire.RejectReason // "" = accepted
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		wantSeq  uint64
		wantGaps uint64
		wantBoot int64
	}{
		{"in order", []step{{boot, 1, false, ""}, {boot, 2, false, ""}, {boot, 3, false, ""}}, 3, 0, boot},
		{"duplicate", []step{{boot, 1, false, ""}, {boot, 2, false, ""}, {boot, 2, false, wire.RejectReplay}}, 2, 0, boot},
		{"older seq", []step{{boot, 5, false, ""}, {boot, 3, false, wire.RejectReplay}}, 5, 0, boot},
		{"gaps counted", []step{{boot, 1, false, ""}, {boot, 4, false, ""}, {boot, 5, false, ""}, {boot, 10, false, ""}}, 10, 6, boot},
		{"older boot", []step{{boot, 7, false, ""}, {boot - 1, 100, false, wire.RejectReplay}}, 7, 0, boot},
		{"new boot resets", []step{{boot, 50, false, ""}, {boot + 1, 1, false, ""}, {boot + 1, 2, false, ""}}, 2, 0, boot + 1},
		{"new boot starts anywhere", []step{{boot, 50, false, ""}, {boot + 1, 9, false, ""}}, 9, 0, boot + 1},
		{"retained old seq accepted", []step{{boot, 40, false, ""}, {boot, 1, true, ""}, {boot, 2, true, ""}, {boot, 41, false, ""}}, 41, 0, boot},
		{"retained keeps max", []step{{boot, 40, false, ""}, {boot, 60, true, ""}, {boot, 50, false, wire.RejectReplay}}, 60, 0, boot},
		{"no gap after catch-up", []step{{boot, 1, true, ""}, {boot, 2, true, ""}, {boot, 90, false, ""}, {boot, 92, false, ""}}, 92, 1, boot},
		{"retained older boot", []step{{boot, 3, false, ""}, {boot - 1, 1, true, wire.RejectReplay}}, 3, 0, boot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for i, s := range tc.steps {
				m := h.birth("a1", 1)
				m.State.Boot, m.State.Seq = s.boot, s.seq
				if s.reject != "" {
					h.rejected(m, s.retained, s.reject)
					continue
				}
				if _, err := h.r.Apply(m, s.retained); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			a := h.agent("a1")
			if a.Seq != tc.wantSeq || a.Gaps != tc.wantGaps || a.Boot != tc.wantBoot {
				t.Fatalf("seq %d gaps %d boot %d, want %d %d %d", a.Seq, a.Gaps, a.Boot, tc.wantSeq, tc.wantGaps, tc.wantBoot)
			}
		})
	}
}

func TestRetainedCatchUp(t *testing.T) {
	// A hub starting fresh gets the retained birth and inventory; they make
	// the agent online but the inventory alone never would.
	h := newHarness(t)
	inv := h.inventory("a1", "Riverside", "cam-1")
	b := h.birth("a1", 1)
	inv.Inventory.Seq, b.State.Seq = 2, 1
	if _, err := h.r.Apply(inv, true); err != nil {
		t.Fatal(err)
	}
	if a := h.agent("a1"); a.Status != wire.StatusUnknown || !a.LastSeen.IsZero() {
		t.Fatalf("retained inventory revived the agent: %+v", a)
	}
	if _, err := h.r.Apply(b, true); err != nil {
		t.Fatal(err)
	}
	if a := h.agent("a1"); a.Status != wire.StatusOnline {
		t.Fatalf("after retained birth: %+v", a)
	}

	// A retained will for a dead agent: devices unreachable at once.
	h2 := newHarness(t)
	if _, err := h2.r.Apply(h2.will("a2", 3), true); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.r.Apply(h2.inventory("a2", "Riverside", "cam-2"), true); err != nil {
		t.Fatal(err)
	}
	if d := h2.device("cam-2"); d.Status != wire.StatusUnreachable || h2.agent("a2").Status != wire.StatusOffline {
		t.Fatalf("retained will then inventory: device %s agent %s", d.Status, h2.agent("a2").Status)
	}
}

func TestHeartbeatBackstop(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "cam-2")
	h.setup("b1", "Riverside", "cam-9")

	h.clk.Add(20 * time.Second)
	h.must(h.health("b1", line("cam-9", wire.StatusOnline, "")))
	h.r.Sweep(h.clk.Add(10 * time.Second)) // a1 silent 30s: exactly 3 intervals
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("swept at 3 intervals: %+v", ch)
	}
	h.r.Sweep(h.clk.Add(time.Second))
	ch := h.take()
	if len(ch) != 1 || ch[0].Agent.ID != "a1" || ch[0].Reason != "heartbeat" || len(ch[0].Affected) != 2 {
		t.Fatalf("sweep changes = %+v", ch)
	}
	if h.agent("b1").Status != wire.StatusOnline {
		t.Fatal("b1 swept too")
	}

	// The agent speaks again: one Change, devices take the new report.
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, ""), line("cam-2", wire.StatusOffline, wire.ReasonTimeout)))
	ch = h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeAgent || ch[0].To != wire.StatusOnline {
		t.Fatalf("revival changes = %+v", ch)
	}
	if got := statuses(ch[0].Affected); !slices.Equal(got, []string{"cam-1=online", "cam-2=offline"}) {
		t.Fatalf("affected = %v", got)
	}
	checkInvariants(t, h.r)
}

func TestSweepWaitsForLink(t *testing.T) {
	clk := &clock{now: t0}
	var live bool
	r := fleet.New(fleet.Options{Now: clk.Now, Live: func() bool { return live }})
	h := &harness{t: t, clk: clk, r: r, seq: map[string]uint64{}}
	live = true
	h.must(h.birth("a1", 1))

	live = false // the hub lost the broker: silence proves nothing
	r.Sweep(clk.Add(time.Hour))
	if a := h.agent("a1"); a.Status != wire.StatusOnline {
		t.Fatalf("swept while the link was down: %s", a.Status)
	}
	live = true
	r.Sweep(clk.Add(time.Second)) // link back: a full grace period starts now
	r.Sweep(clk.Add(30 * time.Second))
	if a := h.agent("a1"); a.Status != wire.StatusOnline {
		t.Fatalf("swept within grace: %s", a.Status)
	}
	r.Sweep(clk.Add(time.Second))
	if a := h.agent("a1"); a.Status != wire.StatusOffline || a.Reason != "heartbeat" {
		t.Fatalf("not swept after grace: %+v", a)
	}
}

func TestRunSweeps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []fleet.Change
		r := fleet.New(fleet.Options{OnChange: func(c fleet.Change) {
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
		}})
		h := &harness{t: t, clk: &clock{now: time.Now()}, r: r, seq: map[string]uint64{}}
		h.must(h.birth("a1", 1)) // interval 10s
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		time.Sleep(30 * time.Second) // fake time inside the bubble
		synctest.Wait()
		if a := h.agent("a1"); a.Status != wire.StatusOnline {
			t.Fatalf("offline after 30s: %+v", a)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if a := h.agent("a1"); a.Status != wire.StatusOffline || a.Reason != "heartbeat" {
			t.Fatalf("after 32s: %+v", a)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 2 || got[1].Reason != "heartbeat" {
			t.Fatalf("changes = %+v", got)
		}
	})
}

func TestUnknownDeviceRejectedWithoutTouchingState(t *testing.T) {
	h := newHarness(t)

	// Health before any inventory: nothing is created.
	h.rejected(h.health("new", line("cam-x", wire.StatusOnline, "")), false, wire.RejectUnknownDevice)
	if _, ok := h.r.Agent("new"); ok {
		t.Fatal("a rejected message created an agent")
	}

	h.setup("a1", "Riverside", "cam-1", "cam-2")
	before := stateOf(h.r, "a1")
	h.clk.Add(time.Minute)
	for _, m := range []wire.Message{
		h.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused), line("cam-404", wire.StatusOnline, "")),
		h.event("a1", "cam-404", wire.EventStatus, wire.StatusOffline, wire.ReasonTimeout),
	} {
		h.rejected(m, false, wire.RejectUnknownDevice)
	}
	if after := stateOf(h.r, "a1"); !reflect.DeepEqual(before, after) {
		t.Fatalf("rejected messages changed state:\n%+v\n%+v", before, after)
	}
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("changes = %+v", ch)
	}
	// Rejected messages do not advance the sequence: to the hub they are
	// lost, so the next good one counts them as gaps.
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, "")))
	if a := h.agent("a1"); a.Gaps != 2 {
		t.Fatalf("gaps = %d, want 2", a.Gaps)
	}
}

func TestDeviceOwnedByAnotherAgent(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "cam-2")
	h.must(h.birth("b1", 1))
	before := stateOf(h.r, "a1")
	beforeB := stateOf(h.r, "b1")

	h.rejected(h.inventory("b1", "Hillside", "cam-7", "cam-2"), false, wire.RejectInvalid)
	if _, ok := h.r.Device("cam-7"); ok {
		t.Fatal("rejected inventory created cam-7")
	}
	if !reflect.DeepEqual(before, stateOf(h.r, "a1")) || !reflect.DeepEqual(beforeB, stateOf(h.r, "b1")) {
		t.Fatal("rejected inventory changed state")
	}
	// b1 may have its own devices.
	h.must(h.inventory("b1", "Hillside", "cam-7"))
	checkInvariants(t, h.r)
}

func TestSpoofedCannotTouchAnotherAgent(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1")
	h.setup("b1", "Hillside", "cam-9")
	h.must(h.event("a1", "cam-1", wire.EventTriggered, "", ""))
	h.take()
	before := stateOf(h.r, "a1")

	mismatched := h.health("a1", line("cam-1", wire.StatusOffline, ""))
	mismatched.Agent = "b1" // a hand-built message whose header names a1

	for _, tc := range []struct {
		name   string
		m      wire.Message
		reason wire.RejectReason
	}{
		{"health for a1's device", h.health("b1", line("cam-1", wire.StatusOffline, wire.ReasonRefused)), wire.RejectUnknownDevice},
		{"mixed health", h.health("b1", line("cam-9", wire.StatusOnline, ""), line("cam-1", wire.StatusOffline, "")), wire.RejectUnknownDevice},
		{"status event", h.event("b1", "cam-1", wire.EventStatus, wire.StatusOffline, wire.ReasonRefused), wire.RejectUnknownDevice},
		{"restored event", h.event("b1", "cam-1", wire.EventRestored, "", ""), wire.RejectUnknownDevice},
		{"inventory claiming cam-1", h.inventory("b1", "Hillside", "cam-9", "cam-1"), wire.RejectInvalid},
		{"header of another agent", mismatched, wire.RejectInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.rejected(tc.m, false, tc.reason)
			if after := stateOf(h.r, "a1"); !reflect.DeepEqual(before, after) {
				t.Fatalf("a1 changed:\n%+v\n%+v", before, after)
			}
		})
	}
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("changes = %+v", ch)
	}
}

func TestEventsAndTriggers(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "pir-1")

	at := h.clk.Add(time.Second)
	h.must(h.event("a1", "cam-1", wire.EventStatus, wire.StatusOffline, wire.ReasonRefused))
	h.must(h.event("a1", "pir-1", wire.EventTriggered, "", ""))
	ch := h.take()
	if len(ch) != 2 || ch[0].Kind != fleet.ChangeDevice || ch[0].To != wire.StatusOffline || !ch[0].Device.Since.Equal(at) ||
		ch[1].Kind != fleet.ChangeTrigger || ch[1].Reason != "triggered" || !ch[1].Device.Triggered {
		t.Fatalf("changes = %+v", ch)
	}
	// Health agreeing with the event adds nothing; health that says the
	// contact is back (the restored event was lost) is a trigger Change.
	h.must(h.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused), wire.DeviceHealth{ID: "pir-1", Status: wire.StatusOnline, Since: t0, Triggered: true}))
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("agreeing health changed: %+v", ch)
	}
	h.must(h.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused), line("pir-1", wire.StatusOnline, "")))
	ch = h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeTrigger || ch[0].Reason != "restored" || ch[0].Device.Triggered {
		t.Fatalf("changes = %+v", ch)
	}
}

func TestInventoryChanges(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "cam-2", "cam-3")

	// The same inventory again (a reconnect) is no news.
	h.must(h.inventory("a1", "Riverside", "cam-1", "cam-2", "cam-3"))
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("unchanged inventory: %+v", ch)
	}

	inv := h.inventory("a1", "Riverside", "cam-1", "cam-3", "cam-4")
	inv.Inventory.Devices[1].District = "Hillside" // cam-3 moved district
	h.must(inv)
	ch := h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeInventory || !slices.Equal(ch[0].Removed, []string{"cam-2"}) {
		t.Fatalf("changes = %+v", ch)
	}
	if got := statuses(ch[0].Affected); !slices.Equal(got, []string{"cam-3=online", "cam-4=unknown"}) {
		t.Fatalf("affected = %v", got)
	}
	if _, ok := h.r.Device("cam-2"); ok {
		t.Fatal("removed device still there")
	}
	if a := h.agent("a1"); a.Devices != 3 {
		t.Fatalf("agent devices = %d", a.Devices)
	}
	checkInvariants(t, h.r)

	// A removed device id is free for another agent.
	h.must(h.birth("b1", 1))
	h.must(h.inventory("b1", "Riverside", "cam-2"))
	if d := h.device("cam-2"); d.Agent != "b1" {
		t.Fatalf("cam-2 agent = %s", d.Agent)
	}
	checkInvariants(t, h.r)
}

func TestSummary(t *testing.T) {
	h := newHarness(t)
	if s := h.r.Summary(); s.Devices != 0 || s.OnlineRate != 0 || s.IntactRate != 0 || len(s.Districts) != 0 {
		t.Fatalf("empty summary = %+v", s)
	}
	h.setup("a1", "Riverside", "r1", "r2", "r3", "r4")
	h.setup("b1", "Hillside", "h1", "h2", "h3", "h4")
	h.setup("c1", "Hillside", "h5", "h6")
	h.must(h.health("a1",
		line("r1", wire.StatusOnline, ""), line("r2", wire.StatusDegraded, wire.ReasonLowFrameRate),
		line("r3", wire.StatusOffline, wire.ReasonRefused), line("r4", wire.StatusUnknown, "")))
	h.must(h.will("c1", 1))

	s := h.r.Summary()
	want := map[wire.Status]int{wire.StatusOnline: 5, wire.StatusDegraded: 1, wire.StatusOffline: 1, wire.StatusUnknown: 1, wire.StatusUnreachable: 2}
	if s.Devices != 10 || !reflect.DeepEqual(s.ByStatus, want) || s.OnlineRate != 0.6 || s.IntactRate != 0.5 || !s.At.Equal(h.clk.Now()) {
		t.Fatalf("summary = %+v", s)
	}
	if want := map[wire.Status]int{wire.StatusOnline: 2, wire.StatusOffline: 1, wire.StatusUnknown: 0}; !reflect.DeepEqual(s.Agents, want) {
		t.Fatalf("agents = %v, want %v", s.Agents, want)
	}
	if len(s.Districts) != 2 || s.Districts[0].District != "Hillside" || s.Districts[1].District != "Riverside" {
		t.Fatalf("districts = %+v", s.Districts)
	}
	hs, rs := s.Districts[0], s.Districts[1]
	if hs.Devices != 6 || hs.ByStatus[wire.StatusUnreachable] != 2 || hs.OnlineRate != 4.0/6 || hs.IntactRate != 4.0/6 {
		t.Fatalf("Hillside = %+v", hs)
	}
	if rs.Devices != 4 || rs.OnlineRate != 0.5 || rs.IntactRate != 0.25 {
		t.Fatalf("Riverside = %+v", rs)
	}
	checkInvariants(t, h.r)
}

// TestConcurrentChangesInOrder checks that OnChange sees Changes in Seq
// order even when many goroutines apply at once, and that it may read the
// registry.
func TestConcurrentChangesInOrder(t *testing.T) {
	var (
		mu   sync.Mutex
		seqs []uint64
		r    *fleet.Registry
	)
	r = fleet.New(fleet.Options{OnChange: func(c fleet.Change) {
		_ = r.Summary()
		mu.Lock()
		seqs = append(seqs, c.Seq)
		mu.Unlock()
	}})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			h := &harness{t: t, clk: &clock{now: time.Now()}, r: r, seq: map[string]uint64{}}
			id := string(rune('a' + i))
			h.must(h.inventory(id, "D", id+"-1", id+"-2"))
			for range 50 {
				h.must(h.health(id, line(id+"-1", wire.StatusOffline, ""), line(id+"-2", wire.StatusOnline, "")))
				h.must(h.health(id, line(id+"-1", wire.StatusOnline, ""), line(id+"-2", wire.StatusOffline, "")))
			}
			h.must(h.shutdown(id, 1))
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) == 0 || !slices.IsSorted(seqs) || seqs[0] != 1 || seqs[len(seqs)-1] != uint64(len(seqs)) {
		t.Fatalf("%d changes, in order %v", len(seqs), slices.IsSorted(seqs))
	}
	checkInvariants(t, r)
}

// A known device's serial or firmware changing in its inventory is a unit
// replaced or upgraded, carried on the inventory change; a serial given for
// the first time is not a change.
func TestAssetChanges(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "North", "cam-1", "cam-2")
	send := func(serial, firmware string) fleet.Change {
		t.Helper()
		m := h.inventory("a1", "North", "cam-1", "cam-2")
		m.Inventory.Devices[0].Serial, m.Inventory.Devices[0].Firmware, m.Inventory.Devices[0].Model = serial, firmware, "DS-2CD"
		h.must(m)
		cs := h.take()
		if len(cs) != 1 || cs[0].Kind != fleet.ChangeInventory {
			t.Fatalf("changes %+v", cs)
		}
		return cs[0]
	}
	if c := send("SN-1", "V5.5"); len(c.Assets) != 0 || h.device("cam-1").Serial != "SN-1" {
		t.Fatalf("first serial: %+v", c.Assets)
	}
	c := send("SN-2", "V5.7")
	if len(c.Assets) != 2 || c.Assets[0] != (fleet.AssetChange{Device: "cam-1", Field: "serial", From: "SN-1", To: "SN-2", At: c.Assets[0].At}) ||
		c.Assets[1].Field != "firmware" || c.Assets[1].From != "V5.5" || c.Assets[1].To != "V5.7" {
		t.Errorf("replaced: %+v", c.Assets)
	}
}

// A camera's streams arrive with its inventory and show on the device; a
// main stream whose codec or resolution changed is an asset change, while
// streams listed for the first time, a profile alone or a size one side
// does not know are not.
func TestStreamChanges(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "North", "cam-1")
	main := func(codec, profile string, w, hgt int) wire.Stream {
		return wire.Stream{Role: wire.StreamMain, Codec: codec, Profile: profile, Width: w, Height: hgt}
	}
	sub := wire.Stream{Role: wire.StreamSub, Codec: wire.CodecH264, Profile: "High", Width: 640, Height: 360}
	send := func(ss ...wire.Stream) []fleet.AssetChange {
		t.Helper()
		m := h.inventory("a1", "North", "cam-1")
		m.Inventory.Devices[0].Streams = ss
		h.must(m)
		cs := h.take()
		if len(cs) != 1 || cs[0].Kind != fleet.ChangeInventory {
			t.Fatalf("changes %+v", cs)
		}
		if got := h.device("cam-1").Streams; !slices.Equal(got, ss) {
			t.Fatalf("device streams %+v, want %+v", got, ss)
		}
		return cs[0].Assets
	}
	if a := send(main(wire.CodecH264, "High", 1920, 1080), sub); len(a) != 0 {
		t.Fatalf("first streams: %+v", a)
	}
	if a := send(main(wire.CodecH264, "Main", 1920, 1080), sub); len(a) != 0 {
		t.Fatalf("profile alone: %+v", a)
	}
	if a := send(main(wire.CodecH264, "", 0, 0), sub); len(a) != 0 {
		t.Fatalf("size unknown: %+v", a)
	}
	a := send(main(wire.CodecH265, "Main", 2560, 1440), sub)
	if len(a) != 1 || a[0] != (fleet.AssetChange{Device: "cam-1", Field: "main_stream", From: "H264", To: "H265 Main 2560×1440", At: a[0].At}) {
		t.Fatalf("codec changed: %+v", a)
	}
	a = send(main(wire.CodecH265, "Main", 1920, 1080))
	if len(a) != 1 || a[0].From != "H265 Main 2560×1440" || a[0].To != "H265 Main 1920×1080" {
		t.Fatalf("resolution changed: %+v", a)
	}
	if a := send(); len(a) != 0 || h.device("cam-1").Streams != nil {
		t.Fatalf("streams gone: %+v", a)
	}
}

// TestInventoryChangeSizedOnce: the snapshots an inventory's change
// carries are gathered in a slice made for the inventory's lines, not
// grown one by one (at a city's start every agent's inventory is new, and
// the copies were most of what applying it allocated).
func TestInventoryChangeSizedOnce(t *testing.T) {
	h := newHarness(t)
	h.must(h.birth("a1", 1))
	ids := make([]string, 30)
	for i := range ids {
		ids[i] = fmt.Sprintf("cam-%02d", i)
	}
	h.must(h.inventory("a1", "Jianghan", ids...))
	var found bool
	for _, c := range h.take() {
		if c.Kind != fleet.ChangeInventory {
			continue
		}
		found = true
		if len(c.Affected) != len(ids) || cap(c.Affected) != len(ids) {
			t.Errorf("inventory change carries %d snapshots in a slice of capacity %d, want %d of %d", len(c.Affected), cap(c.Affected), len(ids), len(ids))
		}
	}
	if !found {
		t.Fatal("no inventory change")
	}
}

// TestTransitionsAllocateNothing: the five stores that read every change's
// transitions get them without a slice made for each (at a city's start,
// 40,000 first transitions made 26 MB of them), for a device change and
// for an agent's.
func TestTransitionsAllocateNothing(t *testing.T) {
	d := fleet.Device{ID: "cam-1", Status: wire.StatusOnline}
	changes := []fleet.Change{
		{Kind: fleet.ChangeDevice, At: t0, From: wire.StatusUnknown, To: wire.StatusOnline, Device: &d},
		{Kind: fleet.ChangeAgent, At: t0, From: wire.StatusOffline, To: wire.StatusOnline, Affected: []fleet.Device{d, d}},
	}
	for _, c := range changes {
		var n int
		allocs := testing.AllocsPerRun(100, func() {
			for tr := range fleet.Transitions(&c) {
				if tr.To == wire.StatusOnline {
					n++
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%s change: %.0f allocations to read its transitions, want 0", c.Kind, allocs)
		}
		if n == 0 {
			t.Errorf("%s change: no transition to online", c.Kind)
		}
	}
}
