// Package workview shares a cluster's work orders between its hubs over
// NATS. One hub keeps the orders (hub/workorder's Manager leads there): it
// announces every change, which the other hubs apply to their view, so a
// crew on any hub sees every order; a change a user makes on another hub
// is asked of the keeper, which makes it and answers. The orders
// themselves are in the shared PostgreSQL database, which a hub taking
// the orders over reads; a hub hearing a new keeper reads it too, so what
// it missed on the way is not missed for long.
//
// On NATS, core subjects (no persistence: the shared store is the record):
//
//	cw.workorders.<hub>  every change the keeper makes: {"hub", "event"};
//	                     the event's "changes" (its trail's length)
//	                     orders them
//	cw.workcmd           a change asked for, a request (workorder.Command);
//	                     only the keeper answers: {"event"} or {"error",
//	                     "code"}
package workview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citywatch/citywatch/hub/internal/announce"
	"github.com/citywatch/citywatch/hub/workorder"
)

// Manager is this hub's work orders (hub/workorder's Manager).
type Manager interface {
	Leading() bool
	Refused() uint64
	Gaps() uint64
	Execute(c workorder.Command) (workorder.Event, error)
	Mirror(ev workorder.Event) bool
	Reload() error
}

// Config is this hub's place in the cluster.
type Config struct {
	NATSURL string // the NATS servers, comma-separated
	Hub     string // this hub's id
}

// Deps are the view's collaborators. Leads reports whether this hub holds
// the lease to keep the orders (by its own clock); OnEvent hears a change
// announced by a new keeper, which the Manager reads from the store
// rather than applies (the Manager's own OnEvent hears the others).
type Deps struct {
	Leads   func() bool
	Log     *slog.Logger
	OnEvent func(workorder.Event)
}

const (
	announceSubject = "cw.workorders."
	commandSubject  = "cw.workcmd"
	// queueSize bounds the announcements waiting for NATS; a full queue
	// drops (counted): the shared store still has the change.
	queueSize = 10_000
	// askTimeout bounds a change asked of the keeper: it writes the
	// store before it answers.
	askTimeout = 5 * time.Second
)

// View is the cluster side of this hub's work orders: workorder.Leader for
// its Manager.
type View struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	out  *announce.Queue[announcement]

	mu     sync.Mutex
	m      Manager
	nc     *nats.Conn // set by Run once connected
	keeper string     // the hub last heard announcing

	applied, asked, reloads atomic.Uint64
}

type announcement struct {
	Hub   string          `json:"hub"`
	Event workorder.Event `json:"event"`
}

type answer struct {
	Event *workorder.Event `json:"event,omitempty"`
	Error string           `json:"error,omitempty"`
	Code  string           `json:"code,omitempty"`
}

// codes carry the Manager's errors across: the asking hub's HTTP layer
// maps them as it maps its own.
var codes = map[string]error{"not_found": workorder.ErrNotFound, "not_allowed": workorder.ErrNotAllowed,
	"reason_missing": workorder.ErrReasonMissing, "bad_request": workorder.ErrBadRequest, "unavailable": workorder.ErrUnavailable}

// New validates cfg; Serve gives the view its Manager, Run connects.
func New(cfg Config, deps Deps) (*View, error) {
	if cfg.NATSURL == "" || cfg.Hub == "" || deps.Leads == nil || deps.Log == nil {
		return nil, errors.New("workview: NATS URL, hub id, a lease and a log are required")
	}
	log := deps.Log.With("component", "workview")
	return &View{cfg: cfg, deps: deps, log: log, out: announce.New[announcement](announceSubject+cfg.Hub, queueSize, log,
		"work-order announcements lost; other hubs show these orders as the shared store has them from their next reload")}, nil
}

// Serve sets the Manager whose orders the view shares (made with the view
// as its Leader), before Run.
func (v *View) Serve(m Manager) {
	v.mu.Lock()
	v.m = m
	v.mu.Unlock()
}

// Leads implements workorder.Leader.
func (v *View) Leads() bool { return v.deps.Leads() }

// Announce sends a change this hub made as the keeper to the others; it
// never blocks. Events of a hub that does not keep the orders (its view
// applying another's) are not announced.
func (v *View) Announce(ev workorder.Event) {
	if m := v.manager(); m == nil || !m.Leading() {
		return
	}
	v.out.Put(announcement{Hub: v.cfg.Hub, Event: ev})
}

func (v *View) manager() Manager {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m
}

// Stats are the view's counters, for /healthz.
type Stats struct {
	Keeper    string `json:"keeper"`    // the hub keeping the orders, as last heard
	Announced uint64 `json:"announced"` // this hub's changes sent
	Dropped   uint64 `json:"dropped"`   // not sent: queue full or NATS refused
	Applied   uint64 `json:"applied"`   // other hubs' changes applied
	Asked     uint64 `json:"asked"`     // changes asked of the keeper
	Reloads   uint64 `json:"reloads"`   // the orders read again on hearing a new keeper
	Refused   uint64 `json:"refused"`   // changes this hub did not make: its lease ran out under it
	Gaps      uint64 `json:"gaps"`      // announcements found missing, the orders read again
}

