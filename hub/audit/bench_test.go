package audit

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/citywatch/citywatch/hub/metrics"
)

// BenchmarkAppend appends from parallel goroutines, each commit an fsync
// (synchronous=FULL): with Run group-committing, and for comparison
// without, each Append its own transaction (the command line's way).
func BenchmarkAppend(b *testing.B) {
	for _, withRun := range []bool{true, false} {
		b.Run(map[bool]string{true: "run", false: "direct"}[withRun], func(b *testing.B) {
			e := newEnv(b)
			reg := metrics.NewRegistry()
			l := e.open(b, Options{}, Deps{Metrics: reg})
			if withRun {
				run(b, l)
			}
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					if _, err := l.Append(context.Background(), sample(i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			var text bytes.Buffer
			reg.WriteText(&text)
			b.ReportMetric(counter(b, text.Bytes(), "records")/counter(b, text.Bytes(), "commits"), "records/commit")
		})
	}
}

func counter(b *testing.B, text []byte, name string) float64 {
	m := regexp.MustCompile(fmt.Sprintf(`(?m)^citywatch_audit_%s_total (\d+)$`, name)).FindSubmatch(text)
	if m == nil {
		b.Fatalf("no %s counter", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
