package fleet_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

const boot = int64(1795860000000)

// clock is an injected hub clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// harness drives a Registry with messages built like an agent would, and
// collects the Changes it emits.
type harness struct {
	t       testing.TB
	clk     *clock
	r       *fleet.Registry
	mu      sync.Mutex
	changes []fleet.Change
	seq     map[string]uint64 // next seq per agent
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, clk: &clock{now: t0}, seq: map[string]uint64{}}
	h.r = fleet.New(fleet.Options{
		Now: h.clk.Now,
		OnChange: func(c fleet.Change) {
			h.mu.Lock()
			h.changes = append(h.changes, c)
			h.mu.Unlock()
		},
	})
	return h
}

// take returns the Changes emitted since the last call.
func (h *harness) take() []fleet.Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.changes
	h.changes = nil
	return c
}

func (h *harness) header(agent string) wire.Header {
	h.seq[agent]++
	return wire.Header{V: wire.Version, Agent: agent, Boot: boot, Seq: h.seq[agent], TS: h.clk.Now()}
}

func (h *harness) birth(agent string, conn uint32) wire.Message {
	return wire.Message{Agent: agent, Channel: wire.ChannelState, State: &wire.State{
		Header: h.header(agent), State: wire.AgentOnline, Conn: conn, Interval: 10, Version: "test",
	}}
}

func (h *harness) will(agent string, conn uint32) wire.Message {
	return wire.Message{Agent: agent, Channel: wire.ChannelState, State: &wire.State{
		Header: wire.Header{V: wire.Version, Agent: agent, Boot: boot, TS: h.clk.Now()},
		State:  wire.AgentOffline, Will: true, Conn: conn,
	}}
}

func (h *harness) shutdown(agent string, conn uint32) wire.Message {
	return wire.Message{Agent: agent, Channel: wire.ChannelState, State: &wire.State{
		Header: h.header(agent), State: wire.AgentOffline, Conn: conn,
	}}
}

// inventory lists cameras in district, with the site named after the agent.
func (h *harness) inventory(agent, district string, ids ...string) wire.Message {
	inv := &wire.Inventory{
		Header: h.header(agent),
		Site:   wire.Site{ID: "site-" + agent, Name: "Site " + agent, District: district, Location: wire.Location{Lat: 30.5, Lon: 114.3}},
	}
	for _, id := range ids {
		inv.Devices = append(inv.Devices, wire.Device{
			ID: id, Name: "Cam " + id, Kind: wire.KindCamera, District: district,
			Location: wire.Location{Lat: 30.5, Lon: 114.3}, Criticality: 3,
		})
	}
	return wire.Message{Agent: agent, Channel: wire.ChannelInventory, Inventory: inv}
}

func line(id string, s wire.Status, r wire.Reason) wire.DeviceHealth {
	return wire.DeviceHealth{ID: id, Status: s, Reason: r, Since: t0.Add(-time.Hour), Metrics: map[string]float64{"fps": 15}}
}

func (h *harness) health(agent string, lines ...wire.DeviceHealth) wire.Message {
	return wire.Message{Agent: agent, Channel: wire.ChannelHealth, Health: &wire.Health{
		Header: h.header(agent), Interval: 10, Devices: lines,
	}}
}

func (h *harness) event(agent, dev string, typ wire.EventType, to wire.Status, r wire.Reason) wire.Message {
	return wire.Message{Agent: agent, Channel: wire.ChannelEvents, Event: &wire.Event{
		Header: h.header(agent), Device: dev, Type: typ, From: wire.StatusOnline, To: to, Reason: r, At: h.clk.Now(),
	}}
}

func (h *harness) must(m wire.Message) []fleet.Sample {
	h.t.Helper()
	s, err := h.r.Apply(m, false)
	if err != nil {
		h.t.Fatalf("Apply %s/%s: %v", m.Agent, m.Channel, err)
	}
	return s
}

