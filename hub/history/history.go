package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/internal/schema"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/hub/metrics"
)

const (
	// queueSize bounds the transitions waiting for Run. A hub restart
	// brings every device's first report within seconds (100,000 at the
	// scale we design for), so the queue holds twice that; it is a slice
	// that grows with use, so an idle hub spends nothing on it.
	queueSize = 200_000
	// maxBatch bounds one transaction, so a backlog is written in steps
	// and day roll-ups get their turn.
	maxBatch = 5_000
	// seedBatch is Seed's transaction: nobody waits behind it, and fewer,
	// larger commits write each hot page of the index once, not ten times.
	seedBatch = 50_000
	// tick is how often Run records that the hub is alive and looks for a
	// day to close.
	tick = 30 * time.Second
	// queries is how many reports compute at once; more wait. A report
	// over 100,000 devices keeps a core busy for up to a second.
	queries = 2
	// dropWindow is how long Health stays bad after a lost transition, and
	// logLimit how often lost transitions are logged at most.
	dropWindow = 15 * time.Minute
	logLimit   = time.Minute
)

// Options configure a History.
type Options struct {
	// Location draws the days of roll-ups and series (UTC when nil). Days
	// rolled up in another location are rebuilt at Open.
	Location *time.Location
	// Windows are the planned-downtime windows whose time reports count
	// as maintenance.
	Windows *maintenance.Schedule
	// Now is the hub clock (time.Now).
	Now func() time.Time
}

// Deps are a History's collaborators.
type Deps struct {
	Log     *slog.Logger
	Metrics *metrics.Registry
}

// History is the durable record of device states. Record and Observe are
// safe for concurrent use and never block; Run must run at most once;
// queries may run concurrently with everything.
type History struct {
	opts  Options
	log   *slog.Logger
	wdb   *sql.DB // the one writer connection
	rdb   *sql.DB // readers
	slots chan struct{}

	qmu   sync.Mutex
	queue []entry
	wake  chan struct{}

	// wmu serialises writes (Run's batches, Seed, roll-ups) and guards
	// what the writer knows below.
	wmu    sync.Mutex
	cur    tracker // each device's latest stored state and when it began (at the latest)
	first  day     // the first day rolled up; noDay when none is
	closed day     // days from first up to it are rolled up; noDay when none is

	cat *catalog

	written    *metrics.Counter
	dropped    *metrics.Vec[metrics.Counter]
	rolled     *metrics.Counter
	lastDrop   atomic.Int64 // Unix ns of the latest drop, 0 when none
	lastReject atomic.Value // string: why the latest invalid transition was refused

	hmu      sync.Mutex
	writeErr error // the latest batch failed
	rollErr  error // the latest roll-up failed
	logged   time.Time
	reported uint64
}

// noDay is the closed day of a database with no roll-up.
const noDay = day(-1 << 62)

// The times a transition may have (Unix ns): a clock gone wrong would
// otherwise make the history roll up centuries of empty days.
var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
)

// entry is a transition waiting to be written.
type entry struct {
	device        string
	place         place
	at            int64
	code          uint8 // absent: the device left the fleet
	sim           bool
	cause, reason string
}

