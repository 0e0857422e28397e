package fleet_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkDeviceMemory measures the live heap the registry keeps per
// device: a city of 200 agents of 100 devices (90 cameras, 10 sensors),
// every message decoded from JSON as ingest takes it. heap-B/device is
// the registry after each agent's birth, inventory and one health report;
// searched-B/device after a search too, which builds the search corpus.
// One op is one registry.
func BenchmarkDeviceMemory(b *testing.B) {
	city := memoryCity(b, memoryAgents, memoryDevices)
	var heap, searched float64
	for b.Loop() {
		h, s := cityHeap(b, city)
		heap += h
		searched += s
	}
	b.ReportMetric(heap/float64(b.N), "heap-B/device")
	b.ReportMetric(searched/float64(b.N), "searched-B/device")
}

// The registry's heap per device is what issue 10 (the hub's memory
// against Telegraf's) was about: a regression shows here before it shows
// in production. The bounds are half as much again as the registry took
// when they were set (229 and 312 bytes, where it had taken 391 and 478);
// a change that needs more should say why and move them.
func TestDeviceMemory(t *testing.T) {
	const maxHeap, maxSearched = 340, 470
	heap, searched := cityHeap(t, memoryCity(t, memoryAgents, memoryDevices))
	t.Logf("%.0f bytes a device, %.0f once searched", heap, searched)
	if heap > maxHeap || searched > maxSearched {
		t.Errorf("the registry keeps %.0f bytes a device (%.0f once searched), more than %d (%d): see BenchmarkDeviceMemory",
			heap, searched, maxHeap, maxSearched)
	}
}

const memoryAgents, memoryDevices = 200, 100

// cityHeap applies city to a new registry and returns the live heap it
// added per device, and the same after a search built the search corpus.
func cityHeap(t testing.TB, city []memoryMessage) (heap, searched float64) {
	const n = memoryAgents * memoryDevices
	before := testenv.LiveHeap()
	r := fleet.New(fleet.Options{})
	for _, msg := range city {
		m, err := wire.Decode(msg.topic, msg.payload, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Apply(m, false); err != nil {
			t.Fatal(err)
		}
	}
	heap = float64(testenv.LiveHeap()-before) / n
	if p := r.QueryDevices(fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Search: "cam"}, Limit: 1}); p.Total != n*9/10 {
		t.Fatalf("search found %d", p.Total)
	}
	searched = float64(testenv.LiveHeap()-before) / n
	runtime.KeepAlive(r)
	runtime.KeepAlive(city) // the caller's, counted in before
	return heap, searched
}

type memoryMessage struct {
	topic   string
	payload []byte
}

// memoryCity is every agent's birth, inventory and health report, encoded
// as the agent sends them.
func memoryCity(tb testing.TB, agents, devices int) []memoryMessage {
	now := time.Now()
	var city []memoryMessage
	add := func(agent string, ch wire.Channel, v any) {
		p, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		city = append(city, memoryMessage{wire.Topic(agent, ch), p})
	}
	for i := range agents {
		id := fmt.Sprintf("agent-%04d", i)
		hdr := func(seq uint64) wire.Header {
			return wire.Header{V: wire.Version, Agent: id, Boot: now.Add(-time.Hour).UnixMilli(), Seq: seq, TS: now}
		}
		district := fmt.Sprintf("District %d", i%8)
		site := wire.Site{ID: "site-" + id, Name: "Site " + id, District: district, Location: wire.Location{Lat: 30.5, Lon: 114.2}}
		inv := wire.Inventory{Header: hdr(2), Site: site}
		health := wire.Health{Header: hdr(3), Interval: 10}
		for j := range devices {
			dev := wire.Device{Kind: wire.KindCamera, District: district, Location: wire.Location{Lat: 30.5 + float64(j)*0.0002, Lon: 114.2},
				Criticality: 3, Vendor: "hikvision", Model: "DS-2CD2143G2-I", Firmware: "V5.7.3", Installed: "2023-04-01"}
			l := wire.DeviceHealth{Status: wire.StatusOnline, Since: now.Add(-time.Hour), Probed: now}
			if j < devices*9/10 {
				dev.ID = fmt.Sprintf("cam-%04d-%02d", i, j)
				dev.Camera = &wire.CameraInfo{Heading: float64(j * 36 % 360), FOV: 90, Range: 40}
				l.Metrics = map[string]float64{wire.MetricTCPMillis: 1.2, wire.MetricRTSPMillis: 8.5, wire.MetricFPS: 25, wire.MetricBitrateKbps: 1800}
			} else {
				dev.ID = fmt.Sprintf("pir-%04d-%02d", i, j)
				dev.Kind, dev.SensorKind, dev.Vendor, dev.Model = wire.KindSensor, wire.SensorIntrusion, "bosch", "ISC-BPR2"
				l.Metrics = map[string]float64{wire.MetricCheckinAge: 12, wire.MetricBatteryPct: 87}
			}
			dev.Name, dev.Serial, l.ID = "Device "+dev.ID, "SN"+dev.ID, dev.ID
			inv.Devices = append(inv.Devices, dev)
			health.Devices = append(health.Devices, l)
		}
		add(id, wire.ChannelState, wire.State{Header: hdr(1), State: wire.AgentOnline, Conn: 1, Interval: 10, Site: site.ID})
		add(id, wire.ChannelInventory, inv)
		add(id, wire.ChannelHealth, health)
	}
	return city
}
