package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumStartTimeout = 30 * time.Second

// Chromium starts a headless Chromium with a fresh profile in t.TempDir() and
// returns a chromedp context for its first tab; use chromedp.NewContext on it
// for more tabs. The context ends a little before the test's deadline, if it
// has one, so a hung page fails the test with an error rather than a timeout
// panic; the browser is closed when the test ends. To bound one action,
// derive a timeout from the returned context (never wrap it before the
// first Run: chromedp ties the browser's life to that call's context, and
// Chromium has already done that first Run). The binary is
// $CITYWATCH_CHROMIUM, `chromium` on PATH, or /usr/bin/chromium. Autoplay
// needs no user gesture, for video tests; extra options go after the
// defaults, so a flag given again there wins (autoplay-policy
// document-user-activation-required: sound blocked until a click, as in a
// browser someone just opened).
func Chromium(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin := lookBin(t, "chromium", "CITYWATCH_CHROMIUM", "/usr/bin/chromium", "/usr/lib/chromium/chromium")
	profile := filepath.Join(t.TempDir(), "profile")
	log := newTailBuffer(256 << 10)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // CI runs as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.CombinedOutput(log),
	)
	opts = append(opts, extra...)

	base, cancelBase := context.WithCancel(context.Background())
	if dl, ok := testDeadline(t); ok {
		cancelBase()
		base, cancelBase = context.WithDeadline(context.Background(), dl)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	logf := func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) }
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))

	// Runs before t.TempDir's removal, which must find the profile gone:
	// Chromium's helper processes can outlive the browser and keep writing
	// to it (chromedp does the same cleanup for profiles it creates).
	t.Cleanup(func() {
		closeCtx, cancelClose := context.WithTimeout(ctx, stopGrace)
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
			logf("testenv: close chromium: %v", err)
		}
		cancelClose()
		cancelCtx()
		cancelAlloc() // waits for the browser process to exit
		cancelBase()
		killProfileLeftovers(profile)
		if err := removeAllRetry(profile, 5*time.Second); err != nil {
			t.Errorf("testenv: remove chromium profile: %v", err)
		}
		if t.Failed() {
			t.Logf("testenv: chromium log:\n%s", log.String())
		}
	})

	// Start the browser now, with no timeout on the call's own context (see
	// above), so a missing or broken install fails here and not in the
	// test's first action.
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- chromedp.Do(ctx) }()
	timer := time.NewTimer(chromiumStartTimeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-errc:
	case <-timer.C:
		cancelCtx()
		err = fmt.Errorf("not ready after %v (%v)", chromiumStartTimeout, <-errc)
	}
	if err != nil {
		t.Fatalf("testenv: start chromium %s: %v (if it is missing or broken, %s)\n%s", bin, err, installHint, log.String())
	}
	t.Logf("testenv: chromium ready in %v", time.Since(start).Round(time.Millisecond))
	return ctx
}

// removeAllRetry removes dir, retrying while files still appear in it.
func removeAllRetry(dir string, limit time.Duration) error {
	const interval = 20 * time.Millisecond
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	deadline := time.Now().Add(limit)
	for {
		err := os.RemoveAll(dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-ticker.C
	}
}
