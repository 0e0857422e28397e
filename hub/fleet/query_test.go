package fleet_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// bruteForce answers q over every device, the obvious way: the oracle the
// registry's indexes are held to.
func bruteForce(all []fleet.Device, q fleet.DeviceQuery) fleet.DevicePage {
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	var match []fleet.Device
	for _, d := range all {
		f := &q.DeviceFilter
		ok := in(f.Districts, d.District) && in(f.Sites, d.Site) && in(f.Agents, d.Agent) &&
			(len(f.Kinds) == 0 || slices.Contains(f.Kinds, d.Kind)) &&
			(len(f.Statuses) == 0 || slices.Contains(f.Statuses, d.Status)) &&
			(f.Since.IsZero() || !d.Since.Before(f.Since))
		if a := f.Within; a != nil {
			ok = ok && (d.District != "" && slices.Contains(a.Districts, d.District) || d.Site != "" && slices.Contains(a.Sites, d.Site))
		}
		if f.Search != "" {
			found := false
			for _, s := range []string{d.ID, d.Name, d.Site, d.SiteName} {
				found = found || strings.Contains(strings.ToLower(s), strings.ToLower(f.Search))
			}
			ok = ok && found
		}
		if ok {
			match = append(match, d)
		}
	}
	var p fleet.DevicePage
	if !q.NoTotal {
		p.Total = len(match)
	}
	rest := slices.DeleteFunc(match, func(d fleet.Device) bool { return q.After != "" && d.ID <= q.After })
	rest = rest[min(q.Offset, len(rest)):]
	if q.Limit > 0 && len(rest) > q.Limit {
		rest = rest[:q.Limit]
		p.Next = rest[len(rest)-1].ID
	}
	p.Devices = rest
	return p
}

// churn drives a registry through random inventories, health, events,
// outages, retirements and stream faults, as a city's agents would.
type churn struct {
	h      *harness
	rnd    *rand.Rand
	agents []string
	inv    map[string]*wire.Inventory // the agent's last accepted inventory
	conn   map[string]uint32
	next   int
	// statusOnly keeps inventories as they are, so the index is never
	// rebuilt and its sets only change in place.
	statusOnly bool
	perBirth   int // the most devices an agent is born with
}

var (
	churnDistricts = []string{"Xicheng", "Dongcheng", "Haidian", "高新区", ""}
	churnStatuses  = []wire.Status{wire.StatusOnline, wire.StatusDegraded, wire.StatusOffline, wire.StatusUnknown}
)

func newChurn(t testing.TB, seed uint64, agents, perBirth int) *churn {
	c := &churn{h: newHarness(t), rnd: rand.New(rand.NewPCG(seed, seed)), inv: map[string]*wire.Inventory{}, conn: map[string]uint32{}, perBirth: perBirth}
	for i := range agents {
		c.agents = append(c.agents, fmt.Sprintf("agent-%02d", i))
	}
	return c
}

func (c *churn) pick(list []string) string { return list[c.rnd.IntN(len(list))] }

func (c *churn) apply(m wire.Message) bool {
	_, err := c.h.r.Apply(m, false)
	return err == nil
}

// newDevice returns a device with an id that sorts among the others
// rather than after them.
func (c *churn) newDevice() wire.Device {
	c.next++
	id := fmt.Sprintf("%c%c-%04d", 'a'+rune(c.rnd.IntN(26)), 'a'+rune(c.rnd.IntN(26)), c.next)
	d := wire.Device{ID: id, Name: "Cam " + strings.ToUpper(id), Kind: wire.KindCamera, District: c.pick(churnDistricts)}
	if c.rnd.IntN(4) == 0 {
		d.Kind, d.SensorKind, d.Name = wire.KindSensor, wire.SensorDoor, "Door "+id
	}
	return d
}

