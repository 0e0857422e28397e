package sim

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/wire"
)

// Injector applies faults; *Sim is one.
type Injector interface {
	Fault(f Fault) error
}

// Step is one scripted fault, At after the start of each round.
type Step struct {
	At    time.Duration
	Fault Fault
}

// Script is a schedule of faults that keeps a demo console busy.
type Script struct {
	Steps []Step        // any order
	Loop  time.Duration // a round starts every Loop; 0 plays one round
}

// Run plays the script against inj until ctx ends (or, without Loop, until
// the round is over). A fault that fails is logged and skipped: one
// missing device must not stop the show.
func (sc Script) Run(ctx context.Context, inj Injector, logger *slog.Logger) error {
	steps := slices.SortedStableFunc(slices.Values(sc.Steps), func(a, b Step) int { return cmp.Compare(a.At, b.At) })
	if len(steps) == 0 {
		return nil
	}
	if last := steps[len(steps)-1].At; steps[0].At < 0 || (sc.Loop > 0 && last >= sc.Loop) {
		return fmt.Errorf("sim: script: steps must lie within [0, loop %v); the last is at %v", sc.Loop, last)
	}
	log := logger.With("component", "sim-script")
	start := time.Now()
	for round := 0; ; round++ {
		base := start.Add(time.Duration(round) * sc.Loop)
		for _, st := range steps {
			if !sleepUntil(ctx, base.Add(st.At)) {
				return nil
			}
			f := st.Fault
			if err := inj.Fault(f); err != nil {
				log.Warn("scripted fault failed", "err", err)
				continue
			}
			log.Info("scripted fault", "device", f.Device, "agent", f.Agent, "fault", f.Fault, "for", f.For)
		}
		if sc.Loop == 0 {
			return nil
		}
	}
}

// sleepUntil waits until t; it reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// DemoLoop is how often the demo script starts over.
const DemoLoop = 3 * time.Minute

// DemoDrift is how far the clock of the demo's drifted ONVIF camera runs
// ahead: past the 5 s the hub's default rules warn at.
const DemoDrift = 47 * time.Second

// DemoONVIF returns the demo's ONVIF cameras for city (Options.ONVIF): the
// second camera of every site that has two (the first ones take the
// script's RTSP faults), the first of them, drifted, with its clock
// DemoDrift ahead, the others on time. Drifted is "" when there are none.
func DemoONVIF(city City) (cameras map[string]time.Duration, drifted string) {
	ids := demoONVIF(city)
	cameras = make(map[string]time.Duration, len(ids))
	for _, id := range ids {
		cameras[id] = 0
	}
	if len(ids) > 0 {
		drifted = ids[0]
		cameras[drifted] = DemoDrift
	}
	return cameras, drifted
}

// demoONVIF lists the demo's ONVIF cameras in city order.
func demoONVIF(city City) []string {
	var ids []string
	for _, a := range city.Agents {
		if len(a.Cameras) > 1 {
			ids = append(ids, a.Cameras[1].ID)
		}
	}
	return ids
}

// DemoONVIFSteps are the demo script's steps for a Sim with the ONVIF
// cameras of DemoONVIF, to add to DemoScript's: motion from 0:20 to 0:35,
// tampering from 1:10 to 1:40 and motion from 2:00 to 2:10, each on
// another camera, the drifted one excepted when there are others (its
// clock is trouble enough).
func DemoONVIFSteps(city City) []Step {
	onvif := demoONVIF(city)
	if len(onvif) == 0 {
		return nil
	}
	const s = time.Second
	var steps []Step
	for i, ev := range []struct {
		fault    string
		from, to time.Duration
	}{
		{FaultMotion, 20 * s, 35 * s},
		{FaultTamper, 70 * s, 100 * s},
		{FaultMotion, 120 * s, 130 * s},
	} {
		id := onvif[min(1+i, len(onvif)-1)]
		steps = append(steps, Step{At: ev.from, Fault: Fault{Device: id, Fault: ev.fault}},
			Step{At: ev.to, Fault: Fault{Device: id, Fault: FaultRestore}})
	}
	return steps
}

// DemoScript returns the demo schedule for city, so that the console shows
// each kind of trouble within the first minute: an alarm at 0:05, a camera
// offline from 0:10 to 0:45, a sensor silent from 0:15 (supervision loss
// shows once its window passes) to 1:30, an agent gone from 0:25 to 0:55,
// then an auth failure, a hung camera, a lost stream and an alarm every
// 40 s. Sites 0–3 lose a camera, site 4 its agent, site 5 a sensor and
// alarms go off from site 6 on (in a city that small, anywhere), so one
// fault does not hide another behind an offline agent.
func DemoScript(city City) Script {
	var cams []string
	for _, a := range city.Agents {
		if len(a.Cameras) > 0 {
			cams = append(cams, a.Cameras[0].ID)
		}
	}
	silent := sensorsFrom(city, 5, func(config.Sensor) bool { return true })
	alarms := sensorsFrom(city, 6, func(s config.Sensor) bool {
		return (s.Kind == wire.SensorIntrusion || s.Kind == wire.SensorDoor) && (len(silent) == 0 || s.ID != silent[0])
	})

	sc := Script{Loop: DemoLoop}
	add := func(at time.Duration, f Fault) { sc.Steps = append(sc.Steps, Step{At: at, Fault: f}) }
	const s = time.Second
	for i, cf := range []struct {
		fault    string
		from, to time.Duration
	}{
		{FaultOffline, 10 * s, 45 * s},
		{FaultAuth, 40 * s, 100 * s},
		{FaultHang, 60 * s, 110 * s},
		{FaultNoStream, 140 * s, 170 * s},
	} {
		if i < len(cams) {
			add(cf.from, Fault{Device: cams[i], Fault: cf.fault})
			add(cf.to, Fault{Device: cams[i], Fault: FaultRecover})
		}
	}
	if n := len(city.Agents); n > 0 {
		add(25*s, Fault{Agent: city.Agents[4%n].ID, Fault: FaultDisconnect, For: 30 * s})
	}
	if len(silent) > 0 {
		add(15*s, Fault{Device: silent[0], Fault: FaultSupervisionLoss})
		add(90*s, Fault{Device: silent[0], Fault: FaultRecover})
	}
	for i := range 5 {
		if len(alarms) == 0 {
			break
		}
		id := alarms[i%len(alarms)]
		at := 5*s + time.Duration(i)*40*s
		add(at, Fault{Device: id, Fault: FaultTrigger})
		add(at+10*s, Fault{Device: id, Fault: FaultRestore})
	}
	return sc
}

// sensorsFrom returns the ids of the sensors that match, one per site,
// from site index first on; or from every site if that finds none.
func sensorsFrom(city City, first int, match func(config.Sensor) bool) []string {
	var ids []string
	for _, from := range []int{first, 0} {
		for _, a := range city.Agents[min(from, len(city.Agents)):] {
			if i := slices.IndexFunc(a.Sensors, match); i >= 0 {
				ids = append(ids, a.Sensors[i].ID)
			}
		}
		if len(ids) > 0 {
			break
		}
	}
	return ids
}
