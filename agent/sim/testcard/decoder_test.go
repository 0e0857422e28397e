package testcard

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// This file is a minimal H.264 decoder for exactly the subset the encoder
// claims to use (I_PCM, Intra16x16 without residual, P_Skip, no
// deblocking). It is written from the specification independently of the
// encoder, so round-trip tests check the encoder's reading of the spec, not
// just its self-consistency. Anything outside the subset is an error.

// bitReader reads an RBSP MSB first. Errors are sticky: after one, reads
// return zero and err says what went wrong first.
type bitReader struct {
	buf []byte
	pos int // next bit
	end int // position of rbsp_stop_one_bit
	err error
}

func newBitReader(rbsp []byte) *bitReader {
	r := &bitReader{buf: rbsp}
	i := len(rbsp) - 1
	for i >= 0 && rbsp[i] == 0 {
		i--
	}
	if i < 0 {
		r.err = errors.New("no rbsp_stop_one_bit")
		return r
	}
	r.end = i*8 + 7 - bits.TrailingZeros8(rbsp[i])
	return r
}

func (r *bitReader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("bit %d: %s", r.pos, fmt.Sprintf(format, a...))
	}
}

func (r *bitReader) u(n int) uint32 {
	if r.err != nil {
		return 0
	}
	if r.pos+n > r.end {
		r.fail("read of %d bits runs into the stop bit", n)
		return 0
	}
	var v uint32
	for range n {
		v = v<<1 | uint32(r.buf[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.err == nil && r.u(1) == 0 {
		zeros++
		if zeros > 31 {
			r.fail("exp-golomb code too long")
		}
	}
	return (1<<zeros - 1) + r.u(zeros)
}

func (r *bitReader) se() int32 {
	k := r.ue()
	if k%2 == 1 {
		return int32((k + 1) / 2)
	}
	return -int32(k / 2)
}

// more is more_rbsp_data(): is there anything before the stop bit?
func (r *bitReader) more() bool { return r.err == nil && r.pos < r.end }

// testDecoder decodes a stream access unit by access unit.
type testDecoder struct {
	sps          h264.SPS
	haveSPS      bool
	havePPS      bool
	mbW, mbH     int
	cur, ref     *canvas
	pcm          []bool // per macroblock of cur: coded as I_PCM
	haveRef      bool
	frameNum     uint32
	lastIDRPicID int64
	codedMBs     int // non-skipped macroblocks in the last picture
}

func newTestDecoder() *testDecoder { return &testDecoder{lastIDRPicID: -1} }

// decodeAU decodes one access unit into d.cur.
func (d *testDecoder) decodeAU(nalus [][]byte) error {
	slices := 0
	for i, nal := range nalus {
		if len(nal) == 0 {
			return fmt.Errorf("nalu %d: empty", i)
		}
		if nal[0]&0x80 != 0 {
			return fmt.Errorf("nalu %d: forbidden_zero_bit set", i)
		}
		typ := nal[0] & 0x1f
		var err error
		switch typ {
		case naluSPS:
			err = d.sps.Unmarshal(nal)
			if err == nil {
				d.haveSPS = true
				d.mbW = int(d.sps.PicWidthInMbsMinus1) + 1
				d.mbH = int(d.sps.PicHeightInMapUnitsMinus1) + 1
				if d.sps.PicOrderCntType != 2 || !d.sps.FrameMbsOnlyFlag || d.sps.FrameCropping != nil {
					err = errors.New("sps outside the supported subset")
				}
			}
		case naluPPS:
			err = d.decodePPS(nal)
		case naluIDR, naluSlice:
			slices++
			err = d.decodeSlice(nal)
		default:
			err = fmt.Errorf("unexpected nal_unit_type %d", typ)
		}
		if err != nil {
			return fmt.Errorf("nalu %d (type %d): %w", i, typ, err)
		}
	}
	if slices != 1 {
		return fmt.Errorf("access unit has %d slices, want 1", slices)
	}
	return nil
}

func (d *testDecoder) decodePPS(nal []byte) error {
	r := newBitReader(h264.EmulationPreventionRemove(nal[1:]))
	got := []uint32{
		r.ue(), r.ue(), r.u(1), r.u(1), r.ue(), r.ue(), r.ue(), r.u(1), r.u(2),
		uint32(r.se()), uint32(r.se()), uint32(r.se()), r.u(1), r.u(1), r.u(1),
	}
	// pps id, sps id, CAVLC, no field POC, one slice group, one reference,
	// no weighting, QP 26, deblocking control present, unconstrained intra,
	// no redundant pictures.
	want := []uint32{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}
	if r.err != nil {
		return r.err
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("pps field %d = %d, want %d", i, got[i], want[i])
		}
	}
	if r.more() {
		return errors.New("pps has trailing data")
	}
	d.havePPS = true
	return nil
}

func (d *testDecoder) decodeSlice(nal []byte) error {
	if !d.haveSPS || !d.havePPS {
		return errors.New("slice before parameter sets")
	}
	idr := nal[0]&0x1f == naluIDR
	if nal[0]>>5 == 0 {
		return errors.New("non-reference picture")
	}
	r := newBitReader(h264.EmulationPreventionRemove(nal[1:]))
	if first := r.ue(); first != 0 {
		return fmt.Errorf("first_mb_in_slice %d", first)
	}
	sliceType := r.ue() % 5
	if sliceType != sliceP && sliceType != sliceI || idr && sliceType != sliceI {
		return fmt.Errorf("slice_type %d in idr=%v", sliceType, idr)
	}
	if pps := r.ue(); pps != 0 {
		return fmt.Errorf("pic_parameter_set_id %d", pps)
	}
	maxFrameNum := uint32(1) << (d.sps.Log2MaxFrameNumMinus4 + 4)
	frameNum := r.u(int(d.sps.Log2MaxFrameNumMinus4 + 4))
	if idr {
		id := int64(r.ue())
		if id == d.lastIDRPicID {
			return fmt.Errorf("idr_pic_id %d repeats", id)
		}
		d.lastIDRPicID = id
		if frameNum != 0 {
			return fmt.Errorf("idr frame_num %d", frameNum)
		}
	} else {
		if !d.haveRef {
			return errors.New("P slice without reference")
		}
		if want := (d.frameNum + 1) % maxFrameNum; frameNum != want {
			return fmt.Errorf("frame_num %d, want %d", frameNum, want)
		}
	}
	d.frameNum = frameNum
	if sliceType == sliceP {
		// num_ref_idx_active_override_flag, ref_pic_list_modification_flag_l0
		if override, modification := r.u(1), r.u(1); override != 0 || modification != 0 {
			return errors.New("ref_idx override or list modification")
		}
	}
	if idr {
		r.u(2) // no_output_of_prior_pics_flag, long_term_reference_flag
	} else if r.u(1) != 0 {
		return errors.New("adaptive_ref_pic_marking_mode_flag")
	}
	r.se() // slice_qp_delta: no residual, so it cannot matter
	if dis := r.ue(); dis != 1 {
		return fmt.Errorf("disable_deblocking_filter_idc %d: deblocking is outside the subset", dis)
	}
	if r.err != nil {
		return r.err
	}

	w, h := d.mbW*16, d.mbH*16
	if d.cur == nil || d.cur.w != w || d.cur.h != h {
		d.cur, d.ref = newCanvas(w, h, false), newCanvas(w, h, false)
		d.pcm = make([]bool, d.mbW*d.mbH)
	}
	total, mb := d.mbW*d.mbH, 0
	d.codedMBs = 0
	for mb < total {
		if sliceType == sliceP {
			run := int(r.ue())
			if mb+run > total {
				return fmt.Errorf("mb_skip_run %d at mb %d overruns the picture", run, mb)
			}
			// P_Skip: the predicted motion vector is zero because no
			// macroblock in the subset carries a non-zero one, so this
			// is a plain copy from the reference picture.
			for range run {
				mbCopy(d.cur, d.ref, mb%d.mbW, mb/d.mbW)
				d.pcm[mb] = false
				mb++
			}
			if run > 0 && !r.more() {
				break
			}
		}
		if err := d.decodeMB(r, mb, sliceType == sliceP); err != nil {
			return fmt.Errorf("mb %d: %w", mb, err)
		}
		d.codedMBs++
		mb++
		if !r.more() {
			break
		}
	}
	if r.err != nil {
		return r.err
	}
	if mb != total {
		return fmt.Errorf("slice ends after %d of %d macroblocks", mb, total)
	}
	if r.more() {
		return errors.New("data after the last macroblock")
	}
	d.ref = d.cur.clone()
	d.haveRef = true
	return nil
}

func (d *testDecoder) decodeMB(r *bitReader, mb int, pSlice bool) error {
	mbx, mby := mb%d.mbW, mb/d.mbW
	mbType := r.ue()
	if pSlice {
		if mbType < 5 {
			return fmt.Errorf("inter mb_type %d is outside the subset", mbType)
		}
		mbType -= 5
	}
	c := d.cur
	cw := c.w / 2
	switch {
	case mbType == 25: // I_PCM
		for r.pos%8 != 0 {
			if r.u(1) != 0 {
				return errors.New("pcm_alignment_zero_bit is 1")
			}
		}
		for row := range 16 {
			for x := range 16 {
				c.y[(mby*16+row)*c.w+mbx*16+x] = byte(r.u(8))
			}
		}
		for _, p := range [][]byte{c.cb, c.cr} {
			for row := range 8 {
				for x := range 8 {
					p[(mby*8+row)*cw+mbx*8+x] = byte(r.u(8))
				}
			}
		}
		d.pcm[mb] = true
		return r.err
	case mbType >= 1 && mbType <= 24: // Intra16x16, Table 7-11
		predMode := int(mbType-1) % 4
		chromaCBP := (mbType - 1) / 4 % 3
		if chromaCBP != 0 || mbType >= 13 {
			return fmt.Errorf("mb_type %d has residual, outside the subset", mbType)
		}
		chromaMode := int(r.ue())
		if qpd := r.se(); qpd < -26 || qpd > 25 {
			return fmt.Errorf("mb_qp_delta %d out of range", qpd)
		}
		if err := d.readEmptyDCLevel(r, mbx, mby); err != nil {
			return err
		}
		if r.err != nil {
			return r.err
		}
		d.pcm[mb] = false
		if err := d.predictLuma(mbx, mby, predMode); err != nil {
			return err
		}
		for _, p := range [][]byte{c.cb, c.cr} {
			if err := d.predictChroma(p, mbx, mby, chromaMode); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("mb_type %d is outside the subset", mbType)
}

// readEmptyDCLevel reads the coeff_token of the Intra16x16DCLevel block and
// requires it to say "no coefficients" in the VLC table chosen by nC
// (9.2.1, Table 9-5); the wrong table would read different bits.
func (d *testDecoder) readEmptyDCLevel(r *bitReader, mbx, mby int) error {
	n := func(x, y int) int {
		if d.pcm[y*d.mbW+x] {
			return 16 // I_PCM counts as all coefficients present
		}
		return 0 // P_Skip, or Intra16x16 whose AC blocks are not coded
	}
	var nC int
	switch {
	case mbx > 0 && mby > 0:
		nC = (n(mbx-1, mby) + n(mbx, mby-1) + 1) >> 1
	case mbx > 0:
		nC = n(mbx-1, mby)
	case mby > 0:
		nC = n(mbx, mby-1)
	}
	var bitsLen int
	var want uint32
	switch {
	case nC < 2:
		bitsLen, want = 1, 1
	case nC < 4:
		bitsLen, want = 2, 3
	case nC < 8:
		bitsLen, want = 4, 15
	default:
		bitsLen, want = 6, 3
	}
	if got := r.u(bitsLen); r.err == nil && got != want {
		return fmt.Errorf("coeff_token %0*b for nC %d is not TotalCoeff 0", bitsLen, got, nC)
	}
	return r.err
}

// predictLuma applies Intra16x16 prediction (8.3.3) to cur.
func (d *testDecoder) predictLuma(mbx, mby, mode int) error {
	c := d.cur
	x0, y0 := mbx*16, mby*16
	at := func(x, y int) int { return int(c.y[(y0+y)*c.w+x0+x]) }
	var pred [16][16]int
	switch mode {
	case 0: // vertical
		if mby == 0 {
			return errors.New("vertical prediction without the row above")
		}
		for y := range 16 {
			for x := range 16 {
				pred[y][x] = at(x, -1)
			}
		}
	case 1: // horizontal
		if mbx == 0 {
			return errors.New("horizontal prediction without the column to the left")
		}
		for y := range 16 {
			for x := range 16 {
				pred[y][x] = at(-1, y)
			}
		}
	case 2: // DC
		sumT, sumL := 0, 0
		for i := range 16 {
			if mby > 0 {
				sumT += at(i, -1)
			}
			if mbx > 0 {
				sumL += at(-1, i)
			}
		}
		v := 128
		switch {
		case mbx > 0 && mby > 0:
			v = (sumT + sumL + 16) >> 5
		case mbx > 0:
			v = (sumL + 8) >> 4
		case mby > 0:
			v = (sumT + 8) >> 4
		}
		for y := range 16 {
			for x := range 16 {
				pred[y][x] = v
			}
		}
	default:
		return fmt.Errorf("luma prediction mode %d is outside the subset", mode)
	}
	for y := range 16 {
		for x := range 16 {
			c.y[(y0+y)*c.w+x0+x] = byte(pred[y][x])
		}
	}
	return nil
}

// predictChroma applies intra chroma prediction (8.3.4) to one plane.
func (d *testDecoder) predictChroma(p []byte, mbx, mby, mode int) error {
	stride := d.cur.w / 2
	x0, y0 := mbx*8, mby*8
	at := func(x, y int) int { return int(p[(y0+y)*stride+x0+x]) }
	left, top := mbx > 0, mby > 0
	var pred [8][8]int
	switch mode {
	case 0: // DC, per 4×4 chroma block
		for _, blk := range [][2]int{{0, 0}, {4, 0}, {0, 4}, {4, 4}} {
			xO, yO := blk[0], blk[1]
			sumT, sumL := 0, 0
			for i := range 4 {
				if top {
					sumT += at(xO+i, -1)
				}
				if left {
					sumL += at(-1, yO+i)
				}
			}
			v := 128
			if (xO == 0 && yO == 0) || (xO > 0 && yO > 0) {
				if top && left {
					v = (sumT + sumL + 4) >> 3
				} else if left {
					v = (sumL + 2) >> 2
				} else if top {
					v = (sumT + 2) >> 2
				}
			} else if xO > 0 && yO == 0 {
				if top {
					v = (sumT + 2) >> 2
				} else if left {
					v = (sumL + 2) >> 2
				}
			} else {
				if left {
					v = (sumL + 2) >> 2
				} else if top {
					v = (sumT + 2) >> 2
				}
			}
			for y := range 4 {
				for x := range 4 {
					pred[yO+y][xO+x] = v
				}
			}
		}
	case 1: // horizontal
		if !left {
			return errors.New("horizontal chroma prediction without the column to the left")
		}
		for y := range 8 {
			for x := range 8 {
				pred[y][x] = at(-1, y)
			}
		}
	case 2: // vertical
		if !top {
			return errors.New("vertical chroma prediction without the row above")
		}
		for y := range 8 {
			for x := range 8 {
				pred[y][x] = at(x, -1)
			}
		}
	default:
		return fmt.Errorf("chroma prediction mode %d is outside the subset", mode)
	}
	for y := range 8 {
		for x := range 8 {
			p[(y0+y)*stride+x0+x] = byte(pred[y][x])
		}
	}
	return nil
}