// inventory sends agent's inventory after edit changes a copy of it.
func (c *churn) inventory(agent string, edit func(inv *wire.Inventory)) {
	inv := &wire.Inventory{Site: wire.Site{ID: "site-" + agent, Name: "Site " + agent, District: c.pick(churnDistricts)}}
	if old := c.inv[agent]; old != nil {
		inv.Site, inv.Devices = old.Site, slices.Clone(old.Devices)
	}
	edit(inv)
	inv.Header = c.h.header(agent)
	if c.apply(wire.Message{Agent: agent, Channel: wire.ChannelInventory, Inventory: inv}) {
		c.inv[agent] = inv
	}
}

func (c *churn) step() {
	h, agent := c.h, c.pick(c.agents)
	inv := c.inv[agent]
	op := c.rnd.IntN(20)
	if c.statusOnly && (op < 2 || 9 <= op && op < 15 || op == 16 || inv == nil) {
		op = 15 + 2*c.rnd.IntN(2) // an outage or a stream fault instead
		if inv == nil || c.rnd.IntN(2) == 0 {
			c.conn[agent]++
			c.apply(h.birth(agent, c.conn[agent]))
			return
		}
	}
	switch {
	case op < 2 || inv == nil:
		c.conn[agent]++
		c.apply(h.birth(agent, c.conn[agent]))
		c.inventory(agent, func(inv *wire.Inventory) {
			for range c.rnd.IntN(c.perBirth) {
				inv.Devices = append(inv.Devices, c.newDevice())
			}
		})
	case op < 8 && len(inv.Devices) > 0: // health: statuses change
		var lines []wire.DeviceHealth
		for _, d := range inv.Devices {
			if c.rnd.IntN(3) == 0 {
				lines = append(lines, line(d.ID, churnStatuses[c.rnd.IntN(len(churnStatuses))], ""))
			}
		}
		c.apply(h.health(agent, lines...))
	case op < 9 && len(inv.Devices) > 0:
		d := inv.Devices[c.rnd.IntN(len(inv.Devices))]
		c.apply(h.event(agent, d.ID, wire.EventStatus, churnStatuses[c.rnd.IntN(len(churnStatuses))], ""))
	case op < 10: // add and remove devices
		c.inventory(agent, func(inv *wire.Inventory) {
			inv.Devices = slices.DeleteFunc(inv.Devices, func(wire.Device) bool { return c.rnd.IntN(4) == 0 })
			for range c.rnd.IntN(6) {
				inv.Devices = append(inv.Devices, c.newDevice())
			}
		})
	case op < 12: // devices change district, kind or name
		c.inventory(agent, func(inv *wire.Inventory) {
			for i := range inv.Devices {
				switch c.rnd.IntN(6) {
				case 0:
					inv.Devices[i].District = c.pick(churnDistricts)
				case 1:
					inv.Devices[i].Name = fmt.Sprintf("Renamed %d", c.rnd.IntN(100))
				case 2:
					if inv.Devices[i].Kind == wire.KindCamera {
						inv.Devices[i].Kind, inv.Devices[i].SensorKind = wire.KindSensor, wire.SensorSmoke
					} else {
						inv.Devices[i].Kind, inv.Devices[i].SensorKind = wire.KindCamera, ""
					}
				}
			}
		})
	case op < 13: // the site moves or is renamed
		c.inventory(agent, func(inv *wire.Inventory) {
			inv.Site.ID = fmt.Sprintf("site-%d", c.rnd.IntN(8))
			inv.Site.Name = fmt.Sprintf("Site No %d", c.rnd.IntN(8))
		})
	case op < 14 && len(inv.Devices) > 0: // a device moves to another agent
		other := c.pick(c.agents)
		if other == agent || c.inv[other] == nil {
			return
		}
		i := c.rnd.IntN(len(inv.Devices))
		d := inv.Devices[i]
		c.inventory(agent, func(inv *wire.Inventory) { inv.Devices = slices.Delete(inv.Devices, i, i+1) })
		c.inventory(other, func(inv *wire.Inventory) { inv.Devices = append(inv.Devices, d) })
	case op < 16: // the agent is lost
		c.apply(h.will(agent, c.conn[agent]))
	case op < 17:
		if h.r.Retire(agent) {
			delete(c.inv, agent)
		}
	case op < 18 && len(inv.Devices) > 0:
		d := inv.Devices[c.rnd.IntN(len(inv.Devices))]
		if c.rnd.IntN(2) == 0 {
			h.r.SetStreamFault(d.ID, wire.ReasonNoStream, "no frames")
		} else {
			h.r.ClearStreamFault(d.ID)
		}
	default:
		h.clk.Add(time.Duration(c.rnd.IntN(120)) * time.Second)
		h.r.Sweep(h.clk.Now())
	}
}

