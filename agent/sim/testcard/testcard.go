// Package testcard renders a synthetic "test card" for simulated CCTV
// cameras — colour bars, the camera name, a running wall clock and a
// marker that sweeps once a second — and encodes it as Constrained Baseline
// H.264 in pure Go, so a simulator can serve hundreds of live cameras
// without cgo or ffmpeg. The encoder is lossless and almost free because
// the picture is designed for it: unchanged macroblocks are P_Skip, and a
// changed one is either exactly reproduced by a zero-residual Intra16x16
// prediction from its neighbours or sent raw as I_PCM. Snapshot renders the
// same picture as a JPEG.
package testcard

import (
	"bytes"
	"errors"
	"fmt"
	"image/jpeg"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults applied by New to zero Config fields. 640×368 is the nearest
// 16:9-ish size whose dimensions are whole macroblocks, so no cropping is
// needed.
const (
	DefaultWidth  = 640
	DefaultHeight = 368
	DefaultFPS    = 15
)

// Limits enforced by New.
const (
	MinSize = 64   // smallest width or height that fits the layout
	MaxSize = 4096 // largest width or height
	MaxFPS  = 120
)

// Config describes one camera's stream.
type Config struct {
	// Name is drawn in large text; characters the built-in font lacks are
	// drawn as boxes and a name too long for the picture is truncated.
	Name string
	// Width and Height in pixels, multiples of 16; both zero means
	// DefaultWidth×DefaultHeight.
	Width, Height int
	// FPS is the nominal frame rate written to the SPS (default DefaultFPS).
	// The caller paces Encode; the encoder itself keeps no time.
	FPS int
	// GOP is the number of frames from one IDR frame to the next
	// (default FPS, a one-second keyframe interval).
	GOP int
}

func (c Config) withDefaults() Config {
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = DefaultWidth, DefaultHeight
	}
	if c.FPS == 0 {
		c.FPS = DefaultFPS
	}
	if c.GOP == 0 {
		c.GOP = c.FPS
	}
	return c
}

// validate reports whether the (defaulted) config can be encoded.
func (c Config) validate() error {
	var errs []error
	if strings.TrimSpace(c.Name) == "" {
		errs = append(errs, errors.New("empty name"))
	}
	for _, d := range []struct {
		what string
		v    int
	}{{"width", c.Width}, {"height", c.Height}} {
		if d.v < MinSize || d.v > MaxSize || d.v%16 != 0 {
			errs = append(errs, fmt.Errorf("%s %d: want a multiple of 16 in [%d, %d]", d.what, d.v, MinSize, MaxSize))
		}
	}
	if c.FPS < 1 || c.FPS > MaxFPS {
		errs = append(errs, fmt.Errorf("fps %d: want 1 to %d", c.FPS, MaxFPS))
	}
	if c.GOP < 1 {
		errs = append(errs, fmt.Errorf("gop %d: want at least 1", c.GOP))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testcard: invalid config: %w", err)
	}
	return nil
}

// Encoder produces the test card stream of one camera. Encode must not be
// called concurrently with itself; ForceKeyframe, SPS, PPS, Config and
// Snapshot may be called from any goroutine at any time.
type Encoder struct {
	cfg      Config
	lay      layout
	mbW, mbH int
	sps, pps []byte // NAL units

	bg     *canvas // static picture in video range; read-only after New
	bgSnap *canvas // the same in full range for JPEG; read-only after New
	static []mbDecision

	forceKey atomic.Bool

	// Everything below is owned by Encode.
	cur      *canvas // what a decoder holds after the last access unit
	scratch  *canvas // where changed regions are drawn before comparing
	mbKind   []uint8 // how each macroblock of cur was coded; CAVLC context
	dirty    []bool  // macroblocks of cur that differ from the reference
	started  bool
	sinceKey int    // frames since the last IDR
	frameNum uint32 // frame_num of the last picture
	idrPicID uint32
	clock    string // the clock text shown in cur
	markerX  int    // the marker position shown in cur; -1 for none
	w        bitWriter
}

// New validates cfg, fills in defaults and pre-renders the static picture.
// It starts nothing.
func New(cfg Config) (*Encoder, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	mbW, mbH := cfg.Width/16, cfg.Height/16
	level, err := chooseLevel(mbW, mbH, cfg.FPS)
	if err != nil {
		return nil, err
	}
	e := &Encoder{
		cfg:     cfg,
		lay:     newLayout(cfg.Width, cfg.Height, cfg.Name),
		mbW:     mbW,
		mbH:     mbH,
		sps:     nalUnit(refIdc, naluSPS, spsRBSP(mbW, mbH, cfg.FPS, level)),
		pps:     nalUnit(refIdc, naluPPS, ppsRBSP()),
		bg:      newCanvas(cfg.Width, cfg.Height, false),
		bgSnap:  newCanvas(cfg.Width, cfg.Height, true),
		scratch: newCanvas(cfg.Width, cfg.Height, false),
		mbKind:  make([]uint8, mbW*mbH),
		dirty:   make([]bool, mbW*mbH),
		markerX: -1,
	}
	e.lay.drawBackground(e.bg)
	e.lay.drawBackground(e.bgSnap)
	e.cur = e.bg.clone()
	e.static = staticDecisions(e.bg, mbW, mbH, []rect{e.lay.clockBox, e.lay.track})
	return e, nil
}

