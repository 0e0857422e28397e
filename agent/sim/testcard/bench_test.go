package testcard

import (
	"testing"
	"time"
)

// BenchmarkEncode measures one frame at the default size: "P" is a
// typical inter frame (marker moved), "IDR" a keyframe, "GOP" the mix a
// camera actually produces. bytes/op is the mean access unit size.
func BenchmarkEncode(b *testing.B) {
	t0 := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	for _, bc := range []struct {
		name string
		gop  int
		idr  bool
	}{
		{"P", 1 << 30, false},
		{"IDR", DefaultFPS, true},
		{"GOP", DefaultFPS, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := New(Config{Name: "cam-042 Main Street", GOP: bc.gop})
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := e.Encode(t0); err != nil {
				b.Fatal(err)
			}
			var size int
			i := 1
			b.ReportAllocs()
			for b.Loop() {
				if bc.idr {
					e.ForceKeyframe()
				}
				nalus, _, err := e.Encode(t0.Add(time.Duration(i) * time.Second / DefaultFPS))
				if err != nil {
					b.Fatal(err)
				}
				for _, n := range nalus {
					size += len(n)
				}
				i++
			}
			b.ReportMetric(float64(size)/float64(b.N), "bytes/op")
		})
	}
}
