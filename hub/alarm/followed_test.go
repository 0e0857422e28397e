package alarm

import (
	"slices"
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
	ch := fleet.Change{Kind: kind, To: st, At: h.now, Agent: &fleet.Agent{ID: id, PowerFeed: "feed-3", District: "north", Status: st, Since: h.now},
		Affected: []fleet.Device{{ID: "cam-" + id, Agent: id, Kind: wire.KindCamera, Criticality: 4}}}
	for _, e := range []*Engine{h.a, h.b} {
		if h.owners[id] == e {
			e.Observe(ch)
		} else {
			e.Follow(ch)
		}
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

	h.agent(fleet.ChangeAgent, "ag2", wire.StatusOnline)
	h.advance(61 * time.Second) // the feed's clear hold
	if got, want := activeKeys(h.a), []string{"agent_offline:agent/ag1"}; !slices.Equal(got, want) {
		t.Errorf("hub-a after ag2 came back: %v, want %v", got, want)
	}
	if got, want := activeKeys(h.b), []string{"agent_offline:agent/ag3"}; !slices.Equal(got, want) {
		t.Errorf("hub-b after ag2 came back: %v, want %v", got, want)
	}
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
