// Package metrics is the hub's own instrumentation: counters and gauges that
// every component registers and that /metrics exposes in the Prometheus text
// format. It is deliberately small — no client library, no global registry:
// the registry is created in the wiring code and handed to components.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds named metric families.
type Registry struct {
	mu       sync.Mutex
	families map[string]family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{families: make(map[string]family)} }

type family interface {
	write(w io.Writer, name string)
}

func (r *Registry) register(name, help, typ string, f family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.families[name]; dup {
		panic("metrics: " + name + " registered twice") // a wiring bug, caught by any test
	}
	r.families[name] = described{help: help, typ: typ, family: f}
}

type described struct {
	help, typ string
	family
}

func (d described) write(w io.Writer, name string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, d.help, name, d.typ)
	d.family.write(w, name)
}

// Counter is a monotonically increasing count.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the gauge.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value returns the gauge's value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// Vec is a family of metrics of type M told apart by label values.
type Vec[M any] struct {
	labels []string
	mu     sync.Mutex
	series map[string]*M
	order  []string
}

// With returns the series for the label values, creating it on first use.
// Values must match the labels in number.
func (v *Vec[M]) With(values ...string) *M {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(values), len(v.labels)))
	}
	key := labelString(v.labels, values)
	v.mu.Lock()
	defer v.mu.Unlock()
	m, ok := v.series[key]
	if !ok {
		m = new(M)
		v.series[key] = m
		v.order = append(v.order, key)
		sort.Strings(v.order)
	}
	return m
}

func (v *Vec[M]) write(w io.Writer, name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, key := range v.order {
		fmt.Fprintf(w, "%s%s %s\n", name, key, format(value(v.series[key])))
	}
}

func value(m any) float64 {
	switch m := m.(type) {
	case *Counter:
		return float64(m.Value())
	case *Gauge:
		return m.Value()
	}
	return math.NaN()
}

func labelString(labels, values []string) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
		b.WriteString(`="`)
		b.WriteString(escape(values[i]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var escaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escape(s string) string { return escaper.Replace(s) }

func format(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Counter registers a counter without labels.
func (r *Registry) Counter(name, help string) *Counter {
	return r.CounterVec(name, help).With()
}

// Gauge registers a gauge without labels.
func (r *Registry) Gauge(name, help string) *Gauge {
	return r.GaugeVec(name, help).With()
}

// CounterVec registers a counter family with the given labels.
func (r *Registry) CounterVec(name, help string, labels ...string) *Vec[Counter] {
	v := &Vec[Counter]{labels: labels, series: make(map[string]*Counter)}
	r.register(name, help, "counter", v)
	return v
}

// GaugeVec registers a gauge family with the given labels.
func (r *Registry) GaugeVec(name, help string, labels ...string) *Vec[Gauge] {
	v := &Vec[Gauge]{labels: labels, series: make(map[string]*Gauge)}
	r.register(name, help, "gauge", v)
	return v
}

type gaugeFunc func() float64

func (f gaugeFunc) write(w io.Writer, name string) { fmt.Fprintf(w, "%s %s\n", name, format(f())) }

// GaugeFunc registers a gauge whose value is read from f at scrape time, for
// values another component already owns (queue lengths, client counts).
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.register(name, help, "gauge", gaugeFunc(f))
}

// WriteText writes every family in the Prometheus text exposition format,
// sorted by name.
func (r *Registry) WriteText(w io.Writer) {
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	fams := make([]family, len(names))
	sort.Strings(names)
	for i, n := range names {
		fams[i] = r.families[n]
	}
	r.mu.Unlock()
	for i, f := range fams {
		f.write(w, names[i])
	}
}