// Config returns the effective configuration, defaults filled in.
func (e *Encoder) Config() Config { return e.cfg }

// SPS returns the sequence parameter set NAL unit, without start code.
func (e *Encoder) SPS() []byte { return bytes.Clone(e.sps) }

// PPS returns the picture parameter set NAL unit, without start code.
func (e *Encoder) PPS() []byte { return bytes.Clone(e.pps) }

// ForceKeyframe makes the next Encode produce an IDR access unit, e.g. for
// a new viewer or an RTCP picture loss indication.
func (e *Encoder) ForceKeyframe() { e.forceKey.Store(true) }

// Encode renders the picture for t (the clock shows t in t's location) and
// returns one access unit as NAL units without start codes. key reports an
// IDR access unit, which starts with the SPS and PPS. The returned slices
// are not reused by the encoder. The error is part of the contract for
// encoders that can fail; this one currently never does.
func (e *Encoder) Encode(t time.Time) (nalus [][]byte, key bool, err error) {
	// Swap first so a request arriving during this call is not lost.
	forced := e.forceKey.Swap(false)
	key = forced || !e.started || e.sinceKey >= e.cfg.GOP

	clear(e.dirty)
	if s := clockText(t); s != e.clock {
		e.update(e.lay.clockBox, func(c *canvas) { e.lay.drawClock(c, s) })
		e.clock = s
	}
	if x := e.lay.markerX(t); x != e.markerX {
		e.update(e.lay.track, func(c *canvas) { e.lay.drawMarker(c, x) })
		e.markerX = x
	}

	e.started = true
	if key {
		e.sinceKey = 1
		e.frameNum = 0
		e.idrPicID = (e.idrPicID + 1) & 0xffff // consecutive IDRs must differ
		slice := e.encodeSlice(true)
		return [][]byte{bytes.Clone(e.sps), bytes.Clone(e.pps), slice}, true, nil
	}
	e.sinceKey++
	e.frameNum = (e.frameNum + 1) % (1 << log2MaxFrameNum)
	return [][]byte{e.encodeSlice(false)}, false, nil
}

// update redraws region r (macroblock aligned) from the background plus
// draw, then copies every macroblock that changed into cur and marks it
// dirty, so the next P frame codes only those.
func (e *Encoder) update(r rect, draw func(*canvas)) {
	s, bg, cur := e.scratch, e.bg, e.cur
	w, cw := s.w, s.w/2
	for y := r.y0; y < r.y1; y++ {
		copy(s.y[y*w+r.x0:y*w+r.x1], bg.y[y*w+r.x0:y*w+r.x1])
	}
	for y := r.y0 / 2; y < r.y1/2; y++ {
		copy(s.cb[y*cw+r.x0/2:y*cw+r.x1/2], bg.cb[y*cw+r.x0/2:y*cw+r.x1/2])
		copy(s.cr[y*cw+r.x0/2:y*cw+r.x1/2], bg.cr[y*cw+r.x0/2:y*cw+r.x1/2])
	}
	draw(s)
	for mby := r.y0 / 16; mby < r.y1/16; mby++ {
		for mbx := r.x0 / 16; mbx < r.x1/16; mbx++ {
			if !mbEqual(s, cur, mbx, mby) {
				mbCopy(cur, s, mbx, mby)
				e.dirty[mby*e.mbW+mbx] = true
			}
		}
	}
}

func mbEqual(a, b *canvas, mbx, mby int) bool {
	w, cw := a.w, a.w/2
	for r := range 16 {
		o := (mby*16+r)*w + mbx*16
		if !bytes.Equal(a.y[o:o+16], b.y[o:o+16]) {
			return false
		}
	}
	for r := range 8 {
		o := (mby*8+r)*cw + mbx*8
		if !bytes.Equal(a.cb[o:o+8], b.cb[o:o+8]) || !bytes.Equal(a.cr[o:o+8], b.cr[o:o+8]) {
			return false
		}
	}
	return true
}

func mbCopy(dst, src *canvas, mbx, mby int) {
	w, cw := dst.w, dst.w/2
	for r := range 16 {
		o := (mby*16+r)*w + mbx*16
		copy(dst.y[o:o+16], src.y[o:o+16])
	}
	for r := range 8 {
		o := (mby*8+r)*cw + mbx*8
		copy(dst.cb[o:o+8], src.cb[o:o+8])
		copy(dst.cr[o:o+8], src.cr[o:o+8])
	}
}

// render draws the whole picture for t from scratch. Snapshot uses it,
// and tests compare it with what Encode produced incrementally.
func (e *Encoder) render(t time.Time, fullRange bool) *canvas {
	c := e.bg.clone()
	if fullRange {
		c = e.bgSnap.clone()
	}
	e.lay.drawClock(c, clockText(t))
	e.lay.drawMarker(c, e.lay.markerX(t))
	return c
}

// SnapshotQuality is the JPEG quality of Snapshot.
const SnapshotQuality = 85

// Snapshot returns the picture for t as a JPEG image (image/jpeg). It does
// not touch the encoder's stream state.
func (e *Encoder) Snapshot(t time.Time) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, e.render(t, true).image(), &jpeg.Options{Quality: SnapshotQuality}); err != nil {
		return nil, fmt.Errorf("testcard: snapshot: %w", err)
	}
	return buf.Bytes(), nil
}
