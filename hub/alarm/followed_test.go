package alarm

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// twoHubs are the engines of two hubs of a cluster over one power feed,
// feed-3: hub-a owns ag1 and judges the feed, hub-b owns ag2 and ag3.
type twoHubs struct {
	t      *testing.T
	now    time.Time
	a, b   *Engine
	owners map[string]*Engine // agent → the engine that owns it
}

const feedKey = "power_feed:feed/feed-3"

func newTwoHubs(t *testing.T) *twoHubs {
	rs, err := ParseRules([]byte(rootRules))
	if err != nil {
		t.Fatal(err)
	}
	h := &twoHubs{t: t, now: t0}
	clock := func() time.Time { return h.now }
	h.a = New(rs, Options{Now: clock, IDPrefix: "Ahub-a-", Judges: func(k string) bool { return k == feedKey }})
	h.b = New(rs, Options{Now: clock, IDPrefix: "Ahub-b-", Judges: func(k string) bool { return k != feedKey }})
	h.owners = map[string]*Engine{"ag1": h.a, "ag2": h.b, "ag3": h.b}
	for id := range h.owners {
		h.agent(fleet.ChangeInventory, id, wire.StatusOnline)
	}
	return h
}

// agent hands a change of agent id to its owner's engine, and to the
// other's as a followed agent, as the hubs' apps do.
func (h *twoHubs) agent(kind fleet.ChangeKind, id string, st wire.Status) {
	for _, e := range []*Engine{h.a, h.b} {
		h.send(e, kind, id, st, h.now)
	}
}

// send hands engine e a change of agent id that took place at since: to
// its owner's engine to observe, to the other's to follow (which may
// learn of it later, through the cluster's records).
func (h *twoHubs) send(e *Engine, kind fleet.ChangeKind, id string, st wire.Status, since time.Time) {
	ch := fleet.Change{Kind: kind, To: st, At: h.now, Agent: &fleet.Agent{ID: id, PowerFeed: "feed-3", District: "north", Status: st, Since: since},
		Affected: []fleet.Device{{ID: "cam-" + id, Agent: id, Kind: wire.KindCamera, Criticality: 4}}}
	if h.owners[id] == e {
		e.Observe(ch)
	} else {
		e.Follow(ch)
	}
}

// ag2Back brings ag2's site back once the feed is down and checks that
// what still fails is raised again, each by its own hub: ag1 on hub-a,
// ag3 on hub-b.
func (h *twoHubs) ag2Back(t *testing.T) {
	t.Helper()
	h.agent(fleet.ChangeAgent, "ag2", wire.StatusOnline)
	h.advance(61 * time.Second) // the feed's clear hold
	if got, want := activeKeys(h.a), []string{"agent_offline:agent/ag1"}; !slices.Equal(got, want) {
		t.Errorf("hub-a after ag2 came back: %v, want %v", got, want)
	}
	if got, want := activeKeys(h.b), []string{"agent_offline:agent/ag3"}; !slices.Equal(got, want) {
		t.Errorf("hub-b after ag2 came back: %v, want %v", got, want)
	}
}

func (h *twoHubs) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.a.Tick(h.now)
	h.b.Tick(h.now)
}

func activeKeys(e *Engine) []string {
	var out []string
	for _, a := range e.Alarms(Filter{States: []State{ActiveUnack, ActiveAck}}) {
		out = append(out, a.Key)
	}
	slices.Sort(out)
	return out
}

// A power cut takes down the three sites of a feed whose agents two hubs
// own: the hub that judges the feed raises its one alarm, listing all
// three sites, and neither hub raises the sites' own alarms. (Each hub
// judging only its own agents raised agent_offline for ag1 on hub-a and a
// feed alarm of two sites on hub-b.) One site back: the feed alarm
// clears, and each hub raises the alarms of its own sites still down.
func TestPowerFeedAcrossHubs(t *testing.T) {
	h := newTwoHubs(t)
	for _, id := range []string{"ag1", "ag2", "ag3"} {
		h.agent(fleet.ChangeAgent, id, wire.StatusOffline)
	}
	h.advance(31 * time.Second)
	if got := activeKeys(h.a); !slices.Equal(got, []string{feedKey}) {
		t.Fatalf("hub-a's active alarms %v, want the feed's alone", got)
	}
	if got := activeKeys(h.b); len(got) != 0 {
		t.Fatalf("hub-b raised %v; the feed is hub-a's to judge and explains its sites", got)
	}
	feed := h.a.Alarms(Filter{States: []State{ActiveUnack}})[0]
	if feed.Args["sites"] != "3" || feed.District != "north" || feed.Criticality != 4 {
		t.Errorf("feed alarm %+v: want 3 sites of north, criticality 4", feed)
	}
	kids := h.a.Children(feed.ID)
	var agents []string
	for _, k := range kids {
		if k.Status != ChildSuppressed {
			t.Errorf("child %+v: want suppressed", k)
		}
		agents = append(agents, k.Agent)
	}
	if !slices.Equal(agents, []string{"ag1", "ag2", "ag3"}) {
		t.Errorf("children %v, want the three sites", agents)
	}

	h.ag2Back(t)
}

