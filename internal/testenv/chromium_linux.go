//go:build linux

package testenv

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// killProfileLeftovers kills Chromium helper processes (zygote, network
// service) still running with profile as their --user-data-dir after the
// browser exited. It looks until a few passes in a row find nothing, as a
// helper can fork just as the browser dies.
func killProfileLeftovers(profile string) {
	const (
		quietPasses = 3
		interval    = 10 * time.Millisecond
		limit       = 2 * time.Second
	)
	want := []byte("--user-data-dir=" + profile)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	deadline := time.Now().Add(limit)
	for quiet := 0; quiet < quietPasses && time.Now().Before(deadline); <-ticker.C {
		if killUsing(want) == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

func killUsing(arg []byte) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !hasArg(cmdline, arg) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// hasArg reports whether cmdline holds arg as a whole argument: followed by
// NUL, or by a space where Chromium has rewritten its helpers' titles.
func hasArg(cmdline, arg []byte) bool {
	for i := bytes.Index(cmdline, arg); i >= 0; {
		end := i + len(arg)
		if end == len(cmdline) || cmdline[end] == 0 || cmdline[end] == ' ' {
			return true
		}
		j := bytes.Index(cmdline[end:], arg)
		if j < 0 {
			return false
		}
		i = end + j
	}
	return false
}
