package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/internal/testenv"
)

// simProcess is a simulated city run by citywatch-sim in a process of its
// own, with its fault control API.
type simProcess struct {
	city    sim.City
	control string // http://127.0.0.1:port/
}

// runSimProcess builds citywatch-sim and runs city against brokerURL in
// scale mode (cameras answered in its process), every interval, with no
// fault script, until the test ends.
func runSimProcess(t testing.TB, brokerURL string, city sim.CityOptions, interval time.Duration) *simProcess {
	t.Helper()
	c, err := sim.GenerateCity(city) // the same city the process makes from the same options
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "citywatch-sim")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/citywatch/citywatch/agent/cmd/citywatch-sim").CombinedOutput(); err != nil {
		t.Fatalf("building the simulator: %v\n%s", err, out)
	}
	control := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin, "-broker", brokerURL, "-scale", "-script=false", "-control", control, "-log-level", "warn",
		"-agents", strconv.Itoa(city.Sites), "-devices", strconv.Itoa(city.Devices), "-districts", strconv.Itoa(city.Districts),
		"-seed", strconv.FormatUint(city.Seed, 10), "-interval", interval.String())
	log := &testenv.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("simulator's log:\n%s", log)
		}
	})
	p := &simProcess{city: c, control: "http://" + control + "/"}
	eventually(t, 30*time.Second, func() error {
		res, err := http.Get(p.control + "faults")
		if err != nil {
			return err
		}
		res.Body.Close()
		return nil
	})
	return p
}

// City is the city the process simulates.
func (p *simProcess) City() sim.City { return p.city }

// Fault injects a fault through the control API.
func (p *simProcess) Fault(f sim.Fault) error {
	body, _ := json.Marshal(map[string]string{"device": f.Device, "fault": f.Fault})
	res, err := http.Post(p.control+"faults", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("fault %s on %s: %s", f.Fault, f.Device, res.Status)
	}
	return nil
}

// fault is Fault that fails the test.
func (p *simProcess) fault(t *testing.T, device, fault string) {
	t.Helper()
	if err := p.Fault(sim.Fault{Device: device, Fault: fault}); err != nil {
		t.Fatal(err)
	}
}
