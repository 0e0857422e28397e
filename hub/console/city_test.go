package console

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// city is a real fleet.Registry of agents × perAgent devices, built and
// changed through Apply as the hub's ingest does: agent i is
// agent-NNNN at site-NNNN in district-(i mod 16), its devices
// cam-NNNN-MMM, every tenth a door sensor.
type city struct {
	tb       testing.TB
	r        *fleet.Registry
	agents   int
	perAgent int

	lines atomic.Int64 // health lines applied

	mu   sync.Mutex // guards what follows: the churn runs beside the test
	seq  map[string]uint64
	rnd  *rand.Rand
	next int // the agent the next report is from
}

const cityBoot = int64(1795860000000)

func newCity(tb testing.TB, agents, perAgent int) *city {
	tb.Helper()
	c := &city{tb: tb, r: fleet.New(fleet.Options{}), agents: agents, perAgent: perAgent,
		seq: map[string]uint64{}, rnd: rand.New(rand.NewPCG(1, 2))}
	for i := range agents {
		id := cityAgent(i)
		c.apply(wire.Message{Agent: id, Channel: wire.ChannelState, State: &wire.State{
			Header: c.header(id), State: wire.AgentOnline, Conn: 1, Interval: 10, Version: "test"}})
		inv := &wire.Inventory{Header: c.header(id), Site: wire.Site{
			ID: fmt.Sprintf("site-%04d", i), Name: fmt.Sprintf("Site %d", i), District: cityDistrict(i)}}
		for j := range perAgent {
			d := wire.Device{ID: cityDevice(i, j), Name: fmt.Sprintf("Camera %d/%d", i, j), Kind: wire.KindCamera,
				District: cityDistrict(i), Criticality: 3}
			if j%10 == 9 {
				d.Kind, d.SensorKind, d.Name = wire.KindSensor, wire.SensorDoor, fmt.Sprintf("Door %d/%d", i, j)
			}
			inv.Devices = append(inv.Devices, d)
		}
		c.apply(wire.Message{Agent: id, Channel: wire.ChannelInventory, Inventory: inv})
		c.report(i, 0)
	}
	return c
}

func cityAgent(i int) string     { return fmt.Sprintf("agent-%04d", i) }
func cityDistrict(i int) string  { return fmt.Sprintf("district-%02d", i%16) }
func cityDevice(i, j int) string { return fmt.Sprintf("cam-%04d-%03d", i, j) }

func (c *city) header(agent string) wire.Header {
	c.seq[agent]++
	return wire.Header{V: wire.Version, Agent: agent, Boot: cityBoot, Seq: c.seq[agent], TS: time.Now()}
}

func (c *city) apply(m wire.Message) {
	if _, err := c.r.Apply(m, false); err != nil {
		panic(fmt.Sprintf("Apply %s/%s: %v", m.Agent, m.Channel, err)) // the churn goroutine cannot Fatal
	}
}

var cityMetrics = map[string]float64{wire.MetricFPS: 25, wire.MetricRTSPMillis: 40}

// report applies agent i's health report of all its devices: online,
// except that each is offline or degraded with probability flip.
func (c *city) report(i int, flip float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := cityAgent(i)
	h := &wire.Health{Header: c.header(id), Interval: 10, Devices: make([]wire.DeviceHealth, c.perAgent)}
	for j := range h.Devices {
		st := wire.StatusOnline
		if c.rnd.Float64() < flip {
			st = []wire.Status{wire.StatusOffline, wire.StatusDegraded}[c.rnd.IntN(2)]
		}
		h.Devices[j] = wire.DeviceHealth{ID: cityDevice(i, j), Status: st, Since: h.TS, Metrics: cityMetrics}
	}
	c.apply(wire.Message{Agent: id, Channel: wire.ChannelHealth, Health: h})
	c.lines.Add(int64(len(h.Devices)))
}

// churn applies one agent's report after another, round robin, at
// linesPerSecond health lines a second in all (flipping statuses as
// report does), catching up on ticks it missed, until stop is closed;
// done is closed after the last.
func (c *city) churn(linesPerSecond int, flip float64, stop <-chan struct{}) (done <-chan struct{}) {
	d := make(chan struct{})
	go func() {
		defer close(d)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		start, sent := time.Now(), 0
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			due := int(time.Since(start).Seconds() * float64(linesPerSecond) / float64(c.perAgent))
			for ; sent < due; sent++ {
				c.mu.Lock()
				i := c.next
				c.next = (c.next + 1) % c.agents
				c.mu.Unlock()
				c.report(i, flip)
			}
		}
	}()
	return d
}
