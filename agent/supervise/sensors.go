package supervise

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/citywatch/citywatch/agent/sensor"
	"github.com/citywatch/citywatch/wire"
)

// Driver restarts back off from watchRetryMin to watchRetryMax; a driver
// that ran for watchRetryMax is considered healthy again.
const (
	watchRetryMin = time.Second
	watchRetryMax = time.Minute
)

// runSensor watches a sensor until ctx ends. Every reading is a check-in;
// a sensor silent for the supervision window is offline with reason
// supervision_lost until it reports again, whatever the cause (flat
// battery, cut wire, driver failure).
func (sup *supervisor) runSensor(ctx context.Context) {
	sn := sup.dev.Sensor
	readings := make(chan sensor.Reading)
	driverErrs := make(chan error)
	var wg sync.WaitGroup
	wg.Go(func() { sup.watch(ctx, readings, driverErrs) })
	defer wg.Wait() // a stopped supervisor leaves no driver running

	watchdog := time.NewTimer(sn.Supervision)
	defer watchdog.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-readings:
			watchdog.Reset(sn.Supervision)
			lastErr = nil
			sup.judgeReading(r)
		case err := <-driverErrs:
			lastErr = err
			sup.log.Warn("sensor driver failed", "err", err)
		case <-watchdog.C:
			detail := fmt.Sprintf("no check-in for %v", sn.Supervision)
			if lastErr != nil {
				detail += "; driver: " + lastErr.Error()
			}
			sup.update(report{at: time.Now(), status: wire.StatusOffline, reason: wire.ReasonSupervisionLost, detail: detail})
		case done := <-sup.kick:
			close(done) // sensors report by themselves
		}
	}
}

// watch runs the driver, restarting it with backoff when it fails.
func (sup *supervisor) watch(ctx context.Context, readings chan<- sensor.Reading, errs chan<- error) {
	sn := sup.dev.Sensor
	emit := func(r sensor.Reading) {
		select {
		case readings <- r:
		case <-ctx.Done():
		}
	}
	retry := watchRetryMin
	for {
		started := time.Now()
		err := sn.Driver.Watch(ctx, sup.dev.ID, sn.Params, emit)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("driver stopped watching")
		}
		if time.Since(started) >= watchRetryMax {
			retry = watchRetryMin
		}
		select {
		case errs <- err:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(retry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		retry = min(2*retry, watchRetryMax)
	}
}

// judgeReading applies one reading: the sensor is online, or degraded
// while its tamper contact is open; a change of the alarm contact is an
// event of its own.
func (sup *supervisor) judgeReading(r sensor.Reading) {
	at := r.At
	if at.IsZero() {
		at = time.Now()
	}
	sup.setAge(wire.MetricCheckinAge, at)
	rep := report{at: at, status: wire.StatusOnline, metrics: map[string]float64{}}
	if r.Tamper {
		rep.status, rep.reason, rep.detail = wire.StatusDegraded, wire.ReasonTamper, "tamper contact open"
	}
	if r.Battery >= 0 {
		rep.metrics[wire.MetricBatteryPct] = r.Battery
	}
	sup.update(rep)
	sup.trigger(r.Triggered, wire.ReasonNone, "", at)
}
