package alarm

import (
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

const rootRules = `
rules:
  - source: device_offline
    severity: major
    hold: 30s
    clear_hold: 60s
  - source: agent_offline
    severity: critical
    hold: 30s
    clear_hold: 60s
  - source: topology
    severity: critical
    clear_hold: 60s
  - source: power_feed
    severity: critical
    clear_hold: 60s
`

// site gives agent ag1 a switch with three cameras behind it, behind an
// uplink that also serves a working camera: the topmost node whose devices
// are all offline is the one that failed.
func (h *harness) site() {
	devs := []fleet.Device{{ID: "cam-up", Agent: "ag1", Kind: wire.KindCamera, Parent: "up-1", Criticality: 3}}
	for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
		devs = append(devs, fleet.Device{ID: id, Agent: "ag1", Kind: wire.KindCamera, Parent: "sw-3", Criticality: 3})
	}
	h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Agent: &fleet.Agent{ID: "ag1", Topology: []wire.Node{
		{ID: "up-1", Kind: wire.NodeUplink}, {ID: "sw-3", Kind: wire.NodeSwitch, Parent: "up-1"},
	}}, Affected: devs})
	h.device(fleet.Device{ID: "cam-up", Kind: wire.KindCamera, Status: wire.StatusOnline, Criticality: 3, Parent: "up-1"})
}

func (h *harness) cam(id string, st wire.Status) {
	h.device(fleet.Device{ID: id, Kind: wire.KindCamera, Status: st, Criticality: 3, Parent: "sw-3"})
}

// active returns the active alarms by key.
func (h *harness) active() map[string]Alarm {
	out := map[string]Alarm{}
	for _, a := range h.e.Alarms(Filter{States: []State{ActiveUnack, ActiveAck}}) {
		out[a.Key] = a
	}
	return out
}

func keys(m map[string]Alarm) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestRootCauseSwitch(t *testing.T) {
	const sw = "topology:node/ag1/sw-3"
	tests := []struct {
		name    string
		offline []string
		want    []string
	}{
		{"whole switch", []string{"cam-1", "cam-2", "cam-3"}, []string{sw}},
		{"whole site", []string{"cam-1", "cam-2", "cam-3", "cam-up"}, []string{"topology:node/ag1/up-1"}},
		{"partial failure", []string{"cam-1", "cam-2"}, []string{"device_offline:device/cam-1", "device_offline:device/cam-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, rootRules)
			h.site()
			for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
				h.cam(id, wire.StatusOnline)
			}
			for _, id := range tt.offline {
				h.cam(id, wire.StatusOffline)
			}
			h.advance(29 * time.Second)
			if got := h.active(); len(got) != 0 {
				t.Fatalf("alarms before the hold: %v", keys(got))
			}
			h.advance(time.Second)
			if got := keys(h.active()); !slices.Equal(got, tt.want) {
				t.Fatalf("active alarms %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRootCauseRecovery(t *testing.T) {
	h := newHarness(t, rootRules)
	h.site()
	for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
		h.cam(id, wire.StatusOffline)
	}
	h.advance(30 * time.Second)
	root, ok := h.active()["topology:node/ag1/sw-3"]
	if !ok {
		t.Fatalf("no switch alarm: %v", keys(h.active()))
	}
	if w := map[string]string{"node": "sw-3", "name": "", "kind": "switch", "devices": "3"}; !reflect.DeepEqual(root.Args, w) {
		t.Errorf("args %v, want %v", root.Args, w)
	}
	if root.Type != "switch_down" || root.Detail != "Switch sw-3 down — 3 devices offline" {
		t.Errorf("type %q detail %q", root.Type, root.Detail)
	}
	kids := h.e.Children(root.ID)
	if len(kids) != 3 {
		t.Fatalf("children %+v, want 3", kids)
	}
	for _, k := range kids {
		if k.Status != ChildSuppressed || k.ID != "" || k.Source != SourceDeviceOffline {
			t.Errorf("child %+v, want suppressed without an alarm", k)
		}
	}

	// One camera back: the switch works, the other two raise at once.
	h.cam("cam-1", wire.StatusOnline)
	want := []string{"device_offline:device/cam-2", "device_offline:device/cam-3", "topology:node/ag1/sw-3"}
	if got := keys(h.active()); !slices.Equal(got, want) {
		t.Fatalf("after recovery %v, want %v", got, want)
	}
	h.advance(60 * time.Second) // clear_hold
	want = want[:2]
	if got := keys(h.active()); !slices.Equal(got, want) {
		t.Fatalf("after clear_hold %v, want %v", got, want)
	}
	statuses := map[string]ChildStatus{}
	for _, k := range h.e.Children(root.ID) {
		statuses[k.Device] = k.Status
		if k.Status == ChildAlarm && k.ID == "" {
			t.Errorf("child %s in alarm without its id", k.Device)
		}
	}
	if statuses["cam-1"] != ChildRecovered || statuses["cam-2"] != ChildAlarm || statuses["cam-3"] != ChildAlarm {
		t.Errorf("children after recovery: %v", statuses)
	}
}

func TestRootCausePowerFeed(t *testing.T) {
	tests := []struct {
		name   string
		agents []string // all on feed-3
		want   []string
	}{
		{"district power cut", []string{"ag1", "ag2", "ag3"}, []string{"power_feed:feed/feed-3"}},
		{"one agent is no power cut", []string{"ag1"}, []string{"agent_offline:agent/ag1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, rootRules)
			for _, id := range tt.agents {
				h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Agent: &fleet.Agent{ID: id, PowerFeed: "feed-3"}})
			}
			for _, id := range tt.agents {
				h.e.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOffline,
					Agent: &fleet.Agent{ID: id, PowerFeed: "feed-3", Status: wire.StatusOffline}})
			}
			h.advance(30 * time.Second)
			got := h.active()
			if !slices.Equal(keys(got), tt.want) {
				t.Fatalf("active alarms %v, want %v", keys(got), tt.want)
			}
			if a, ok := got["power_feed:feed/feed-3"]; ok {
				if w := map[string]string{"feed": "feed-3", "sites": strconv.Itoa(len(tt.agents))}; !reflect.DeepEqual(a.Args, w) {
					t.Errorf("args %v, want %v", a.Args, w)
				}
				if n := len(h.e.Children(a.ID)); n != len(tt.agents) {
					t.Errorf("%d children, want %d", n, len(tt.agents))
				}
				// One site back: the feed is up, the others are lost on their own.
				h.e.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOnline,
					Agent: &fleet.Agent{ID: "ag1", PowerFeed: "feed-3", Status: wire.StatusOnline}})
				want := []string{"agent_offline:agent/ag2", "agent_offline:agent/ag3", "power_feed:feed/feed-3"}
				if got := keys(h.active()); !slices.Equal(got, want) {
					t.Errorf("after one site returned %v, want %v", got, want)
				}
			}
		})
	}
}

