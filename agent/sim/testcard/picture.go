package testcard

import (
	"image"
	"image/color"
	"time"
)

// rgb is a colour of the test card, converted to Y'CbCr per canvas.
type rgb struct{ r, g, b uint8 }

// The colours of the card. Bars are the classic 75% set so decoded
// pictures can be checked against well-known values.
var (
	colBlack     = rgb{0, 0, 0}
	colTrack     = rgb{40, 40, 40}
	colMarker    = rgb{255, 255, 255}
	colClockText = rgb{255, 255, 255}
	colNameText  = rgb{255, 255, 255}
	colorBars    = [...]rgb{
		{191, 191, 191}, // grey (75% white)
		{191, 191, 0},   // yellow
		{0, 191, 191},   // cyan
		{0, 191, 0},     // green
		{191, 0, 191},   // magenta
		{191, 0, 0},     // red
		{0, 0, 191},     // blue
	}
	greySteps = 8 // number of steps in the bottom grey scale
)

// canvas is a planar 4:2:0 picture. The encoder keeps it in limited-range
// BT.601 (what decoders assume when told nothing else), the snapshot in
// full-range JFIF (what image/jpeg expects).
type canvas struct {
	w, h      int
	y, cb, cr []byte // luma stride w, chroma stride w/2
	fullRange bool
}

func newCanvas(w, h int, fullRange bool) *canvas {
	return &canvas{
		w: w, h: h,
		y:         make([]byte, w*h),
		cb:        make([]byte, w*h/4),
		cr:        make([]byte, w*h/4),
		fullRange: fullRange,
	}
}

func (c *canvas) clone() *canvas {
	d := *c
	d.y = append([]byte(nil), c.y...)
	d.cb = append([]byte(nil), c.cb...)
	d.cr = append([]byte(nil), c.cr...)
	return &d
}

// ycc converts a colour to the canvas' sample values.
func (c *canvas) ycc(col rgb) (y, cb, cr uint8) {
	if c.fullRange {
		return color.RGBToYCbCr(col.r, col.g, col.b)
	}
	// BT.601 limited range, integer form of the matrix with rounding.
	r, g, b := int(col.r), int(col.g), int(col.b)
	y = uint8((66*r+129*g+25*b+128)>>8 + 16)
	cb = uint8((-38*r-74*g+112*b+128)>>8 + 128)
	cr = uint8((112*r-94*g-18*b+128)>>8 + 128)
	return y, cb, cr
}

// fill paints the rectangle [x0,x1)×[y0,y1), clipped to the canvas. Chroma
// is painted for every 2×2 block the rectangle touches; all the card's
// odd-aligned shapes are neutral-coloured on neutral paper, so this never
// bleeds a hue.
func (c *canvas) fill(x0, y0, x1, y1 int, col rgb) {
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, c.w), min(y1, c.h)
	if x0 >= x1 || y0 >= y1 {
		return
	}
	yy, cb, cr := c.ycc(col)
	for row := y0; row < y1; row++ {
		line := c.y[row*c.w+x0 : row*c.w+x1]
		for i := range line {
			line[i] = yy
		}
	}
	cw := c.w / 2
	for row := y0 / 2; row < (y1+1)/2; row++ {
		for x := x0 / 2; x < (x1+1)/2; x++ {
			c.cb[row*cw+x] = cb
			c.cr[row*cw+x] = cr
		}
	}
}

// text draws s with its top-left corner at (x, y), each font pixel as a
// scale×scale square.
func (c *canvas) text(x, y, scale int, s string, col rgb) {
	for _, r := range s {
		g := glyphFor(r)
		for row, bits := range g {
			for j := range glyphW {
				if bits&(1<<(glyphW-1-j)) != 0 {
					px, py := x+j*scale, y+row*scale
					c.fill(px, py, px+scale, py+scale, col)
				}
			}
		}
		x += advanceW * scale
	}
}

// image views the canvas as an image.YCbCr without copying.
func (c *canvas) image() *image.YCbCr {
	return &image.YCbCr{
		Y: c.y, Cb: c.cb, Cr: c.cr,
		YStride:        c.w,
		CStride:        c.w / 2,
		SubsampleRatio: image.YCbCrSubsampleRatio420,
		Rect:           image.Rect(0, 0, c.w, c.h),
	}
}

// rect is a half-open pixel rectangle.
type rect struct{ x0, y0, x1, y1 int }

// layout places everything on the card. Boxes whose content changes
// (clock, marker track) are aligned to the 16×16 macroblock grid so an
// update touches as few macroblocks as possible and never disturbs the
// static picture around them.
type layout struct {
	w, h int

	barX  []int // left edge of each bar, plus the right edge of the last
	barsY int   // bottom of the bar area

	nameBox   rect
	name      string // possibly truncated to fit
	nameScale int
	nameX     int
	nameY     int

	clockBox   rect
	clockScale int
	clockX     int
	clockY     int

	track   rect // the marker sweeps along this strip once a second
	markerW int

	steps rect
}

