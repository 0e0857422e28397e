// Package metricstore keeps the history of device health: every accepted
// health sample and every device and agent status transition. With InfluxDB
// configured, [Influx] writes them as line protocol in batches, several in
// flight, keeps what InfluxDB cannot take in time in a bounded spill on
// disk and replays it, and counts every point as written, failed or
// dropped — the ingest path only appends to a queue in memory. Without it, [Memory] keeps a recent window per device for the
// console, and history does not survive a restart. Transitions always go to
// Memory too, so the console can show recent state history while InfluxDB is
// unreachable. [Store] is what the rest of the hub uses.
package metricstore

import (
	"context"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// Where a History came from.
const (
	SourceInfluxDB = "influxdb"
	SourceMemory   = "memory"
)

// Sources lists where a History may come from, for translations.
var Sources = []string{SourceInfluxDB, SourceMemory}

// FallbackWarning is a History's Warning when InfluxDB did not answer and
// the in-memory window did.
const FallbackWarning = "InfluxDB did not answer: showing only the changes kept in memory since the hub started"

// History is what the console's device panel shows: recent health samples
// and status transitions of one device, oldest first.
type History struct {
	Device      string       `json:"device"`
	Source      string       `json:"source"`            // SourceInfluxDB or SourceMemory
	Warning     string       `json:"warning,omitempty"` // for the console, when the history is incomplete
	Samples     []Point      `json:"samples"`
	Transitions []Transition `json:"transitions"`
}

// Point is one health sample of a device.
type Point struct {
	At      time.Time          `json:"at"`
	Status  wire.Status        `json:"status"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Transition is one status change of a device.
type Transition = fleet.Transition

// StoreStatus is the metric store's health, for /healthz and the console.
type StoreStatus struct {
	Backend     string    `json:"backend"` // SourceInfluxDB, or SourceMemory: history is not stored
	URL         string    `json:"url,omitempty"`
	Bucket      string    `json:"bucket,omitempty"`
	OK          bool      `json:"ok"` // no error since the last successful write
	QueueDepth  int       `json:"queue_depth"`
	QueueCap    int       `json:"queue_cap"`
	Written     uint64    `json:"points_written"`
	Failed      uint64    `json:"points_failed"`  // rejected by InfluxDB or retries exhausted
	Dropped     uint64    `json:"points_dropped"` // never stored: queue or spill full, spill disk error, shut down
	WriteErrors uint64    `json:"write_errors"`   // failed requests, retries included
	Batches     uint64    `json:"batches"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastWriteAt time.Time `json:"last_write_at,omitzero"`
	LastDropAt  time.Time `json:"last_drop_at,omitzero"` // the last point dropped, for any reason but shutdown

	// The spill: points waiting on disk for InfluxDB, and its size.
	Spilled       uint64 `json:"points_spilled"`
	SpillBytes    int64  `json:"spill_bytes"`
	SpillMaxBytes int64  `json:"spill_max_bytes"` // 0: no spill
	SpillSegments int    `json:"spill_segments"`
}

// Store routes samples and changes to InfluxDB and the in-memory window and
// answers history queries from the best source available.
type Store struct {
	influx *Influx // nil when InfluxDB is not configured
	mem    *Memory
}

// NewStore combines the InfluxDB writer, which may be nil, with the
// in-memory window, which must not be. The caller runs influx.Run.
func NewStore(influx *Influx, mem *Memory) *Store {
	return &Store{influx: influx, mem: mem}
}

// WriteSamples records health samples without blocking: in InfluxDB when it
// is configured, otherwise in the in-memory window. Keeping samples in
// memory as well would cost hundreds of megabytes at city scale for a
// fallback nobody needs while InfluxDB answers.
func (s *Store) WriteSamples(samples []fleet.Sample) {
	if s.influx != nil {
		s.influx.WriteSamples(samples)
		return
	}
	s.mem.WriteSamples(samples)
}

// WriteChange records a change without blocking, in InfluxDB when it is
// configured and always in memory.
func (s *Store) WriteChange(c fleet.Change) {
	if s.influx != nil {
		s.influx.WriteChange(c)
	}
	s.mem.WriteChange(c)
}

// History returns device's samples and transitions since the given time.
// It asks InfluxDB when configured; if that fails it logs why and answers
// from memory, with a Warning for the console.
func (s *Store) History(ctx context.Context, device string, since time.Time) (History, error) {
	if s.influx != nil {
		h, err := s.influx.History(ctx, device, since)
		if err == nil {
			return h, nil
		}
		if ctx.Err() != nil {
			return History{}, err
		}
		s.influx.log.Warn("history query failed; answering from memory", "device", device, "error", err)
		h, err = s.mem.History(device, since)
		h.Warning = FallbackWarning
		return h, err
	}
	return s.mem.History(device, since)
}

// Status reports the store's health.
func (s *Store) Status() StoreStatus {
	if s.influx != nil {
		return s.influx.Status()
	}
	return StoreStatus{Backend: SourceMemory, OK: true}
}
