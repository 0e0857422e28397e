package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
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
// waits for the console URL it prints, checks the console answers and
// that the demo's ONVIF cameras said who they are (the hub's API shows
// the maker, model, firmware and serial the city gave them, which their
// agents' configurations leave out) and the drifted one's clock drift,
// interrupts it as Ctrl-C does, and wants it gone within a minute with
// exit status 0 and no ERROR line: the simulated agents say goodbye
// through the hub's broker before the hub stops.
func TestDemoStopsCleanly(t *testing.T) {
	const token = "demo-test-token-0123456789"
	cmd := exec.Command(os.Args[0], "-listen", "127.0.0.1:0", "-control", "127.0.0.1:0", "-mqtt", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CITYWATCH_DEMO_CHILD=1", "CITYWATCH_DEMO_TOKEN="+token)
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
	onvifIdentified(t, console, token)
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

// onvifIdentified waits, up to a minute, until the hub at console shows
// every ONVIF camera of the demo city with the identity the city gave it,
// and the drifted camera's clock drift past the hub's 5 s warning.
func onvifIdentified(t *testing.T, console, token string) {
	t.Helper()
	plan, err := sim.GenerateCity(sim.CityOptions{Seed: 1}) // the demo's default city
	if err != nil {
		t.Fatal(err)
	}
	cams, drifted := sim.DemoONVIF(plan)
	if len(cams) == 0 {
		t.Fatal("the demo city has no ONVIF cameras")
	}
	want := map[string]config.Camera{}
	for _, a := range plan.Agents {
		for _, c := range a.Cameras {
			if _, ok := cams[c.ID]; ok {
				want[c.ID] = c
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for id, c := range want {
		for {
			d, err := apiDevice(console, token, id)
			if err == nil && d.Vendor == c.Vendor && d.Model == c.Model && d.Firmware == c.Firmware && d.Serial == c.Serial &&
				(id != drifted || d.Metrics[wire.MetricClockDrift] > 5) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ONVIF camera %s at the hub: %+v, %v; want vendor %q, model %q, firmware %q, serial %q (and a clock drift over 5 s if %s)",
					id, d, err, c.Vendor, c.Model, c.Firmware, c.Serial, drifted)
			}
			time.Sleep(time.Second)
		}
	}
}

// apiDevice reads one device from the hub's API.
func apiDevice(console, token, id string) (fleet.Device, error) {
	req, err := http.NewRequest(http.MethodGet, console+"api/devices/"+id, nil)
	if err != nil {
		return fleet.Device{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fleet.Device{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fleet.Device{}, fmt.Errorf("GET /api/devices/%s: %s", id, res.Status)
	}
	var body struct {
		Device fleet.Device `json:"device"`
	}
	err = json.NewDecoder(res.Body).Decode(&body)
	return body.Device, err
}
