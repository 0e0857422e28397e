// Package alarmview makes the alarms of a cluster one list on every hub.
// Each hub's alarm engine holds the alarms of the agents it owns (their
// partitions); the view adds what the other hubs announce, so an operator
// on any hub sees the whole city, and it routes an operator's action on an
// alarm another hub holds to that hub. When this hub takes partitions
// over it gives their alarms to its engine (Own), so an open alarm goes on
// where the dead hub left it instead of being raised a second time; when
// it gives partitions up, their alarms leave its engine without a
// transition and stay visible until their new owner announces them.
//
// On NATS, core subjects (no persistence: the shared store is the record):
//
//	cw.alarms.<hub>   every transition of an alarm the hub's engine holds:
//	                  {"hub", "alarm", "transition"}; the alarm's
//	                  "changes" (its trail's length) orders them
//	cw.alarmcmd       an operator's action, a request: {"action", "id",
//	                  "who", "note", "to", "until"}; only the hub holding
//	                  the alarm answers {"alarm"} or {"error", "code"}
package alarmview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/internal/announce"
)

// Engine is this hub's alarm engine (hub/alarm): what the console reads
// and acts on, and the hand-over of alarms between hubs.
type Engine interface {
	console.Alarms
	Adopt(alarms []alarm.Alarm, trails map[string][]alarm.Transition) (int, error)
	Release(mine func(key string) bool) ([]alarm.Alarm, map[string][]alarm.Transition)
}

// Store is the alarm store the hubs share (hub/alarmstore on PostgreSQL).
type Store interface {
	// LoadOpen returns every open alarm, without trails.
	LoadOpen(ctx context.Context) ([]alarm.Alarm, error)
	// LoadPartitions returns the open alarms of parts with their trails.
	LoadPartitions(ctx context.Context, parts []int) ([]alarm.Alarm, map[string][]alarm.Transition, error)
	// Alarm returns one alarm and its trail.
	Alarm(ctx context.Context, id string) (alarm.Alarm, []alarm.Transition, error)
}

// Config is this hub's place in the cluster.
type Config struct {
	NATSURL    string // the NATS servers, comma-separated
	Hub        string // this hub's id
	Partitions int    // of the agents' stream
	// Partition maps an agent to its partition (cluster.Partition).
	Partition func(agent string, n int) int
}

// Deps are the view's collaborators. Store may be nil: alarms of a dead
// hub are then taken over from what it announced, and lost with every hub.
// OnEvent hears other hubs' alarm events, for this hub's consoles.
type Deps struct {
	Engine  Engine
	Store   Store
	Log     *slog.Logger
	OnEvent func(alarm.Event)
}

const (
	announceSubject = "cw.alarms."
	commandSubject  = "cw.alarmcmd"
	// queueSize bounds the announcements waiting for NATS; a full queue
	// drops (counted): the shared store still has the transition.
	queueSize = 100_000
	// keepClosed is how many closed alarms of other hubs the view keeps.
	keepClosed = 1000
	// requestTimeout bounds an action routed to another hub.
	requestTimeout = 3 * time.Second
)

// ErrNoHolder is the error of an action on an alarm no hub answers for:
// its partition is changing hands. Trying again a few seconds later works.
var ErrNoHolder = fmt.Errorf("no hub holds this alarm right now (its agents are changing hands); try again in a few seconds: %w", alarm.ErrUnavailable)

// View is the cluster's alarms as one. It implements what the console
// reads (console.Alarms).
type View struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	out  *announce.Queue[announcement]

	mu     sync.Mutex
	remote map[string]*remote // other hubs' alarms, by id
	closed []string           // ids of closed remote alarms, oldest first
	owned  []bool             // nil until the first Own
	nc     *nats.Conn         // set by Run once connected

	applied, stale, routed atomic.Uint64
}

type remote struct {
	a     alarm.Alarm
	trail []alarm.Transition
}

type announcement struct {
	Hub        string           `json:"hub"`
	Alarm      alarm.Alarm      `json:"alarm"`
	Transition alarm.Transition `json:"transition"`
}

