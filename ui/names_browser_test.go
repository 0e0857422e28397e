package ui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// named is cam with the inventory's names in other languages.
func named(c map[string]any, names, siteNames, districtNames map[string]string) map[string]any {
	for k, v := range map[string]map[string]string{"names": names, "site_names": siteNames, "district_names": districtNames} {
		if v != nil {
			c[k] = v
		}
	}
	return c
}

// TestLocalisedNamesInBrowser: in 中文 the device table, the detail and
// the summary's district strip show the inventory's Chinese names (the
// canonical ones where there are none), the district filter keeps the
// canonical district, the search box finds a device by its Chinese and by
// its English name, and English comes back with the language.
func TestLocalisedNamesInBrowser(t *testing.T) {
	zh := func(s string) map[string]string { return map[string]string{"zh-CN": s} }
	devices := []any{
		named(cam("CAM-1", "Gate east", "offline", "Riverside", 30.59, 114.30), zh("东门 1 号摄像机"), zh("滨江地铁站"), zh("滨江区")),
		named(cam("CAM-2", "Platform", "online", "Old Town", 30.58, 114.29), zh("站台 2 号摄像机"), nil, zh("老城区")),
		cam("CAM-3", "Pier", "online", "Harbour", 30.57, 114.31), // no names in any other language
	}
	srv := serveConsole(t, operatorMux([]string{"status.read"}, devices, nil))
	pg := openPage(t)
	pg.do("open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`#devices tr[data-device="CAM-1"]`))

	cell := func(id, col string) string {
		return pg.str(`document.querySelector('#devices tr[data-device="` + id + `"] .c-` + col + `')?.textContent ?? '(no row)'`)
	}
	district := func(d string) string {
		return pg.str(`document.querySelector('#districts button[data-district="` + d + `"] .dn')?.textContent ?? '(no button)'`)
	}
	shown := func() string {
		return pg.str(`[...document.querySelectorAll('#devices tr[data-device]')].map((tr) => tr.dataset.device).sort().join(' ')`)
	}
	search := func(q, want string) {
		t.Helper()
		pg.do("search "+q, chromedp.Evaluate[chromedp.Void](`(() => { const q = document.querySelector('#q'); q.value = `+jsString(q)+`; q.dispatchEvent(new Event('input', {bubbles: true})); })()`))
		pg.poll(`[...document.querySelectorAll('#devices tr[data-device]')].map((tr) => tr.dataset.device).sort().join(' ') === `+jsString(want), 5*time.Second)
	}

	if got := cell("CAM-1", "name"); got != "Gate east" {
		t.Errorf("English name cell %q", got)
	}
	if got := district("Riverside"); got != "Riverside" {
		t.Errorf("English district strip %q", got)
	}

	pg.do("中文", chromedp.Click(`#lang`))
	pg.poll(`document.documentElement.lang === 'zh-CN'`, 5*time.Second)
	pg.poll(`document.querySelector('#devices tr[data-device="CAM-1"] .c-name')?.textContent === '东门 1 号摄像机'`, 5*time.Second)
	for _, c := range []struct{ id, col, want string }{
		{"CAM-1", "site", "滨江地铁站"},
		{"CAM-1", "district", "滨江区"},
		{"CAM-2", "name", "站台 2 号摄像机"},
		{"CAM-2", "site", "Site <b>CAM-2</b>"}, // no Chinese site name: the site's name, as text
		{"CAM-2", "district", "老城区"},
		{"CAM-3", "name", "Pier"},
		{"CAM-3", "district", "Harbour"},
	} {
		if got := cell(c.id, c.col); got != c.want {
			t.Errorf("中文: %s %s cell %q, want %q", c.id, c.col, got, c.want)
		}
	}
	for d, want := range map[string]string{"Riverside": "滨江区", "Old Town": "老城区", "Harbour": "Harbour"} {
		if got := district(d); got != want {
			t.Errorf("中文: district strip %s shows %q, want %q", d, got, want)
		}
	}
	if got := pg.str(`document.querySelector('#f-district option[value="Riverside"]')?.textContent ?? '(none)'`); got != "滨江区" {
		t.Errorf("中文: district filter option Riverside reads %q", got)
	}

	// The search box finds a device by either name, in either language.
	search("东门", "CAM-1")
	search("gate EAST", "CAM-1")
	search("站台", "CAM-2")
	search("滨江地铁", "CAM-1") // the site's Chinese name
	search("", "CAM-1 CAM-2 CAM-3")

	// The district strip filters by the canonical district.
	pg.do("filter by 滨江区", chromedp.Click(`#districts button[data-district="Riverside"]`))
	pg.poll(`new URLSearchParams(location.search).get('district') === 'Riverside'`, 5*time.Second)
	if got := shown(); got != "CAM-1" {
		t.Errorf("filtered by 滨江区: rows %q", got)
	}
	if got := pg.str(`document.querySelector('#f-district').value`); got != "Riverside" {
		t.Errorf("district filter value %q, want the canonical Riverside", got)
	}

	// The detail names the device and its site in Chinese.
	pg.do("open CAM-1", chromedp.Click(`#devices tr[data-device="CAM-1"] .c-id`))
	pg.poll(`document.querySelector('#detail .d-name')?.textContent === '东门 1 号摄像机'`, 5*time.Second)
	if got := pg.str(`document.querySelector('#detail').textContent`); !strings.Contains(got, "滨江地铁站") || !strings.Contains(got, "滨江区") {
		t.Errorf("detail lacks the Chinese site or district: %q", got)
	}

	// Back in English, the canonical names.
	pg.do("English", chromedp.Click(`#lang`))
	pg.poll(`document.documentElement.lang === 'en'`, 5*time.Second)
	pg.poll(`document.querySelector('#devices tr[data-device="CAM-1"] .c-name')?.textContent === 'Gate east'`, 5*time.Second)
	if got := district("Riverside"); got != "Riverside" {
		t.Errorf("back in English, district strip %q", got)
	}
	if got := pg.str(`document.querySelector('#detail .d-name').textContent`); got != "Gate east" {
		t.Errorf("back in English, detail name %q", got)
	}
	pg.noExceptions()
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