// Open opens or creates the history at path and brings its schema up to
// date. It marks every device whose last stored state was known as unknown
// from the moment the hub was last seen alive: while the hub was down
// nobody knew.
func Open(path string, opts Options, deps Deps) (*History, error) {
	switch {
	case deps.Log == nil:
		return nil, errors.New("history: Deps.Log is required")
	case deps.Metrics == nil:
		return nil, errors.New("history: Deps.Metrics is required")
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Batches of thousands of rows: statement journals in memory rather
	// than a temporary file, and a page cache of 2 MiB, which holds the
	// time index's hot end (a syscall per page otherwise). It was 64 MiB,
	// which SQLite filled as the database grew: 8 MiB of the hub's 88 MiB
	// peak at 40,000 devices after a minute (78 MiB with 2 MiB), for
	// bulk writes a quarter faster (9.1 M transitions seeded in 78 s
	// rather than 104 s, BenchmarkAvailabilityMonth's build), far above
	// any city's rate of changes.
	wdb, err := schema.Open(path, migrations, "temp_store(MEMORY)", "cache_size(-2048)")
	if err != nil {
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	// Readers see committed batches only (WAL), and never write.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	q.Add("_pragma", "cache_size(-16384)")
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(queries)
	h := &History{
		opts: opts, log: deps.Log.With("component", "history"), wdb: wdb, rdb: rdb,
		slots: make(chan struct{}, queries), wake: make(chan struct{}, 1), closed: noDay,
		cat: newCatalog(),
	}
	m := deps.Metrics
	h.written = m.Counter("citywatch_history_written_total", "Device transitions the history has committed (or found unchanged).")
	h.dropped = m.CounterVec("citywatch_history_dropped_total",
		"Device transitions the history lost, by reason: queue_full, write_failed, invalid.", "reason")
	h.rolled = m.Counter("citywatch_history_days_rolled_total", "Days the history has rolled up.")
	m.GaugeFunc("citywatch_history_queue", "Device transitions waiting to be written.", func() float64 {
		h.qmu.Lock()
		defer h.qmu.Unlock()
		return float64(len(h.queue))
	})
	if err := h.load(context.Background()); err != nil {
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	return h, nil
}

// Close writes what is still queued, records the moment as the hub's last
// sign of life and closes the database. Call it after Run has returned.
func (h *History) Close() error {
	h.drain(nil)
	h.markAlive()
	return errors.Join(h.rdb.Close(), h.wdb.Close())
}

// Observe records what a fleet change means for the history: its device
// transitions, the devices an inventory adds or changes (their place from
// then on), and the devices it removes. It is what the fleet's OnChange
// calls.
func (h *History) Observe(c fleet.Change) {
	for t := range fleet.Transitions(&c) {
		h.Record(t)
	}
	if c.Kind != fleet.ChangeInventory {
		return
	}
	for i := range c.Affected {
		d := &c.Affected[i]
		h.Record(fleet.DeviceTransition{Device: d, Transition: fleet.Transition{
			At: c.At, From: d.Status, To: d.Status, Reason: "inventory", Cause: "inventory",
		}})
	}
	reason := "removed"
	if c.Retired {
		reason = "retired"
	}
	for _, id := range c.Removed {
		h.enqueue(entry{device: id, at: c.At.UnixNano(), code: absent, cause: "inventory", reason: reason})
	}
	if len(c.Assets) > 0 {
		h.recordAssets(c.Assets)
	}
}

// Record queues one device transition for writing. It never blocks: when
// the queue is full the transition is lost, counted and reported by Health.
func (h *History) Record(t fleet.DeviceTransition) {
	e, err := entryOf(t, false)
	if err != nil {
		h.lastReject.Store(err.Error())
		h.drop(1, "invalid")
		return
	}
	h.enqueue(e)
}

func entryOf(t fleet.DeviceTransition, sim bool) (entry, error) {
	if t.Device == nil || t.Device.ID == "" {
		return entry{}, errors.New("a transition without a device")
	}
	c, ok := code(t.To)
	if !ok {
		return entry{}, fmt.Errorf("device %s: status %q is not a device status", t.Device.ID, t.To)
	}
	if t.At.Before(time.Unix(0, minTime)) || !t.At.Before(time.Unix(0, maxTime)) {
		return entry{}, fmt.Errorf("device %s: transition time %s is not between 2000 and 2200", t.Device.ID, t.At.Format(time.RFC3339))
	}
	d := t.Device
	return entry{
		device: d.ID, at: t.At.UnixNano(), code: c, sim: sim, cause: t.Cause, reason: t.Reason,
		place: place{Agent: d.Agent, District: d.District, Site: d.Site, Kind: string(d.Kind), Vendor: d.Vendor},
	}, nil
}

func (h *History) enqueue(e entry) {
	h.qmu.Lock()
	if len(h.queue) >= queueSize {
		h.qmu.Unlock()
		h.drop(1, "queue_full")
		return
	}
	h.queue = append(h.queue, e)
	h.qmu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *History) drop(n int, reason string) {
	h.dropped.With(reason).Add(uint64(n))
	h.lastDrop.Store(h.opts.Now().UnixNano())
}

// Seed writes transitions through the same path as Record (same tables,
// flagged simulated when simulated is true), synchronously and without
// the queue's bound: for the demo's week of history and for tests. Days
// already rolled up that the transitions touch are rebuilt.
func (h *History) Seed(ctx context.Context, ts []fleet.DeviceTransition, simulated bool) error {
	es := make([]entry, 0, len(ts))
	var errs []error
	for i, t := range ts {
		e, err := entryOf(t, simulated)
		if err != nil {
			errs = append(errs, fmt.Errorf("transition %d: %w", i, err))
			continue
		}
		es = append(es, e)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("history: seed: %w", err)
	}
	for len(es) > 0 {
		n := min(len(es), seedBatch)
		if err := h.write(ctx, es[:n]); err != nil {
			return fmt.Errorf("history: seed: %w", err)
		}
		h.written.Add(uint64(n))
		es = es[n:]
	}
	return nil
}

// Run writes queued transitions as they come, one transaction per batch,
// closes each day's roll-up once the day is over, and records every tick
// that the hub is alive. When ctx ends it writes what is queued, rolls up
// the days that are over and returns.
func (h *History) Run(ctx context.Context) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	var spare []entry
	behind := h.rollUp()
	// Days still to close are closed one at a time, writing the queue in
	// between: closed is always ready, and listened to only while behind.
	closed := make(chan struct{})
	close(closed)
	for {
		var next <-chan struct{}
		if behind {
			next = closed
		}
		select {
		case <-ctx.Done():
			h.shutdown(spare)
			return nil
		case <-h.wake:
			spare = h.drain(spare)
		case <-next:
			behind = h.rollUp()
		case <-t.C:
			h.markAlive()
			behind = h.rollUp()
		}
		h.reportDrops()
	}
}

func (h *History) shutdown(spare []entry) {
	h.drain(spare)
	for h.rollUp() {
	}
	h.markAlive()
	h.reportDrops()
}

// drain writes everything queued, maxBatch at a time, and returns the
// emptied queue's array for reuse. A batch that cannot be written is
// counted as lost; Run has no one to return the error to.
func (h *History) drain(spare []entry) []entry {
	h.qmu.Lock()
	q := h.queue
	h.queue = spare[:0]
	h.qmu.Unlock()
	for rest := q; len(rest) > 0; {
		n := min(len(rest), maxBatch)
		err := h.write(context.Background(), rest[:n])
		h.hmu.Lock()
		h.writeErr = err
		h.hmu.Unlock()
		if err != nil {
			h.drop(n, "write_failed")
			h.log.Error("device transitions not written", "transitions", n, "err", err)
		} else {
			h.written.Add(uint64(n))
		}
		rest = rest[n:]
	}
	clear(q) // let the devices' strings go
	if cap(q) > maxBatch {
		// A burst's array (every device's first transition when the hub
		// starts: 144 bytes each) is not kept for the quiet after it.
		return nil
	}
	return q[:0]
}

// rollUp closes the next day that is over and reports whether another
// one waits.
func (h *History) rollUp() bool {
	more, err := h.closeNext(context.Background())
	h.hmu.Lock()
	h.rollErr = err
	h.hmu.Unlock()
	if err != nil {
		h.log.Error("day roll-up failed; reports compute that day from transitions", "err", err)
		return false
	}
	return more
}

// reportDrops logs lost transitions, at most once per logLimit.
func (h *History) reportDrops() {
	var total uint64
	for _, r := range []string{"queue_full", "write_failed", "invalid"} {
		total += h.dropped.With(r).Value()
	}
	now := h.opts.Now()
	h.hmu.Lock()
	defer h.hmu.Unlock()
	if total == h.reported || now.Sub(h.logged) < logLimit {
		return
	}
	args := []any{"new", total - h.reported, "dropped_total", total,
		"queue_full", h.dropped.With("queue_full").Value(), "write_failed", h.dropped.With("write_failed").Value(),
		"invalid", h.dropped.With("invalid").Value()}
	if why, ok := h.lastReject.Load().(string); ok {
		args = append(args, "last_invalid", why)
	}
	h.log.Error("device transitions lost; availability reports miss them", args...)
	h.reported, h.logged = total, now
}

// Trouble is what keeps the history from recording everything: its
// latest write (Op "write") or day roll-up ("rollup") failed with Err, or
// it lost device transitions ("lost"), Lost of them since start, the
// latest At.
type Trouble struct {
	Op   string
	Err  error
	Lost uint64
	At   time.Time
}

// What a Trouble's Op may be.
const (
	TroubleWrite  = "write"
	TroubleRollup = "rollup"
	TroubleLost   = "lost"
)

func (t *Trouble) String() string {
	switch t.Op {
	case TroubleWrite:
		return "history: device transitions cannot be written: " + t.Err.Error()
	case TroubleRollup:
		return "history: day roll-up failed (reports are slower, not wrong): " + t.Err.Error()
	}
	return fmt.Sprintf("history: %d device transitions lost since start, the latest at %s; availability reports miss them",
		t.Lost, t.At.Format(time.RFC3339))
}

// Trouble says what keeps the history from recording everything, nil
// when nothing does: a failed latest write or roll-up, or transitions lost
// within the last 15 minutes.
func (h *History) Trouble() *Trouble {
	h.hmu.Lock()
	writeErr, rollErr := h.writeErr, h.rollErr
	h.hmu.Unlock()
	switch {
	case writeErr != nil:
		return &Trouble{Op: TroubleWrite, Err: writeErr}
	case rollErr != nil:
		return &Trouble{Op: TroubleRollup, Err: rollErr}
	}
	if at := h.lastDrop.Load(); at != 0 && h.opts.Now().Sub(time.Unix(0, at)) < dropWindow {
		var total uint64
		for _, r := range []string{"queue_full", "write_failed", "invalid"} {
			total += h.dropped.With(r).Value()
		}
		return &Trouble{Op: TroubleLost, Lost: total, At: time.Unix(0, at).In(h.opts.Location)}
	}
	return nil
}

// Health reports whether the history is recording everything (Trouble is
// nil); reason says what is wrong, for /healthz and alarms.
func (h *History) Health() (ok bool, reason string) {
	if t := h.Trouble(); t != nil {
		return false, t.String()
	}
	return true, ""
}
