package testcard

import (
	"bytes"
	"math/bits"
)

// bitWriter builds an RBSP (raw byte sequence payload) MSB first.
type bitWriter struct {
	buf []byte
	acc uint64 // the low n bits are pending output
	n   uint
}

func (w *bitWriter) reset() {
	w.buf = w.buf[:0]
	w.acc, w.n = 0, 0
}

// u writes the low n bits of v, n <= 32.
func (w *bitWriter) u(n uint, v uint32) {
	w.acc = w.acc<<n | uint64(v)&(1<<n-1)
	w.n += n
	for w.n >= 8 {
		w.n -= 8
		w.buf = append(w.buf, byte(w.acc>>w.n))
	}
}

func (w *bitWriter) flag(b bool) {
	if b {
		w.u(1, 1)
	} else {
		w.u(1, 0)
	}
}

// ue writes v as unsigned Exp-Golomb, ue(v) in the standard.
func (w *bitWriter) ue(v uint32) {
	x := uint64(v) + 1
	l := uint(bits.Len64(x))
	w.u(l-1, 0)
	if l > 32 {
		w.u(l-32, uint32(x>>32))
		w.u(32, uint32(x))
		return
	}
	w.u(l, uint32(x))
}

// se writes v as signed Exp-Golomb, se(v) in the standard.
func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*int64(v) - 1))
	} else {
		w.ue(uint32(-2 * int64(v)))
	}
}

func (w *bitWriter) aligned() bool { return w.n == 0 }

// alignZero pads with zero bits to the next byte boundary.
func (w *bitWriter) alignZero() {
	if w.n > 0 {
		w.u(8-w.n, 0)
	}
}

// bytes appends whole bytes; the writer must be byte aligned.
func (w *bitWriter) bytes(p []byte) {
	if w.n != 0 {
		panic("testcard: unaligned byte write") // programming error
	}
	w.buf = append(w.buf, p...)
}

// trailing writes rbsp_trailing_bits: a stop bit and zero alignment.
func (w *bitWriter) trailing() {
	w.u(1, 1)
	w.alignZero()
}

// nalUnit wraps an RBSP into a NAL unit (no start code) with emulation
// prevention, so no 0x000000–0x000003 sequence appears in the payload and a
// start-code scanner can never cut it short. The result is freshly
// allocated: callers may hold on to access units.
func nalUnit(refIdc, typ uint8, rbsp []byte) []byte {
	out := make([]byte, 0, 1+len(rbsp)+len(rbsp)/64+4)
	out = append(out, refIdc<<5|typ)
	// Jump between zero pairs with bytes.Index (vectorised): I_PCM samples
	// are never zero, so in big slices the pairs are rare.
	for {
		i := bytes.Index(rbsp, zeroPair)
		if i < 0 || i+2 >= len(rbsp) {
			return append(out, rbsp...)
		}
		out = append(out, rbsp[:i+2]...)
		rbsp = rbsp[i+2:]
		if rbsp[0] <= 3 {
			out = append(out, 3) // emulation_prevention_three_byte
		}
	}
}

var zeroPair = []byte{0, 0}
