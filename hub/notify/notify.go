// Package notify delivers alarm events to outside systems (SMS gateways,
// ticketing, on-call pagers) as JSON webhooks. Following alertmanager, it is
// a pipeline of small stages: filter (severity, kind, escalation tier) →
// a bounded per-hook queue → encode → deliver with retries → account
// (metrics and logs). Notify never blocks the alarm engine: a slow or dead
// receiver costs only its own queue, and one sender goroutine per hook
// keeps that hook's events in order. Receivers get an Idempotency-Key
// header so they can discard the duplicates that retries make inevitable.
// The console is not a webhook: it gets events over its own websocket.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/workorder"
)

// Deps are what a Notifier needs from the hub.
type Deps struct {
	Log     *slog.Logger      // nil discards
	Metrics *metrics.Registry // nil keeps the counters private
	// Client sends the requests; nil uses a client that does not follow
	// redirects (a redirected POST becomes a GET and loses its body).
	// Per-attempt timeouts come from Webhook.Timeout, not from the client.
	Client *http.Client
	Now    func() time.Time // nil: time.Now; stamps sent_at and resolves Retry-After dates
	// Wait blocks for d or until ctx ends, returning ctx's error then. Nil
	// uses a timer; tests inject one that records the backoff and returns.
	Wait func(ctx context.Context, d time.Duration) error
}

// Notifier fans alarm events out to webhooks. Create it with New, call Run
// once, and feed it with Notify from any goroutine.
type Notifier struct {
	log     *slog.Logger
	client  *http.Client
	now     func() time.Time
	wait    func(context.Context, time.Duration) error
	hooks   atomic.Pointer[[]*hook] // replaced whole by SetWebhooks
	stopped atomic.Bool             // Run has returned: nobody will drain the queues

	mu      sync.Mutex      // serialises SetWebhooks with Run's start
	runCtx  context.Context // Run's, once it runs: new hooks' senders use it
	senders sync.WaitGroup
	newHook func(Webhook) *hook
}

// hook is one webhook's queue and counters. The queue is owned by its
// sender goroutine; Notify only sends into it.
type hook struct {
	cfg     Webhook
	queue   chan item
	sent    *metrics.Counter
	retries *metrics.Counter
	dropped *metrics.Counter
	depth   *metrics.Gauge
	failed  *metrics.Vec[metrics.Counter]
	// retired is closed when a reload drops or changes the hook: its
	// sender delivers what is queued, then stops (done).
	retired chan struct{}
	done    atomic.Bool
}

// Failure reasons, the values of the reason label of
// citywatch_notify_failed_total.
const (
	ReasonRejected  = "rejected"  // the receiver answered with a status that retrying cannot fix
	ReasonExhausted = "exhausted" // MaxAttempts attempts all failed
	ReasonShutdown  = "shutdown"  // the hub stopped before the event was delivered
	ReasonEncode    = "encode"    // the event could not be encoded (a bug upstream)
)

