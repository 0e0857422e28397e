package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkDeviceMemory measures what the hub keeps per device: a city of
// 400 agents of 100 devices (90 cameras, 10 sensors), as a running hub
// holds it once every agent's retained birth and inventory and its health
// reports have arrived, with an InfluxDB (a stub that accepts every write)
// configured as in production. Messages go the way ingest takes them:
// wire.Decode from JSON, the fleet, then the metric store and the alarm
// engine, every change fanned out to the console, the transition logs,
// coverage, alarms and work orders. One op is one health report from
// every agent; heap-B/device is the live heap the city added, after a
// collection, divided by its devices.
func BenchmarkDeviceMemory(b *testing.B) {
	c := newMemoryHub(b)
	before := testenv.LiveHeap()
	c.announce()
	b.ResetTimer()
	for b.Loop() {
		c.report()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.devices()), "ns/sample")
	c.check()
	c.drain()
	b.ReportMetric(float64(testenv.LiveHeap()-before)/float64(c.devices()), "heap-B/device")
	runtime.KeepAlive(c.city)
}

// BenchmarkStartPeak measures what the hub holds above its steady state
// while it starts, on BenchmarkDeviceMemory's city: the first health
// report of every agent, when every device makes its first transition
// (unknown → online) at once, and the alarm reconciliation two intervals
// after the start. The peak RSS follows the live heap at the collections
// in those moments, so each phase runs with GOGC=10, collections close
// together, and reports the largest live heap one of them found, above the
// city's live heap once everything is written, per device; steady-B/device
// is the same for a later report, what every round costs. One op is one
// hub and one city, started and fed.
func BenchmarkStartPeak(b *testing.B) {
	var first, reconcile, steady float64
	for b.Loop() {
		c := newMemoryHub(b)
		c.announce()
		c.drain()
		p1 := peakLive(c.report)
		c.drain()
		p2 := peakLive(c.hub.reconcile)
		p3 := peakLive(c.report)
		c.check()
		c.drain()
		live, n := testenv.LiveHeap(), float64(c.devices())
		first += float64(p1-live) / n
		reconcile += float64(p2-live) / n
		steady += float64(p3-live) / n
		runtime.KeepAlive(c.city)
	}
	b.ReportMetric(first/float64(b.N), "first-B/device")
	b.ReportMetric(reconcile/float64(b.N), "reconcile-B/device")
	b.ReportMetric(steady/float64(b.N), "steady-B/device")
}

// memoryHub is a running hub and the city the memory benchmarks feed it:
// 400 agents of 100 devices (90 cameras, 10 sensors), with an InfluxDB (a
// stub that accepts every write) configured as in production.
type memoryHub struct {
	b       *testing.B
	hub     *App
	city    []memoryAgent
	samples samplesTo
}

func newMemoryHub(b *testing.B) *memoryHub {
	const agents, devices = 400, 100
	influx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(influx.Close)
	cfg := testConfig(b)
	cfg.Influx = config.Influx{URL: influx.URL, Org: "city", Bucket: "citywatch", Token: "t", BatchSize: 5000,
		FlushInterval: time.Second, Timeout: 10 * time.Second, Queue: 200_000, Writers: 4}
	hub := run(b, cfg)
	return &memoryHub{b: b, hub: hub, city: newMemoryCity(b, agents, devices), samples: samplesTo{hub.store, hub.alarms}}
}

func (c *memoryHub) devices() int { return len(c.city) * len(c.city[0].health.Devices) }

// apply takes a message the way ingest does: wire.Decode from JSON, the
// fleet, then the metric store and the alarm engine.
func (c *memoryHub) apply(topic string, payload []byte, retained bool) {
	m, err := wire.Decode(topic, payload, time.Now())
	if err != nil {
		c.b.Fatal(err)
	}
	s, err := c.hub.fleet.Apply(m, retained)
	if err != nil {
		c.b.Fatal(err)
	}
	if len(s) > 0 {
		c.samples.WriteSamples(s)
	}
}

// announce applies every agent's retained birth and inventory.
func (c *memoryHub) announce() {
	for i := range c.city {
		a := &c.city[i]
		c.apply(wire.Topic(a.id, wire.ChannelState), a.birth, true)
		c.apply(wire.Topic(a.id, wire.ChannelInventory), a.inventory, true)
	}
}

// report applies one health report from every agent.
func (c *memoryHub) report() {
	for i := range c.city {
		a := &c.city[i]
		c.apply(wire.Topic(a.id, wire.ChannelHealth), a.nextHealth(c.b), false)
	}
}

