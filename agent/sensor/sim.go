package sensor

import (
	"context"
	"sync"
	"time"
)

// Sim is the simulated driver: every watched sensor checks in every
// checkin period, and the simulator (or a test) flips its state at run
// time. Sensors are known by id; controls may be applied before the sensor
// is watched. It is safe for concurrent use.
type Sim struct {
	checkin time.Duration

	mu      sync.Mutex
	sensors map[string]*simSensor
}

type simSensor struct {
	silent    bool // supervision failed: no check-ins at all
	triggered bool
	// changed is closed and replaced on every control change, waking all
	// watchers of the sensor at once.
	changed chan struct{}
}

// NewSim returns a simulated driver whose sensors check in every checkin.
func NewSim(checkin time.Duration) *Sim {
	return &Sim{checkin: checkin, sensors: make(map[string]*simSensor)}
}

// sensor returns the state of id, creating it; s.mu must be held.
func (s *Sim) sensor(id string) *simSensor {
	st, ok := s.sensors[id]
	if !ok {
		st = &simSensor{changed: make(chan struct{})}
		s.sensors[id] = st
	}
	return st
}

// SetSupervision makes sensor id stop checking in (ok false), as a sensor
// with a flat battery or a cut wire does, or resume (ok true).
func (s *Sim) SetSupervision(id string, ok bool) {
	s.update(id, func(st *simSensor) { st.silent = !ok })
}

// Trigger sets the alarm contact of sensor id; the reading is emitted at
// once unless the sensor is silent.
func (s *Sim) Trigger(id string, on bool) {
	s.update(id, func(st *simSensor) { st.triggered = on })
}

func (s *Sim) update(id string, f func(*simSensor)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sensor(id)
	f(st)
	close(st.changed)
	st.changed = make(chan struct{})
}

// Watch implements Driver. It checks in at once, then every checkin period
// and on every control change. params are not used.
func (s *Sim) Watch(ctx context.Context, id string, _ map[string]string, emit func(Reading)) error {
	tick := time.NewTicker(s.checkin)
	defer tick.Stop()
	for {
		s.mu.Lock()
		st := s.sensor(id)
		silent, triggered, changed := st.silent, st.triggered, st.changed
		s.mu.Unlock()
		if !silent {
			emit(Reading{At: time.Now(), Triggered: triggered, Battery: -1})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-changed:
		}
	}
}
