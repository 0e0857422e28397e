package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/citywatch/citywatch/internal/testenv"
)

// The wait between attempts doubles from retryFirst up to retryLimit,
// within half of it for jitter; starts again from retryFirst after an
// attempt that lasted retryLimit; and ends with the context.
func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b backoff
		waited := func() time.Duration {
			start := time.Now()
			if !b.wait(t.Context()) {
				t.Fatal("wait ended before its time")
			}
			return time.Since(start)
		}
		for want := retryFirst; want <= 4*retryLimit; want *= 2 {
			b.attempt()
			if d, most := waited(), min(want, retryLimit); d < most/2 || d > most {
				t.Fatalf("waited %v, want %v–%v", d, most/2, most)
			}
		}
		b.attempt()
		time.Sleep(retryLimit) // an attempt that worked a while
		if d := waited(); d > retryFirst {
			t.Errorf("after a long attempt waited %v, want at most %v", d, retryFirst)
		}

		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Millisecond)
			cancel()
		}()
		start := time.Now()
		if b.wait(ctx) || time.Since(start) > time.Millisecond {
			t.Errorf("wait returned after %v as its context ended after 1ms", time.Since(start))
		}
	})
}

// A partition's consumer failing again and again is counted each time,
// counted failing once, and logged at first and then every
// failureLogEvery; when it works again it is counted restarted.
func TestFailuresCountAndLogSparingly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs testenv.LogBuffer
		c := &Consumers{log: slog.New(slog.NewTextHandler(&logs, nil))}
		f := &failures{c: c, p: 3, role: "owner"}
		for range 10 {
			f.failed(errors.New("nats: timeout"))
			time.Sleep(time.Second)
		}
		if st, n := c.Stats(), strings.Count(logs.String(), "partition consumer failed"); st.Errors != 10 || st.Failing != 1 || n != 1 {
			t.Errorf("10 failures in 10s: stats %+v, logged %d times; want 10 errors, 1 failing, 1 line", st, n)
		}
		time.Sleep(failureLogEvery)
		f.failed(errors.New("nats: timeout"))
		if n := strings.Count(logs.String(), "partition consumer failed"); n != 2 || !strings.Contains(logs.String(), `"not logged"=9`) {
			t.Errorf("after %v logged %d times:\n%s", failureLogEvery, n, logs.String())
		}
		f.worked()
		f.worked()
		if st := c.Stats(); st.Failing != 0 || st.Restarts != 1 {
			t.Errorf("working again: stats %+v; want none failing, 1 restart", st)
		}
		f.failed(errors.New("nats: no responders"))
		f.end()
		if st := c.Stats(); st.Failing != 0 || st.Errors != 12 {
			t.Errorf("after the goroutine ended: stats %+v; want none failing, 12 errors", st)
		}
	})
}
