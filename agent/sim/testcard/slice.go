package testcard

import "bytes"

// How a macroblock was coded. CAVLC picks the table for a block's
// coeff_token from its neighbours' coefficient counts (nC), and I_PCM
// counts as 16 while skipped and coefficient-free macroblocks count as 0.
const (
	kindSkip uint8 = iota
	kindI16        // Intra16x16 with no residual
	kindPCM
)

// Slice types (the 0–4 forms, valid whatever the other slices are).
const (
	sliceP = 0
	sliceI = 2
)

// mb_type values. In P slices intra types are offset by 5.
const (
	mbTypeI16   = 1  // I_16x16_<predmode>_0_0 is 1 + predmode
	mbTypeIPCM  = 25 // I_PCM
	pIntraShift = 5
)

// Intra16x16 luma prediction modes (8.3.3) we use.
const (
	lumaVertical   = 0
	lumaHorizontal = 1
	lumaDC         = 2
)

// Intra chroma prediction modes (8.3.4) we use.
const (
	chromaDC         = 0
	chromaHorizontal = 1
	chromaVertical   = 2
)

// encodeSlice codes cur as one slice: an IDR I slice with every macroblock
// intra, or a P slice where macroblocks not marked dirty are P_Skip.
// Skipped macroblocks copy the reference with a zero motion vector: P_Skip
// predicts its vector from neighbours, and with no non-zero vector
// anywhere in the picture the prediction is always zero.
func (e *Encoder) encodeSlice(idr bool) []byte {
	w := &e.w
	w.reset()
	w.ue(0) // first_mb_in_slice
	if idr {
		w.ue(sliceI)
	} else {
		w.ue(sliceP)
	}
	w.ue(0) // pic_parameter_set_id
	w.u(log2MaxFrameNum, e.frameNum)
	if idr {
		w.ue(e.idrPicID)
	} else {
		w.flag(false) // num_ref_idx_active_override_flag
		w.flag(false) // ref_pic_list_modification_flag_l0
	}
	// dec_ref_pic_marking: sliding window keeps the one reference frame.
	if idr {
		w.flag(false) // no_output_of_prior_pics_flag
		w.flag(false) // long_term_reference_flag
	} else {
		w.flag(false) // adaptive_ref_pic_marking_mode_flag
	}
	w.se(0) // slice_qp_delta; irrelevant, nothing is quantised
	w.ue(1) // disable_deblocking_filter_idc: off, to keep samples exact

	skip := uint32(0)
	for mby := range e.mbH {
		for mbx := range e.mbW {
			i := mby*e.mbW + mbx
			if !idr && !e.dirty[i] {
				e.mbKind[i] = kindSkip
				skip++
				continue
			}
			if !idr {
				w.ue(skip) // mb_skip_run
				skip = 0
			}
			e.writeIntraMB(mbx, mby, !idr)
		}
	}
	if skip > 0 {
		w.ue(skip)
	}
	w.trailing()
	if idr {
		return nalUnit(refIdc, naluIDR, w.buf)
	}
	return nalUnit(refIdc, naluSlice, w.buf)
}

