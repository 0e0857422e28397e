package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets TestDemoStopsCleanly run the demo itself: the test binary,
// re-executed with CITYWATCH_DEMO_CHILD=1, is the demo.
func TestMain(m *testing.M) {
	if os.Getenv("CITYWATCH_DEMO_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDemoStopsCleanly runs the demo as `make demo` does (on free ports),
// waits for the console URL it prints, checks the console answers,
// interrupts it as Ctrl-C does, and wants it gone within a minute with
// exit status 0 and no ERROR line: the simulated agents say goodbye
// through the hub's broker before the hub stops.
func TestDemoStopsCleanly(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-listen", "127.0.0.1:0", "-control", "127.0.0.1:0", "-mqtt", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CITYWATCH_DEMO_CHILD=1")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	url := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "console:"); ok {
				url <- strings.TrimSpace(rest)
			}
		}
		io.Copy(io.Discard, out)
		done <- cmd.Wait()
	}()
	var console string
	select {
	case console = <-url:
	case err := <-done:
		t.Fatalf("the demo ended before printing its console URL: %v\n%s", err, logs.String())
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("no console URL within 2 minutes\n%s", logs.String())
	}
	res, err := http.Get(console)
	if err != nil {
		t.Fatalf("console %s: %v", console, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("console %s: %s", console, res.Status)
	}
	time.Sleep(5 * time.Second) // the simulated agents connect and report
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the demo exited with %v after Ctrl-C", err)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the demo did not stop within a minute of Ctrl-C\n%s", logs.String())
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("the demo logged an error: %s", line)
		}
	}
}
