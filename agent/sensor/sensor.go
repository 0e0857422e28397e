// Package sensor reads alarm sensors through drivers. A driver watches one
// sensor and emits a Reading whenever the sensor reports, each report also
// being a supervision check-in: like an alarm panel, the agent treats a
// sensor that stops checking in as a fault in itself. The package ships the
// simulated driver, Sim; hardware drivers (serial panels, Modbus I/O) plug in
// through the same interface.
package sensor

import (
	"context"
	"time"
)

// Reading is one report of a sensor.
type Reading struct {
	At        time.Time
	Triggered bool    // the alarm contact is active
	Tamper    bool    // the tamper contact is open
	Battery   float64 // percent; negative when unknown
}

// Driver watches sensors of one kind of hardware.
type Driver interface {
	// Watch reports on sensor id until ctx ends, calling emit for every
	// reading (emit may block briefly; it never retains the reading's
	// memory). It returns ctx's error when ctx ends and any other error
	// when the hardware cannot be read, after which the caller retries.
	Watch(ctx context.Context, id string, params map[string]string, emit func(Reading)) error
}