// check fails unless every device is known and online.
func (c *memoryHub) check() {
	if s := c.hub.fleet.Summary(); s.Devices != c.devices() || s.ByStatus[wire.StatusOnline] != c.devices() {
		c.b.Fatalf("%d devices, %v; want %d online", s.Devices, s.ByStatus, c.devices())
	}
}

// drain waits for InfluxDB's and the history's writers to take what is
// queued: that is the queues', not the devices'.
func (c *memoryHub) drain() {
	for deadline := time.Now().Add(30 * time.Second); queued(c.hub) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// peakLive runs f with GOGC=10 and returns the largest live heap a
// collection found meanwhile.
func peakLive(f func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			metrics.Read(live)
			peak = max(peak, live[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	f()
	runtime.GC() // and what f left queued
	close(stop)
	<-done
	return int64(peak)
}

// queued reports whether points wait for InfluxDB or transitions for the
// history's database.
func queued(hub *App) bool {
	var text strings.Builder
	hub.metrics.WriteText(&text)
	return hub.store.Status().QueueDepth > 0 || !strings.Contains(text.String(), "\ncitywatch_history_queue 0\n")
}

// memoryAgent is one agent of BenchmarkDeviceMemory's city, its messages
// encoded as it would send them.
type memoryAgent struct {
	id               string
	birth, inventory []byte
	health           wire.Health
}

func newMemoryCity(b *testing.B, agents, devices int) []memoryAgent {
	boot := time.Now().Add(-time.Hour).UnixMilli()
	city := make([]memoryAgent, agents)
	for i := range city {
		a := &city[i]
		a.id = fmt.Sprintf("agent-%04d", i)
		district := fmt.Sprintf("District %d", i%8)
		hdr := func(seq uint64) wire.Header {
			return wire.Header{V: wire.Version, Agent: a.id, Boot: boot, Seq: seq, TS: time.Now()}
		}
		site := wire.Site{ID: "site-" + a.id, Name: "Site " + a.id, District: district,
			Location: wire.Location{Lat: 30.5 + float64(i%20)*0.01, Lon: 114.2 + float64(i/20)*0.01}}
		inv := wire.Inventory{Header: hdr(2), Site: site}
		a.health = wire.Health{Header: hdr(2), Interval: 10}
		for j := range devices {
			loc := wire.Location{Lat: site.Location.Lat + float64(j%10)*0.0002, Lon: site.Location.Lon + float64(j/10)*0.0002}
			dev := wire.Device{Kind: wire.KindCamera, District: district, Location: loc, Criticality: 3,
				Vendor: "hikvision", Model: "DS-2CD2143G2-I", Firmware: "V5.7.3", Installed: "2023-04-01"}
			line := wire.DeviceHealth{Status: wire.StatusOnline, Since: time.Now().Add(-time.Hour)}
			if j < devices*9/10 {
				dev.ID = fmt.Sprintf("cam-%04d-%02d", i, j)
				dev.Camera = &wire.CameraInfo{Heading: float64(j * 36 % 360), FOV: 90, Range: 40}
				line.Metrics = map[string]float64{wire.MetricTCPMillis: 1.2, wire.MetricRTSPMillis: 8.5, wire.MetricFPS: 25, wire.MetricBitrateKbps: 1800}
			} else {
				dev.ID = fmt.Sprintf("pir-%04d-%02d", i, j)
				dev.Kind, dev.SensorKind, dev.Vendor, dev.Model = wire.KindSensor, wire.SensorIntrusion, "bosch", "ISC-BPR2"
				line.Metrics = map[string]float64{wire.MetricCheckinAge: 12, wire.MetricBatteryPct: 87}
			}
			dev.Name, dev.Serial = "Device "+dev.ID, "SN"+dev.ID
			line.ID = dev.ID
			inv.Devices = append(inv.Devices, dev)
			a.health.Devices = append(a.health.Devices, line)
		}
		a.birth = mustJSON(b, wire.State{Header: hdr(1), State: wire.AgentOnline, Conn: 1, Interval: 10, Site: site.ID})
		a.inventory = mustJSON(b, inv)
	}
	return city
}

// nextHealth is the agent's next health report, probed now.
func (a *memoryAgent) nextHealth(b *testing.B) []byte {
	a.health.Seq++
	a.health.TS = time.Now()
	for i := range a.health.Devices {
		a.health.Devices[i].Probed = a.health.TS
	}
	return mustJSON(b, a.health)
}

func mustJSON(b *testing.B, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
