package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/internal/testenv"
)

// The console in a real Chromium: it loads, lists every device, and a row
// changes live when a simulated camera goes offline — no reload.
func TestConsoleUpdatesLiveInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity})
	s.waitAllOnline(t)
	_, cam := firstCamera(t, s)
	browser := testenv.Chromium(t)
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()

	err := chromedp.Do(ctx,
		chromedp.Navigate(s.hub.ConsoleURL()),
		chromedp.WaitVisible(`#live[data-state="live"]`),
		chromedp.WaitVisible(`#devices tr[data-device]`),
	)
	if err != nil {
		t.Fatalf("console did not load: %v", err)
	}
	total, err := chromedp.Run(ctx, chromedp.AttributeValue(`[data-count="total"]`, "data-value"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#devices tr[data-device]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(s.deviceCount()); total.Value != want {
		t.Errorf("console counts %s devices, want %s", total.Value, want)
	}
	if rows < min(10, s.deviceCount()) {
		t.Errorf("only %d rows rendered", rows)
	}

	row := fmt.Sprintf(`#devices tr[data-device=%q]`, cam)
	err = chromedp.Do(ctx,
		chromedp.SendKeys(`#q`, cam),
		chromedp.WaitVisible(row+`[data-status="online"]`),
	)
	if err != nil {
		t.Fatalf("searching for %s: %v", cam, err)
	}
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(row+`[data-status="offline"]`)); err != nil {
		t.Fatalf("row of %s did not turn offline: %v", cam, err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text(row+` td`, chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	feed, err := chromedp.Run(ctx, chromedp.Text(`#feed`))
	if err != nil {
		t.Fatal(err)
	}
	if status != "offline" {
		t.Errorf("status cell says %q", status)
	}
	if feed == "" {
		t.Error("the live feed is empty after a device went offline")
	}
}
