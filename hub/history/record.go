package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Status codes as stored. absent is the terminal marker: the device is not
// in the fleet (removed, its agent retired), and its time counts nowhere.
const (
	absent uint8 = iota
	online
	degraded
	offline
	unreachable
	unknown
	numCodes
)

// simBit marks a state that began with a simulated (seeded) transition.
const simBit = 0x80

func code(s wire.Status) (uint8, bool) {
	switch s {
	case wire.StatusOnline:
		return online, true
	case wire.StatusDegraded:
		return degraded, true
	case wire.StatusOffline:
		return offline, true
	case wire.StatusUnreachable:
		return unreachable, true
	case wire.StatusUnknown:
		return unknown, true
	}
	return 0, false
}

var statusOf = [numCodes]wire.Status{
	absent: "", online: wire.StatusOnline, degraded: wire.StatusDegraded, offline: wire.StatusOffline,
	unreachable: wire.StatusUnreachable, unknown: wire.StatusUnknown,
}

// state is a device's status code (with simBit) and place from some
// instant on.
type state struct {
	st    uint8
	place uint32
}

func (s state) code() uint8 { return s.st &^ simBit }

// day is a calendar date in the report location, counted in days since
// 1970-01-01: independent of the zone's offset, so DST changes nothing.
type day int64

func dayOf(ns int64, loc *time.Location) day {
	y, m, d := time.Unix(0, ns).In(loc).Date()
	return day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// start is the day's first instant in loc (23 or 25 hours before the next
// one across a DST change).
func (d day) start(loc *time.Location) time.Time {
	t := time.Unix(int64(d)*86400, 0).UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

func (d day) String() string { return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly) }

// A day record is every device's state at the day's start and its changes
// within the day, sorted by device:
//
//	version byte (1), uvarint entries, then per entry:
//	uvarint device id minus the previous entry's (the first: the id),
//	state byte, uvarint place, uvarint down (0: not in a down period at
//	the day's start, else the day's start minus the period's start plus
//	one), uvarint changes, then per change:
//	uvarint ns since the previous change (the first: since the day's start),
//	state byte, uvarint place.
//
// A device is listed when it existed at the start or changed within the day.
// The down period's start is there so that a report beginning on this day
// knows how long an outage already in progress has lasted (MTTR).
const recordVersion = 1

// dayEntry is one device of a day record; changes reuse their backing
// array between entries when decoding.
type dayEntry struct {
	dev     int32
	start   state
	since   int64 // the down period under way at the start began then; 0 none
	changes []change
}

type change struct {
	at int64
	state
}

// recordWriter builds a day record.
type recordWriter struct {
	buf     []byte
	start   int64
	n       int
	lastDev int32
}

func newRecordWriter(dayStart int64) *recordWriter {
	return &recordWriter{start: dayStart}
}

func (w *recordWriter) add(e *dayEntry) {
	w.buf = binary.AppendUvarint(w.buf, uint64(e.dev-w.lastDev))
	w.lastDev = e.dev
	w.buf = append(w.buf, e.start.st)
	w.buf = binary.AppendUvarint(w.buf, uint64(e.start.place))
	var down uint64
	if e.since != 0 {
		down = uint64(w.start-e.since) + 1
	}
	w.buf = binary.AppendUvarint(w.buf, down)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(e.changes)))
	prev := w.start
	for _, c := range e.changes {
		w.buf = binary.AppendUvarint(w.buf, uint64(c.at-prev))
		prev = c.at
		w.buf = append(w.buf, c.st)
		w.buf = binary.AppendUvarint(w.buf, uint64(c.place))
	}
	w.n++
}

// bytes returns the record.
func (w *recordWriter) bytes() []byte {
	out := binary.AppendUvarint([]byte{recordVersion}, uint64(w.n))
	return append(out, w.buf...)
}

// recordReader decodes a day record of [start, end), checking everything,
// so a damaged record is an error rather than a wrong report or a panic.
type recordReader struct {
	b          []byte
	start, end int64
	left       uint64
	lastDev    int32
	first      bool
}

var errRecord = errors.New("malformed day record")

func newRecordReader(b []byte, start, end int64) (*recordReader, error) {
	if len(b) < 1 || b[0] != recordVersion {
		return nil, fmt.Errorf("%w: unknown version", errRecord)
	}
	r := &recordReader{b: b[1:], start: start, end: end, first: true}
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)) { // every entry takes at least one byte
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errRecord, n, len(r.b))
	}
	r.left = n
	return r, nil
}

func (r *recordReader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: truncated", errRecord)
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *recordReader) state() (state, error) {
	if len(r.b) == 0 {
		return state{}, fmt.Errorf("%w: truncated", errRecord)
	}
	st := r.b[0]
	r.b = r.b[1:]
	if st&^simBit >= numCodes {
		return state{}, fmt.Errorf("%w: status code %d", errRecord, st&^simBit)
	}
	p, err := r.uvarint()
	if err != nil || p > 1<<32-1 {
		return state{}, cmpErr(err, fmt.Errorf("%w: place %d", errRecord, p))
	}
	return state{st, uint32(p)}, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// next decodes the next entry into e; false at the end.
func (r *recordReader) next(e *dayEntry) (bool, error) {
	if r.left == 0 {
		if len(r.b) != 0 {
			return false, fmt.Errorf("%w: %d bytes after the last entry", errRecord, len(r.b))
		}
		return false, nil
	}
	r.left--
	d, err := r.uvarint()
	if err != nil {
		return false, err
	}
	if (d == 0 && !r.first) || d > 1<<31-1 || int64(r.lastDev)+int64(d) > 1<<31-1 {
		return false, fmt.Errorf("%w: device ids out of order", errRecord)
	}
	r.first = false
	r.lastDev += int32(d)
	e.dev = r.lastDev
	if e.start, err = r.state(); err != nil {
		return false, err
	}
	down, err := r.uvarint()
	if err != nil {
		return false, err
	}
	e.since = 0
	if down != 0 {
		if down-1 > uint64(r.start-minTime) {
			return false, fmt.Errorf("%w: a down period before %d", errRecord, minTime)
		}
		e.since = r.start - int64(down-1)
	}
	n, err := r.uvarint()
	if err != nil {
		return false, err
	}
	if n > uint64(len(r.b))/2 { // a change takes at least three bytes
		return false, fmt.Errorf("%w: %d changes in %d bytes", errRecord, n, len(r.b))
	}
	e.changes = e.changes[:0]
	at := r.start
	for range n {
		delta, err := r.uvarint()
		if err != nil {
			return false, err
		}
		if delta >= uint64(r.end-at) {
			return false, fmt.Errorf("%w: a change outside the day", errRecord)
		}
		at += int64(delta)
		s, err := r.state()
		if err != nil {
			return false, err
		}
		e.changes = append(e.changes, change{at, s})
	}
	return true, nil
}
