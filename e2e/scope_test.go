package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/wire"
)

// district is what a test knows of one district of the city.
type district struct {
	name    string
	devices map[string]bool
	cameras []string
	sensor  string // one of its sensors
}

func districtOf(s *stack, name string) district {
	d := district{name: name, devices: map[string]bool{}}
	for _, a := range s.sim.City().Agents {
		if a.Site.District != name {
			continue
		}
		for _, id := range s.devicesOf(a.ID) {
			d.devices[id] = true
		}
		for _, c := range a.Cameras {
			d.cameras = append(d.cameras, c.ID)
		}
		for _, x := range a.Sensors {
			d.sensor = x.ID
		}
	}
	return d
}

// An operator who may see one district, signed in with a password, sees
// that district and nothing else — in the device list, the agents, the
// alarms, the summary and the event stream — while cameras fail in two
// districts, and cannot watch the other district's cameras.
func TestScopedOperatorSeesOnlyTheirDistrict(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, live: true, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	districts := s.sim.City().Districts
	mine, theirs := districtOf(s, districts[0].Name), districtOf(s, districts[1].Name)
	if len(mine.cameras) < 2 || len(theirs.cameras) < 2 || mine.sensor == "" {
		t.Fatalf("districts with cameras %v and %v, sensor %q: want two cameras each and a sensor", mine.cameras, theirs.cameras, mine.sensor)
	}
	op := signIn(t, s.hub, identity.AccountSpec{Name: "olga", Role: auth.Operator, Scope: auth.Scope{Districts: []string{mine.name}}})
	opEvents, allEvents := op.events(t), s.api.events(t)

	broken := map[string]string{mine.name: mine.cameras[0], theirs.name: theirs.cameras[0]}
	for _, cam := range broken {
		if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
			t.Fatal(err)
		}
	}
	// Both, in whichever order they come.
	offline := map[string]bool{}
	allEvents.await(t, 30*time.Second, "both cameras offline on the whole city's stream", func(c fleet.Change) bool {
		if c.Kind == fleet.ChangeDevice && c.To == wire.StatusOffline {
			offline[c.Device.ID] = true
		}
		return offline[broken[mine.name]] && offline[broken[theirs.name]]
	})
	var all console.AlarmList
	alarmOf := map[string]string{} // camera → alarm id
	eventually(t, 30*time.Second, func() error {
		s.api.getJSON(t, "api/alarms", &all)
		for _, a := range all.Alarms {
			alarmOf[a.Device] = a.ID
		}
		if alarmOf[broken[mine.name]] == "" || alarmOf[broken[theirs.name]] == "" {
			return fmt.Errorf("alarms %v", alarmOf)
		}
		return nil
	})

	var devices console.DeviceList
	op.getJSON(t, "api/devices", &devices)
	for _, d := range devices.Devices {
		if d.District != mine.name {
			t.Errorf("the operator of %s is shown %s of %s", mine.name, d.ID, d.District)
		}
	}
	if len(devices.Devices) != len(mine.devices) || devices.Total != len(mine.devices) {
		t.Errorf("the operator is shown %d of %d devices, want the %d of %s", len(devices.Devices), devices.Total, len(mine.devices), mine.name)
	}
	var agents console.AgentList
	op.getJSON(t, "api/agents", &agents)
	for _, a := range agents.Agents {
		if a.District != mine.name {
			t.Errorf("the operator of %s is shown agent %s of %s", mine.name, a.ID, a.District)
		}
	}
	var sum fleet.Summary
	op.getJSON(t, "api/summary", &sum)
	if sum.Devices != len(mine.devices) || sum.ByStatus[wire.StatusOffline] != 1 {
		t.Errorf("the operator's summary: %d devices, %v; want %d with one offline", sum.Devices, sum.ByStatus, len(mine.devices))
	}
	var alarms console.AlarmList
	op.getJSON(t, "api/alarms", &alarms)
	for _, a := range alarms.Alarms {
		if a.District != mine.name {
			t.Errorf("the operator of %s is shown alarm %s of %s", mine.name, a.ID, a.District)
		}
	}
	if alarms.Total != 1 || len(alarms.Alarms) != 1 || alarms.Alarms[0].ID != alarmOf[broken[mine.name]] {
		t.Errorf("the operator's alarms: %+v; want only %s", alarms.Alarms, alarmOf[broken[mine.name]])
	}
	for _, path := range []string{"api/devices/" + broken[theirs.name], "api/alarms/" + alarmOf[broken[theirs.name]]} {
		if code, body := op.call(t, http.MethodGet, path, ""); code != http.StatusNotFound {
			t.Errorf("GET %s as the operator of %s: %d %s, want 404", path, mine.name, code, body)
		}
	}

	// Video: their own district's camera plays; the other's does not exist
	// for them.
	p := playWHEP(t, op, mine.cameras[1])
	p.awaitFrames(t, 10, 20*time.Second)
	p.stop(t)
	pc, offer := whepOffer(t, newWHEPAPI(t, true))
	defer pc.Close()
	if code, body, _ := postWHEP(t, op, theirs.cameras[1], "application/sdp", offer); code != http.StatusNotFound {
		t.Errorf("WHEP for %s of %s as the operator of %s: %d %s, want 404", theirs.cameras[1], theirs.name, mine.name, code, body)
	}

	// The stream: both failures came before this trigger, so once the
	// operator has it, every change they were sent is in.
	if err := s.sim.Fault(sim.Fault{Device: mine.sensor, Fault: sim.FaultTrigger}); err != nil {
		t.Fatal(err)
	}
	sawOwn := false
	opEvents.await(t, 30*time.Second, mine.sensor+" triggered on the operator's stream", func(c fleet.Change) bool {
		for _, id := range changedDevices(c) {
			if !mine.devices[id] {
				t.Errorf("the operator of %s was sent a change of %s: %s", mine.name, id, describe(c))
			}
		}
		if c.Kind == fleet.ChangeDevice && c.Device.ID == broken[mine.name] && c.To == wire.StatusOffline {
			sawOwn = true
		}
		return c.Kind == fleet.ChangeTrigger && c.Device.ID == mine.sensor && c.Device.Triggered
	})
	if !sawOwn {
		t.Errorf("the operator's stream missed %s going offline", broken[mine.name])
	}
}

// changedDevices lists the devices a change is about.
func changedDevices(c fleet.Change) []string {
	var ids []string
	if c.Device != nil {
		ids = append(ids, c.Device.ID)
	}
	for _, d := range c.Affected {
		ids = append(ids, d.ID)
	}
	ids = append(ids, c.Removed...)
	return ids
}