// Devices a switch alarm explains raise their own alarms at once when
// nothing explains them any more: their site lost its topology, or they
// moved to a site without one.
func TestRootCauseReleased(t *testing.T) {
	offline := func(id, agent string) fleet.Device {
		return fleet.Device{ID: id, Agent: agent, Kind: wire.KindCamera, Status: wire.StatusOffline, Criticality: 3}
	}
	tests := []struct {
		name    string
		release func(h *harness)
	}{
		{"topology removed", func(h *harness) {
			h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Agent: &fleet.Agent{ID: "ag1"},
				Affected: []fleet.Device{offline("cam-1", "ag1"), offline("cam-2", "ag1"), offline("cam-3", "ag1")}})
		}},
		{"moved to a site without topology", func(h *harness) {
			// ag2 is evaluated, with nothing to release, before the
			// cameras join it.
			h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Agent: &fleet.Agent{ID: "ag2"},
				Affected: []fleet.Device{{ID: "cam-9", Agent: "ag2", Kind: wire.KindCamera, Status: wire.StatusOnline}}})
			h.device(fleet.Device{ID: "cam-9", Agent: "ag2", Kind: wire.KindCamera, Status: wire.StatusOnline})
			h.e.Observe(fleet.Change{Kind: fleet.ChangeInventory, Agent: &fleet.Agent{ID: "ag2"},
				Affected: []fleet.Device{offline("cam-1", "ag2"), offline("cam-2", "ag2"), offline("cam-3", "ag2")}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, rootRules)
			h.site()
			for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
				h.cam(id, wire.StatusOffline)
			}
			h.advance(30 * time.Second)
			if got, want := keys(h.active()), []string{"topology:node/ag1/sw-3"}; !slices.Equal(got, want) {
				t.Fatalf("active alarms %v, want %v", got, want)
			}
			tt.release(h)
			want := []string{"device_offline:device/cam-1", "device_offline:device/cam-2", "device_offline:device/cam-3"}
			for _, k := range want {
				if _, ok := h.active()[k]; !ok {
					t.Errorf("%s not raised once released: %v", k, keys(h.active()))
				}
			}
		})
	}
}

// A device's alarm raised while its siblings behind the switch were
// failing too (their holds ended after its own) is folded under the
// switch's alarm, and raised again at once if the device still fails when
// the switch is back.
func TestRootCauseFoldsAlarmRaisedBefore(t *testing.T) {
	const sw = "topology:node/ag1/sw-3"
	h := newHarness(t, rootRules)
	h.site()
	h.cam("cam-1", wire.StatusOffline)
	h.advance(10 * time.Second)
	h.cam("cam-2", wire.StatusOffline)
	h.cam("cam-3", wire.StatusOffline)
	h.advance(20 * time.Second)
	cam1, ok := h.active()["device_offline:device/cam-1"]
	if !ok {
		t.Fatalf("cam-1 not raised after its hold: %v", keys(h.active()))
	}
	h.advance(10 * time.Second)
	root, ok := h.active()[sw]
	if got := keys(h.active()); !ok || len(got) != 1 {
		t.Fatalf("active alarms %v, want the switch's alone", got)
	}
	a, trail, _ := h.e.Alarm(cam1.ID)
	if last := trail[len(trail)-1]; a.State != ClearedUnack || last.Action != ActAutoClear || last.Note != "explained by "+sw+" ("+root.ID+")" {
		t.Errorf("cam-1's alarm is %s after %s %q; want it folded under %s", a.State, last.Action, last.Note, root.ID)
	}
	for _, k := range h.e.Children(root.ID) {
		if k.Status != ChildSuppressed || k.ID != "" {
			t.Errorf("child %+v, want suppressed without an alarm", k)
		}
	}

	h.cam("cam-3", wire.StatusOnline)
	a, _, _ = h.e.Alarm(cam1.ID)
	if _, ok := h.active()["device_offline:device/cam-2"]; !ok || a.State != ActiveUnack || a.Count != 2 {
		t.Errorf("switch back: cam-1's alarm %s (count %d), active %v; want cam-1's raised again and cam-2's", a.State, a.Count, keys(h.active()))
	}
}
