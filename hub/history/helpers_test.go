package history

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// day0 is the first day of the tests' history, in UTC.
var day0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func at(h float64) time.Time { return day0.Add(time.Duration(h * float64(time.Hour))) }

// clock is the injected hub clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// open opens the history at path on clock c; the test closes it unless
// it did so itself (Close twice only fails).
func open(t testing.TB, path string, c *clock, opts Options) *History {
	t.Helper()
	opts.Now = c.Now
	h, err := Open(path, opts, Deps{Log: slog.New(slog.DiscardHandler), Metrics: metrics.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func tempDB(t testing.TB) string { return filepath.Join(t.TempDir(), "history.db") }

func dev(id string, kind wire.DeviceKind, district, site, vendor string) *fleet.Device {
	return &fleet.Device{ID: id, Kind: kind, Agent: "agent-" + site, District: district, Site: site, Vendor: vendor}
}

func tr(d *fleet.Device, t time.Time, to wire.Status) fleet.DeviceTransition {
	return fleet.DeviceTransition{Device: d, Transition: fleet.Transition{At: t, To: to, Cause: fleet.CauseDevice}}
}

func seed(t testing.TB, h *History, sim bool, ts ...fleet.DeviceTransition) {
	t.Helper()
	if err := h.Seed(context.Background(), ts, sim); err != nil {
		t.Fatal(err)
	}
}

// rollAll rolls up every day that is over, as Run would.
func rollAll(t testing.TB, h *History) {
	t.Helper()
	for {
		more, err := h.closeNext(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
	}
}

func hours(h float64) float64 { return h * 3600 }

func ptr(f float64) *float64 { return &f }
