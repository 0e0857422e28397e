package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// BenchmarkHubKill9 kills the hub with SIGKILL in a city of 100,000
// devices (1,000 agents × 100, sized by CITYWATCH_BENCH_AGENTS and
// _DEVICES) once it shows 20 broken cameras offline, each with its alarm
// open, starts it again on the same data directory, and prints how long
// until every device is known again, until every device's state is
// rebuilt (each one with the status its agent reports) and until a
// console is live, and whether every alarm and its trail survived — the
// broken cameras' among them. Target: ≤ 10 s.
func BenchmarkHubKill9(b *testing.B) {
	agents, devices := envInt(b, "CITYWATCH_BENCH_AGENTS", 1000), envInt(b, "CITYWATCH_BENCH_DEVICES", 100)
	total := agents * devices
	const interval = 10 * time.Second
	broker := testenv.Mosquitto(b)
	dir := b.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(quickRules), 0o644); err != nil {
		b.Fatal(err)
	}
	yaml := fmt.Sprintf("alarms: {rules: %q, db: %q}\n", rules, filepath.Join(dir, "alarms.db"))
	hub1 := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL(), yaml: yaml})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	world := startScaleCity(b, ctx, broker.URL(), hub1, sim.CityOptions{Seed: 3, Districts: 8, Sites: agents, Devices: total}, interval)

	broken := devicesOfCity(world)[:20]
	for _, cam := range broken {
		if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
			b.Fatal(err)
		}
	}
	brokenAlarms := awaitBroken(b, hub1, broken)
	var before alarmList
	if err := hub1.get("api/alarms", &before); err != nil {
		b.Fatal(err)
	}
	trails := alarmTrails(b, hub1, before)
	eventually(b, 30*time.Second, func() error {
		n := 0
		for _, tr := range trails {
			n += len(tr)
		}
		if w := hub1.metric(b, "citywatch_alarmdb_transitions_written"); w < float64(n) {
			return fmt.Errorf("%v of %d transitions committed", w, n)
		}
		return nil
	})

	b.ResetTimer()
	if err := hub1.cmd.Process.Kill(); err != nil {
		b.Fatal(err)
	}
	hub1.cmd.Wait()
	killed := time.Now()
	hub2 := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL(), yaml: yaml, successorOf: hub1})
	var known, rebuilt, live time.Duration
	eventually(b, 2*time.Minute, func() error {
		if live == 0 {
			if c, err := hub2.api.dial(websocket.Dialer{}); err == nil {
				var hello struct{ Type string }
				if c.ReadJSON(&hello) == nil && hello.Type == "hello" {
					live = time.Since(killed)
				}
				c.Close()
			}
		}
		var s fleet.Summary
		if err := hub2.get("api/summary", &s); err != nil {
			return err
		}
		if known == 0 && s.Devices == total {
			known = time.Since(killed)
		}
		want := map[wire.Status]int{wire.StatusOnline: total - len(broken), wire.StatusOffline: len(broken)}
		if s.Devices != total || s.ByStatus[wire.StatusOnline] != want[wire.StatusOnline] || s.ByStatus[wire.StatusOffline] != want[wire.StatusOffline] {
			return fmt.Errorf("%d devices known: %v", s.Devices, s.ByStatus)
		}
		if rebuilt == 0 {
			rebuilt = time.Since(killed)
		}
		if live == 0 {
			return fmt.Errorf("state rebuilt, console not live yet")
		}
		return nil
	})
	b.StopTimer()

	var after alarmList
	if err := hub2.get("api/alarms", &after); err != nil {
		b.Fatal(err)
	}
	intact := map[string]bool{}
	for id, tr := range alarmTrails(b, hub2, after) {
		if old, ok := trails[id]; ok && len(tr) >= len(old) && slices.EqualFunc(old, tr[:len(old)], func(x, y alarmTransition) bool { return x == y }) {
			intact[id] = true
		}
	}
	kept, brokenKept := len(intact), 0
	for _, id := range brokenAlarms {
		if intact[id] {
			brokenKept++
		}
	}
	fmt.Printf(`
== citywatch hub kill -9: %d agents × %d devices, %d cameras down, report every %s ==
every device known (fleet summary total):            %s after the kill (%d devices)
state rebuilt (every device as its agent reports):   %s after the kill (includes process start; target ≤ 10 s: %s)
console live (websocket hello):                      %s after the kill
alarms before / after, with their trail intact:      %d / %d, %d intact (%s)
broken cameras' alarms with their trail intact:      %d of %d (%s)
messages the restarted hub rejected:                 %v (unknown device: %v)
`, agents, devices, len(broken), interval, known.Round(10*time.Millisecond), total,
		rebuilt.Round(10*time.Millisecond), verdict(rebuilt <= 10*time.Second),
		live.Round(10*time.Millisecond), before.Total, after.Total, kept, verdict(kept == len(trails)),
		brokenKept, len(brokenAlarms), verdict(brokenKept == len(brokenAlarms)),
		hub2.metric(b, "citywatch_mqtt_rejects_total"), hub2.metric(b, `citywatch_mqtt_rejects_total{reason="unknown_device"}`))
	b.ReportMetric(known.Seconds(), "all-known-s")
	b.ReportMetric(rebuilt.Seconds(), "rebuilt-s")
	b.ReportMetric(live.Seconds(), "console-live-s")
	if kept != len(trails) {
		b.Errorf("%d of %d alarms kept their trail", kept, len(trails))
	}
	if brokenKept != len(brokenAlarms) {
		b.Errorf("%d of the %d broken cameras' alarms kept their trail", brokenKept, len(brokenAlarms))
	}
}

// awaitBroken waits until h shows each camera of broken offline with an
// open device_offline alarm of its own, and returns those alarms' ids.
// A count of open alarms would not do: other alarms (an agent slow to
// connect, a probe missed at start) may be open as well.
func awaitBroken(b *testing.B, h *hubProcess, broken []string) []string {
	b.Helper()
	query := "api/alarms?" + url.Values{"source": {string(alarm.SourceDeviceOffline)}, "device": broken}.Encode()
	var ids []string
	eventually(b, 2*time.Minute, func() error {
		var l alarmList
		if err := h.get(query, &l); err != nil {
			return err
		}
		open := map[string]string{}
		for _, a := range l.Alarms {
			if a.State.Active() {
				open[a.Device] = a.ID
			}
		}
		ids = ids[:0]
		for _, cam := range broken {
			var d struct{ Device fleet.Device }
			if err := h.get("api/devices/"+url.PathEscape(cam), &d); err != nil {
				return err
			}
			if d.Device.Status != wire.StatusOffline || open[cam] == "" {
				return fmt.Errorf("%d of %d broken cameras offline with an open alarm; %s is %s, its open alarm %q",
					len(ids), len(broken), cam, d.Device.Status, open[cam])
			}
			ids = append(ids, open[cam])
		}
		return nil
	})
	return ids
}

// alarmTransition is a trail entry as compared across a restart.
type alarmTransition struct {
	At     time.Time
	Action string
	Who    string
}

func alarmTrails(b *testing.B, h *hubProcess, l alarmList) map[string][]alarmTransition {
	out := map[string][]alarmTransition{}
	for _, a := range l.Alarms {
		var d alarmDetail
		if err := h.get("api/alarms/"+a.ID, &d); err != nil {
			b.Fatal(err)
		}
		for _, t := range d.History {
			out[a.ID] = append(out[a.ID], alarmTransition{At: t.At.UTC(), Action: string(t.Action), Who: t.Who})
		}
	}
	return out
}
