package testcard

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestPredictionAgreesWithDecoder checks the encoder's exact-match search
// against the test decoder's independent predictions on random pictures.
// The test card itself only hits DC prediction with uniform neighbours,
// where rounding and the per-block chroma rules cannot show, so this is
// what pins those rules down.
func TestPredictionAgreesWithDecoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const mbs = 3 // 3×3 macroblocks cover every neighbour-availability case
	for iter := range 200 {
		c := newCanvas(mbs*16, mbs*16, false)
		d := &testDecoder{mbW: mbs, mbH: mbs, cur: c}
		for mb := range mbs * mbs {
			mbx, mby := mb%mbs, mb/mbs
			for mode := range 3 {
				// Fresh neighbours for every case. A narrow sample range
				// makes accidental equalities between modes likely, which
				// is where a wrong rule would be picked.
				lo, span := byte(rng.IntN(200)), 1+rng.IntN(40)
				for _, p := range [][]byte{c.y, c.cb, c.cr} {
					for i := range p {
						p[i] = lo + byte(rng.IntN(span))
					}
				}
				if err := d.predictLuma(mbx, mby, mode); err != nil {
					continue // mode unavailable here
				}
				got := lumaMode(c, mbx, mby)
				if got < 0 || !lumaReproduces(d, c, mbx, mby, got) {
					t.Fatalf("iter %d mb (%d,%d): content from luma mode %d, encoder chose %d which the decoder does not reproduce", iter, mbx, mby, mode, got)
				}
				chromaOK := true
				for _, p := range [][]byte{c.cb, c.cr} {
					chromaOK = chromaOK && d.predictChroma(p, mbx, mby, mode) == nil
				}
				if cm := chromaMode(c, mbx, mby); chromaOK && (cm < 0 || !chromaReproduces(d, c, mbx, mby, cm)) {
					t.Fatalf("iter %d mb (%d,%d): chroma from mode %d, encoder chose %d which the decoder does not reproduce", iter, mbx, mby, mode, cm)
				}
				// One changed sample must not be claimed as predictable
				// unless the decoder agrees.
				o := (mby*16+rng.IntN(16))*c.w + mbx*16 + rng.IntN(16)
				c.y[o] ^= 1 << rng.IntN(3)
				if got := lumaMode(c, mbx, mby); got >= 0 && !lumaReproduces(d, c, mbx, mby, got) {
					t.Fatalf("iter %d mb (%d,%d): encoder claims luma mode %d for content no mode predicts", iter, mbx, mby, got)
				}
				o = (mby*8+rng.IntN(8))*c.w/2 + mbx*8 + rng.IntN(8)
				c.cr[o] ^= 1 << rng.IntN(3)
				if got := chromaMode(c, mbx, mby); got >= 0 && !chromaReproduces(d, c, mbx, mby, got) {
					t.Fatalf("iter %d mb (%d,%d): encoder claims chroma mode %d for content no mode predicts", iter, mbx, mby, got)
				}
			}
		}
	}
}

// lumaReproduces reports whether the decoder's prediction in mode equals
// the macroblock's current luma, leaving the canvas unchanged.
func lumaReproduces(d *testDecoder, c *canvas, mbx, mby, mode int) bool {
	saved := c.clone()
	defer func() { copy(c.y, saved.y) }()
	if d.predictLuma(mbx, mby, mode) != nil {
		return false
	}
	return bytes.Equal(c.y, saved.y)
}

func chromaReproduces(d *testDecoder, c *canvas, mbx, mby, mode int) bool {
	saved := c.clone()
	defer func() { copy(c.cb, saved.cb); copy(c.cr, saved.cr) }()
	for _, p := range [][]byte{c.cb, c.cr} {
		if d.predictChroma(p, mbx, mby, mode) != nil {
			return false
		}
	}
	return bytes.Equal(c.cb, saved.cb) && bytes.Equal(c.cr, saved.cr)
}
