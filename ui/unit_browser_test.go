package ui

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestUnitInDetail: a camera's detail shows what a crew needs to bring the
// right spare — make, model, firmware, serial, its video streams — and the
// unit's recorded changes (a camera replaced, a main stream reconfigured),
// newest first, in the operator's language.
func TestUnitInDetail(t *testing.T) {
	dev := cam("CAM-1", "Gate", "online", "Xuhui", 31.2, 121.4)
	dev["vendor"], dev["model"], dev["firmware"], dev["serial"] = "Hikvision", "DS-2CD2T47", "V5.7.3", "DS-2CD2T47-20231105"
	dev["streams"] = []any{
		map[string]any{"role": "main", "codec": "H265", "profile": "Main", "width": 2560, "height": 1440},
		map[string]any{"role": "sub", "codec": "H264", "profile": "High", "width": 640, "height": 360},
	}
	dev["metrics"] = map[string]any{"fps": 25, "sub_fps": 12.5}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/auth/me", serveJSON(map[string]any{"name": "li", "role": "maintainer", "permissions": []string{"status.read"}, "csrf": "tok", "session": map[string]any{}}))
	mux.HandleFunc("/api/devices", serveJSON(map[string]any{"devices": []any{dev}, "total": 1}))
	mux.HandleFunc("/api/devices/{id}", serveJSON(map[string]any{"device": dev, "assets": []any{
		map[string]any{"device": "CAM-1", "field": "serial", "from": "OLD-1", "to": "DS-2CD2T47-20231105", "at": "2026-12-01T02:00:00Z"},
		map[string]any{"device": "CAM-1", "field": "main_stream", "from": "H264 High 1920×1080", "to": "H265 Main 2560×1440", "at": "2026-12-02T02:00:00Z"},
	}}))
	mux.HandleFunc("/api/summary", serveJSON(map[string]any{"devices": 1, "by_status": map[string]int{"online": 1}}))
	srv := serveConsole(t, mux)

	pg := openPage(t)
	pg.do("open the console", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"))
	pg.poll(`window.citywatch && window.citywatch.store.loaded`, 10*time.Second)
	pg.do("the camera's detail", chromedp.Evaluate[chromedp.Void](`void window.citywatch.activate('CAM-1')`))
	pg.poll(`document.querySelector('#detail .assets li')`, 5*time.Second)

	row := func(label string) string {
		return pg.str(`[...document.querySelectorAll('#detail dt')].find((dt) => dt.textContent === ` + jsString(label) + `)?.nextElementSibling.innerText || ''`)
	}
	for label, want := range map[string]string{
		"Make and model": "Hikvision DS-2CD2T47",
		"Firmware":       "V5.7.3",
		"Serial number":  "DS-2CD2T47-20231105",
		"Video streams":  "main H265 Main 2560×1440\nsub H264 High 640×360",
	} {
		if got := row(label); got != want {
			t.Errorf("%s: %q, want %q", label, got, want)
		}
	}
	if got := pg.str(`document.querySelector('#detail tr[data-metric="sub_fps"]')?.innerText || ''`); got != "Sub-stream frame rate\t12.5 fps\t" {
		t.Errorf("sub-stream frame rate row: %q", got)
	}
	if got := pg.str(`[...document.querySelectorAll('#detail .assets li span')].map((s) => s.textContent).join(' | ')`); got !=
		"Main stream changed: H264 High 1920×1080 → H265 Main 2560×1440 | Unit replaced (serial number): OLD-1 → DS-2CD2T47-20231105" {
		t.Errorf("unit changes: %q", got)
	}

	pg.do("中文", chromedp.Click(`#lang`))
	pg.poll(`document.documentElement.lang === 'zh-CN'`, 5*time.Second)
	if got := row("视频码流"); got != "主码流 H265 Main 2560×1440\n子码流 H264 High 640×360" {
		t.Errorf("视频码流: %q", got)
	}
	if got := pg.str(`document.querySelector('#detail .assets li span').textContent`); got != "主码流已变更：H264 High 1920×1080 → H265 Main 2560×1440" {
		t.Errorf("设备变更记录: %q", got)
	}
	pg.noExceptions()
}