// New validates the hooks and prepares a Notifier; it starts nothing.
func New(hooks []Webhook, deps Deps) (*Notifier, error) {
	if err := Validate(hooks); err != nil {
		return nil, err
	}
	n := &Notifier{log: deps.Log, client: deps.Client, now: deps.Now, wait: deps.Wait}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("component", "notify")
	if n.client == nil {
		n.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.wait == nil {
		n.wait = sleep
	}
	reg := deps.Metrics
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	sent := reg.CounterVec("citywatch_notify_sent_total",
		"Alarm events delivered to a webhook (2xx), each counted once however many attempts it took.", "hook")
	failed := reg.CounterVec("citywatch_notify_failed_total",
		"Alarm events a webhook never got: rejected (4xx other than 408/429, 3xx), exhausted (retries used up), shutdown, encode.",
		"hook", "reason")
	retries := reg.CounterVec("citywatch_notify_retries_total",
		"Webhook attempts after the first (5xx, 408, 429, network errors).", "hook")
	dropped := reg.CounterVec("citywatch_notify_dropped_total",
		"Alarm events not queued for a webhook because its queue was full.", "hook")
	// A labelled gauge kept exact with ±1 on every enqueue/dequeue: the
	// registry's GaugeFunc has no labels.
	depth := reg.GaugeVec("citywatch_notify_queue_depth", "Alarm events waiting for a webhook.", "hook")
	n.newHook = func(w Webhook) *hook {
		return &hook{
			cfg:     w,
			queue:   make(chan item, w.QueueLen),
			sent:    sent.With(w.Name),
			retries: retries.With(w.Name),
			dropped: dropped.With(w.Name),
			depth:   depth.With(w.Name),
			failed:  failed,
			retired: make(chan struct{}),
		}
	}
	var hs []*hook
	for _, w := range hooks {
		hs = append(hs, n.newHook(w.withDefaults()))
	}
	n.hooks.Store(&hs)
	return n, nil
}

// SetWebhooks replaces the hooks (a configuration reload), or changes
// nothing and says what is wrong. A hook whose configuration is unchanged
// keeps its queue and sender; one dropped or changed delivers what it has
// queued under its old configuration, then stops.
func (n *Notifier) SetWebhooks(hooks []Webhook) error {
	if err := Validate(hooks); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := *n.hooks.Load()
	var hs []*hook
	kept := map[*hook]bool{}
	for _, w := range hooks {
		w = w.withDefaults()
		i := slices.IndexFunc(old, func(h *hook) bool { return h.cfg.Name == w.Name && reflect.DeepEqual(h.cfg, w) })
		if i >= 0 {
			hs = append(hs, old[i])
			kept[old[i]] = true
			continue
		}
		h := n.newHook(w)
		hs = append(hs, h)
		n.start(h)
	}
	n.hooks.Store(&hs)
	for _, h := range old {
		if !kept[h] {
			close(h.retired)
		}
	}
	n.log.Info("webhooks replaced", "hooks", len(hs), "kept", len(kept), "retired", len(old)-len(kept))
	return nil
}

// start runs h's sender if Run has started; must hold n.mu.
func (n *Notifier) start(h *hook) {
	if n.runCtx == nil {
		return
	}
	n.log.Info("webhook sender started", "hook", h.cfg)
	n.senders.Go(func() { n.send(n.runCtx, h) })
}

func (h *hook) fail(reason string) { h.failed.With(h.cfg.Name, reason).Inc() }

// Notify queues ev for every hook that wants it. It never blocks: a hook
// whose queue is full loses the event, counted in
// citywatch_notify_dropped_total.
func (n *Notifier) Notify(ev alarm.Event) {
	n.enqueue(alarmItem(ev), func(w Webhook) bool { return w.match(ev) })
}

// NotifyWorkOrder queues a work-order event for the hooks that asked for
// its kind (workorder.open, workorder.close, workorder.breach); it never
// blocks, like Notify.
func (n *Notifier) NotifyWorkOrder(ev workorder.Event) {
	it, ok := workOrderItem(ev)
	if !ok {
		return
	}
	n.enqueue(it, func(w Webhook) bool { return slices.Contains(w.Kinds, it.kind) })
}

func (n *Notifier) enqueue(it item, match func(Webhook) bool) {
	for _, h := range *n.hooks.Load() {
		if !match(h.cfg) {
			continue
		}
		if n.stopped.Load() || h.done.Load() {
			h.fail(ReasonShutdown)
			continue
		}
		select {
		case h.queue <- it:
			h.depth.Add(1)
		default:
			h.dropped.Inc()
			n.log.Warn("webhook queue full, event dropped", "hook", h.cfg.Name, "subject", it.subject, "event", it.kind)
		}
	}
}

func (n *Notifier) Run(ctx context.Context) error {
	n.mu.Lock()
	n.runCtx = ctx
	for _, h := range *n.hooks.Load() {
		n.start(h)
	}
	n.mu.Unlock()
	<-ctx.Done()
	n.mu.Lock() // no SetWebhooks starts a sender from here on
	n.senders.Wait()
	n.stopped.Store(true)
	n.runCtx = nil
	n.mu.Unlock()
	// A Notify racing with shutdown may have queued after the senders'
	// last drain; account for it too.
	for _, h := range *n.hooks.Load() {
		n.abandon(h, 0)
	}
	return nil
}

// send is one hook's sender: it takes events in order and delivers each
// before the next, so a receiver sees an alarm's transitions in order.
func (n *Notifier) send(ctx context.Context, h *hook) {
	for {
		if ctx.Err() != nil {
			n.abandon(h, 0)
			return
		}
		select {
		case <-ctx.Done():
			n.abandon(h, 0)
			return
		case <-h.retired:
			n.retire(ctx, h)
			return
		case it := <-h.queue:
			h.depth.Add(-1)
			if !n.deliver(ctx, h, it) {
				n.abandon(h, 1)
				return
			}
		}
	}
}

// retire delivers what a retired hook has queued, then stops it; an event
// that slipped in after is counted lost like one at shutdown.
func (n *Notifier) retire(ctx context.Context, h *hook) {
	for {
		select {
		case it := <-h.queue:
			h.depth.Add(-1)
			if !n.deliver(ctx, h, it) {
				n.abandon(h, 1)
				h.done.Store(true)
				return
			}
			continue
		default:
		}
		break
	}
	h.done.Store(true)
	n.abandon(h, 0)
	n.log.Info("webhook sender retired by a reload", "hook", h.cfg.Name)
}

// abandon drains the queue at shutdown and reports what was lost.
// inFlight is the event whose delivery was cut short, if any.
func (n *Notifier) abandon(h *hook, inFlight int) {
	lost := inFlight
	for {
		select {
		case <-h.queue:
			h.depth.Add(-1)
			lost++
			continue
		default:
		}
		break
	}
	if lost == 0 {
		return
	}
	h.failed.With(h.cfg.Name, ReasonShutdown).Add(uint64(lost))
	n.log.Warn("webhook sender stopped with events undelivered", "hook", h.cfg.Name, "undelivered", lost)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("notify: wait: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}