// query returns a random query over what the fleet holds, and some of
// what it does not.
func (c *churn) query(all []fleet.Device) fleet.DeviceQuery {
	var q fleet.DeviceQuery
	some := func(values func() string) []string {
		var out []string
		for range c.rnd.IntN(3) {
			out = append(out, values())
		}
		return out
	}
	dev := func() fleet.Device {
		if len(all) == 0 {
			return fleet.Device{ID: "none", Site: "nowhere", District: "Nowhere", Agent: "nobody"}
		}
		return all[c.rnd.IntN(len(all))]
	}
	either := func(known, unknown string) string {
		if c.rnd.IntN(5) == 0 {
			return unknown
		}
		return known
	}
	if c.rnd.IntN(3) == 0 {
		q.Districts = some(func() string { return either(dev().District, "Nowhere") })
	}
	if c.rnd.IntN(4) == 0 {
		q.Sites = some(func() string { return either(dev().Site, "site-none") })
	}
	if c.rnd.IntN(4) == 0 {
		q.Agents = some(func() string { return either(dev().Agent, "agent-none") })
	}
	if c.rnd.IntN(3) == 0 {
		for range 1 + c.rnd.IntN(2) {
			q.Statuses = append(q.Statuses, append(churnStatuses, wire.StatusUnreachable, "broken")[c.rnd.IntN(6)])
		}
	}
	if c.rnd.IntN(4) == 0 {
		q.Kinds = []wire.DeviceKind{[]wire.DeviceKind{wire.KindCamera, wire.KindSensor, "drone"}[c.rnd.IntN(3)]}
	}
	if c.rnd.IntN(4) == 0 {
		d := dev()
		text := c.pick([]string{d.ID, d.Name, d.SiteName, d.Site, "zz", "\x00", "o"})
		if len(text) > 2 {
			i := c.rnd.IntN(len(text) - 1)
			text = text[i : i+1+c.rnd.IntN(len(text)-i)]
		}
		q.Search = strings.ToUpper(text)
	}
	if c.rnd.IntN(6) == 0 {
		q.Since = c.h.clk.Now().Add(-time.Duration(c.rnd.IntN(600)) * time.Second)
	}
	if c.rnd.IntN(4) == 0 {
		q.Within = &fleet.Area{
			Districts: some(func() string { return either(dev().District, "") }),
			Sites:     some(func() string { return either(dev().Site, "") }),
		}
	}
	if c.rnd.IntN(3) == 0 {
		q.After = either(dev().ID, "m")
	}
	if c.rnd.IntN(4) == 0 {
		q.Offset = c.rnd.IntN(len(all) + 2)
	}
	if c.rnd.IntN(2) == 0 {
		q.Limit = 1 + c.rnd.IntN(len(all)+2)
	}
	q.NoTotal = c.rnd.IntN(4) == 0
	return q
}

