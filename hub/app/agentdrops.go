package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// agentDropEvery is how often agents' own losses are looked at: often, so
// that a loss is logged and raised while it happens.
const agentDropEvery = 2 * time.Second

// dropFleet is what agentDrops reads of the registry.
type dropFleet interface {
	AgentDrops() wire.Dropped
	Agents() []fleet.Agent
}

// agentDrops turns what agents say they dropped (their queue or on-disk
// spool full, a disk error; wire.Health.Dropped) into a counter, a log line
// while it happens, a system alarm per agent and episode, and /healthz.
type agentDrops struct {
	fleet   dropFleet
	notice  func(alarm.Alarm)
	log     *slog.Logger
	counter *metrics.Vec[metrics.Counter]

	mu     sync.Mutex
	seen   wire.Dropped           // fleet.AgentDrops at the last look
	recent map[string]fleet.Agent // agents whose count rose within dropWindow, as then
}

func newAgentDrops(f dropFleet, notice func(alarm.Alarm), log *slog.Logger, m *metrics.Registry) *agentDrops {
	w := &agentDrops{fleet: f, notice: notice, log: log, recent: map[string]fleet.Agent{},
		counter: m.CounterVec("citywatch_agent_dropped_total",
			"Reports agents could neither send nor keep (queue or spool full, disk errors), by kind, as they told the hub.", "kind")}
	// Both series from the start: a scraper sees 0, not nothing.
	w.counter.With("health")
	w.counter.With("events")
	return w
}

// run looks every agentDropEvery until ctx ends.
func (w *agentDrops) run(ctx context.Context) error {
	t := time.NewTicker(agentDropEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			w.check(now)
		}
	}
}

// check counts the rises since the last look; an agent starting to drop
// opens an episode and raises an alarm, one whose count keeps rising
// within dropWindow stays in it.
func (w *agentDrops) check(now time.Time) {
	total := w.fleet.AgentDrops()
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, ag := range w.recent {
		if now.Sub(ag.DroppedAt) > dropWindow {
			delete(w.recent, id)
		}
	}
	health, events := total.Health-w.seen.Health, total.Events-w.seen.Events
	if health == 0 && events == 0 {
		return
	}
	w.seen = total
	w.counter.With("health").Add(health)
	w.counter.With("events").Add(events)
	var rising []string
	for _, ag := range w.fleet.Agents() {
		if ag.DroppedAt.IsZero() || now.Sub(ag.DroppedAt) > dropWindow {
			continue
		}
		prev, known := w.recent[ag.ID]
		if known && prev.DroppedAt.Equal(ag.DroppedAt) {
			continue
		}
		w.recent[ag.ID] = ag
		rising = append(rising, ag.ID)
		if !known {
			w.notice(alarm.Alarm{
				Key: string(alarm.SourceSystem) + ":agent/" + ag.ID + "/agent_dropping", Source: alarm.SourceSystem,
				Type: alarm.TypeAgentDropping, Agent: ag.ID, Site: ag.Site, District: ag.District, Criticality: 3,
				Detail: fmt.Sprintf("the agent could not keep what it saw: %d health reports and %d events dropped since it started (its queue or spool was full, or its disk failed)",
					ag.Dropped.Health, ag.Dropped.Events),
				Args: map[string]string{"health": strconv.FormatUint(ag.Dropped.Health, 10), "events": strconv.FormatUint(ag.Dropped.Events, 10)},
			})
		}
	}
	w.log.Warn("agents dropped reports they could neither send nor keep", "agents", len(rising),
		"health", health, "events", events, "first", strings.Join(rising[:min(len(rising), 5)], ","))
}

// health is the agents' component of /healthz: degraded while any agent's
// count rose within dropWindow.
func (w *agentDrops) health() (ok bool, why string, since time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.recent) == 0 {
		return true, "", time.Time{}
	}
	ids := make([]string, 0, len(w.recent))
	for id, ag := range w.recent {
		ids = append(ids, id)
		if since.IsZero() || ag.DroppedAt.Before(since) {
			since = ag.DroppedAt
		}
	}
	slices.Sort(ids)
	return false, fmt.Sprintf("%d agents dropped reports in the last %s (%s); %d health reports and %d events dropped in all since the hub started",
		len(ids), dropWindow, strings.Join(ids[:min(len(ids), 5)], ", "), w.seen.Health, w.seen.Events), since
}
