package alarm

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// Root-cause suppression (docs/alarms.md, "Root cause"): when every device
// behind a topology node is offline, the node is what failed, so the engine
// raises one alarm for the node and holds back the devices' own alarms,
// recording them as its children; likewise one power_feed alarm for the
// agents of sites that share a mains feed. The engine learns the topology
// from the fleet changes it observes, so it needs no access to the registry.

// site is what the engine knows of one agent's infrastructure.
type site struct {
	feed    string
	nodes   map[string]wire.Node
	ids     []string          // the keys of nodes, sorted
	devices map[string]member // by device id
	// released: no offline condition of a device in devices is suppressed.
	// Without nodes nothing can suppress one, so evaluating such a site
	// is then a no-op, skipped: a device's change costs its own
	// conditions, not a pass over its site's. A full evaluation finding
	// no root sets it; a device joining the site (it may bring a
	// suppression from its old one) clears it.
	released bool
}

// member is a device of a site: the node it hangs off ("" none) and its
// criticality, for threshold alarms.
type member struct {
	parent string
	crit   int
}

// childRef is a condition explained by a root-cause alarm, as it was when
// the alarm took it in.
type childRef struct {
	key      string
	source   Source
	device   string
	agent    string
	severity Severity
	since    time.Time
}

// ChildStatus says where a child of a root-cause alarm stands now.
type ChildStatus string

// Child statuses.
const (
	ChildSuppressed ChildStatus = "suppressed" // explained by the parent: no alarm of its own
	ChildAlarm      ChildStatus = "alarm"      // still failing after the parent recovered: its own alarm (ID)
	ChildRecovered  ChildStatus = "recovered"
)

// Child is one condition a root-cause alarm explains: a device of a failed
// node or an agent of a failed power feed.
type Child struct {
	ID       string      `json:"id,omitempty"` // the child's own alarm, once it has one
	Key      string      `json:"key"`
	Source   Source      `json:"source"`
	Device   string      `json:"device,omitempty"`
	Agent    string      `json:"agent,omitempty"`
	Severity Severity    `json:"severity"` // of the alarm it would raise on its own
	Status   ChildStatus `json:"status"`
	Since    time.Time   `json:"since"` // when its condition began
}

// nodeLabels name node kinds in alarm details.
var nodeLabels = map[wire.NodeKind]string{
	wire.NodeSwitch: "Switch", wire.NodePoE: "PoE port", wire.NodeUplink: "Uplink", wire.NodePower: "Power supply",
}

// offlineSources are the conditions that mean a device is not heard from,
// the ones a failed node explains.
var offlineSources = [...]Source{SourceDeviceOffline, SourceSupervisionLost}

// learn records an agent's topology and the parents of devs from a change.
func (e *Engine) learn(a *fleet.Agent, devs []fleet.Device, removed []string) {
	id := ""
	if a != nil {
		id = a.ID
	} else if len(devs) > 0 {
		id = devs[0].Agent
	}
	if id == "" {
		return
	}
	delete(e.others, id) // this hub's now
	s := e.sites[id]
	if s == nil {
		s = &site{devices: map[string]member{}}
		e.sites[id] = s
	}
	if a != nil {
		s.feed = a.PowerFeed
		s.nodes = make(map[string]wire.Node, len(a.Topology))
		for _, n := range a.Topology {
			s.nodes[n.ID] = n
		}
		s.ids = slices.Sorted(maps.Keys(s.nodes))
	}
	for _, d := range devs {
		if _, ok := s.devices[d.ID]; !ok {
			s.released = false
		}
		s.devices[d.ID] = member{parent: d.Parent, crit: d.Criticality}
	}
	for _, d := range removed {
		delete(s.devices, d)
	}
}

// held returns the condition of key if it is active and past its hold.
func (e *Engine) held(key string, now time.Time) *cond {
	if c := e.conds[key]; c != nil && c.held(now) {
		return c
	}
	return nil
}

// held reports whether c is active and past its hold.
func (c *cond) held(now time.Time) bool { return c.active && now.Sub(c.since) >= c.rule.Hold }

// offlineConds appends to cs the conditions of device dev's
// offlineSources that exist. Their keys are made in the engine's buffer,
// not kept per device: two strings of every device of the city cost more
// than making them when a site with a topology is evaluated.
func (e *Engine) offlineConds(dev string, cs []*cond) []*cond {
	for _, src := range offlineSources {
		e.keyBuf = append(append(append(e.keyBuf[:0], src...), ":device/"...), dev...)
		if c := e.conds[string(e.keyBuf)]; c != nil { // no allocation for the lookup
			cs = append(cs, c)
		}
	}
	return cs
}

