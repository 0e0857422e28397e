package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/internal/testenv"
)

// TestSIGHUPReloadsRules: an operator edits the alarm rules of a running
// hub and sends SIGHUP; the next fault is judged by the new rules, the
// reload is in the audit trail, and agents and consoles stay connected
// (the hub process is the same one throughout).
func TestSIGHUPReloadsRules(t *testing.T) {
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules), 0o644); err != nil {
		t.Fatal(err)
	}
	hub := startHubProcess(t, hubProcessOptions{brokerURL: broker.URL(), yaml: fmt.Sprintf("alarms: {rules: %q}\n", rules)})
	world := runWorld(t, broker.URL())
	var cams []string
	for _, a := range world.City().Agents {
		for _, c := range a.Cameras {
			cams = append(cams, c.ID)
		}
	}
	severityOf := func(cam string) func() error {
		return func() error {
			world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline})
			var l alarmList
			if err := hub.get("api/alarms", &l); err != nil {
				return err
			}
			for _, a := range l.Alarms {
				if a.Device == cam {
					return fmt.Errorf("%s", a.Severity)
				}
			}
			return fmt.Errorf("no alarm for %s yet", cam)
		}
	}
	is := func(cam, want string) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			err := severityOf(cam)()
			if err.Error() == want {
				return nil
			}
			return fmt.Errorf("%s: %v", cam, err)
		})
	}
	is(cams[0], "major")

	critical := strings.Replace(quickRules, "    device_kind: camera\n    severity: major", "    device_kind: camera\n    severity: critical", 1)
	if critical == quickRules {
		t.Fatal("test set-up: the camera rule was not found in quickRules")
	}
	if err := os.WriteFile(rules, []byte(critical), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := hub.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	auditor := hub.token(t, "audrey", auth.Auditor, auth.Everything)
	eventually(t, 30*time.Second, func() error {
		var page struct {
			Records []struct{ Action, Outcome string }
		}
		if err := auditor.fetch("api/audit?action=config.reload", &page); err != nil {
			return err
		}
		if len(page.Records) != 1 || page.Records[0].Outcome != "success" {
			return fmt.Errorf("reload records %+v", page.Records)
		}
		return nil
	})
	is(cams[1], "critical")
	if hub.cmd.ProcessState != nil {
		t.Fatal("the hub exited on SIGHUP")
	}
}
