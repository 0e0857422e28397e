package uplink

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

func ev(id string) item { return item{event: &wire.Event{Device: id}} }

// hr is health report number n.
func hr(n int) item { return item{health: [][]wire.DeviceHealth{{{ID: "r" + strconv.Itoa(n)}}}} }

// label names an item for comparisons: events by device, reports by number.
func label(it item) string {
	if it.event != nil {
		return "e:" + it.event.Device
	}
	return "h:" + it.health[0][0].ID[1:]
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name                  string
		maxItems, maxHealth   int
		push                  []item
		want                  []string
		dropHealth, dropEvent uint64
	}{
		{"fifo across kinds", 10, 4, []item{ev("a"), hr(1), ev("b")}, []string{"e:a", "h:1", "e:b"}, 0, 0},
		{"health bound drops the oldest report", 10, 2, []item{hr(1), ev("a"), hr(2), hr(3)}, []string{"e:a", "h:2", "h:3"}, 1, 0},
		{"full queue drops health before events", 3, 4, []item{ev("a"), hr(1), ev("b"), ev("c")}, []string{"e:a", "e:b", "e:c"}, 1, 0},
		{"a report does not displace events", 2, 4, []item{ev("a"), ev("b"), hr(1)}, []string{"e:a", "e:b"}, 1, 0},
		{"only events: the oldest goes, counted", 2, 4, []item{ev("a"), ev("b"), ev("c")}, []string{"e:b", "e:c"}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(tt.maxItems, tt.maxHealth)
			for _, it := range tt.push {
				q.push(it)
			}
			n, dh, de := q.counts()
			if n != len(tt.want) || dh != tt.dropHealth || de != tt.dropEvent {
				t.Errorf("counts: %d queued, %d health and %d events dropped; want %d, %d, %d",
					n, dh, de, len(tt.want), tt.dropHealth, tt.dropEvent)
			}
			var got []string
			for it, ok := q.pop(); ok; it, ok = q.pop() {
				got = append(got, label(it))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("popped %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("popped %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestQueuePushFront(t *testing.T) {
	q := newQueue(10, 1)
	q.push(ev("b"))
	q.pushFront(hr(1))
	if it, _ := q.pop(); label(it) != "h:1" {
		t.Fatalf("pushFront item not first: %s", label(it))
	}
	// The health count followed the item in and out.
	q.push(hr(2))
	q.push(hr(3))
	if _, dh, _ := q.counts(); dh != 1 {
		t.Fatalf("health bound not kept after pushFront/pop: %d dropped", dh)
	}
}

func TestSplitHealth(t *testing.T) {
	// The longest detail the hub accepts makes the largest report split.
	line := func(i int) wire.DeviceHealth {
		return wire.DeviceHealth{ID: fmt.Sprintf("cam-%04d", i), Status: wire.StatusDegraded, Since: time.Now(), Probed: time.Now(),
			Reason: wire.ReasonLowFrameRate, Detail: strings.Repeat("d", wire.MaxDetailLen),
			Metrics: map[string]float64{wire.MetricTCPMillis: 1.234, wire.MetricRTSPMillis: 8.5, wire.MetricFPS: 24.97,
				wire.MetricBitrateKbps: 1843.25, wire.MetricFrameAge: 123.4, wire.MetricProbeFailures: 0}}
	}
	for _, n := range []int{0, 1, 100, wire.MaxDevices} {
		var devs []wire.DeviceHealth
		for i := range n {
			devs = append(devs, line(i))
		}
		parts := splitHealth(devs)
		total := 0
		for _, p := range parts {
			total += len(p)
			h := wire.Health{Header: wire.Header{V: wire.Version, Agent: "agent-1", Boot: 1, Seq: 1 << 40, TS: time.Now()},
				Interval: 3600, Devices: p}
			b, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > wire.MaxPayload {
				t.Errorf("%d devices: a part of %d bytes exceeds %d", n, len(b), wire.MaxPayload)
			}
		}
		if total != n {
			t.Errorf("%d devices: parts hold %d", n, total)
		}
		if n == wire.MaxDevices && len(parts) < 2 {
			t.Errorf("%d devices in one part", n)
		}
	}
}