const clockSample = "00:00:00"

func newLayout(w, h int, name string) layout {
	l := layout{w: w, h: h}
	mbH := h / 16

	stepRows := max(1, mbH/6)
	trackRows := max(1, mbH/16) // keeps the marker visible on big pictures
	barRows := mbH - stepRows - trackRows
	l.barsY = barRows * 16
	l.track = rect{0, l.barsY, w, l.barsY + trackRows*16}
	l.steps = rect{0, l.track.y1, w, h}
	l.markerW = trackRows * 16

	// Bar edges on even columns keep each chroma sample inside one bar.
	for i := 0; i <= len(colorBars); i++ {
		l.barX = append(l.barX, (i*w/len(colorBars))&^1)
	}

	// Truncate the name to what fits at scale 1 with a small margin.
	runes := []rune(name)
	l.name = string(runes[:min(len(runes), (w-8+1)/advanceW)])

	l.nameScale = max(1, min(h/64, (w-32)/max(1, textWidth(l.name, 1))))
	l.clockScale = max(1, min(h/48, (w-32)/textWidth(clockSample, 1)))
	boxRows := func(scale int) int { return (glyphH*scale + 2*scale + 15) / 16 }
	gap := 1
	for boxRows(l.nameScale)+boxRows(l.clockScale)+gap > barRows {
		switch {
		case gap > 0:
			gap = 0
		case l.clockScale >= l.nameScale && l.clockScale > 1:
			l.clockScale--
		case l.nameScale > 1:
			l.nameScale--
		default:
			// Cannot happen for h >= 64: two one-row boxes fit in barRows >= 2.
			panic("testcard: layout does not fit")
		}
	}
	nameRows, clockRows := boxRows(l.nameScale), boxRows(l.clockScale)
	top := (barRows - nameRows - gap - clockRows) / 2 * 16

	// Boxes span whole macroblock columns, centred, with at least one
	// font pixel of black around the text.
	centredBox := func(y0, rows, textW, scale int) rect {
		mbs := min(w/16, (textW+2*scale+15)/16)
		x0 := (w/16 - mbs) / 2 * 16
		return rect{x0, y0, x0 + mbs*16, y0 + rows*16}
	}
	nameW := textWidth(l.name, l.nameScale)
	l.nameBox = centredBox(top, nameRows, nameW, l.nameScale)
	l.nameX = l.nameBox.x0 + (l.nameBox.x1-l.nameBox.x0-nameW)/2
	l.nameY = l.nameBox.y0 + (l.nameBox.y1-l.nameBox.y0-glyphH*l.nameScale)/2

	clockW := textWidth(clockSample, l.clockScale)
	l.clockBox = centredBox(l.nameBox.y1+gap*16, clockRows, clockW, l.clockScale)
	l.clockX = l.clockBox.x0 + (l.clockBox.x1-l.clockBox.x0-clockW)/2
	l.clockY = l.clockBox.y0 + (l.clockBox.y1-l.clockBox.y0-glyphH*l.clockScale)/2
	return l
}

// drawBackground paints everything that never changes.
func (l *layout) drawBackground(c *canvas) {
	for i, col := range colorBars {
		c.fill(l.barX[i], 0, l.barX[i+1], l.barsY, col)
	}
	c.fill(l.track.x0, l.track.y0, l.track.x1, l.track.y1, colTrack)
	for i := range greySteps {
		v := uint8(i * 255 / (greySteps - 1))
		x0 := (i * l.w / greySteps) &^ 1
		x1 := ((i + 1) * l.w / greySteps) &^ 1
		c.fill(x0, l.steps.y0, x1, l.steps.y1, rgb{v, v, v})
	}
	b := l.nameBox
	c.fill(b.x0, b.y0, b.x1, b.y1, colBlack)
	c.text(l.nameX, l.nameY, l.nameScale, l.name, colNameText)
	b = l.clockBox
	c.fill(b.x0, b.y0, b.x1, b.y1, colBlack)
}

// clockText is what the clock shows at t, in t's location.
func clockText(t time.Time) string { return t.Format("15:04:05") }

// drawClock paints the clock digits; the box behind them is background.
func (l *layout) drawClock(c *canvas, s string) {
	c.text(l.clockX, l.clockY, l.clockScale, s, colClockText)
}

// markerX is where the marker's left edge is at t: it sweeps the track once
// per second, so every frame differs from the last and a frozen stream is
// obvious at a glance.
func (l *layout) markerX(t time.Time) int {
	span := l.track.x1 - l.track.x0 - l.markerW
	return l.track.x0 + (int(int64(t.Nanosecond())*int64(span)/1e9) &^ 1)
}

// drawMarker paints the marker at x; the track behind it is background.
func (l *layout) drawMarker(c *canvas, x int) {
	m := (l.track.y1 - l.track.y0) / 8 // a margin, so the marker reads as an object
	c.fill(x, l.track.y0+m, x+l.markerW, l.track.y1-m, colMarker)
}
