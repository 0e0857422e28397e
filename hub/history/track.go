package history

import "fmt"

// tracker follows every device's state through time: the one place that
// knows what a change means, used alike to roll up a day, to find the
// state at start and to compute reports.
type tracker struct {
	st    []state // by device id
	since []int64 // start of the down period under way, 0 none
	at    []int64 // when st began, or the part of it not yet emitted
}

func (t *tracker) grow(n int) {
	for len(t.st) < n {
		t.st = append(t.st, state{})
		t.since = append(t.since, 0)
		t.at = append(t.at, 0)
	}
}

func isDown(c uint8) bool { return c == offline || c == unreachable }
func isUp(c uint8) bool   { return c == online || c == degraded }

// apply moves dev to s at at. A down period (offline or unreachable,
// however often it switches between the two) ends when the device is up
// again — the recovery MTTR measures — or leaves the fleet; unknown does
// not end it: nobody saw it recover.
func (t *tracker) apply(dev int32, s state, at int64) {
	switch c := s.code(); {
	case isDown(c):
		if t.since[dev] == 0 {
			t.since[dev] = at
		}
	case isUp(c), c == absent:
		t.since[dev] = 0
	}
	t.st[dev], t.at[dev] = s, at
}

// visitor receives a device's history within a report's period, device by
// device in time order: spans of one state (never of an absent device),
// the start of down periods and recoveries, with the device's state then.
type visitor interface {
	span(dev int32, s state, a, b int64)
	down(dev int32, s state, at int64)
	recovered(dev int32, s state, since, at int64)
}

// scanner is a tracker that tells a visitor what happens within [from,
// to), and notes whether any of it was simulated. With an empty period
// it only tracks (the visitor is never called): how the writer finds the
// state at a day's end.
type scanner struct {
	tracker
	from, to int64
	places   int // places in the catalog, to refuse a state naming another
	v        visitor
	sim      bool
	ended    []bool // by device: told an ender (see end)
}

// check refuses what the catalog cannot explain: a damaged database
// makes a report fail, never panic.
func (sc *scanner) check(dev int32, s state) error {
	if dev <= 0 || int(dev) >= len(sc.st) || int(s.place) >= sc.places {
		return fmt.Errorf("%w: device %d or place %d is not in the catalog", errRecord, dev, s.place)
	}
	return nil
}

// step moves dev to s at at, first telling the visitor of the state it
// leaves and of an outage starting or ending.
func (sc *scanner) step(dev int32, s state, at int64) {
	sc.emit(dev, at)
	if at >= sc.to {
		sc.end(dev) // a day's record goes on past the period
	}
	was := sc.since[dev]
	sc.apply(dev, s, at)
	if at < sc.from || at >= sc.to {
		return
	}
	switch now := sc.since[dev]; {
	case was == 0 && now != 0:
		sc.v.down(dev, s, at)
	case was != 0 && now == 0 && isUp(s.code()):
		sc.v.recovered(dev, s, was, at)
	}
}

// emit tells the visitor dev's current state up to end, clipped to the
// period, and moves the device's mark to end.
func (sc *scanner) emit(dev int32, end int64) {
	s := sc.st[dev]
	a, b := max(sc.at[dev], sc.from), min(end, sc.to)
	sc.at[dev] = end
	if s.code() == absent || a >= b {
		return
	}
	sc.sim = sc.sim || s.st&simBit != 0
	sc.v.span(dev, s, a, b)
}

// day runs a day record of [start, end) through the visitor.
func (sc *scanner) day(b []byte, start, end int64) error {
	r, err := newRecordReader(b, start, end)
	if err != nil {
		return err
	}
	var e dayEntry
	for {
		ok, err := r.next(&e)
		if err != nil || !ok {
			return err
		}
		if err := sc.check(e.dev, e.start); err != nil {
			return err
		}
		sc.st[e.dev], sc.since[e.dev], sc.at[e.dev] = e.start, e.since, start
		for _, c := range e.changes {
			if err := sc.check(e.dev, c.state); err != nil {
				return err
			}
			sc.step(e.dev, c.state, c.at)
		}
		sc.emit(e.dev, end)
	}
}

// ender is a visitor that also wants every device down at the period's
// end, with its state then and when its down period began.
type ender interface {
	ongoing(dev int32, s state, since int64)
}

// end tells an ender, once per device, whether dev is down at the
// period's end: before the first change at or after it, or at finish.
func (sc *scanner) end(dev int32) {
	e, ok := sc.v.(ender)
	if !ok {
		return
	}
	if sc.ended == nil {
		sc.ended = make([]bool, len(sc.st))
	}
	if sc.ended[dev] {
		return
	}
	sc.ended[dev] = true
	if sc.since[dev] != 0 && sc.st[dev].code() != absent {
		e.ongoing(dev, sc.st[dev], sc.since[dev])
	}
}

// finish tells the visitor every device's state up to the period's end,
// and an ender which devices are down then.
func (sc *scanner) finish() {
	for dev := range sc.st {
		sc.emit(int32(dev), sc.to)
		sc.end(int32(dev))
	}
}
