package metricstore

import (
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// MemoryOptions sizes the in-memory window.
type MemoryOptions struct {
	Samples     int // samples kept per device; 0 means 60
	Transitions int // transitions kept per device; 0 means 50
	// Fallback says the window only stands in for InfluxDB while it does
	// not answer. It then skips a device first found online (unknown →
	// online): every device of a city at once when the hub starts, with
	// nothing to tell that the device's own since does not, and ~150
	// bytes a device to keep.
	Fallback bool
}

// memoryShards spreads devices over locks so that ingest workers writing
// different agents' samples rarely contend.
const memoryShards = 64

// Memory keeps the latest samples and transitions of every device in
// fixed-size rings. A sample costs about 9 bytes plus 4 per metric column
// (float32 is plenty for display), so 100,000 devices with 60 samples of 7
// metrics take about 220 MB; transitions are kept only once they happen.
type Memory struct {
	samples, transitions int
	fallback             bool
	seed                 maphash.Seed
	shards               [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	devices map[string]*deviceLog
}

// NewMemory returns an empty window; negative sizes count as the default.
func NewMemory(opts MemoryOptions) *Memory {
	m := &Memory{
		samples:     opts.Samples,
		transitions: opts.Transitions,
		fallback:    opts.Fallback,
		seed:        maphash.MakeSeed(),
	}
	if m.samples <= 0 {
		m.samples = 60
	}
	if m.transitions <= 0 {
		m.transitions = 50
	}
	for i := range m.shards {
		m.shards[i].devices = make(map[string]*deviceLog)
	}
	return m
}

func (m *Memory) shard(device string) *memoryShard {
	return &m.shards[maphash.String(m.seed, device)%memoryShards]
}

// log returns device's log, creating it; the shard must be locked.
func (sh *memoryShard) log(device string) *deviceLog {
	l := sh.devices[device]
	if l == nil {
		l = new(deviceLog)
		sh.devices[device] = l
	}
	return l
}

// WriteSamples records samples; it does not retain them.
func (m *Memory) WriteSamples(samples []fleet.Sample) {
	for i := range samples {
		s := &samples[i]
		sh := m.shard(s.Device)
		sh.mu.Lock()
		sh.log(s.Device).addSample(s, m.samples)
		sh.mu.Unlock()
	}
}

// WriteChange records the device transitions a change carries (as a
// fallback, not a device first found online), and forgets devices an
// inventory change removed.
func (m *Memory) WriteChange(c fleet.Change) {
	if c.Kind == fleet.ChangeInventory {
		for _, id := range c.Removed {
			sh := m.shard(id)
			sh.mu.Lock()
			delete(sh.devices, id)
			sh.mu.Unlock()
		}
		return
	}
	for t := range fleet.Transitions(&c) {
		if m.fallback && t.From == wire.StatusUnknown && t.To == wire.StatusOnline {
			continue
		}
		sh := m.shard(t.Device.ID)
		sh.mu.Lock()
		sh.log(t.Device.ID).addTransition(t.Transition, m.transitions)
		sh.mu.Unlock()
	}
}

// History returns what the window holds for device since the given time,
// oldest first. A device never written has an empty history.
func (m *Memory) History(device string, since time.Time) (History, error) {
	h := History{Device: device, Source: SourceMemory, Samples: []Point{}, Transitions: []Transition{}}
	sh := m.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if l := sh.devices[device]; l != nil {
		h.Samples = l.samplesSince(since.UnixMilli())
		h.Transitions = l.transitionsSince(since)
	}
	return h, nil
}

// deviceLog is one device's window: its transitions, and its samples
// once it has any. With InfluxDB configured only transitions are kept, so
// the ring of samples is a pointer: a device without samples does not pay
// for its empty columns.
type deviceLog struct {
	samples   *sampleRing
	trans     []transition // grows to capacity, then is a ring
	transNext int          // once full, the slot written next (the oldest)
}

// sampleRing holds samples by column: metric names once per device,
// values in a flat ring of rows, NaN where a sample lacked a metric — a
// map per sample would cost ten times as much.
type sampleRing struct {
	names  []string  // metric columns, at most wire.MaxMetrics
	at     []int64   // Unix ms per ring slot
	status []uint8   // status code per ring slot
	values []float32 // slot i's row is values[i*len(names) : (i+1)*len(names)]
	next   int       // ring slot written next
	n      int       // slots filled
}

// transition is a Transition as the window keeps it: statuses and cause
// as codes, 64 bytes instead of 112, since a city keeps up to
// Transitions of them per device.
type transition struct {
	at             time.Time
	reason, detail string
	from, to       uint8 // statusCode, or noStatus
	cause          uint8 // index in causes: fleet.Transitions gives no other
}

// noStatus codes a transition's empty status.
const noStatus = 255

// causes are the transition causes by code; a cause fleet does not name
// is kept as "" rather than lost in a code nothing maps back.
var causes = [...]string{"", fleet.CauseDevice, fleet.CauseAgent, fleet.CauseLate}

func causeCode(c string) uint8 { return uint8(max(slices.Index(causes[:], c), 0)) }

func transitionStatus(s wire.Status) uint8 {
	if s == "" {
		return noStatus
	}
	return statusCode(s)
}

func transitionStatusOf(code uint8) wire.Status {
	if code == noStatus {
		return ""
	}
	return statusCodes[code]
}

func (l *deviceLog) addSample(s *fleet.Sample, capacity int) {
	if l.samples == nil {
		l.samples = &sampleRing{at: make([]int64, capacity), status: make([]uint8, capacity)}
	}
	l.samples.add(s)
}

func (l *sampleRing) add(s *fleet.Sample) {
	capacity := len(l.at)
	for name := range s.Metrics {
		if l.column(name) < 0 && len(l.names) < wire.MaxMetrics {
			l.addColumn(name)
		}
	}
	i := l.next
	l.at[i] = s.At.UnixMilli()
	l.status[i] = statusCode(s.Status)
	row := l.row(i)
	for c := range row {
		row[c] = float32(math.NaN())
	}
	for name, v := range s.Metrics {
		// A finite float64 beyond float32's range would become ±Inf, which
		// JSON cannot carry; such a value is kept as missing.
		if c := l.column(name); c >= 0 && math.Abs(v) <= math.MaxFloat32 {
			row[c] = float32(v)
		}
	}
	l.next = (i + 1) % capacity
	l.n = min(l.n+1, capacity)
}

func (l *sampleRing) column(name string) int {
	for c, n := range l.names {
		if n == name {
			return c
		}
	}
	return -1
}

func (l *sampleRing) row(slot int) []float32 {
	w := len(l.names)
	return l.values[slot*w : (slot+1)*w]
}

// addColumn widens every row by one NaN column. It happens a few times per
// device, when a metric is first seen.
func (l *sampleRing) addColumn(name string) {
	old, w := l.values, len(l.names)
	l.names = append(l.names, name)
	l.values = make([]float32, len(l.at)*(w+1))
	for slot := range l.at {
		copy(l.values[slot*(w+1):], old[slot*w:(slot+1)*w])
		l.values[slot*(w+1)+w] = float32(math.NaN())
	}
}

func (l *deviceLog) samplesSince(sinceMs int64) []Point {
	if l.samples == nil {
		return []Point{}
	}
	return l.samples.since(sinceMs)
}

func (l *sampleRing) since(sinceMs int64) []Point {
	capacity := len(l.at)
	out := make([]Point, 0, l.n)
	for k := range l.n {
		slot := (l.next - l.n + k + capacity) % capacity
		if l.at[slot] < sinceMs {
			continue
		}
		p := Point{At: time.UnixMilli(l.at[slot]).UTC(), Status: statusCodes[l.status[slot]]}
		for c, v := range l.row(slot) {
			if v == v { // not NaN: the sample had this metric
				if p.Metrics == nil {
					p.Metrics = make(map[string]float64)
				}
				p.Metrics[l.names[c]] = widen(v)
			}
		}
		out = append(out, p)
	}
	return out
}

// widen converts back to float64 by the shortest decimal that float32
// stores, so 12.3 comes back as 12.3, not 12.300000190734863.
func widen(v float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return f
}

func (l *deviceLog) addTransition(tr Transition, capacity int) {
	t := transition{at: tr.At, reason: tr.Reason, detail: tr.Detail,
		from: transitionStatus(tr.From), to: transitionStatus(tr.To), cause: causeCode(tr.Cause)}
	if len(l.trans) < capacity {
		l.trans = append(l.trans, t)
		return
	}
	l.trans[l.transNext] = t
	l.transNext = (l.transNext + 1) % capacity
}

func (l *deviceLog) transitionsSince(since time.Time) []Transition {
	out := make([]Transition, 0, len(l.trans))
	for k := range l.trans {
		t := &l.trans[(l.transNext+k)%len(l.trans)]
		if !t.at.Before(since) {
			out = append(out, Transition{At: t.at, From: transitionStatusOf(t.from), To: transitionStatusOf(t.to),
				Reason: t.reason, Detail: t.detail, Cause: causes[t.cause]})
		}
	}
	return out
}