// When hub-a hands ag1 over to hub-b, it still judges the feed, now from
// three followed sites: the feed alarm stays, and hub-b holds ag1 back as
// explained by it.
func TestPowerFeedAgentHandedOver(t *testing.T) {
	h := newTwoHubs(t)
	for _, id := range []string{"ag1", "ag2", "ag3"} {
		h.agent(fleet.ChangeAgent, id, wire.StatusOffline)
	}
	h.advance(31 * time.Second)
	released, _ := h.a.Release(func(k string) bool { return k != "ag1" })
	if len(released) != 0 {
		t.Fatalf("released %v; ag1 had no alarm of its own", released)
	}
	h.owners["ag1"] = h.b
	h.b.Observe(fleet.Change{Kind: fleet.ChangeAgent, To: wire.StatusOffline, At: h.now,
		Agent: &fleet.Agent{ID: "ag1", PowerFeed: "feed-3", District: "north", Status: wire.StatusOffline, Since: t0}})
	h.advance(61 * time.Second)
	if got := activeKeys(h.a); !slices.Equal(got, []string{feedKey}) {
		t.Errorf("hub-a's active alarms %v, want the feed's alone", got)
	}
	if got := activeKeys(h.b); len(got) != 0 {
		t.Errorf("hub-b raised %v", got)
	}
}

// An agent's alarm raised shortly before the feed's alarm that explains
// it is folded under it once its hub knows the feed is down, whichever hub
// judges the feed and in whatever order the hub learns of the sites: its
// siblings went offline before it was raised, but their holds ended after
// its own, or the other hub's records of them came through the cluster
// after it. (Folding was only done before an agent's alarm was raised, so
// it stayed beside the feed's for as long as the cut lasted.) An alarm
// raised before its siblings failed is a failure of its own and stays.
func TestPowerFeedFoldsAlarmRaisedBefore(t *testing.T) {
	type offline struct {
		agent string
		at    time.Duration // after t0
		late  time.Duration // how much later the other hub learns of it
	}
	tests := []struct {
		name    string
		offline []offline
		folded  map[string]bool // agent → its alarm was raised and folded
		stays   string          // an agent whose alarm stays raised beside the feed's
	}{
		{"the judge learns of the other hub's sites late", []offline{{"ag1", 0, 0}, {"ag2", 0, 40 * time.Second}, {"ag3", 0, 40 * time.Second}},
			map[string]bool{"ag1": true}, ""},
		{"the other hub learns of the judge's site late", []offline{{"ag1", 0, 40 * time.Second}, {"ag2", 0, 0}, {"ag3", 0, 0}},
			map[string]bool{"ag2": true, "ag3": true}, ""},
		{"the siblings' holds end later", []offline{{"ag1", 0, 0}, {"ag2", 10 * time.Second, 0}, {"ag3", 10 * time.Second, 0}},
			map[string]bool{"ag1": true}, ""},
		{"both, on both hubs", []offline{{"ag1", 0, 35 * time.Second}, {"ag2", 2 * time.Second, 33 * time.Second}, {"ag3", 4 * time.Second, 0}},
			map[string]bool{"ag1": true, "ag2": true, "ag3": true}, ""},
		{"raised before its siblings failed", []offline{{"ag1", 0, 0}, {"ag2", 35 * time.Second, 0}, {"ag3", 35 * time.Second, 0}},
			nil, "ag1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTwoHubs(t)
			for s := time.Duration(0); s <= 80*time.Second; s += time.Second {
				if s > 0 {
					h.advance(time.Second)
				}
				for _, o := range tt.offline {
					for _, e := range []*Engine{h.a, h.b} {
						at := o.at
						if h.owners[o.agent] != e {
							at += o.late
						}
						if at == s {
							h.send(e, fleet.ChangeAgent, o.agent, wire.StatusOffline, t0.Add(o.at))
						}
					}
				}
			}

			want := []string{feedKey}
			if tt.stays != "" {
				want = append([]string{"agent_offline:agent/" + tt.stays}, want...)
			}
			if got := activeKeys(h.a); !slices.Equal(got, want) {
				t.Fatalf("hub-a's active alarms %v, want %v", got, want)
			}
			if got := activeKeys(h.b); len(got) != 0 {
				t.Fatalf("hub-b's active alarms %v; the feed explains its sites", got)
			}
			feed := h.a.Alarms(Filter{Source: SourcePowerFeed})[0]
			unseen := maps.Clone(tt.folded)
			for _, e := range []*Engine{h.a, h.b} {
				for _, a := range e.Alarms(Filter{Source: SourceAgentOffline, States: States}) {
					_, trail, _ := e.Alarm(a.ID)
					last := trail[len(trail)-1]
					switch {
					case a.Agent == tt.stays:
					case !tt.folded[a.Agent]:
						t.Errorf("%s's alarm %s raised; the feed explained it before its hold ended", a.Agent, a.ID)
					case a.State != ClearedUnack || last.Action != ActAutoClear || !strings.HasPrefix(last.Note, "explained by "+feedKey):
						t.Errorf("%s's alarm %s is %s (%s %q); want it folded under %s", a.Agent, a.ID, a.State, last.Action, last.Note, feed.ID)
					}
					delete(unseen, a.Agent)
				}
			}
			if len(unseen) > 0 {
				t.Errorf("no alarm of %v raised: the case does not test folding", slices.Sorted(maps.Keys(unseen)))
			}
			for _, k := range h.a.Children(feed.ID) {
				switch {
				case k.Agent == tt.stays && (k.Status != ChildAlarm || k.ID == ""):
					t.Errorf("child %+v: want its own alarm", k)
				case k.Agent != tt.stays && k.Status != ChildSuppressed:
					t.Errorf("child %+v: want suppressed", k)
				}
			}

			h.ag2Back(t)
		})
	}
}