// rejected asserts that Apply refuses m for reason.
func (h *harness) rejected(m wire.Message, retained bool, reason wire.RejectReason) {
	h.t.Helper()
	_, err := h.r.Apply(m, retained)
	var we *wire.Error
	if !errors.As(err, &we) {
		h.t.Fatalf("Apply %s/%s: err = %v, want a *wire.Error %s", m.Agent, m.Channel, err, reason)
	}
	if we.Reason != reason {
		h.t.Fatalf("Apply %s/%s: reason %s (%v), want %s", m.Agent, m.Channel, we.Reason, err, reason)
	}
}

// setup brings agent online with the given devices all reported online.
func (h *harness) setup(agent, district string, ids ...string) {
	h.t.Helper()
	h.must(h.birth(agent, 1))
	h.must(h.inventory(agent, district, ids...))
	var lines []wire.DeviceHealth
	for _, id := range ids {
		lines = append(lines, line(id, wire.StatusOnline, ""))
	}
	h.must(h.health(agent, lines...))
	h.take()
}

func (h *harness) device(id string) fleet.Device {
	h.t.Helper()
	d, ok := h.r.Device(id)
	if !ok {
		h.t.Fatalf("device %s not found", id)
	}
	return d
}

func (h *harness) agent(id string) fleet.Agent {
	h.t.Helper()
	a, ok := h.r.Agent(id)
	if !ok {
		h.t.Fatalf("agent %s not found", id)
	}
	return a
}

// statuses renders device statuses as "id=status" for compact assertions.
func statuses(ds []fleet.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%s=%s", d.ID, d.Status)
	}
	return out
}

// checkInvariants recounts the registry from its reads: Summary must agree
// with Devices, agents' device counts with device ownership, and Devices must
// be sorted.
func checkInvariants(t testing.TB, r *fleet.Registry) {
	t.Helper()
	devs := r.Devices()
	if !slices.IsSortedFunc(devs, func(a, b fleet.Device) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatal("Devices not sorted by id")
	}
	byStatus := map[wire.Status]int{}
	byDistrict := map[string]map[wire.Status]int{}
	perAgent := map[string]int{}
	for _, d := range devs {
		byStatus[d.Status]++
		if byDistrict[d.District] == nil {
			byDistrict[d.District] = map[wire.Status]int{}
		}
		byDistrict[d.District][d.Status]++
		perAgent[d.Agent]++
	}
	s := r.Summary()
	if s.Devices != len(devs) {
		t.Fatalf("Summary.Devices = %d, Devices() has %d", s.Devices, len(devs))
	}
	for st, n := range s.ByStatus {
		if byStatus[st] != n {
			t.Fatalf("Summary.ByStatus[%s] = %d, counted %d", st, n, byStatus[st])
		}
	}
	if len(s.Districts) != len(byDistrict) {
		t.Fatalf("Summary has %d districts, counted %d", len(s.Districts), len(byDistrict))
	}
	for _, ds := range s.Districts {
		for st, n := range ds.ByStatus {
			if byDistrict[ds.District][st] != n {
				t.Fatalf("district %s: ByStatus[%s] = %d, counted %d", ds.District, st, n, byDistrict[ds.District][st])
			}
		}
	}
	agents := map[wire.Status]int{}
	for _, a := range r.Agents() {
		agents[a.Status]++
		if a.Devices != perAgent[a.ID] {
			t.Fatalf("agent %s: Devices = %d, owns %d", a.ID, a.Devices, perAgent[a.ID])
		}
	}
	for st, n := range s.Agents {
		if agents[st] != n {
			t.Fatalf("Summary.Agents[%s] = %d, counted %d", st, n, agents[st])
		}
	}
}

// agentState is everything the registry holds about one agent, for
// before/after comparisons.
type agentState struct {
	Agent   fleet.Agent
	Devices []fleet.Device
}

func stateOf(r *fleet.Registry, agent string) agentState {
	a, _ := r.Agent(agent)
	s := agentState{Agent: a}
	for _, d := range r.Devices() {
		if d.Agent == agent {
			d.Metrics = maps.Clone(d.Metrics)
			s.Devices = append(s.Devices, d)
		}
	}
	return s
}
