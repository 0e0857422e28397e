package testcard

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// t0 is just before midnight so sequences cover the clock rolling every
// digit over.
var t0 = time.Date(2025, 3, 14, 23, 59, 58, 900e6, time.UTC)

func frameTime(i, fps int) time.Time {
	return t0.Add(time.Duration(i) * time.Second / time.Duration(fps))
}

func mustNew(t testing.TB, cfg Config) *Encoder {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return e
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    Config // effective config when valid
		wantErr string
	}{
		{"defaults", Config{Name: "cam"}, Config{Name: "cam", Width: 640, Height: 368, FPS: 15, GOP: 15}, ""},
		{"gop follows fps", Config{Name: "cam", FPS: 25}, Config{Name: "cam", Width: 640, Height: 368, FPS: 25, GOP: 25}, ""},
		{"explicit", Config{Name: "c", Width: 1280, Height: 720, FPS: 30, GOP: 60}, Config{Name: "c", Width: 1280, Height: 720, FPS: 30, GOP: 60}, ""},
		{"smallest", Config{Name: "c", Width: 64, Height: 64}, Config{Name: "c", Width: 64, Height: 64, FPS: 15, GOP: 15}, ""},
		{"empty name", Config{Name: " "}, Config{}, "empty name"},
		{"width not multiple of 16", Config{Name: "c", Width: 630, Height: 368}, Config{}, "width 630"},
		{"height only", Config{Name: "c", Height: 368}, Config{}, "width 0"},
		{"too small", Config{Name: "c", Width: 48, Height: 64}, Config{}, "width 48"},
		{"too big", Config{Name: "c", Width: 640, Height: 4112}, Config{}, "height 4112"},
		{"negative fps", Config{Name: "c", FPS: -1}, Config{}, "fps -1"},
		{"fps too high", Config{Name: "c", FPS: 121}, Config{}, "fps 121"},
		{"negative gop", Config{Name: "c", GOP: -5}, Config{}, "gop -5"},
		{"beyond every level", Config{Name: "c", Width: 4096, Height: 4096, FPS: 60}, Config{}, "exceeds every H.264 level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New() error = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			if got := e.Config(); got != tc.want {
				t.Errorf("Config() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSPS(t *testing.T) {
	for _, tc := range []struct {
		w, h, fps int
		level     uint8
	}{
		{640, 368, 15, 31},
		{64, 64, 1, 31},
		{1280, 720, 30, 31},
		{1920, 1088, 30, 40},
		{4096, 2304, 30, 52},
	} {
		t.Run(fmtSize(tc.w, tc.h, tc.fps), func(t *testing.T) {
			e := mustNew(t, Config{Name: "cam", Width: tc.w, Height: tc.h, FPS: tc.fps})
			var sps h264.SPS
			if err := sps.Unmarshal(e.SPS()); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if sps.Width() != tc.w || sps.Height() != tc.h {
				t.Errorf("size %dx%d, want %dx%d", sps.Width(), sps.Height(), tc.w, tc.h)
			}
			// Constrained Baseline: profile_idc 66 with constraint_set1.
			if sps.ProfileIdc != 66 || !sps.ConstraintSet0Flag || !sps.ConstraintSet1Flag {
				t.Errorf("profile %d set0 %v set1 %v, want 66 true true", sps.ProfileIdc, sps.ConstraintSet0Flag, sps.ConstraintSet1Flag)
			}
			if sps.LevelIdc != tc.level {
				t.Errorf("level %d, want %d", sps.LevelIdc, tc.level)
			}
			if sps.FPS() != float64(tc.fps) {
				t.Errorf("fps %v, want %d", sps.FPS(), tc.fps)
			}
			if sps.MaxNumRefFrames != 1 || sps.PicOrderCntType != 2 {
				t.Errorf("refs %d poc type %d, want 1 and 2", sps.MaxNumRefFrames, sps.PicOrderCntType)
			}
			br := sps.VUI.BitstreamRestriction
			if br == nil || br.MaxNumReorderFrames != 0 || br.MaxDecFrameBuffering != 1 {
				t.Errorf("bitstream restriction %+v, want no reordering and a one-frame buffer", br)
			}
			if !bytes.Equal(e.SPS()[:4], []byte{0x67, 66, 0xc0, tc.level}) {
				t.Errorf("SPS starts % x, want profile-level-id 42c0%02x", e.SPS()[:4], tc.level)
			}
			if e.PPS()[0] != 0x68 {
				t.Errorf("PPS header %#x, want 0x68", e.PPS()[0])
			}
		})
	}
}

func fmtSize(w, h, fps int) string {
	return strings.Join([]string{itoa(w), "x", itoa(h), "@", itoa(fps)}, "")
}

func itoa(v int) string { return string(appendInt(nil, v)) }

func appendInt(b []byte, v int) []byte {
	if v >= 10 {
		b = appendInt(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

func naluTypes(nalus [][]byte) []uint8 {
	var ts []uint8
	for _, n := range nalus {
		ts = append(ts, n[0]&0x1f)
	}
	return ts
}

func TestGOPStructure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gop    int
		frames int
		force  map[int]bool // ForceKeyframe before these frames
		keys   []int        // frames expected to be IDR
	}{
		{"default gop", 0, 40, nil, []int{0, 15, 30}},
		{"every frame", 1, 4, nil, []int{0, 1, 2, 3}},
		{"forced restarts gop", 10, 30, map[int]bool{4: true}, []int{0, 4, 14, 24}},
		{"forced twice in a row", 100, 5, map[int]bool{2: true, 3: true}, []int{0, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustNew(t, Config{Name: "cam", GOP: tc.gop})
			sps, pps := e.SPS(), e.PPS()
			var keys []int
			for i := range tc.frames {
				if tc.force[i] {
					e.ForceKeyframe()
				}
				nalus, key, err := e.Encode(frameTime(i, 15))
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				types := naluTypes(nalus)
				if key {
					keys = append(keys, i)
					if len(nalus) != 3 || !bytes.Equal(nalus[0], sps) || !bytes.Equal(nalus[1], pps) || types[2] != naluIDR {
						t.Fatalf("frame %d: IDR access unit has types %v, want SPS, PPS, IDR", i, types)
					}
				} else if len(nalus) != 1 || types[0] != naluSlice {
					t.Fatalf("frame %d: P access unit has types %v, want [1]", i, types)
				}
			}
			if !equalInts(keys, tc.keys) {
				t.Errorf("IDR frames %v, want %v", keys, tc.keys)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRoundTrip decodes the stream with the subset decoder and requires
// every picture to equal a from-scratch rendering of its time, sample for
// sample: the encoder is lossless, so any difference is a bug.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name          string
		cfg           Config
		frames        int
		force         int // ForceKeyframe before this frame; -1 for never
		maxMeanPBytes int // budget for the mean P access unit
	}{
		{"default", Config{Name: "cam-042 Main Street"}, 45, 20, 1500},
		{"tiny", Config{Name: "gate", Width: 64, Height: 64, FPS: 5, GOP: 7}, 30, -1, 1000},
		{"hd long gop", Config{Name: "Lobby (east) #2", Width: 1280, Height: 720, FPS: 30, GOP: 90}, 95, 50, 3000},
		{"unknown glyphs", Config{Name: "Kamera Ä-€ ✓", Width: 320, Height: 240, FPS: 10}, 25, -1, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustNew(t, tc.cfg)
			fps := e.Config().FPS
			d := newTestDecoder()
			pBytes, pFrames := 0, 0
			for i := range tc.frames {
				if i == tc.force {
					e.ForceKeyframe()
				}
				ft := frameTime(i, fps)
				nalus, key, err := e.Encode(ft)
				if err != nil {
					t.Fatalf("frame %d: Encode: %v", i, err)
				}
				if err := d.decodeAU(nalus); err != nil {
					t.Fatalf("frame %d (key %v): decode: %v", i, key, err)
				}
				if key && d.codedMBs != d.mbW*d.mbH {
					t.Fatalf("frame %d: IDR coded %d macroblocks, want all %d", i, d.codedMBs, d.mbW*d.mbH)
				}
				if !key {
					pFrames++
					pBytes += len(nalus[0])
				}
				want := e.render(ft, false)
				if x, y, plane, ok := firstDiff(d.cur, want); !ok {
					t.Fatalf("frame %d (key %v, clock %s): decoded %s differs from the rendering at (%d,%d)", i, key, clockText(ft), plane, x, y)
				}
			}
			if mean := pBytes / max(1, pFrames); mean > tc.maxMeanPBytes {
				t.Errorf("mean P access unit %d bytes, want at most %d", mean, tc.maxMeanPBytes)
			}
		})
	}
}

// firstDiff compares two canvases; ok is true when they are identical.
func firstDiff(a, b *canvas) (x, y int, plane string, ok bool) {
	for _, p := range []struct {
		name string
		a, b []byte
		w    int
	}{{"Y", a.y, b.y, a.w}, {"Cb", a.cb, b.cb, a.w / 2}, {"Cr", a.cr, b.cr, a.w / 2}} {
		for i := range p.a {
			if p.a[i] != p.b[i] {
				return i % p.w, i / p.w, p.name, false
			}
		}
	}
	return 0, 0, "", true
}

// TestStaticPictureIsAllSkip checks that encoding the same instant twice
// costs next to nothing: a single mb_skip_run covers the picture.
func TestStaticPictureIsAllSkip(t *testing.T) {
	e := mustNew(t, Config{Name: "cam"})
	if _, _, err := e.Encode(t0); err != nil {
		t.Fatal(err)
	}
	nalus, key, err := e.Encode(t0)
	if err != nil {
		t.Fatal(err)
	}
	if key || len(nalus) != 1 || len(nalus[0]) > 12 {
		t.Fatalf("repeat frame: key %v, %d nalus, % x; want one tiny P slice", key, len(nalus), nalus)
	}
}

// TestBitrate keeps a second of default video inside the budget the
// simulator plans for (0.5–2.5 Mbit/s class; this encoder is far below).
func TestBitrate(t *testing.T) {
	e := mustNew(t, Config{Name: "cam-042 Main Street"})
	total := 0
	for i := range 3 * DefaultFPS {
		nalus, _, err := e.Encode(frameTime(i, DefaultFPS))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nalus {
			total += 4 + len(n) // with start codes, as on the wire
		}
	}
	kbps := total * 8 / 3 / 1000
	if kbps < 100 || kbps > 1500 {
		t.Errorf("bitrate %d kbit/s, want 100–1500", kbps)
	}
	t.Logf("bitrate %d kbit/s", kbps)
}

// TestEmulationPrevention checks that no NAL unit payload contains a
// sequence a start-code scanner could mistake for a boundary.
func TestEmulationPrevention(t *testing.T) {
	t.Run("nalUnit", func(t *testing.T) {
		for _, tc := range []struct{ rbsp, want []byte }{
			{[]byte{1, 2, 3}, []byte{0x65, 1, 2, 3}},
			{[]byte{0, 0, 0}, []byte{0x65, 0, 0, 3, 0}},
			{[]byte{0, 0, 1}, []byte{0x65, 0, 0, 3, 1}},
			{[]byte{0, 0, 2, 0, 0, 3}, []byte{0x65, 0, 0, 3, 2, 0, 0, 3, 3}},
			{[]byte{0, 0, 4}, []byte{0x65, 0, 0, 4}},
			{[]byte{0, 0, 0, 0}, []byte{0x65, 0, 0, 3, 0, 0}},
			{[]byte{0, 1, 0, 0, 0x80}, []byte{0x65, 0, 1, 0, 0, 0x80}},
		} {
			got := nalUnit(3, naluIDR, tc.rbsp)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("nalUnit(% x) = % x, want % x", tc.rbsp, got, tc.want)
			}
			if back := h264.EmulationPreventionRemove(got[1:]); !bytes.Equal(back, tc.rbsp) {
				t.Errorf("removing emulation prevention from % x gives % x, want % x", got, back, tc.rbsp)
			}
		}
	})
	t.Run("random", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for range 2000 {
			rbsp := make([]byte, rng.IntN(40))
			for i := range rbsp {
				rbsp[i] = []byte{0, 0, 0, 1, 2, 3, 4, 0xff}[rng.IntN(8)]
			}
			if got, want := nalUnit(3, naluSlice, rbsp), referenceNALUnit(3, naluSlice, rbsp); !bytes.Equal(got, want) {
				t.Fatalf("nalUnit(% x) = % x, want % x", rbsp, got, want)
			}
		}
	})
	t.Run("stream", func(t *testing.T) {
		// A black name box across the whole top row makes long zero runs
		// in the bitstream likely; check a real stream anyway.
		e := mustNew(t, Config{Name: "cam", Width: 64, Height: 64, GOP: 3})
		for i := range 20 {
			nalus, _, err := e.Encode(frameTime(i, 15))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range append(nalus, e.SPS(), e.PPS()) {
				for j := 0; j+2 < len(n); j++ {
					if n[j] == 0 && n[j+1] == 0 && n[j+2] <= 2 {
						t.Fatalf("frame %d: nalu type %d has 00 00 %02x at %d", i, n[0]&0x1f, n[j+2], j)
					}
				}
				if n[len(n)-1] == 0 {
					t.Fatalf("frame %d: nalu type %d ends in a zero byte", i, n[0]&0x1f)
				}
			}
		}
	})
}

// referenceNALUnit is emulation prevention written as plainly as the
// specification's description (7.4.1), to check the fast version against.
func referenceNALUnit(refIdc, typ uint8, rbsp []byte) []byte {
	out := []byte{refIdc<<5 | typ}
	zeros := 0
	for _, b := range rbsp {
		if zeros == 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// TestStaticDecisionsMatchSearch checks the keyframe shortcut: every
// cached prediction decision equals a fresh search on the current picture,
// whatever the clock and marker show.
func TestStaticDecisionsMatchSearch(t *testing.T) {
	for _, cfg := range []Config{{Name: "cam"}, {Name: "tiny", Width: 64, Height: 64}, {Name: "hd", Width: 1280, Height: 720}} {
		e := mustNew(t, cfg)
		cached := 0
		for i := range 40 {
			if _, _, err := e.Encode(frameTime(i*7, 15)); err != nil {
				t.Fatal(err)
			}
			for mb, d := range e.static {
				if !d.valid {
					continue
				}
				cached++
				lm, cm := intraModes(e.cur, mb%e.mbW, mb/e.mbW)
				if lm != int(d.luma) || cm != int(d.chrm) {
					t.Fatalf("%s frame %d mb %d: cached modes (%d,%d), search finds (%d,%d)", cfg.Name, i, mb, d.luma, d.chrm, lm, cm)
				}
			}
		}
		if cached == 0 {
			t.Errorf("%s: no cached decisions", cfg.Name)
		}
	}
}

func TestBitWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(w *bitWriter)
		want  []byte
	}{
		{"ue 0", func(w *bitWriter) { w.ue(0); w.alignZero() }, []byte{0b1000_0000}},
		{"ue 1..3", func(w *bitWriter) { w.ue(1); w.ue(2); w.ue(3); w.alignZero() }, []byte{0b010_011_00, 0b100_00000}},
		{"ue 30", func(w *bitWriter) { w.ue(30); w.alignZero() }, []byte{0b0000_1111, 0b1000_0000}},
		{"ue max", func(w *bitWriter) { w.ue(1<<32 - 1); w.alignZero() }, []byte{0, 0, 0, 0, 0x80, 0, 0, 0, 0}},
		{"se", func(w *bitWriter) { w.se(1); w.se(-1); w.se(0); w.alignZero() }, []byte{0b010_011_10}},
		{"u and trailing", func(w *bitWriter) { w.u(3, 5); w.u(8, 0xff); w.trailing() }, []byte{0b101_11111, 0b111_1_0000}},
		{"bytes", func(w *bitWriter) { w.u(8, 1); w.bytes([]byte{2, 3}) }, []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w bitWriter
			tc.write(&w)
			if !w.aligned() {
				t.Fatalf("writer not aligned after test")
			}
			if !bytes.Equal(w.buf, tc.want) {
				t.Errorf("got %08b, want %08b", w.buf, tc.want)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	e := mustNew(t, Config{Name: "cam-042"})
	snap, err := e.Snapshot(t0)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 368 {
		t.Fatalf("snapshot is %v, want 640x368", b)
	}
	l := e.lay
	for i, want := range colorBars {
		x := (l.barX[i] + l.barX[i+1]) / 2
		assertColour(t, img, x, 8, want, "bar "+itoa(i))
	}
	assertColour(t, img, 8, l.steps.y0+8, rgb{0, 0, 0}, "first grey step")
	assertColour(t, img, l.w-8, l.steps.y0+8, rgb{255, 255, 255}, "last grey step")

	// Another second changes the clock but nothing outside it.
	other, err := e.Snapshot(t0.Add(61*time.Minute + 11*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	img2, err := jpeg.Decode(bytes.NewReader(other))
	if err != nil {
		t.Fatal(err)
	}
	if d := meanDiff(img, img2, l.clockBox); d < 5 {
		t.Errorf("clock area mean difference %.1f between different times, want a visible change", d)
	}
	if d := meanDiff(img, img2, rect{0, 0, l.w, l.nameBox.y0 - 8}); d > 1 {
		t.Errorf("bars mean difference %.1f between snapshots, want none", d)
	}
}

func assertColour(t *testing.T, img image.Image, x, y int, want rgb, what string) {
	t.Helper()
	r, g, b, _ := img.At(x, y).RGBA()
	got := [3]int{int(r >> 8), int(g >> 8), int(b >> 8)}
	for i, w := range [3]int{int(want.r), int(want.g), int(want.b)} {
		if d := got[i] - w; d < -12 || d > 12 {
			t.Errorf("%s at (%d,%d) is %v, want about %v", what, x, y, got, want)
			return
		}
	}
}

func meanDiff(a, b image.Image, r rect) float64 {
	sum, n := 0, 0
	for y := r.y0; y < r.y1; y++ {
		for x := r.x0; x < r.x1; x++ {
			ya := color.GrayModel.Convert(a.At(x, y)).(color.Gray).Y
			yb := color.GrayModel.Convert(b.At(x, y)).(color.Gray).Y
			sum += max(int(ya)-int(yb), int(yb)-int(ya))
			n++
		}
	}
	return float64(sum) / float64(n)
}

// TestLayout checks, over many sizes and names, that the dynamic boxes sit
// on the macroblock grid inside the bar area and that all text fits.
func TestLayout(t *testing.T) {
	names := []string{"x", "cam-042 Main Street", strings.Repeat("very long camera name ", 8)}
	for w := MinSize; w <= 1920; w += 112 {
		for h := MinSize; h <= 1088; h += 96 {
			for _, name := range names {
				l := newLayout(w, h, name)
				where := fmtSize(w, h, 0) + " " + name[:1]
				for _, b := range []rect{l.nameBox, l.clockBox, l.track} {
					if b.x0%16 != 0 || b.y0%16 != 0 || b.x1%16 != 0 || b.y1%16 != 0 {
						t.Fatalf("%s: box %+v off the macroblock grid", where, b)
					}
					if b.x0 < 0 || b.x1 > w || b.y0 < 0 || b.y1 > h || b.x0 >= b.x1 || b.y0 >= b.y1 {
						t.Fatalf("%s: box %+v outside the picture", where, b)
					}
				}
				if l.nameBox.y1 > l.clockBox.y0 || l.clockBox.y1 > l.barsY || l.barsY > l.track.y0 || l.track.y1 > l.steps.y0 || l.steps.y0 >= h {
					t.Fatalf("%s: regions overlap: %+v", where, l)
				}
				for _, tx := range []struct {
					box         rect
					x, y, scale int
					s           string
				}{{l.nameBox, l.nameX, l.nameY, l.nameScale, l.name}, {l.clockBox, l.clockX, l.clockY, l.clockScale, clockSample}} {
					if tx.x < tx.box.x0 || tx.x+textWidth(tx.s, tx.scale) > tx.box.x1 || tx.y < tx.box.y0 || tx.y+glyphH*tx.scale > tx.box.y1 {
						t.Fatalf("%s: text %q at scale %d does not fit box %+v", where, tx.s, tx.scale, tx.box)
					}
				}
				if l.name == "" || !strings.HasPrefix(name, l.name) {
					t.Fatalf("%s: shown name %q is not a prefix of %q", where, l.name, name)
				}
			}
		}
	}
}

func TestFont(t *testing.T) {
	required := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-: _./"
	seen := map[glyph]rune{}
	for _, r := range required {
		g, ok := font[r]
		if !ok {
			t.Errorf("font lacks %q", r)
			continue
		}
		if r != ' ' && g == (glyph{}) {
			t.Errorf("glyph %q is blank", r)
		}
		if other, dup := seen[g]; dup {
			t.Errorf("glyphs %q and %q are identical", r, other)
		}
		seen[g] = r
	}
	if glyphFor('€') != unknownGlyph {
		t.Errorf("unknown rune not drawn as the box glyph")
	}
	if _, dup := seen[unknownGlyph]; dup {
		t.Errorf("the unknown-rune box looks like a real glyph")
	}
}

// TestConcurrentControl runs ForceKeyframe, Snapshot and the parameter
// set getters against a running Encode loop; run with -race.
func TestConcurrentControl(t *testing.T) {
	e := mustNew(t, Config{Name: "cam", Width: 128, Height: 96, GOP: 1000})
	if _, _, err := e.Encode(frameTime(0, 15)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop, requested := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		for first := true; ; first = false {
			select {
			case <-stop:
				return
			default:
			}
			e.ForceKeyframe()
			if first {
				close(requested)
			}
			if _, err := e.Snapshot(t0); err != nil {
				t.Error(err)
				return
			}
			_ = e.SPS()
		}
	})
	// Only Encode clears a request, so one made from another goroutine
	// before this call must be honoured by it.
	<-requested
	if _, key, err := e.Encode(frameTime(1, 15)); err != nil || !key {
		t.Errorf("Encode after a concurrent ForceKeyframe: key %v, err %v; want a keyframe", key, err)
	}
	for i := 2; i < 200; i++ {
		if _, _, err := e.Encode(frameTime(i, 15)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()

	// With the other goroutine gone a request must be honoured exactly once.
	e.ForceKeyframe()
	if _, key, _ := e.Encode(frameTime(200, 15)); !key {
		t.Errorf("frame after ForceKeyframe is not a keyframe")
	}
	if _, key, _ := e.Encode(frameTime(201, 15)); key {
		t.Errorf("a single ForceKeyframe produced two keyframes")
	}
}
