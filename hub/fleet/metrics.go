package fleet

import (
	"maps"
	"slices"
	"strings"
	"unique"

	"github.com/citywatch/citywatch/wire"
)

// A device's last health metrics live in its agent's slab: a.metrics
// holds the values of all its devices, each device's from metricAt on in
// the order of its metric names, and a.metricSets the names, each set as
// one interned string of names ended by NUL, in order; a device keeps the
// index of its set (0: its report had none, nil). A map per device cost
// some 250 bytes and a slice per device its header and a rounded-up
// allocation; this costs the values, and the few sets an agent's devices
// report.

// maxMetricSets bounds an agent's sets, so that a set's index fits
// device.metricSet; reaching it makes the slab again with the sets its
// devices use, of which there are at most as many as devices.
const maxMetricSets = 1 << 16

// metricNames is d's set of metric names; ok is false when its last
// report had none.
func (d *device) metricNames() (names string, ok bool) {
	if d.metricSet == 0 {
		return "", false
	}
	return d.agent().metricSets[d.metricSet].Value(), true
}

// metricCount is how many metrics d's last report had.
func (d *device) metricCount() int {
	names, _ := d.metricNames()
	return strings.Count(names, "\x00")
}

// metrics is d's last health metrics in a map of the caller's.
func (d *device) metrics() map[string]float64 {
	names, ok := d.metricNames()
	if !ok {
		return nil
	}
	values := d.agent().metrics[d.metricAt:]
	m := make(map[string]float64, strings.Count(names, "\x00"))
	for i := 0; names != ""; i++ {
		var name string
		name, names, _ = strings.Cut(names, "\x00")
		m[name] = values[i]
	}
	return m
}

// takeMetrics keeps the metrics of a health report's lines, devs[i] being
// the device of lines[i], all of them a's. A device reporting the metrics
// it reported last, as devices do, has their values updated where they
// are; one reporting others, or its first, takes room at the end of the
// slab, which is made again, without the values no device uses any more,
// when it lacks that room. A nil map stays nil and an empty one empty, as
// the snapshot then shows them.
func (a *agent) takeMetrics(lines []wire.DeviceHealth, devs []*device) {
	roomy := false // room is made for what the rest of the report moves
	var names []string
	var joined strings.Builder
	for i := range lines {
		m, d := lines[i].Metrics, devs[i]
		switch {
		case m == nil:
			d.metricSet = 0 // its values are left behind
			continue
		case a.updateMetrics(d, m):
			continue
		case !roomy:
			d.metricSet = 0
			a.makeRoom(lines[i:], devs[i:])
			roomy = true
		}
		names = slices.AppendSeq(names[:0], maps.Keys(m))
		slices.Sort(names)
		joined.Reset()
		for _, name := range names {
			joined.WriteString(name)
			joined.WriteByte(0)
		}
		d.metricSet = 0                                  // a compaction for its set has its values left behind
		set := a.metricSet(unique.Make(joined.String())) // which may compact the slab
		d.metricSet, d.metricAt = set, uint32(len(a.metrics))
		for _, name := range names {
			a.metrics = append(a.metrics, m[name])
		}
	}
}

// metricSet returns the index of set in a.metricSets, adding it if need
// be. An agent's devices report a few sets, usually one per kind.
func (a *agent) metricSet(set unique.Handle[string]) uint16 {
	if len(a.metricSets) == 0 {
		a.metricSets = append(a.metricSets, unique.Handle[string]{})
	}
	if i := slices.Index(a.metricSets[1:], set); i >= 0 {
		return uint16(i + 1)
	}
	if len(a.metricSets) == maxMetricSets {
		a.compactMetrics(0)
	}
	a.metricSets = append(a.metricSets, set)
	return uint16(len(a.metricSets) - 1)
}

// updateMetrics takes the values of m into d's place in the slab if m
// names the metrics d has, and reports whether it did.
func (a *agent) updateMetrics(d *device, m map[string]float64) bool {
	names, ok := d.metricNames()
	if !ok || strings.Count(names, "\x00") != len(m) {
		return false
	}
	values := a.metrics[d.metricAt:]
	for i := 0; names != ""; i++ {
		var name string
		name, names, _ = strings.Cut(names, "\x00")
		v, ok := m[name]
		if !ok {
			return false // d takes new room: what it wrote here is left behind
		}
		values[i] = v
	}
	return true
}

// makeRoom makes sure the slab has room for the values of the lines whose
// devices report other metrics than they did.
func (a *agent) makeRoom(lines []wire.DeviceHealth, devs []*device) {
	need := 0
	for i := range lines {
		if m, d := lines[i].Metrics, devs[i]; m != nil && !d.namesMetrics(m) {
			need += len(m)
		}
	}
	if cap(a.metrics)-len(a.metrics) < need {
		a.compactMetrics(need)
	}
}

// namesMetrics reports whether d has the metrics m names.
func (d *device) namesMetrics(m map[string]float64) bool {
	names, ok := d.metricNames()
	if !ok || strings.Count(names, "\x00") != len(m) {
		return false
	}
	for names != "" {
		var name string
		name, names, _ = strings.Cut(names, "\x00")
		if _, ok := m[name]; !ok {
			return false
		}
	}
	return true
}

// compactMetrics makes the slab again with the values and sets of a's
// devices only, and room for need more values: exactly while the agent's
// first report fills it, and with an eighth to spare once devices change
// their metrics, so that a few doing so do not make it again at every
// report.
func (a *agent) compactMetrics(need int) {
	live := 0
	for _, d := range a.devices {
		live += d.metricCount()
	}
	slab := make([]float64, 0, live+need+min(need, live/8))
	sets := []unique.Handle[string]{{}}
	for _, d := range a.devices {
		if d.metricSet == 0 {
			continue
		}
		n := d.metricCount()
		slab = append(slab, a.metrics[d.metricAt:int(d.metricAt)+n]...)
		d.metricAt = uint32(len(slab) - n)
		set := a.metricSets[d.metricSet]
		i := slices.Index(sets, set)
		if i < 0 {
			i = len(sets)
			sets = append(sets, set)
		}
		d.metricSet = uint16(i)
	}
	a.metrics = slab
	a.metricSets = slices.Clip(sets)
}
