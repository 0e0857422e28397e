package uplink

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// ev is event number n, hr health report number n; label names them.
func ev(n int) item { return item{kind: kindEvent, parts: []part{{seq: uint64(n)}}} }
func hr(n int) item { return item{kind: kindHealth, parts: []part{{seq: uint64(n)}}} }

func label(it item) string {
	prefix := "e:"
	if it.kind == kindHealth {
		prefix = "h:"
	}
	return prefix + strconv.FormatUint(it.parts[0].seq, 10)
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name                string
		maxItems, maxHealth int
		push                []item
		want, out           []string // left queued; handed back, in order
	}{
		{"fifo across kinds", 10, 4, []item{ev(1), hr(2), ev(3)}, []string{"e:1", "h:2", "e:3"}, nil},
		{"health bound hands back the oldest report", 10, 2, []item{hr(1), ev(2), hr(3), hr(4)}, []string{"e:2", "h:3", "h:4"}, []string{"h:1"}},
		{"full queue gives up health before events", 3, 4, []item{ev(1), hr(2), ev(3), ev(4)}, []string{"e:1", "e:3", "e:4"}, []string{"h:2"}},
		{"a report does not displace events", 2, 4, []item{ev(1), ev(2), hr(3)}, []string{"e:1", "e:2"}, []string{"h:3"}},
		{"only events: the oldest goes", 2, 4, []item{ev(1), ev(2), ev(3)}, []string{"e:2", "e:3"}, []string{"e:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(tt.maxItems, tt.maxHealth)
			var out []string
			for _, it := range tt.push {
				if o, full := q.push(it); full {
					out = append(out, label(o))
				}
			}
			if !slices.Equal(out, tt.out) {
				t.Errorf("handed back %v, want %v", out, tt.out)
			}
			if n := q.len(); n != len(tt.want) {
				t.Errorf("%d queued, want %d", n, len(tt.want))
			}
			var got []string
			for it, ok := q.pop(); ok; it, ok = q.pop() {
				got = append(got, label(it))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("popped %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueuePushFront(t *testing.T) {
	q := newQueue(10, 1)
	q.push(ev(2))
	q.pushFront(hr(1))
	if it, _ := q.pop(); label(it) != "h:1" {
		t.Fatalf("pushFront item not first: %s", label(it))
	}
	// The health count followed the item in and out.
	q.push(hr(3))
	if o, full := q.push(hr(4)); !full || label(o) != "h:3" {
		t.Fatalf("health bound not kept after pushFront/pop: handed back %v", full)
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
