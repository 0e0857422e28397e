package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	hubconfig "github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/workorder"
)

// offScreen lists what sticks out of the viewport sideways: the page's
// scroll width when it is wider than the viewport, and every visible
// button and link under root (a selector) that is not wholly on screen,
// or with thumbs less than 44 px high; "" when everything fits.
const offScreen = `((root, thumbs) => {
  const out = [];
  const de = document.documentElement;
  if (de.scrollWidth > innerWidth) out.push('page ' + de.scrollWidth + ' > ' + innerWidth);
  if (root) for (const el of document.querySelectorAll(root + ' button, ' + root + ' a[href]')) {
    const r = el.getBoundingClientRect();
    if (!el.getClientRects().length || r.width === 0) continue;
    const name = (el.id || el.textContent.trim()).slice(0, 40);
    if (r.right > innerWidth + 0.5 || r.left < -0.5) out.push(name + ' spans ' + Math.round(r.left) + '–' + Math.round(r.right));
    if (thumbs && r.height < 44) out.push(name + ' is ' + Math.round(r.height) + ' px high');
  }
  return out.join('; ');
})`

// A maintainer on a 390 px phone: the monitoring console finds a device
// and shows its reason without scrolling sideways; the work view lists the
// camera's order (nearest first once the phone's position is given), the
// crew re-probes it and sees the agent's fresh answer, starts and fixes
// it with a tap each, and the order is fixed at the hub; when the camera
// recovers, the websocket's work-order event brings the verified close to
// the open order by itself.
func TestWorkOrderOnAPhone(t *testing.T) {
	plan, err := sim.GenerateCity(smallCity)
	if err != nil {
		t.Fatal(err)
	}
	var districts []string
	for _, d := range plan.Districts {
		districts = append(districts, d.Name)
	}
	alarms := quickAlarms(t)
	s := startStack(t, stackOptions{city: smallCity, hubCfg: func(c *hubconfig.Config) {
		alarms(c)
		c.WorkOrders.Grace, c.WorkOrders.Hold = 2*time.Second, 3*time.Second
		c.WorkOrders.Crews = []hubconfig.Crew{{Name: "crew", Members: []string{"phone-wang"}, Districts: districts}}
	}})
	s.waitAllOnline(t)
	browserAccount(t, s.hub, "phone-wang", auth.Maintainer, auth.Everything)
	var cam config.Camera
	for _, a := range s.sim.City().Agents {
		if len(a.Cameras) > 0 {
			cam = a.Cameras[0]
			break
		}
	}
	if cam.ID == "" {
		t.Fatal("the city has no camera")
	}

	if err := s.sim.Fault(sim.Fault{Device: cam.ID, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var order workorder.Order
	eventually(t, 30*time.Second, func() error {
		var l orderList
		if err := s.api.fetch("api/workorders?device="+url.QueryEscape(cam.ID), &l); err != nil {
			return err
		}
		if len(l.Orders) != 1 {
			return fmt.Errorf("%d orders for %s", len(l.Orders), cam.ID)
		}
		order = l.Orders[0]
		return nil
	})

	ctx := consoleAs(t, s.hub, "phone-wang", 150*time.Second)
	shots := t.TempDir()
	poll := func(what, expr string, within time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(within))); err != nil {
			t.Fatalf("%s (%s): %v", what, expr, err)
		}
	}
	do := func(what string, as ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, as...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	fits := func(where, root string, thumbs bool) {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("%s(%q, %t)", offScreen, root, thumbs)))
		if err != nil {
			t.Fatal(err)
		}
		if got != "" {
			t.Errorf("%s at 390 px: %s", where, got)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(shots, name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}

	// The phone: 390×844 CSS pixels at 3×, reloaded so that the console
	// starts at that size.
	do("emulate a phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateTouch),
		chromedp.Reload(),
		chromedp.WaitVisible(`body[data-view="console"] #live[data-state="live"]`),
		chromedp.WaitVisible(`#devices tr[data-device]`),
	)
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.innerWidth`)); err != nil || w != 390 {
		t.Fatalf("the viewport is %d px wide (%v), want 390", w, err)
	}

	// Monitoring: search for the camera; its status, id and reason are on
	// screen, nothing scrolls sideways.
	do("search for the camera", chromedp.SendKeys(`#q`, cam.ID))
	poll("the camera's row", fmt.Sprintf(`(() => { const r = document.querySelector('#devices tr[data-device=%q]'); return r && document.querySelectorAll('#devices tr[data-device]').length === 1 && r.querySelector('.c-reason').textContent.trim() !== ''; })()`, cam.ID), 15*time.Second)
	cols, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`['c-status', 'c-id', 'c-reason'].filter((c) => {
	  const r = document.querySelector('#devices tr[data-device=%q] td.' + c).getBoundingClientRect();
	  return !(r.width >= 40 && r.left >= 0 && r.right <= innerWidth + 0.5);
	})`, cam.ID)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) > 0 {
		t.Errorf("the camera's %v are not on screen at 390 px", cols)
	}
	fits("the monitoring console", "", false)
	shot("console")
	do("open the camera's panel", chromedp.Click(fmt.Sprintf(`#devices tr[data-device=%q] td.c-id`, cam.ID)))
	poll("the device panel", fmt.Sprintf(`document.querySelector('#detail').dataset.id === %q && !document.querySelector('#detail').hidden`, cam.ID), 10*time.Second)
	fits("the device panel", "#detail", false)
	shot("console-device")

	// The work view: my orders, with the camera's.
	do("open the work orders", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`), chromedp.Click(`#view-work`))
	card := fmt.Sprintf(`#work-list [data-order=%q]`, order.ID)
	poll("the order's card", fmt.Sprintf(`document.querySelector(%q)`, card), 15*time.Second)
	text, err := chromedp.Run(ctx, chromedp.Text(card))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{order.ID, order.SiteName, order.District, "P" + fmt.Sprint(order.Priority), "1 of 1 devices blind", "to the fix deadline"} {
		if !strings.Contains(text, want) {
			t.Errorf("the order's card says %q, want %q in it", text, want)
		}
	}
	pressed, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#work-mine').getAttribute('aria-pressed')`))
	if err != nil || pressed != "true" {
		t.Errorf("my orders pressed = %q (%v), want the default", pressed, err)
	}
	// Nearest first, where the hub's Permissions-Policy lets the page ask
	// where the phone is (it stands at the camera); where it does not, the
	// button is not offered and the hub's order stays.
	allowed, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(document.permissionsPolicy || document.featurePolicy)?.allowsFeature('geolocation') !== false`))
	if err != nil {
		t.Fatal(err)
	}
	if allowed {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: "geolocation"}, Setting: browser.PermissionSettingGranted,
		}); err != nil {
			t.Fatal(err)
		}
		lat, lon, acc := cam.Location.Lat, cam.Location.Lon, 10.0
		if _, err := chromedp.Call(ctx, emulation.SetGeolocationOverride, emulation.SetGeolocationOverrideParams{Latitude: &lat, Longitude: &lon, Accuracy: &acc}); err != nil {
			t.Fatal(err)
		}
		do("nearest first", chromedp.Click(`#work-near`))
		poll("the distance", fmt.Sprintf(`document.querySelector('#work-near').getAttribute('aria-pressed') === 'true' && document.querySelector('%s .wk-dist')?.textContent.includes(' m')`, card), 15*time.Second)
	} else {
		t.Log("the hub's Permissions-Policy forbids geolocation: no nearest first")
		poll("no nearest-first button", `document.querySelector('#work-near').hidden && document.querySelector('#work-count').textContent.includes('most urgent first')`, 5*time.Second)
	}
	fits("the work orders", "#work", true)
	shot("work-list")

	// The order: re-probe, then start and fix with a tap each.
	do("open the order", chromedp.Click(card))
	poll("the order's detail", fmt.Sprintf(`document.querySelector('#work-detail-h')?.dataset.orderId === %q`, order.ID), 15*time.Second)
	poll("the device's reason", fmt.Sprintf(`document.querySelector('#work-dbody [data-dev=%q] .wk-reason')?.textContent.trim() !== ''`, cam.ID), 5*time.Second)
	poll("a first check for the reason", fmt.Sprintf(`document.querySelector('#work-dbody [data-dev=%q] .wk-check')?.textContent.startsWith('First check')`, cam.ID), 5*time.Second)
	geo, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#work-geo').getAttribute('href')`))
	if err != nil || !strings.HasPrefix(geo, fmt.Sprintf("geo:%.6f,%.6f?q=", cam.Location.Lat, cam.Location.Lon)) {
		t.Errorf("directions %q (%v), want a geo: URI at the camera", geo, err)
	}
	do("re-probe", chromedp.Click(`#work-probe`))
	poll("the fresh result", fmt.Sprintf(`document.querySelector('#work-probe-results [data-probe-device=%q][data-fresh="true"][data-status="offline"]')`, cam.ID), 30*time.Second)
	fits("the open order", "#work", true)
	shot("work-order")
	do("start", chromedp.Click(`#work-act-start`))
	poll("in progress", `document.querySelector('#work-detail-h').dataset.state === 'in_progress' && document.querySelector('#work-msg').dataset.kind === 'ok'`, 15*time.Second)
	do("fix", chromedp.Click(`#work-act-fix`))
	poll("fixed", `document.querySelector('#work-detail-h').dataset.state === 'fixed'`, 15*time.Second)
	shot("work-fixed")
	var d orderDetail
	s.api.getJSON(t, "api/workorders/"+order.ID, &d)
	if d.Order.State != workorder.Fixed || d.Order.Assignee != "phone-wang" {
		t.Fatalf("after the phone's taps the order is %s, assigned to %q; want fixed, to phone-wang", d.Order.State, d.Order.Assignee)
	}
	var acts []workorder.Action
	for _, h := range d.History {
		if h.Who == "phone-wang" {
			acts = append(acts, h.Action)
		}
	}
	if fmt.Sprint(acts) != "[probe start fix]" {
		t.Errorf("phone-wang's part of the history: %v, want [probe start fix]", acts)
	}

	// The camera recovers: the hub closes the order after the hold and its
	// event reaches the open order without a tap.
	if err := s.sim.Fault(sim.Fault{Device: cam.ID, Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}
	poll("closed by the hub", `document.querySelector('#work-detail-h').dataset.state === 'closed'`, 45*time.Second)
	trail, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#work-trail li')].map((li) => li.dataset.action)`))
	if err != nil || len(trail) == 0 || trail[0] != string(workorder.ActVerify) {
		t.Errorf("the history on the phone, newest first: %v (%v), want verify first", trail, err)
	}
	// Verified, the hub had the agent photograph the camera: the picture
	// is on the phone.
	poll("the snapshot on verification", `[...document.querySelectorAll('#work-photos img')].some((img) => img.complete && img.naturalWidth > 0)`, 45*time.Second)
	fits("the closed order", "#work", true)
	do("back to the list", chromedp.Click(`#work-back`))
	poll("the list without the closed order", fmt.Sprintf(`!document.querySelector(%q) && !document.querySelector('#work-empty').hidden`, card), 15*time.Second)

	// A fault telemetry cannot see: an order by hand from the device.
	do("order by hand", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void window.citywatch.orderByHand(%q)`, cam.ID)),
		chromedp.WaitVisible(`#form-dialog input[name=title]`), chromedp.SendKeys(`#form-dialog input[name=title]`, "lens dirty"),
		chromedp.Click(`#dialog-submit`))
	poll("the order by hand on the phone", `document.querySelector('#work-detail-h')?.dataset.state === 'open' && document.querySelector('#work-dbody').innerText.includes('lens dirty')`, 15*time.Second)
	var mine orderList
	s.api.getJSON(t, "api/workorders?device="+url.QueryEscape(cam.ID), &mine)
	if len(mine.Orders) != 1 || !mine.Orders[0].Manual || mine.Orders[0].OpenedBy != "phone-wang" || mine.Orders[0].Title != "lens dirty" {
		t.Errorf("the order by hand: %+v", mine.Orders)
	}
}
