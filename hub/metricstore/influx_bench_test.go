//go:build unix

package metricstore_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
)

// BenchmarkInfluxWrite pushes b.N samples, 100 per call as an agent's
// report arrives, through a writer with the production batch size into a
// real InfluxDB, and waits until all are stored. It reports throughput and
// the CPU this process (not influxd) spent per point, which is what the
// hub's one-core budget pays: cores at 10k/s = cpu-ns/point × 10⁻⁵; one
// serial writer against four concurrent ones in the same run.
func BenchmarkInfluxWrite(b *testing.B) {
	db := testenv.InfluxDB(b)
	samples := citySamples(1000, 100) // 1,000 devices, 100 reports each
	for _, c := range []struct {
		gzip    bool
		writers int
	}{{false, 1}, {false, 4}, {true, 4}} {
		b.Run(fmt.Sprintf("gzip=%v/writers=%d", c.gzip, c.writers), func(b *testing.B) {
			w := startInflux(b, db, metricstore.InfluxConfig{
				BatchSize: 5000, FlushInterval: time.Second, GZip: c.gzip, Writers: c.writers,
				QueueLen: b.N, DrainTimeout: time.Minute, // measure the writer, not the queue bound
			})
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for i := 0; i < b.N; i += 100 {
				off := i % len(samples)
				w.WriteSamples(samples[off : off+min(100, b.N-i)])
			}
			w.stop(b)
			b.StopTimer()
			cpu := cpuTime(b) - cpu0

			if st := w.Status(); st.Written != uint64(b.N) {
				b.Fatalf("status %+v: want all %d points written", st, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/point")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
