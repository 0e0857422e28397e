package ui

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestCodecRefusalShown: a camera whose video the live path does not
// carry (the hub answers 415) gets words saying so and what to do, in the
// operator's language, and the player does not ask again.
func TestCodecRefusalShown(t *testing.T) {
	mux := operatorMux([]string{"status.read", "alarm.read", "live.view"}, []any{cam("CAM-H265", "Gate", "online", "Xuhui", 31.2, 121.4)}, nil)
	var posts atomic.Int32
	mux.HandleFunc("POST /api/cameras/{id}/whep", func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnsupportedMediaType)
		w.Write([]byte(`{"error":"camera CAM-H265 sends video the live path does not carry (the camera sends H265, not H.264): give it an H.264 sub-stream (rtsp_sub) for live view"}`))
	})
	srv := serveConsole(t, mux)

	pg := openPage(t)
	pg.do("open the console", chromedp.EmulateViewport(1440, 900), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#alarms-btn`))
	pg.poll(`window.citywatch.store.loaded`, 10*time.Second)
	pg.do("中文", chromedp.Click(`#lang`))
	pg.poll(`document.documentElement.lang === 'zh-CN'`, 5*time.Second)
	pg.do("play the camera", chromedp.Evaluate[chromedp.Void](`void window.citywatch.openLive('CAM-H265')`))
	pg.poll(`document.querySelector('#player')?.dataset.state === 'failed'`, 10*time.Second)
	if got := pg.str(`document.querySelector('#player .v-msg').textContent`); got != "浏览器无法播放该摄像机的视频它只输出 H.265 码流：请在代理配置中为它设置 H.264 子码流" {
		t.Errorf("the player says %q", got)
	}
	if got := pg.str(`document.querySelector('#player .p-status').textContent`); got != "在线" {
		t.Errorf("the camera's status in the player: %q, want 在线", got)
	}
	// A retry would be due within seconds; the player schedules none.
	if got := pg.str(`String(document.querySelector('#player .v-msg').textContent.includes('秒'))`); got != "false" {
		t.Errorf("the player counts down to a retry")
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("%d WHEP requests, want 1", n)
	}
	// Closed and opened again in one go (the dialog's close event comes a
	// moment later): the player stays open on the camera.
	got, err := chromedp.Run(pg.ctx, chromedp.Evaluate[string](`new Promise((done) => { window.citywatch.closeLive(); window.citywatch.openLive('CAM-H265');
		setTimeout(() => { const p = document.querySelector('#player'); done(p.open + ' ' + p.dataset.camera); }, 100); })`, chromedp.EvalAwaitPromise))
	if err != nil || got != "true CAM-H265" {
		t.Errorf("the player after closing and opening again: %q, %v; want open on CAM-H265", got, err)
	}
	pg.noExceptions()
}
