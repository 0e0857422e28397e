package alarm

import (
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// In a cluster each hub's engine holds the alarms of the agents it owns,
// and the agents on one mains feed may be owned by several hubs. A
// power_feed root cause is judged from every agent on the feed: an engine
// follows the other hubs' agents (Follow: their feed and whether they are
// offline, from the changes its read view emits), every engine comes to
// the same judgement, and only the one that Judges the feed's key (the
// hub owning the partition it hashes to) raises the feed's alarm; the
// others hold their own agents' agent_offline alarms back as explained by
// it.

// followed is an agent another hub owns, as far as feeds go.
type followed struct {
	feed     string
	district string
	crit     int
	offline  bool
	since    time.Time // when offline took its value
}

// Follow takes a change of an agent another hub of the cluster owns: its
// feed and status, for the power feeds it shares with this hub's agents.
// It raises nothing of its own.
func (e *Engine) Follow(ch fleet.Change) {
	if ch.Agent == nil || ch.Kind != fleet.ChangeAgent && ch.Kind != fleet.ChangeInventory {
		return
	}
	at := ch.At
	if at.IsZero() {
		at = e.now()
	}
	a := ch.Agent
	e.mu.Lock()
	defer e.unlock()
	f := e.others[a.ID]
	if ch.Retired {
		delete(e.others, a.ID)
	} else {
		if f == nil {
			f = &followed{}
			e.others[a.ID] = f
		}
		old := f.feed
		f.feed, f.district = a.PowerFeed, a.District
		for _, d := range ch.Affected {
			f.crit = max(f.crit, d.Criticality)
		}
		if off := a.Status == wire.StatusOffline; (off || a.Status == wire.StatusOnline) && off != f.offline {
			f.offline, f.since = off, a.Since
			if f.since.IsZero() {
				f.since = at
			}
		}
		if old != f.feed {
			e.evalFeed(old, at)
		}
	}
	if f != nil {
		e.evalFeed(f.feed, at)
	}
}

// followedHeld returns the child a followed agent is of a feed's root
// cause: offline for longer than agent_offline's hold; false otherwise.
func (e *Engine) followedHeld(agent string, f *followed, now time.Time) (childRef, bool) {
	rule, ok := e.rules.match(SourceAgentOffline, "", "", "")
	if !ok || !f.offline || now.Sub(f.since) < rule.Hold {
		return childRef{}, false
	}
	return childRef{key: string(SourceAgentOffline) + ":agent/" + agent, source: SourceAgentOffline, agent: agent,
		severity: rule.Severity, since: f.since}, true
}

// judgedElsewhere is the condition that stands, on a hub that does not
// judge a feed, for the root cause another hub raised: it explains this
// hub's agents' conditions and is never raised.
func (e *Engine) judgedElsewhere(key string) *cond {
	c := e.elsewhere[key]
	if c == nil {
		c = &cond{tmpl: Alarm{Key: key, Source: SourcePowerFeed}}
		e.elsewhere[key] = c
	}
	return c
}