// Stats reports the counters.
func (v *View) Stats() Stats {
	v.mu.Lock()
	keeper := v.keeper
	v.mu.Unlock()
	var refused, gaps uint64
	if m := v.manager(); m != nil {
		refused, gaps = m.Refused(), m.Gaps()
		if m.Leading() {
			keeper = v.cfg.Hub
		}
	}
	return Stats{Keeper: keeper, Announced: v.out.Sent(), Dropped: v.out.Dropped(), Applied: v.applied.Load(),
		Asked: v.asked.Load(), Reloads: v.reloads.Load(), Refused: refused, Gaps: gaps}
}

// Run connects to NATS, applies the keeper's announcements, answers the
// changes asked of this hub while it keeps the orders, and announces its
// own until ctx ends.
func (v *View) Run(ctx context.Context) error {
	if v.manager() == nil {
		return errors.New("workview: Run before Serve")
	}
	nc, err := nats.Connect(v.cfg.NATSURL, nats.Name("citywatch-hub work orders "+v.cfg.Hub),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("workview: connect: %w", err)
	}
	defer nc.Close()
	for subject, handle := range map[string]nats.MsgHandler{announceSubject + "*": v.onAnnouncement, commandSubject: v.onCommand} {
		sub, err := nc.Subscribe(subject, handle)
		if err != nil {
			return fmt.Errorf("workview: subscribe %s: %w", subject, err)
		}
		defer sub.Unsubscribe() //nolint:errcheck // the connection closes next
	}
	v.mu.Lock()
	v.nc = nc
	v.mu.Unlock()
	v.out.Run(ctx, nc)
	return nil
}

// onAnnouncement applies another hub's change. The first change heard
// from a new keeper makes this hub read the orders again: the new keeper
// started from the store, and this hub may have missed what the last one
// said as it died.
func (v *View) onAnnouncement(msg *nats.Msg) {
	var a announcement
	if err := json.Unmarshal(msg.Data, &a); err != nil || a.Hub == "" || a.Event.Order.ID == "" {
		v.log.Warn("work-order announcement not understood; ignored", "subject", msg.Subject, "err", err)
		return
	}
	m := v.manager()
	if a.Hub == v.cfg.Hub || m.Leading() {
		return
	}
	v.mu.Lock()
	changed := a.Hub != v.keeper
	v.keeper = a.Hub
	v.mu.Unlock()
	if changed {
		v.reloads.Add(1)
		if err := m.Reload(); err != nil {
			v.log.Error("work orders not read again from the shared store on a new keeper; showing what it announces", "keeper", a.Hub, "err", err)
		}
	}
	if m.Mirror(a.Event) {
		v.applied.Add(1)
	} else if changed && v.deps.OnEvent != nil {
		v.deps.OnEvent(a.Event)
	}
}

// Ask implements workorder.Leader: the change is made by the hub keeping
// the orders, whichever it is.
func (v *View) Ask(c workorder.Command) (workorder.Event, error) {
	v.mu.Lock()
	nc := v.nc
	v.mu.Unlock()
	if nc == nil {
		return workorder.Event{}, workorder.ErrUnavailable
	}
	b, err := json.Marshal(c)
	if err != nil {
		return workorder.Event{}, fmt.Errorf("workview: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	v.asked.Add(1)
	msg, err := nc.RequestWithContext(ctx, commandSubject, b)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) {
			return workorder.Event{}, workorder.ErrUnavailable
		}
		return workorder.Event{}, fmt.Errorf("workview: asking the keeper: %w", err)
	}
	var r answer
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return workorder.Event{}, fmt.Errorf("workview: the keeper's answer: %w", err)
	}
	if r.Error != "" {
		if base, ok := codes[r.Code]; ok {
			return workorder.Event{}, fmt.Errorf("%s: %w", r.Error, base)
		}
		return workorder.Event{}, errors.New(r.Error)
	}
	if r.Event == nil {
		return workorder.Event{}, errors.New("workview: the keeper answered nothing")
	}
	return *r.Event, nil
}

// onCommand makes a change asked of this hub if it keeps the orders; the
// others, and a keeper whose lease has just run out, stay silent.
func (v *View) onCommand(msg *nats.Msg) {
	var c workorder.Command
	if err := json.Unmarshal(msg.Data, &c); err != nil || c.Who == "" {
		v.log.Warn("work-order change asked not understood; ignored", "err", err)
		return
	}
	m := v.manager()
	if !m.Leading() {
		return
	}
	ev, err := m.Execute(c)
	if errors.Is(err, workorder.ErrNotLeading) {
		return
	}
	var r answer
	if err != nil {
		r.Error = err.Error()
		for code, base := range codes {
			if errors.Is(err, base) {
				r.Code = code
			}
		}
	} else {
		r.Event = &ev
	}
	b, err := json.Marshal(r)
	if err == nil {
		err = msg.Respond(b)
	}
	if err != nil {
		v.log.Warn("answer to a work-order change not sent", "order", c.ID, "err", err)
	}
}