// evalAgent finds the topmost down nodes of one agent's site, raises or
// clears their alarms, and suppresses or releases the devices behind them.
// A released device whose condition is still held raises at once.
func (e *Engine) evalAgent(agent string, now time.Time) {
	s := e.sites[agent]
	if s == nil || len(s.nodes) == 0 && s.released {
		return
	}
	downConds := map[string][]*cond{} // device → its held offline conditions
	under, downUnder := map[string]int{}, map[string]int{}
	for dev, m := range s.devices {
		cs := e.offlineConds(dev, nil)
		cs = slices.DeleteFunc(cs, func(c *cond) bool { return !c.held(now) })
		if len(cs) > 0 {
			downConds[dev] = cs
		}
		// The wire contract guarantees the tree has no cycles.
		for n := m.parent; n != ""; n = s.nodes[n].Parent {
			under[n]++
			if len(cs) > 0 {
				downUnder[n]++
			}
		}
	}
	down := func(n string) bool { return n != "" && under[n] > 0 && downUnder[n] == under[n] }
	roots := map[string]*cond{}         // root node → its condition (nil: no rule)
	downSince := map[string]time.Time{} // root node → when the last of its devices failed
	for _, n := range s.ids {
		node := s.nodes[n]
		key := string(SourceTopology) + ":node/" + agent + "/" + n
		if !down(n) || down(node.Parent) {
			if c := e.conds[key]; c != nil {
				e.update(c, false, now)
			}
			continue
		}
		var kids []childRef
		tmpl := Alarm{Key: key, Source: SourceTopology, Type: string(node.Kind) + "_down", Agent: agent}
		for dev, m := range s.devices {
			if !descends(s, m.parent, n) {
				continue
			}
			for _, c := range downConds[dev] {
				kids = append(kids, childRef{key: c.tmpl.Key, source: c.tmpl.Source, device: dev, agent: agent, severity: c.rule.Severity, since: c.since})
				downSince[n] = maxTime(downSince[n], c.since)
				tmpl.Site, tmpl.District = c.tmpl.Site, c.tmpl.District
				tmpl.Criticality = max(tmpl.Criticality, c.tmpl.Criticality)
			}
		}
		label := nodeLabels[node.Kind] + " " + n
		if node.Name != "" {
			label += " (" + node.Name + ")"
		}
		tmpl.Detail = fmt.Sprintf("%s down — %d devices offline", label, under[n])
		tmpl.Args = map[string]string{"node": n, "name": node.Name, "kind": string(node.Kind), "devices": strconv.Itoa(under[n])}
		roots[n] = e.root(tmpl, kids, now)
	}
	var cs []*cond
	for dev, m := range s.devices {
		var by *cond
		var since time.Time
		for n := m.parent; n != ""; n = s.nodes[n].Parent {
			if rc, ok := roots[n]; ok {
				by, since = rc, downSince[n]
			}
		}
		cs = e.offlineConds(dev, cs[:0])
		for _, c := range cs {
			e.suppress(c, by, since, now)
		}
	}
	s.released = len(roots) == 0
}

// descends reports whether node n is node anc or lies below it.
func descends(s *site, n, anc string) bool {
	for ; n != ""; n = s.nodes[n].Parent {
		if n == anc {
			return true
		}
	}
	return false
}

// evalFeed raises one power_feed alarm when every agent on feed (at least
// two: one agent offline is its own alarm) has a held agent_offline
// condition, and suppresses their alarms; otherwise it clears it and
// releases them.
func (e *Engine) evalFeed(feed string, now time.Time) {
	if feed == "" {
		return
	}
	var agents []string
	for id, s := range e.sites {
		if s.feed == feed {
			agents = append(agents, id)
		}
	}
	own := len(agents)
	for id, f := range e.others {
		if f.feed == feed {
			agents = append(agents, id)
		}
	}
	slices.Sort(agents)
	key := string(SourcePowerFeed) + ":feed/" + feed
	tmpl := Alarm{Key: key, Source: SourcePowerFeed, Type: string(SourcePowerFeed)}
	var kids []childRef
	var since time.Time // when the last of them went offline
	for _, a := range agents {
		if f := e.others[a]; f != nil {
			k, ok := e.followedHeld(a, f, now)
			if !ok {
				break
			}
			kids = append(kids, k)
			since = maxTime(since, k.since)
			tmpl.District, tmpl.Criticality = f.district, max(tmpl.Criticality, f.crit)
			continue
		}
		c := e.held(string(SourceAgentOffline)+":agent/"+a, now)
		if c == nil {
			break
		}
		kids = append(kids, childRef{key: c.tmpl.Key, source: c.tmpl.Source, agent: a, severity: c.rule.Severity, since: c.since})
		since = maxTime(since, c.since)
		tmpl.District = c.tmpl.District
		tmpl.Criticality = max(tmpl.Criticality, c.tmpl.Criticality)
	}
	var by *cond
	down := len(agents) >= 2 && len(kids) == len(agents)
	judges := e.judges == nil || e.judges(key)
	switch {
	case down && judges:
		tmpl.Detail = fmt.Sprintf("Power feed %s down — %d sites offline", feed, len(agents))
		tmpl.Args = map[string]string{"feed": feed, "sites": strconv.Itoa(len(agents))}
		by = e.root(tmpl, kids, now)
	case down && own > 0:
		by = e.judgedElsewhere(key)
	case judges:
		if c := e.conds[key]; c != nil {
			e.update(c, false, now)
		}
	}
	for _, a := range agents {
		if c := e.conds[string(SourceAgentOffline)+":agent/"+a]; c != nil {
			e.suppress(c, by, since, now)
		}
	}
}

