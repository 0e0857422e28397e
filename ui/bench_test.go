package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/internal/testenv"
)

// mapBenchHub is a fake hub serving the console and n cameras over about
// 30 × 30 km with their fields of view by box, as the real one answers.
func mapBenchHub(b *testing.B, n int) *httptest.Server {
	b.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	type dev struct {
		m        map[string]any
		lat, lon float64
	}
	devs := make([]dev, n)
	list := make([]any, n)
	statuses := []string{"online", "online", "online", "online", "online", "online", "degraded", "offline"}
	for i := range devs {
		lat, lon := 30.45+rng.Float64()*0.27, 114.15+rng.Float64()*0.31
		m := cam(fmt.Sprintf("C-%06d", i), "camera", statuses[rng.IntN(len(statuses))], fmt.Sprintf("D%d", i%12), lat, lon)
		devs[i], list[i] = dev{m, lat, lon}, m
	}
	devices, err := json.Marshal(map[string]any{"devices": list, "total": n})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/auth/me", serveJSON(map[string]any{"name": "ana", "role": "operator", "permissions": []string{"status.read", "alarm.read"}, "csrf": "tok", "session": map[string]any{}}))
	mux.HandleFunc("/api/devices", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(devices)
	})
	mux.HandleFunc("/api/summary", serveJSON(map[string]any{"devices": n, "by_status": map[string]int{"online": n}}))
	mux.HandleFunc("/api/agents", serveJSON(map[string]any{"agents": []any{}}))
	mux.HandleFunc("/api/alarms", serveJSON(map[string]any{"alarms": []any{}, "total": 0}))
	mux.HandleFunc("/api/map/config", serveJSON(map[string]any{"center": map[string]any{"lat": 30.585, "lon": 114.305}, "bounds": [][]float64{{114.15, 30.45}, {114.46, 30.72}},
		"cell_size_m": 25, "basemap": false, "layers": map[string]bool{"districts": false, "areas": false, "buildings": false}}))
	mux.HandleFunc("/api/coverage", serveJSON(map[string]any{"at": "2026-12-01T00:00:00Z", "cell_size_m": 25, "districts": []any{}, "areas": []any{}}))
	mux.HandleFunc("/api/map/wedges", func(w http.ResponseWriter, r *http.Request) {
		var box [4]float64
		for i, s := range strings.Split(r.URL.Query().Get("bbox"), ",") {
			if i < 4 {
				box[i], _ = strconv.ParseFloat(s, 64)
			}
		}
		var fs []map[string]any
		for _, d := range devs {
			if d.lon < box[0] || d.lon > box[2] || d.lat < box[1] || d.lat > box[3] {
				continue
			}
			ring := [][2]float64{{d.lon, d.lat}}
			for k := 0; k <= 12; k++ { // heading 90, 60° wide, 50 m
				b := (60 + 5*float64(k)) * math.Pi / 180
				ring = append(ring, [2]float64{d.lon + 50*math.Sin(b)/(111320*math.Cos(d.lat*math.Pi/180)), d.lat + 50*math.Cos(b)/111320})
			}
			ring = append(ring, ring[0])
			fs = append(fs, feature([][][2]float64{ring}, map[string]any{"id": d.m["id"], "status": d.m["status"]}))
		}
		serveJSON(fc(fs...))(w, r)
	})
	return serveConsole(b, mux)
}

// frameScript flies the map from the whole city to a street and back, pans
// across it, and returns the frame intervals' median, 95th percentile and
// maximum in milliseconds, and the frame count.
const frameScript = `(async () => {
	const m = citywatchMap.map;
	const move = (how, opts) => new Promise((done) => { m.once('moveend', done); m[how](opts); });
	const frames = [];
	let last = performance.now(), run = true;
	const tick = (t) => { frames.push(t - last); last = t; if (run) requestAnimationFrame(tick); };
	m.jumpTo({center: [114.305, 30.585], zoom: 10});
	await new Promise((done) => setTimeout(done, 500));
	requestAnimationFrame((t) => { last = t; requestAnimationFrame(tick); });
	await move('flyTo', {center: [114.31, 30.59], zoom: 16, duration: 4000});
	await move('easeTo', {center: [114.33, 30.60], duration: 2000});
	await move('easeTo', {center: [114.30, 30.58], zoom: 11, duration: 3000});
	await move('easeTo', {center: [114.20, 30.50], duration: 2000});
	run = false;
	frames.sort((a, b) => a - b);
	const q = (p) => frames[Math.min(frames.length - 1, Math.floor(p * frames.length))];
	return [q(0.5), q(0.95), frames[frames.length - 1], frames.length];
})()`

// BenchmarkMapFrames opens the city map in Chromium with 100,000 cameras
// (clustered below street level, wedges from zoom 14) and, in the same
// run, with none, and reports how long the map took to be ready and its
// frame times while flying and panning: the difference is what the
// devices cost. Headless Chromium on this machine draws with a software
// renderer (no GPU), so the figures are an upper bound of what an
// operator's workstation sees.
func BenchmarkMapFrames(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) { mapFrames(b, mapBenchHub(b, n)) })
	}
}

func mapFrames(b *testing.B, srv *httptest.Server) {
	for b.Loop() {
		ctx, cancel := context.WithTimeout(testenv.Chromium(b), 5*time.Minute)
		start := time.Now()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1600, 900), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#view-map`)); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](`window.citywatch.store.loaded`, chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
			b.Fatal(err)
		}
		loaded := time.Since(start)
		if err := chromedp.Do(ctx, chromedp.Click(`#view-map`)); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](`document.querySelector('[data-testid="city-map"]').dataset.state === 'ready' && citywatchMap.map.getSource('devices')?.loaded()`,
			chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
			b.Fatal(err)
		}
		ready := time.Since(start) - loaded
		f, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](frameScript, chromedp.EvalAwaitPromise))
		if err != nil || len(f) != 4 {
			b.Fatalf("frames: %v %v", f, err)
		}
		cancel()
		b.ReportMetric(loaded.Seconds(), "devices-loaded-s")
		b.ReportMetric(ready.Seconds(), "map-ready-s")
		b.ReportMetric(f[0], "frame-p50-ms")
		b.ReportMetric(f[1], "frame-p95-ms")
		b.ReportMetric(f[2], "frame-max-ms")
		b.ReportMetric(f[3], "frames")
	}
}