// New validates cfg; Run connects.
func New(cfg Config, deps Deps) (*View, error) {
	var errs []error
	if cfg.NATSURL == "" || cfg.Hub == "" || cfg.Partitions < 1 || cfg.Partition == nil {
		errs = append(errs, errors.New("alarmview: NATS URL, hub id, partitions and a partition function are required"))
	}
	if deps.Engine == nil || deps.Log == nil {
		errs = append(errs, errors.New("alarmview: an engine and a log are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	log := deps.Log.With("component", "alarmview")
	return &View{cfg: cfg, deps: deps, log: log, remote: map[string]*remote{},
		out: announce.New[announcement](announceSubject+cfg.Hub, queueSize, log,
			"alarm announcements lost; other hubs show these alarms as the shared store has them")}, nil
}

// UseStore sets the shared store, once it is open and before Run.
func (v *View) UseStore(s Store) { v.deps.Store = s }

// Record announces one transition of this hub's engine; it never blocks,
// so it can sit in alarm.Options.OnTransition beside the store.
func (v *View) Record(a alarm.Alarm, t alarm.Transition) {
	v.out.Put(announcement{Hub: v.cfg.Hub, Alarm: a, Transition: t})
}

// Stats are the view's counters, for /healthz.
type Stats struct {
	Remote    int    `json:"remote"`    // other hubs' alarms in view
	Announced uint64 `json:"announced"` // this hub's transitions sent
	Dropped   uint64 `json:"dropped"`   // not sent: queue full or NATS refused
	Applied   uint64 `json:"applied"`   // other hubs' transitions applied
	Stale     uint64 `json:"stale"`     // ignored: older than what the view had
	Routed    uint64 `json:"routed"`    // actions and questions (a root cause's children) sent to the holding hub
}

// Stats reports the counters.
func (v *View) Stats() Stats {
	v.mu.Lock()
	n := len(v.remote)
	v.mu.Unlock()
	return Stats{Remote: n, Announced: v.out.Sent(), Dropped: v.out.Dropped(), Applied: v.applied.Load(),
		Stale: v.stale.Load(), Routed: v.routed.Load()}
}

// Run connects to NATS, loads the open alarms the store holds into the
// view, answers other hubs' routed actions and announces this hub's
// transitions until ctx ends.
func (v *View) Run(ctx context.Context) error {
	nc, err := nats.Connect(v.cfg.NATSURL, nats.Name("citywatch-hub alarms "+v.cfg.Hub),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("alarmview: connect: %w", err)
	}
	defer nc.Close()
	ann, err := nc.Subscribe(announceSubject+"*", v.onAnnouncement)
	if err != nil {
		return fmt.Errorf("alarmview: subscribe: %w", err)
	}
	defer ann.Unsubscribe() //nolint:errcheck // the connection closes next
	cmd, err := nc.Subscribe(commandSubject, v.onCommand)
	if err != nil {
		return fmt.Errorf("alarmview: subscribe: %w", err)
	}
	defer cmd.Unsubscribe() //nolint:errcheck // the connection closes next
	v.mu.Lock()
	v.nc = nc
	v.mu.Unlock()
	v.seed(ctx)
	v.out.Run(ctx, nc)
	return nil
}

// seed puts the store's open alarms of the partitions this hub does not
// own into the view, so a hub started into a running cluster shows them
// before their owners next change them. Their trails are read when an
// operator opens one (Alarm).
func (v *View) seed(ctx context.Context) {
	if v.deps.Store == nil {
		return
	}
	alarms, err := v.deps.Store.LoadOpen(ctx)
	if err != nil {
		v.log.Error("open alarms not loaded from the shared store; other hubs' alarms show as they next change", "err", err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, a := range alarms {
		if v.mineLocked(a) {
			continue
		}
		if _, ok := v.remote[a.ID]; !ok {
			a.Changes = 0 // unknown: whatever an owner announces is newer
			v.remote[a.ID] = &remote{a: a}
		}
	}
}

// mineLocked reports whether a belongs to a partition this hub owns.
func (v *View) mineLocked(a alarm.Alarm) bool {
	k := a.PartitionKey()
	if k == "" {
		return false
	}
	return v.owned != nil && v.owned[v.cfg.Partition(k, v.cfg.Partitions)]
}

func (v *View) onAnnouncement(m *nats.Msg) {
	var a announcement
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Alarm.ID == "" || a.Alarm.Changes < 1 {
		v.log.Warn("alarm announcement not understood; ignored", "subject", m.Subject, "err", err)
		v.stale.Add(1)
		return
	}
	if a.Hub == v.cfg.Hub {
		return
	}
	if _, _, held := v.deps.Engine.Alarm(a.Alarm.ID); held {
		// This hub holds it now: the sender has not yet heard it lost it.
		v.stale.Add(1)
		return
	}
	if !v.apply(a.Alarm, a.Transition) {
		v.stale.Add(1)
		return
	}
	v.applied.Add(1)
	if v.deps.OnEvent != nil && (a.Transition.Who != alarm.System || !a.Alarm.Shelved(a.Transition.At)) {
		v.deps.OnEvent(alarm.Event{Kind: alarm.KindOf(a.Transition.Action), Alarm: a.Alarm, Transition: a.Transition})
	}
}

// apply puts another hub's alarm after transition t, the last of its
// trail, into the view; it reports false for one no newer than the view's.
func (v *View) apply(a alarm.Alarm, t alarm.Transition) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.remote[a.ID]
	if r == nil {
		r = &remote{}
		v.remote[a.ID] = r
	} else if a.Changes <= r.a.Changes {
		return false
	}
	wasClosed := r.a.State.Closed()
	r.a = a
	// A gap (an announcement lost) leaves the trail short; the store
	// holds all of it.
	r.trail = append(r.trail, t)
	if a.State.Closed() && !wasClosed {
		v.closed = append(v.closed, a.ID)
		for len(v.closed) > keepClosed {
			delete(v.remote, v.closed[0])
			v.closed = v.closed[1:]
		}
	}
	return true
}

// Own takes the partitions this hub owns now, before their agents are
// reconciled: the alarms of partitions it gave up leave its engine for
// the view, and those of partitions it took over — from the shared store,
// or from what their last owner announced if that is newer — go to its
// engine. A store that cannot be read leaves the view's copy to adopt.
func (v *View) Own(ctx context.Context, owned []int) {
	now := make([]bool, v.cfg.Partitions)
	for _, p := range owned {
		now[p] = true
	}
	v.mu.Lock()
	before := v.owned
	v.owned = now
	v.mu.Unlock()
	var gained []int
	for p, own := range now {
		if own && (before == nil || !before[p]) {
			gained = append(gained, p)
		}
	}
	part := func(key string) int { return v.cfg.Partition(key, v.cfg.Partitions) }
	released, trails := v.deps.Engine.Release(func(key string) bool { return now[part(key)] })
	v.mu.Lock()
	for _, a := range released {
		v.remote[a.ID] = &remote{a: a, trail: trails[a.ID]}
	}
	v.mu.Unlock()
	if len(gained) == 0 {
		return
	}
	taken := map[string]remote{}
	if v.deps.Store != nil {
		alarms, trails, err := v.deps.Store.LoadPartitions(ctx, gained)
		if err != nil {
			v.log.Error("alarms of the partitions taken over not loaded from the shared store; taking what their owner announced", "err", err)
		}
		for _, a := range alarms {
			taken[a.ID] = remote{a: a, trail: trails[a.ID]}
		}
	}
	v.mu.Lock()
	for id, r := range v.remote {
		if k := r.a.PartitionKey(); k == "" || !now[part(k)] {
			continue
		}
		if s, ok := taken[id]; !ok || r.a.Changes > s.a.Changes {
			taken[id] = *r
		}
		delete(v.remote, id)
	}
	v.closed = slices.DeleteFunc(v.closed, func(id string) bool { return v.remote[id] == nil })
	v.mu.Unlock()
	alarms := make([]alarm.Alarm, 0, len(taken))
	adopted := make(map[string][]alarm.Transition, len(taken))
	for id, r := range taken {
		if r.a.State.Closed() {
			continue
		}
		alarms = append(alarms, r.a)
		adopted[id] = r.trail
	}
	n, err := v.deps.Engine.Adopt(alarms, adopted)
	if err != nil {
		v.log.Error("alarms of the partitions taken over not adopted", "err", err)
	}
	v.log.Info("alarms taken over", "partitions", len(gained), "alarms", n, "released", len(released))
}