// TestQueryAgainstBruteForce holds the registry's indexed queries to a
// filter over Devices() while random inventories, statuses, outages,
// retirements and moves change the fleet: the indexes must never drift.
func TestQueryAgainstBruteForce(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			// Some fleets are big enough for sets to take both forms.
			c := newChurn(t, seed, 2+int(seed%6), []int{12, 12, 12, 60}[seed%4])
			for step := range 600 {
				// Then statuses only, over a fleet of some size, so that
				// sets grow and shrink in place across their bitmap and
				// list forms.
				c.statusOnly = step >= 400
				c.step()
				if c.rnd.IntN(4) != 0 {
					continue // let changes pile up between reads too
				}
				all := c.h.r.Devices()
				for range 6 {
					q := c.query(all)
					got, want := c.h.r.QueryDevices(q), bruteForce(all, q)
					if !reflect.DeepEqual(ids(got.Devices), ids(want.Devices)) || got.Total != want.Total || got.Next != want.Next {
						t.Fatalf("step %d: QueryDevices(%+v)\n got %v total %d next %q\nwant %v total %d next %q",
							step, q, ids(got.Devices), got.Total, got.Next, ids(want.Devices), want.Total, want.Next)
					}
					for i := range got.Devices {
						if !reflect.DeepEqual(got.Devices[i], want.Devices[i]) {
							t.Fatalf("step %d: device %s = %+v, Devices() has %+v", step, got.Devices[i].ID, got.Devices[i], want.Devices[i])
						}
					}
				}
			}
			checkInvariants(t, c.h.r)
			t.Logf("%d devices at the end", len(c.h.r.Devices()))
		})
	}
}

// TestQueryPagesWalkTheFleet pages through every match with After while
// statuses change between pages: a device present throughout is listed
// exactly once, in id order.
func TestQueryPagesWalkTheFleet(t *testing.T) {
	c := newChurn(t, 99, 6, 12)
	for range 300 {
		c.step()
	}
	q := fleet.DeviceQuery{Limit: 7}
	before := ids(c.h.r.Devices())
	var seen []string
	for {
		p := c.h.r.QueryDevices(q)
		seen = append(seen, ids(p.Devices)...)
		if p.Next == "" {
			break
		}
		q.After = p.Next
		for _, agent := range c.agents { // statuses change between pages
			if inv := c.inv[agent]; inv != nil && len(inv.Devices) > 0 {
				c.apply(c.h.health(agent, line(inv.Devices[0].ID, churnStatuses[c.rnd.IntN(len(churnStatuses))], "")))
			}
		}
	}
	if !slices.Equal(seen, before) {
		t.Fatalf("paged %d devices %v\nwant %d %v", len(seen), seen, len(before), before)
	}
}

func TestQueryEmptyAndUnknown(t *testing.T) {
	h := newHarness(t)
	if p := h.r.QueryDevices(fleet.DeviceQuery{Limit: 10}); len(p.Devices) != 0 || p.Total != 0 || p.Next != "" {
		t.Fatalf("empty fleet: %+v", p)
	}
	h.setup("a1", "Riverside", "cam-1", "cam-2", "cam-3")
	for _, q := range []fleet.DeviceQuery{
		{DeviceFilter: fleet.DeviceFilter{Districts: []string{"Nowhere"}}},
		{DeviceFilter: fleet.DeviceFilter{Statuses: []wire.Status{"broken"}}},
		{DeviceFilter: fleet.DeviceFilter{Within: &fleet.Area{}}},
		{DeviceFilter: fleet.DeviceFilter{Within: &fleet.Area{Districts: []string{""}, Sites: []string{""}}}},
		{After: "cam-3"},
		{Offset: 3},
	} {
		if p := h.r.QueryDevices(q); len(p.Devices) != 0 || p.Next != "" {
			t.Errorf("QueryDevices(%+v) = %+v, want nothing", q, p)
		}
	}
	p := h.r.QueryDevices(fleet.DeviceQuery{Offset: 1, Limit: 1})
	if !slices.Equal(ids(p.Devices), []string{"cam-2"}) || p.Total != 3 || p.Next != "cam-2" {
		t.Errorf("offset 1 limit 1 = %+v", p)
	}
}

func ids(ds []fleet.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}
