package sensor

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder collects readings emitted by a driver.
type recorder struct {
	mu       sync.Mutex
	readings []Reading
}

func (r *recorder) emit(rd Reading) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readings = append(r.readings, rd)
}

func (r *recorder) take() []Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.readings
	r.readings = nil
	return out
}

func TestSim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		sim := NewSim(10 * time.Second)
		var rec recorder
		done := make(chan error)
		go func() { done <- sim.Watch(ctx, "pir-1", nil, rec.emit) }()

		synctest.Wait()
		if got := rec.take(); len(got) != 1 || got[0].Triggered || got[0].Battery >= 0 {
			t.Fatalf("start: readings %+v, want one untriggered check-in", got)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := rec.take(); len(got) != 3 {
			t.Fatalf("after 30s: %d check-ins, want 3", len(got))
		}

		sim.Trigger("pir-1", true)
		synctest.Wait()
		if got := rec.take(); len(got) != 1 || !got[0].Triggered {
			t.Fatalf("trigger: readings %+v, want one triggered reading at once", got)
		}

		sim.SetSupervision("pir-1", false)
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("silent sensor emitted %d readings", len(got))
		}
		sim.Trigger("pir-1", false) // a silent sensor does not report this
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("silent sensor emitted %+v", got)
		}

		sim.SetSupervision("pir-1", true)
		synctest.Wait()
		if got := rec.take(); len(got) != 1 || got[0].Triggered {
			t.Fatalf("resume: readings %+v, want one restored check-in", got)
		}

		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Watch returned %v, want context.Canceled", err)
		}
	})
}

// TestSimControlBeforeWatch: the simulator may fail a sensor before the
// agent has started watching it.
func TestSimControlBeforeWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSim(time.Second)
		sim.SetSupervision("door-1", false)
		var rec recorder
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go sim.Watch(ctx, "door-1", nil, rec.emit)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("sensor failed before Watch emitted %+v", got)
		}
	})
}