// writeIntraMB codes macroblock (mbx, mby) of cur losslessly: as an
// Intra16x16 macroblock without residual if some prediction from the
// already decoded neighbours reproduces it exactly, else as I_PCM.
func (e *Encoder) writeIntraMB(mbx, mby int, pSlice bool) {
	w := &e.w
	i := mby*e.mbW + mbx
	shift := uint32(0)
	if pSlice {
		shift = pIntraShift
	}
	var lm, cm int
	if d := e.static[i]; d.valid {
		lm, cm = int(d.luma), int(d.chrm)
	} else {
		lm, cm = intraModes(e.cur, mbx, mby)
	}
	if cm < 0 {
		w.ue(shift + mbTypeIPCM)
		w.alignZero() // pcm_alignment_zero_bit
		c := e.cur
		for r := range 16 {
			o := (mby*16+r)*c.w + mbx*16
			w.bytes(c.y[o : o+16])
		}
		cw := c.w / 2
		for _, p := range [][]byte{c.cb, c.cr} {
			for r := range 8 {
				o := (mby*8+r)*cw + mbx*8
				w.bytes(p[o : o+8])
			}
		}
		e.mbKind[i] = kindPCM
		return
	}

	w.ue(shift + mbTypeI16 + uint32(lm)) // coded_block_pattern 0 is implied
	w.ue(uint32(cm))                     // intra_chroma_pred_mode
	w.se(0)                              // mb_qp_delta
	// The Intra16x16DCLevel block is always present; code it as empty:
	// coeff_token with TotalCoeff 0, TrailingOnes 0 in the table for nC.
	nC := e.lumaNC(mbx, mby)
	switch {
	case nC < 2:
		w.u(1, 0b1)
	case nC < 4:
		w.u(2, 0b11)
	case nC < 8:
		w.u(4, 0b1111)
	default:
		w.u(6, 0b000011)
	}
	e.mbKind[i] = kindI16
}

// lumaNC is nC for the first luma 4×4 block of a macroblock (9.2.1): the
// rounded mean of the coefficient counts of the blocks to the left and
// above, each 16 for I_PCM and 0 for anything we code without residual.
func (e *Encoder) lumaNC(mbx, mby int) int {
	count := func(i int) int {
		if e.mbKind[i] == kindPCM {
			return 16
		}
		return 0
	}
	switch {
	case mbx > 0 && mby > 0:
		return (count(mby*e.mbW+mbx-1) + count((mby-1)*e.mbW+mbx) + 1) >> 1
	case mbx > 0:
		return count(mby*e.mbW + mbx - 1)
	case mby > 0:
		return count((mby-1)*e.mbW + mbx)
	}
	return 0
}

// intraModes finds Intra16x16 luma and chroma prediction modes that
// reproduce macroblock (mbx, mby) exactly; cm < 0 means there are none and
// the macroblock must be I_PCM.
func intraModes(c *canvas, mbx, mby int) (lm, cm int) {
	lm, cm = lumaMode(c, mbx, mby), -1
	if lm >= 0 {
		cm = chromaMode(c, mbx, mby)
	}
	return lm, cm
}

// mbDecision is a cached result of intraModes.
type mbDecision struct {
	valid      bool
	luma, chrm int8 // modes; chrm < 0 means I_PCM
}

// staticDecisions precomputes intraModes for every macroblock that can
// never change: outside the dynamic regions and not predicted from them
// (the prediction modes used read only the row above and the column to
// the left). Keyframes then search only the few macroblocks near the
// clock and marker.
func staticDecisions(bg *canvas, mbW, mbH int, dynamic []rect) []mbDecision {
	dyn := make([]bool, mbW*mbH)
	for _, r := range dynamic {
		for mby := r.y0 / 16; mby < r.y1/16; mby++ {
			for mbx := r.x0 / 16; mbx < r.x1/16; mbx++ {
				dyn[mby*mbW+mbx] = true
			}
		}
	}
	out := make([]mbDecision, mbW*mbH)
	for mby := range mbH {
		for mbx := range mbW {
			i := mby*mbW + mbx
			if dyn[i] || mbx > 0 && dyn[i-1] || mby > 0 && dyn[i-mbW] {
				continue
			}
			lm, cm := intraModes(bg, mbx, mby)
			out[i] = mbDecision{valid: true, luma: int8(lm), chrm: int8(cm)}
		}
	}
	return out
}

