package e2e

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/history"
	"github.com/citywatch/citywatch/internal/testenv"
)

// feedRules hold an agent's alarm for a few seconds, so that the sites of
// a feed all going down together are one power cut, not one alarm each.
const feedRules = `
rules:
  - source: agent_offline
    severity: critical
    hold: 5s
    clear_hold: 1s
  - source: power_feed
    severity: critical
    clear_hold: 1s
`

// A power cut across two hubs: the six sites of a district hang off one
// mains feed and their agents are split between the hubs. When all six go
// offline both consoles show one power_feed alarm of six sites, raised by
// the hub that owns the feed's key, and no agent_offline alarm of them
// (each hub judging its own agents raised one hub's sites alone, or their
// agent alarms). When one site comes back the feed's alarm clears and the
// other five sites' alarms are raised, each by the hub that owns it.
func TestClusterPowerFeedAcrossHubs(t *testing.T) {
	const partitions = 16
	srv := testenv.NATS(t)
	pg := testenv.Postgres(t)
	hubA := clusterHubRules(t, srv.URL(), srv.MQTTURL(), "hub-a", 1, pg, nil, feedRules, "")
	hubB := clusterHubRules(t, srv.URL(), srv.MQTTURL(), "hub-b", 1, pg, hubA, feedRules, "")
	hubs := map[string]*hubProcess{"hub-a": hubA, "hub-b": hubB}
	world, all, _ := runCityOf(t, sim.Options{BrokerURL: srv.MQTTURL(), Interval: time.Second,
		City: sim.CityOptions{Seed: 11, Districts: 2, Sites: 12, Devices: 60, PowerFeeds: true}})

	// A hub judges a feed only once it has owned the feed's partition for
	// 15 s (app.takeOverGrace): wait until the partitions have stayed
	// where they are for longer than that, or a cut just after a hand-over
	// is judged agent by agent.
	ownerOf := map[int]string{}
	var stable time.Time
	eventually(t, 90*time.Second, func() error {
		if err := allOnline(all, hubA, hubB); err != nil {
			return err
		}
		owned, err := ownedOnce(hubs, partitions)
		if err != nil {
			return err
		}
		now := map[int]string{}
		for name, ps := range owned {
			for p := range ps {
				now[p] = name
			}
		}
		if !maps.Equal(now, ownerOf) {
			ownerOf, stable = now, time.Now()
		}
		if held := time.Since(stable); held < 17*time.Second {
			return fmt.Errorf("partitions where they are for %v", held.Round(time.Second))
		}
		return nil
	})
	// The feed whose sites both hubs own.
	feeds := map[string][]string{} // feed → its agents
	for _, a := range world.City().Agents {
		feeds[a.Site.PowerFeed] = append(feeds[a.Site.PowerFeed], a.ID)
	}
	var feed string
	for f, agents := range feeds {
		owners := map[string]bool{}
		for _, a := range agents {
			owners[ownerOf[cluster.Partition(a, partitions)]] = true
		}
		if len(owners) == 2 {
			feed = f
		}
	}
	if feed == "" {
		t.Fatalf("no feed has sites of both hubs: %v, partitions %v", feeds, ownerOf)
	}
	agents := feeds[feed]
	key := "power_feed:feed/" + feed
	judge := ownerOf[cluster.Partition(key, partitions)]
	t.Logf("feed %s: agents %v; %s judges it", feed, agents, judge)

	for _, a := range agents {
		if err := world.Fault(sim.Fault{Agent: a, Fault: sim.FaultDisconnect, For: 5 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	var feedAlarm alarm.Alarm
	eventually(t, 60*time.Second, func() error {
		for name, h := range hubs {
			fa, agentAlarms, err := feedAlarms(h, agents)
			if err != nil {
				return err
			}
			if len(fa) != 1 || len(agentAlarms) != 0 {
				return fmt.Errorf("%s shows %d feed alarms %v and agent alarms %v; want the feed's one alone", name, len(fa), fa, agentAlarms)
			}
			feedAlarm = fa[0]
		}
		return nil
	})
	if feedAlarm.Key != key || feedAlarm.Args["sites"] != "6" || !strings.HasPrefix(feedAlarm.ID, "A"+judge+"-") {
		t.Fatalf("feed alarm %s (key %s, %v sites): want %s's alarm of %s, 6 sites", feedAlarm.ID, feedAlarm.Key, feedAlarm.Args["sites"], judge, key)
	}
	// Its sites, on either hub's console: the other hub asks the judge.
	for name, h := range hubs {
		var detail console.AlarmDetail
		if err := h.get("api/alarms/"+feedAlarm.ID, &detail); err != nil {
			t.Fatal(err)
		}
		var kids []string
		for _, c := range detail.Children {
			if c.Status != alarm.ChildSuppressed {
				t.Errorf("%s: child %+v: want suppressed", name, c)
			}
			kids = append(kids, c.Agent)
		}
		if slices.Sort(kids); !slices.Equal(kids, slices.Sorted(slices.Values(agents))) {
			t.Errorf("%s: feed alarm's children %v, want %v", name, kids, agents)
		}
	}

	// Power back at one site.
	back := time.Now()
	if err := world.Fault(sim.Fault{Agent: agents[0], Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		for name, h := range hubs {
			fa, agentAlarms, err := feedAlarms(h, agents)
			if err != nil {
				return err
			}
			if len(fa) != 0 || len(agentAlarms) != len(agents)-1 {
				return fmt.Errorf("%s shows feed alarms %v and %d agent alarms %v; want none and %d", name, fa, len(agentAlarms), agentAlarms, len(agents)-1)
			}
			for _, a := range agentAlarms {
				if owner := ownerOf[cluster.Partition(a.Agent, partitions)]; !strings.HasPrefix(a.ID, "A"+owner+"-") {
					t.Errorf("%s's alarm %s was raised by another hub than its owner %s", a.Agent, a.ID, owner)
				}
			}
		}
		return nil
	})

	// An analyst on either hub sees the whole city's availability: every
	// device, and the cut at each of the feed's sites, whichever hub owns
	// it (each hub's history used to hold its own agents' alone).
	q := url.Values{"group": {"site"}, "from": {back.Add(-10 * time.Minute).UTC().Format(time.RFC3339)},
		"to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}}
	for name, h := range hubs {
		var report history.Availability
		if err := h.get("api/reports/availability?"+q.Encode(), &report); err != nil {
			t.Fatal(err)
		}
		if report.Total.Devices != len(all) {
			t.Errorf("%s's availability report counts %d devices, the city has %d", name, report.Total.Devices, len(all))
		}
		for _, a := range world.City().Agents {
			if a.Site.PowerFeed != feed {
				continue
			}
			row := slices.IndexFunc(report.Rows, func(r history.Row) bool { return r.Key == a.Site.ID })
			if row < 0 || report.Rows[row].UnreachableS+report.Rows[row].OfflineS <= 0 {
				t.Errorf("%s's availability report shows no outage at site %s (owned by %s)", name, a.Site.ID,
					ownerOf[cluster.Partition(a.ID, partitions)])
			}
		}
	}
}

// feedAlarms lists a hub's active power_feed alarms and the active
// agent_offline alarms of agents.
func feedAlarms(h *hubProcess, agents []string) (feeds, agentAlarms []alarm.Alarm, err error) {
	var list console.AlarmList
	if err := h.get("api/alarms?state=active_unack&state=active_ack&limit=1000", &list); err != nil {
		return nil, nil, err
	}
	for _, a := range list.Alarms {
		switch {
		case a.Source == alarm.SourcePowerFeed:
			feeds = append(feeds, a)
		case a.Source == alarm.SourceAgentOffline && slices.Contains(agents, a.Agent):
			agentAlarms = append(agentAlarms, a)
		}
	}
	return feeds, agentAlarms, nil
}
