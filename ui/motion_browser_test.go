package ui

import (
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestMotionInBrowser: a camera triggered by its motion detection is told
// as motion — "MOTION" in its reason cell without the alarm contact's
// marking, an informational feed line saying motion was detected and then
// ended — while a sensor's trigger stays an alarm; in 中文 too.
func TestMotionInBrowser(t *testing.T) {
	sensor := cam("PIR-1", "Hall", "online", "Riverside", 30.59, 114.30)
	sensor["kind"], sensor["sensor_kind"] = "sensor", "intrusion"
	delete(sensor, "camera")
	devices := []any{cam("CAM-1", "Gate east", "online", "Riverside", 30.59, 114.30), sensor}
	srv := serveConsole(t, operatorMux([]string{"status.read"}, devices, nil))
	pg := openPage(t)
	pg.do("open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`#devices tr[data-device="CAM-1"]`))
	trigger := func(id string, on bool, seq int) {
		t.Helper()
		state := "false"
		if on {
			state = "true"
		}
		pg.do("trigger "+id, chromedp.Evaluate[chromedp.Void](`void window.citywatch.changes([{kind: 'trigger', seq: `+strconv.Itoa(seq)+`, at: new Date().toISOString(),
			reason: `+state+` ? 'triggered' : 'restored', device: {...window.citywatch.store.devices.get('`+id+`'), triggered: `+state+`}}], null)`))
	}
	row := func(id string) string { return `document.querySelector('#devices tr[data-device="` + id + `"]')` }
	feed := `[...document.querySelectorAll('#feed li')].map((li) => li.textContent).join(' | ')`
	// line is the class (sev-…) of the feed line saying words.
	line := func(words string) string {
		return `([...document.querySelectorAll('#feed li')].find((li) => li.textContent.includes('` + words + `'))?.className ?? '')`
	}

	trigger("CAM-1", true, 1)
	pg.poll(row("CAM-1")+`.querySelector('.c-reason').textContent === 'MOTION'`, 5*time.Second)
	if pg.str(row("CAM-1")+`.classList.contains('trig') ? 'marked' : ''`) != "" {
		t.Error("a camera in motion is marked as an alarm contact")
	}
	pg.poll(line("Motion detected")+` === 'sev-info'`, 5*time.Second)
	trigger("CAM-1", false, 2)
	pg.poll(feed+`.includes('Motion ended')`, 5*time.Second)
	if got := pg.str(row("CAM-1") + `.querySelector('.c-reason').textContent`); got != "" {
		t.Errorf("reason cell after the motion: %q", got)
	}

	trigger("PIR-1", true, 3)
	pg.poll(row("PIR-1")+`.querySelector('.c-reason').textContent === 'TRIGGERED' && `+row("PIR-1")+`.classList.contains('trig')`, 5*time.Second)
	pg.poll(line("alarm triggered")+` === 'sev-alarm'`, 5*time.Second)

	trigger("CAM-1", true, 4)
	pg.do("中文", chromedp.Click(`#lang`))
	pg.poll(`document.documentElement.lang === 'zh-CN'`, 5*time.Second)
	pg.poll(row("CAM-1")+`.querySelector('.c-reason').textContent === '移动侦测'`, 5*time.Second)
	pg.poll(feed+`.includes('检测到移动') && `+feed+`.includes('移动结束')`, 5*time.Second)
	pg.noExceptions()
}
