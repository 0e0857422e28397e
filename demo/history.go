package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	agentconfig "github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// seededDays is how much simulated history the demo starts with, so the
// coverage ledger and the availability reports have something to say.
const seededDays = 7

// writeMap writes the city's districts and areas of interest as the GeoJSON
// files the hub's map and coverage read, and returns their paths.
func writeMap(city sim.City, dir string) (districts, areas string, err error) {
	d, a, err := city.GeoJSON()
	if err != nil {
		return "", "", err
	}
	districts, areas = filepath.Join(dir, "districts.geojson"), filepath.Join(dir, "areas.geojson")
	if err := os.WriteFile(districts, d, 0o600); err != nil {
		return "", "", err
	}
	return districts, areas, os.WriteFile(areas, a, 0o600)
}

// plannedWork is a maintenance window in the seeded week: the first site's
// devices were switched off for a pole replacement, approved by a named
// supervisor, so the ledger shows maintenance apart from outages.
func plannedWork(city sim.City, end time.Time) config.Maintenance {
	day := end.Add(-3 * 24 * time.Hour).Truncate(time.Hour)
	return config.Maintenance{Name: "Pole replacement (simulated)", ApprovedBy: "supervisor Chen, change 2026-118",
		Sites: []string{city.Agents[0].Site.ID}, From: day.Add(-4 * time.Hour), To: day}
}

// simulatedWeek invents seededDays of device history ending at end: every
// device known from the start; cameras and sensors failing now and then
// (a camera or two per site down for hours — the coverage the ledger counts),
// some sites losing their uplink (every device unreachable at once), low
// frame rates; the planned work's devices offline during its window.
// Deterministic for a seed. Every transition is marked simulated when
// written.
func simulatedWeek(city sim.City, end time.Time, seed uint64, work config.Maintenance) []fleet.DeviceTransition {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	start := end.Add(-seededDays * 24 * time.Hour)
	var out []fleet.DeviceTransition
	for _, a := range city.Agents {
		devs := devicesOf(a)
		for _, d := range devs {
			out = append(out, fleet.DeviceTransition{Device: d, Transition: fleet.Transition{
				At: start, From: wire.StatusUnknown, To: wire.StatusOnline, Cause: fleet.CauseDevice}})
		}
		// Site uplink lost: about one site in four, once, for up to 3 h.
		if rng.IntN(4) == 0 {
			at := start.Add(time.Duration(rng.Int64N(int64(seededDays * 24 * time.Hour))))
			out = append(out, outage(devs, at, time.Duration(20+rng.IntN(160))*time.Minute, end,
				wire.StatusUnreachable, string(wire.ReasonAgentOffline), fleet.CauseAgent)...)
		}
		for _, d := range devs {
			// Cameras fail more than sensors, and some cameras a lot.
			n := rng.IntN(3)
			if d.Kind == wire.KindCamera && rng.IntN(5) == 0 {
				n += 3
			}
			for range n {
				at := start.Add(time.Duration(rng.Int64N(int64(seededDays * 24 * time.Hour))))
				dur := time.Duration(5+rng.IntN(8*60)) * time.Minute
				status, reason := wire.StatusOffline, []wire.Reason{wire.ReasonUnreachable, wire.ReasonRefused, wire.ReasonTimeout}[rng.IntN(3)]
				if d.Kind == wire.KindCamera && rng.IntN(4) == 0 {
					status, reason = wire.StatusDegraded, wire.ReasonLowFrameRate
				}
				if d.Kind == wire.KindSensor {
					reason = wire.ReasonSupervisionLost
				}
				out = append(out, outage([]*fleet.Device{d}, at, dur, end, status, string(reason), fleet.CauseDevice)...)
			}
		}
		if a.Site.ID == work.Sites[0] {
			out = append(out, outage(devs, work.From, work.To.Sub(work.From), end, wire.StatusOffline, "planned work", fleet.CauseDevice)...)
		}
	}
	// Overlapping outages of one device are flattened: the latest word on
	// a device at any moment is the one written last for that moment.
	slices.SortStableFunc(out, func(x, y fleet.DeviceTransition) int { return x.At.Compare(y.At) })
	return flatten(out)
}

// outage takes devices down at at for dur (cut at end) and back up.
func outage(devs []*fleet.Device, at time.Time, dur time.Duration, end time.Time, status wire.Status, reason, cause string) []fleet.DeviceTransition {
	back := at.Add(dur)
	var out []fleet.DeviceTransition
	for _, d := range devs {
		out = append(out, fleet.DeviceTransition{Device: d, Transition: fleet.Transition{At: at, From: wire.StatusOnline, To: status, Reason: reason, Cause: cause}})
		if back.Before(end) {
			out = append(out, fleet.DeviceTransition{Device: d, Transition: fleet.Transition{At: back, From: status, To: wire.StatusOnline, Cause: cause}})
		}
	}
	return out
}

// flatten turns time-ordered, possibly overlapping outages into one clean
// timeline per device: a device down is not taken down again, and comes
// back only when its last overlapping outage ends.
func flatten(ts []fleet.DeviceTransition) []fleet.DeviceTransition {
	type st struct {
		down   int // outages in progress
		status wire.Status
	}
	cur := map[string]*st{}
	var out []fleet.DeviceTransition
	for _, t := range ts {
		s := cur[t.Device.ID]
		if s == nil {
			s = &st{status: wire.StatusUnknown}
			cur[t.Device.ID] = s
		}
		switch {
		case t.From == wire.StatusUnknown: // first sight
		case t.To != wire.StatusOnline:
			s.down++
			if s.down > 1 {
				continue
			}
		default:
			s.down--
			if s.down > 0 {
				continue
			}
		}
		t.From = s.status
		s.status = t.To
		out = append(out, t)
	}
	return out
}

// devicesOf is the hub's view of an agent's devices as its inventory
// describes them.
func devicesOf(a agentconfig.Config) []*fleet.Device {
	var out []*fleet.Device
	for _, c := range a.Cameras {
		out = append(out, &fleet.Device{ID: c.ID, Name: c.Name, Kind: wire.KindCamera, Agent: a.ID, Site: a.Site.ID,
			SiteName: a.Site.Name, District: c.District, Location: c.Location, Criticality: c.Criticality, Vendor: c.Vendor,
			Camera: &wire.CameraInfo{Heading: c.Heading, FOV: c.FOV, Range: c.RangeM}})
	}
	for _, s := range a.Sensors {
		out = append(out, &fleet.Device{ID: s.ID, Name: s.Name, Kind: wire.KindSensor, SensorKind: s.Kind, Agent: a.ID,
			Site: a.Site.ID, SiteName: a.Site.Name, District: s.District, Location: s.Location, Criticality: s.Criticality, Vendor: s.Vendor})
	}
	return out
}