// lumaMode returns an Intra16x16 prediction mode that reproduces the
// macroblock's luma exactly, cheapest first, or -1.
func lumaMode(c *canvas, mbx, mby int) int {
	w := c.w
	x0, y0 := mbx*16, mby*16
	row := func(r int) []byte { o := (y0+r)*w + x0; return c.y[o : o+16] }
	if mby > 0 && allRowsEqual(c.y, w, x0, y0, 16, c.y[(y0-1)*w+x0:(y0-1)*w+x0+16]) {
		return lumaVertical
	}
	if mbx > 0 {
		ok := true
		for r := 0; r < 16 && ok; r++ {
			ok = allSame(row(r), c.y[(y0+r)*w+x0-1])
		}
		if ok {
			return lumaHorizontal
		}
	}
	sum, n := 0, 0
	if mby > 0 {
		for _, v := range c.y[(y0-1)*w+x0 : (y0-1)*w+x0+16] {
			sum += int(v)
		}
		n += 16
	}
	if mbx > 0 {
		for r := range 16 {
			sum += int(c.y[(y0+r)*w+x0-1])
		}
		n += 16
	}
	dc := byte(128)
	if n > 0 {
		dc = byte((sum + n/2) / n) // n is 16 or 32: the spec's shifts
	}
	for r := range 16 {
		if !allSame(row(r), dc) {
			return -1
		}
	}
	return lumaDC
}

// chromaMode returns an intra chroma prediction mode that reproduces both
// chroma planes of the macroblock exactly, cheapest first, or -1.
func chromaMode(c *canvas, mbx, mby int) int {
	for _, m := range []int{chromaDC, chromaHorizontal, chromaVertical} {
		if chromaMatches(c.cb, c.w/2, mbx, mby, m) && chromaMatches(c.cr, c.w/2, mbx, mby, m) {
			return m
		}
	}
	return -1
}

func chromaMatches(p []byte, stride, mbx, mby, mode int) bool {
	x0, y0 := mbx*8, mby*8
	left, top := mbx > 0, mby > 0
	switch mode {
	case chromaVertical:
		return top && allRowsEqual(p, stride, x0, y0, 8, p[(y0-1)*stride+x0:(y0-1)*stride+x0+8])
	case chromaHorizontal:
		if !left {
			return false
		}
		for r := range 8 {
			o := (y0+r)*stride + x0
			if !allSame(p[o:o+8], p[o-1]) {
				return false
			}
		}
		return true
	}
	// DC is predicted per 4×4 block, each preferring the neighbours it
	// touches (8.3.4.1–3).
	for yO := 0; yO < 8; yO += 4 {
		for xO := 0; xO < 8; xO += 4 {
			sumT, sumL := 0, 0
			if top {
				for _, v := range p[(y0-1)*stride+x0+xO : (y0-1)*stride+x0+xO+4] {
					sumT += int(v)
				}
			}
			if left {
				for r := range 4 {
					sumL += int(p[(y0+yO+r)*stride+x0-1])
				}
			}
			dc := 128
			switch {
			case xO == yO: // blocks 0 and 3 use both sides when they can
				switch {
				case top && left:
					dc = (sumT + sumL + 4) >> 3
				case left:
					dc = (sumL + 2) >> 2
				case top:
					dc = (sumT + 2) >> 2
				}
			case yO == 0: // top-right block prefers the row above
				switch {
				case top:
					dc = (sumT + 2) >> 2
				case left:
					dc = (sumL + 2) >> 2
				}
			default: // bottom-left block prefers the column to the left
				switch {
				case left:
					dc = (sumL + 2) >> 2
				case top:
					dc = (sumT + 2) >> 2
				}
			}
			for r := range 4 {
				o := (y0+yO+r)*stride + x0 + xO
				if !allSame(p[o:o+4], byte(dc)) {
					return false
				}
			}
		}
	}
	return true
}

// allRowsEqual reports whether the n×n block at (x0, y0) repeats want in
// every row.
func allRowsEqual(p []byte, stride, x0, y0, n int, want []byte) bool {
	for r := range n {
		o := (y0+r)*stride + x0
		if !bytes.Equal(p[o:o+n], want) {
			return false
		}
	}
	return true
}

func allSame(p []byte, v byte) bool {
	for _, b := range p {
		if b != v {
			return false
		}
	}
	return true
}