// root sets a root-cause condition active with its children; nil when no
// rule covers it, in which case nothing is suppressed.
func (e *Engine) root(tmpl Alarm, kids []childRef, now time.Time) *cond {
	e.set(tmpl, "", "", true, now)
	c := e.conds[tmpl.Key]
	if c == nil {
		return nil
	}
	c.kids = kids
	if c.rec != nil && c.rec.a.State.Active() {
		adopt(c.rec, kids)
	}
	return c
}

// suppress sets who explains c (nil: nobody); since is when by's failure
// began, the last of its children failing. A condition released while
// held raises at once: its own hold has long passed. One already raised
// is folded into by if it was raised with its failure (fold).
func (e *Engine) suppress(c *cond, by *cond, since, now time.Time) {
	if c.suppressedBy == by {
		return
	}
	c.suppressedBy = by
	if by == nil {
		e.step(c, now)
		return
	}
	e.fold(c, by, since, now)
}

// fold clears c's alarm as explained by by if it was raised at or after
// since, when the last of by's children failed: it was raised only because
// its hold ended before theirs, or its hub learnt of them late (another
// hub's sites of a feed come through the cluster's records), so every hub
// ends with the root cause alone whatever order it learns things in. c
// raises again at once if it still fails once released. An alarm raised
// before its siblings failed is a failure of its own and stays, as does a
// flapping one.
func (e *Engine) fold(c, by *cond, since, now time.Time) {
	r := c.rec
	if !c.raised || c.flapping || r == nil || !r.a.State.Active() || raisedAt(r).Before(since) {
		return
	}
	c.raised = false
	note := "explained by " + by.tmpl.Key
	if by.rec != nil && by.rec.a.State.Active() {
		note += " (" + by.rec.a.ID + ")"
	}
	e.autoClear(r, now, note)
}

// raisedAt is when r's current occurrence was raised: its last move from
// cleared (or nothing) to active.
func raisedAt(r *record) time.Time {
	for _, t := range slices.Backward(r.trail) {
		if t.To.Active() && !t.From.Active() {
			return t.At
		}
	}
	return r.a.FirstAt
}

// maxTime is the later of a and b.
func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// adopt adds kids to r's children, keeping the ones it already has so the
// alarm still lists devices that recovered.
func adopt(r *record, kids []childRef) {
	for _, k := range kids {
		if !slices.ContainsFunc(r.children, func(x childRef) bool { return x.key == k.key }) {
			r.children = append(r.children, k)
		}
	}
}

// evalRoots re-evaluates every site and feed that may have a root cause,
// before Tick steps the conditions, so a device whose hold ends together
// with its siblings' is suppressed rather than raised.
func (e *Engine) evalRoots(now time.Time) {
	agents, feeds := map[string]bool{}, map[string]bool{}
	for key, c := range e.conds {
		if !c.active && c.suppressedBy == nil {
			continue
		}
		switch c.tmpl.Source {
		case SourceDeviceOffline, SourceSupervisionLost, SourceTopology:
			agents[c.tmpl.Agent] = true
		case SourceAgentOffline:
			if s := e.sites[c.tmpl.Agent]; s != nil {
				feeds[s.feed] = true
			}
		case SourcePowerFeed:
			feeds[strings.TrimPrefix(key, string(SourcePowerFeed)+":feed/")] = true
		}
	}
	for _, f := range e.others {
		if f.offline {
			feeds[f.feed] = true // its hold may end now
		}
	}
	for _, a := range slices.Sorted(maps.Keys(agents)) {
		e.evalAgent(a, now)
	}
	for _, f := range slices.Sorted(maps.Keys(feeds)) {
		e.evalFeed(f, now)
	}
}

// Children returns the conditions root-cause alarm id explains, as they
// stand now; nil for other alarms.
func (e *Engine) Children(id string) []Child {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.alarms[id]
	if !ok || len(r.children) == 0 {
		return nil
	}
	out := make([]Child, 0, len(r.children))
	for _, k := range r.children {
		ch := Child{Key: k.key, Source: k.source, Device: k.device, Agent: k.agent, Severity: k.severity, Status: ChildRecovered, Since: k.since}
		if f := e.others[k.agent]; f != nil && k.source == SourceAgentOffline {
			// Another hub's agent: held back there while the feed is down.
			if f.offline {
				ch.Status, ch.Since = ChildSuppressed, f.since
			}
		} else if c := e.conds[k.key]; c != nil && c.active {
			ch.Since = c.since
			switch {
			case c.rec != nil && c.rec.a.State.Active():
				// Raised before the parent's failure began (fold), or
				// released by it.
				ch.Status, ch.ID = ChildAlarm, c.rec.a.ID
			case c.suppressedBy != nil && c.suppressedBy.rec == r:
				ch.Status = ChildSuppressed
			}
		}
		out = append(out, ch)
	}
	return out
}
