package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/wire"
)

// The benchmark city: a prefecture-level city's worth of devices and a
// month of history with a few transitions per device and day.
const (
	benchDevices = 100_000
	benchDays    = 30
)

// benchWindows: one district's cameras go dark every night for two hours.
var benchWindows = maintenance.MustSchedule(maintenance.Window{Name: "night works", Districts: []string{"district-3"}, Daily: "02:00-04:00"})

var bench struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// benchDB builds the benchmark's history once per run, through Seed, and
// rolls up its days, as a hub running through the month would have.
func benchDB(b *testing.B) string {
	bench.once.Do(func() {
		if bench.dir, bench.err = os.MkdirTemp("", "history-bench"); bench.err != nil {
			return
		}
		path := filepath.Join(bench.dir, "history.db")
		start := time.Now()
		c := &clock{now: day0.Add(benchDays*24*time.Hour + time.Hour)}
		h := open(b, path, c, Options{Windows: benchWindows})
		n, err := seedMonth(h)
		if err == nil {
			for more := true; more && err == nil; {
				more, err = h.closeNext(context.Background())
			}
		}
		if err == nil {
			err = h.Close()
		}
		bench.err = err
		b.Logf("built %d devices × %d days: %d transitions in %s", benchDevices, benchDays, n, time.Since(start).Round(time.Second))
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return filepath.Join(bench.dir, "history.db")
}

// seedMonth writes the month a day at a time: every device online at the
// start; each day an outage of 5 min to 4 h (offline, or unreachable for
// a whole site now and then) and, for one device in two, a spell of
// degraded video.
func seedMonth(h *History) (int, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	devs := make([]*fleet.Device, benchDevices)
	kinds := []wire.DeviceKind{wire.KindCamera, wire.KindCamera, wire.KindCamera, wire.KindCamera, wire.KindSensor}
	for i := range devs {
		site := i / 50
		devs[i] = &fleet.Device{ID: fmt.Sprintf("dev-%06d", i), Kind: kinds[i%len(kinds)], Agent: fmt.Sprintf("agent-%04d", site),
			Site: fmt.Sprintf("site-%04d", site), District: fmt.Sprintf("district-%d", site%10), Vendor: []string{"hik", "dahua", "uniview", "axis", ""}[site%5]}
	}
	total := 0
	var ts []fleet.DeviceTransition
	for d := range benchDays {
		ts = ts[:0]
		dayStart := day0.Add(time.Duration(d) * 24 * time.Hour)
		for _, dv := range devs {
			if d == 0 {
				ts = append(ts, tr(dv, dayStart, wire.StatusOnline))
			}
			down := dayStart.Add(time.Duration(rng.Int64N(int64(18 * time.Hour))))
			up := down.Add(5*time.Minute + time.Duration(rng.Int64N(int64(4*time.Hour))))
			st := wire.StatusOffline
			if rng.IntN(8) == 0 {
				st = wire.StatusUnreachable
			}
			ts = append(ts, tr(dv, down, st), tr(dv, up, wire.StatusOnline))
			if rng.IntN(2) == 0 {
				deg := up.Add(time.Duration(rng.Int64N(int64(90 * time.Minute))))
				ts = append(ts, tr(dv, deg, wire.StatusDegraded), tr(dv, deg.Add(20*time.Minute), wire.StatusOnline))
			}
		}
		if err := h.Seed(context.Background(), ts, false); err != nil {
			return total, err
		}
		total += len(ts)
	}
	return total, nil
}

// BenchmarkAvailabilityMonth is a month's report over 100,000 devices by
// district (target: at most 2 s per op on a 2-core machine).
func BenchmarkAvailabilityMonth(b *testing.B) {
	path := benchDB(b)
	h := open(b, path, &clock{now: day0.Add(benchDays*24*time.Hour + time.Hour)}, Options{Windows: benchWindows})
	q := AvailabilityQuery{From: day0, To: day0.Add(benchDays * 24 * time.Hour), Group: "district", Scope: auth.Everything}
	var a Availability
	b.ResetTimer()
	for b.Loop() {
		var err error
		if a, err = h.Availability(context.Background(), q); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if a.Total.Devices != benchDevices || len(a.Rows) != 10 || a.Total.MaintenanceS == 0 {
		b.Fatalf("report: %d devices, %d rows, maintenance %v s", a.Total.Devices, len(a.Rows), a.Total.MaintenanceS)
	}
	b.Logf("%.3f s/op; city online rate %.4f, intact rate %.4f, %d outages, MTTR %.0f s",
		b.Elapsed().Seconds()/float64(b.N), *a.Total.OnlineRate, *a.Total.IntactRate, a.Total.Outages, *a.Total.MTTRS)
}
