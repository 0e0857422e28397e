package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/config"
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
	const agents, devices = 400, 100
	influx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer influx.Close()
	cfg := testConfig(b)
	cfg.Influx = config.Influx{URL: influx.URL, Org: "city", Bucket: "citywatch", Token: "t", BatchSize: 5000,
		FlushInterval: time.Second, Timeout: 10 * time.Second, Queue: 200_000, Writers: 4}
	hub := run(b, cfg)
	city := newMemoryCity(b, agents, devices)
	samples := samplesTo{hub.store, hub.alarms}
	apply := func(topic string, payload []byte, retained bool) {
		m, err := wire.Decode(topic, payload, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		s, err := hub.fleet.Apply(m, retained)
		if err != nil {
			b.Fatal(err)
		}
		if len(s) > 0 {
			samples.WriteSamples(s)
		}
	}
	before := liveHeap()
	for i := range city {
		a := &city[i]
		apply(wire.Topic(a.id, wire.ChannelState), a.birth, true)
		apply(wire.Topic(a.id, wire.ChannelInventory), a.inventory, true)
	}
	b.ResetTimer()
	for b.Loop() {
		for i := range city {
			a := &city[i]
			apply(wire.Topic(a.id, wire.ChannelHealth), a.nextHealth(b), false)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*agents*devices), "ns/sample")
	if s := hub.fleet.Summary(); s.Devices != agents*devices || s.ByStatus[wire.StatusOnline] != agents*devices {
		b.Fatalf("%d devices, %v; want %d online", s.Devices, s.ByStatus, agents*devices)
	}
	// What waits for InfluxDB and the history's database is the queues',
	// not the devices': let their writers take it.
	for deadline := time.Now().Add(30 * time.Second); queued(hub) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(liveHeap()-before)/(agents*devices), "heap-B/device")
	runtime.KeepAlive(city)
}

// queued reports whether points wait for InfluxDB or transitions for the
// history's database.
func queued(hub *App) bool {
	var text strings.Builder
	hub.metrics.WriteText(&text)
	return hub.store.Status().QueueDepth > 0 || !strings.Contains(text.String(), "\ncitywatch_history_queue 0\n")
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
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
