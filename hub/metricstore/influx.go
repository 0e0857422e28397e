package metricstore

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// InfluxConfig says where and how to write. Zero values take the defaults
// noted; at 10,000 samples/s the defaults send two requests a second and
// ride out a ten-second outage in memory, and with a spill as long as its
// size lasts.
type InfluxConfig struct {
	URL    string // http(s)://host:port; required
	Token  string // v2 token, or "user:password" for InfluxDB 1.8
	Org    string // ignored by InfluxDB 1.8
	Bucket string // required; "database/retention-policy" for InfluxDB 1.8

	BatchSize     uint          // points per request; 0 means 5,000
	FlushInterval time.Duration // longest a point waits for a full batch; 0 means 1 s
	Timeout       time.Duration // per request; 0 means 10 s
	QueueLen      int           // points waiting in memory; 0 means 100,000
	DrainTimeout  time.Duration // how long Run keeps writing after ctx ends; 0 means 5 s
	// Writers bounds the batches in flight at once; 0 means 4. One
	// serial writer cannot keep up with tens of thousands of points a
	// second against one request's round trip.
	Writers int
	GZip    bool // compress requests: saves bandwidth to a remote server, costs CPU

	// SpillDir holds the spill, a bounded queue on disk for what InfluxDB
	// cannot take in time (down, failing or slow); it is replayed when
	// InfluxDB answers again, also after a restart. SpillBytes bounds it;
	// 0 means no spill: what does not fit in memory is dropped.
	SpillDir   string
	SpillBytes int64
}

// LogValue keeps the token out of logs.
func (c InfluxConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", redactURL(c.URL)),
		slog.String("org", c.Org),
		slog.String("bucket", c.Bucket),
		slog.Bool("token_set", c.Token != ""),
		slog.Uint64("batch_size", uint64(c.BatchSize)),
		slog.Duration("flush_interval", c.FlushInterval),
		slog.Int("queue_len", c.QueueLen),
		slog.Int("writers", c.Writers),
		slog.Bool("gzip", c.GZip),
		slog.String("spill_dir", c.SpillDir),
		slog.Int64("spill_bytes", c.SpillBytes),
	)
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(invalid URL)"
}

func (c *InfluxConfig) validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: want http(s)://host:port", redactURL(c.URL)))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is missing"))
	}
	if c.FlushInterval < 0 || c.Timeout < 0 || c.DrainTimeout < 0 || c.QueueLen < 0 || c.Writers < 0 || c.Writers > 64 || c.SpillBytes < 0 {
		errs = append(errs, errors.New("flush interval, timeout, drain timeout, queue length and spill bytes must not be negative"))
	}
	if c.SpillBytes > 0 && c.SpillDir == "" {
		errs = append(errs, errors.New("spill bytes set without a spill directory"))
	}
	c.BatchSize = cmp.Or(c.BatchSize, 5000)
	c.FlushInterval = cmp.Or(c.FlushInterval, time.Second)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.QueueLen = cmp.Or(c.QueueLen, 100_000)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 5*time.Second)
	c.Writers = cmp.Or(c.Writers, 4)
	return errors.Join(errs...)
}

// Deps are what Influx needs from the hub.
type Deps struct {
	Log     *slog.Logger      // nil discards
	Metrics *metrics.Registry // nil keeps the counters private (Status still reports them)
}

// Retry policy. A batch is tried up to maxAttempts times over about 3.5 s
// while InfluxDB is thought healthy; then InfluxDB counts as failing, the
// batch goes to the spill (or, without one, is counted failed), and one
// sender at a time probes with a batch, waiting firstProbe, doubling up to
// maxProbe, between probes, while the others wait and the spill takes what
// arrives. Longer retries of one batch would only hold a sender. A request
// that times out is not retried and does not stop the others: InfluxDB is
// slow, not down; with a spill the batch goes there.
const (
	maxAttempts  = 4
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 4 * time.Second
	firstProbe   = 200 * time.Millisecond
	maxProbe     = 10 * time.Second
)

// historyLimit caps the samples and the transitions one History returns.
const historyLimit = 1000

// Drop reasons, the label of citywatch_influx_points_dropped_total.
const (
	dropQueueFull  = "queue_full"  // the memory queue was full (no spill, or the spill could not keep up)
	dropSpillFull  = "spill_full"  // InfluxDB behind and the spill full
	dropSpillError = "spill_error" // the spill's disk failed
	dropShutdown   = "shutdown"    // written after Run ended, or left at the drain deadline without a spill
)

// Influx writes samples, changes and live statistics to InfluxDB.
// WriteSamples, WriteChange and WriteLive encode line protocol in the
// caller's goroutine and append it to the memory queue: they never wait
// for InfluxDB or the disk. Run's senders (Writers of them) write batches
// with plain HTTP requests and know the fate of every point. When
// InfluxDB fails or falls behind, batches go to the spill and are replayed
// from it, oldest first, when it answers again, beside fresh points, which
// go first: at most Writers-1 senders replay at once. Every point ends
// written, failed (rejected by InfluxDB) or dropped (by reason), or waits
// in the spill.
type Influx struct {
	cfg      InfluxConfig
	log      *slog.Logger
	client   influxdb2.Client // queries
	http     *http.Client
	writeURL string
	auth     string

	q      *queue
	spill  *spill        // nil without one, or before Run opens it
	replay chan *batch   // from the spill to the senders
	slots  chan struct{} // replays in flight
	gzips  sync.Pool

	// health is InfluxDB's state as the senders see it.
	healthMu sync.Mutex
	failing  bool
	probeGap time.Duration
	probeAt  time.Time
	probe    chan struct{} // held by the one sender probing

	written, failed, writeErrors, batches, spilled, replayed *metrics.Counter
	dropped                                                  map[string]*metrics.Counter // by reason

	lastDrop, lastDropLog, dropsSince atomic.Int64 // drops: when, when logged, how many since

	stateMu     sync.Mutex // guards the fields below
	lastErr     string
	lastErrAt   time.Time
	lastWriteAt time.Time
}

// NewInflux validates cfg and prepares the client; it connects to nothing
// and opens no file.
func NewInflux(cfg InfluxConfig, deps Deps) (*Influx, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("metricstore: influx config: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Metrics
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPRequestTimeout(uint(math.Ceil(cfg.Timeout.Seconds())))
	wu, _ := url.Parse(strings.TrimSuffix(cfg.URL, "/") + "/api/v2/write")
	wu.RawQuery = url.Values{"org": {cfg.Org}, "bucket": {cfg.Bucket}, "precision": {"ms"}}.Encode()
	in := &Influx{
		cfg:    cfg,
		log:    log.With("component", "metricstore"),
		client: influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts),
		http: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: cfg.Writers + 1,
			IdleConnTimeout:     90 * time.Second,
		}},
		writeURL: wu.String(),
		q:        newQueue(int(cfg.BatchSize), cfg.QueueLen),
		replay:   make(chan *batch),
		slots:    make(chan struct{}, max(1, cfg.Writers-1)),
		probe:    make(chan struct{}, 1),
		written: reg.Counter("citywatch_influx_points_written_total",
			"Points InfluxDB accepted."),
		failed: reg.Counter("citywatch_influx_points_failed_total",
			"Points sent to InfluxDB but not stored: rejected, or retries exhausted without a spill."),
		writeErrors: reg.Counter("citywatch_influx_write_errors_total",
			"Failed write requests to InfluxDB, retries included."),
		batches: reg.Counter("citywatch_influx_batches_total",
			"Batches sent to InfluxDB, each counted once however many attempts it took."),
		spilled: reg.Counter("citywatch_influx_points_spilled_total",
			"Points put in the spill because InfluxDB was down or behind."),
		replayed: reg.Counter("citywatch_influx_points_replayed_total",
			"Points from the spill that InfluxDB accepted (also counted as written)."),
		dropped: map[string]*metrics.Counter{},
	}
	if cfg.Token != "" {
		in.auth = "Token " + cfg.Token
	}
	dropped := reg.CounterVec("citywatch_influx_points_dropped_total",
		"Points never stored: queue_full (memory queue full), spill_full (InfluxDB behind and the spill full), spill_error (the spill's disk failed), shutdown (drain deadline passed without a spill, or written after Run ended).",
		"reason")
	for _, r := range []string{dropQueueFull, dropSpillFull, dropSpillError, dropShutdown} {
		in.dropped[r] = dropped.With(r)
	}
	reg.GaugeFunc("citywatch_influx_queue_depth", "Points waiting in memory to be written to InfluxDB.",
		func() float64 { return float64(in.q.depth()) })
	reg.GaugeFunc("citywatch_influx_spill_bytes", "Bytes of the spill on disk.",
		func() float64 { return float64(in.spillStats().Bytes) })
	reg.GaugeFunc("citywatch_influx_spill_max_bytes", "The spill's size limit (influx.spill_bytes); 0: no spill.",
		func() float64 { return float64(in.cfg.SpillBytes) })
	reg.GaugeFunc("citywatch_influx_spill_segments", "Segment files of the spill.",
		func() float64 { return float64(in.spillStats().Segments) })
	reg.GaugeFunc("citywatch_influx_spill_points", "Points waiting in the spill to be replayed.",
		func() float64 { return float64(in.spillStats().Points) })
	return in, nil
}

// spillStats describes the spill; zero before Run opens it or without one.
func (in *Influx) spillStats() spillStats {
	if sp := in.spillOpen(); sp != nil {
		return sp.stats()
	}
	return spillStats{Max: in.cfg.SpillBytes}
}

// WriteSamples enqueues one device_health point per sample. It never
// blocks: when the memory queue is full the points are dropped and
// counted.
func (in *Influx) WriteSamples(samples []fleet.Sample) {
	in.enqueue(in.q.add(func(b []byte) ([]byte, int) {
		n := 0
		for i := range samples {
			var ok bool
			if b, ok = appendHealth(b, &samples[i]); ok {
				n++
			}
		}
		return b, n
	}))
}

// WriteChange enqueues the change's agent_state and device_state points,
// without blocking, like WriteSamples.
func (in *Influx) WriteChange(c fleet.Change) {
	in.enqueue(in.q.add(func(b []byte) ([]byte, int) { return appendChange(b, &c) }))
}

// Stored waits until every point queued before it was called has ended:
// written to InfluxDB, kept in the spill, or failed or dropped (each of
// which is counted). The flush interval seals the last batch. A hub of a
// cluster calls it before it acknowledges the agents' messages it
// applied, so that a hub killed leaves its successor nothing acknowledged
// and not stored.
func (in *Influx) Stored(ctx context.Context) error {
	mark := in.q.mark()
	for {
		done, more := in.q.settledTo(mark)
		if done {
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (in *Influx) enqueue(r enqueueResult, n int) {
	switch r {
	case rejectedFull:
		in.drop(dropQueueFull, n)
	case rejectedStopped:
		in.dropped[dropShutdown].Add(uint64(n))
	}
}

// dropLogEvery spaces the log lines about drops.
const dropLogEvery = 10 * time.Second

// drop counts n points lost for reason: logged at once, then at most every
// dropLogEvery with the count since, so a loss is never silent.
func (in *Influx) drop(reason string, n int) {
	if n == 0 {
		return
	}
	in.dropped[reason].Add(uint64(n))
	now := time.Now()
	in.lastDrop.Store(now.UnixNano())
	in.dropsSince.Add(int64(n))
	last := in.lastDropLog.Load()
	if now.UnixNano()-last < int64(dropLogEvery) || !in.lastDropLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	st := in.spillStats()
	in.log.Warn("InfluxDB falling behind: points are dropped",
		"reason", reason, "dropped", in.dropsSince.Swap(0), "queue", in.cfg.QueueLen,
		"spill_bytes", st.Bytes, "spill_max_bytes", in.cfg.SpillBytes, "total_dropped", in.droppedTotal())
}

func (in *Influx) droppedTotal() uint64 {
	var n uint64
	for _, c := range in.dropped {
		n += c.Value()
	}
	return n
}

// Run opens the spill, if configured, and writes until ctx ends; then it
// keeps writing what is queued for at most DrainTimeout, puts what is left
// in the spill, logs what could not be kept, and closes the client. It
// returns an error only when the spill cannot be opened; losses are
// counted, not fatal.
func (in *Influx) Run(ctx context.Context) error {
	defer in.client.Close()
	defer in.http.CloseIdleConnections()
	if in.cfg.SpillBytes > 0 {
		sp, err := openSpill(in.cfg.SpillDir, in.cfg.SpillBytes)
		if err != nil {
			in.q.stop()
			in.dropRest()
			return err
		}
		in.setSpill(sp)
		defer func() {
			if err := sp.close(); err != nil {
				in.log.Error("closing the spill", "error", err)
			}
		}()
		if st := sp.stats(); st.Points > 0 {
			in.log.Info("replaying points spilled before the restart", "points", st.Points, "bytes", st.Bytes)
		}
	}
	in.log.Info("writing metrics to InfluxDB", "influx", in.cfg)

	// Requests run under sendCtx, which outlives ctx by DrainTimeout, so
	// the batches in flight and queued at shutdown are still sent.
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopClock := context.AfterFunc(ctx, func() {
		t := time.NewTimer(in.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-sendCtx.Done():
		}
	})
	defer stopClock()

	// The senders take fresh batches until drain ends, which is after the
	// queue has stopped and sealed its last batch.
	drain, draining := context.WithCancel(context.WithoutCancel(ctx))
	defer draining()
	var wg sync.WaitGroup
	for range in.cfg.Writers {
		wg.Go(func() { in.sender(drain, sendCtx) })
	}
	if sp := in.spillOpen(); sp != nil {
		wg.Go(func() { in.replayer(ctx, sp) })
	}
	tick := time.NewTicker(in.cfg.FlushInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-tick.C:
			in.q.seal()
			in.relieve()
			if sp := in.spillOpen(); sp != nil {
				sp.sync()
			}
		case <-in.q.high:
			in.relieve()
		case <-ctx.Done():
			break loop
		}
	}
	in.q.stop()
	if in.isFailing() {
		in.relieve() // everything to the spill at once: InfluxDB is down
	}
	draining()
	wg.Wait()
	cancel()
	in.dropRest()
	st := in.Status()
	if lost := st.Failed + st.Dropped; lost > 0 {
		in.log.Warn("influx writer stopped; some points were not stored", "written", st.Written, "failed", st.Failed, "dropped", st.Dropped, "spilled", st.Spilled)
	} else {
		in.log.Info("influx writer stopped", "written", st.Written, "spilled", st.Spilled)
	}
	return nil
}

// dropRest puts what the drain left in memory in the spill, or counts it
// dropped.
func (in *Influx) dropRest() {
	for b := in.q.pop(); b != nil; b = in.q.pop() {
		in.toSpill(b, dropShutdown)
	}
}

func (in *Influx) setSpill(sp *spill) {
	in.healthMu.Lock()
	in.spill = sp
	in.healthMu.Unlock()
}

// spillOpen is the spill once Run has opened it, or nil.
func (in *Influx) spillOpen() *spill {
	in.healthMu.Lock()
	defer in.healthMu.Unlock()
	return in.spill
}

// relieve moves the oldest batches from memory to the spill while the
// queue is more than half full, or, while InfluxDB is failing, all of
// them: memory keeps the newest points for the senders, the spill takes
// the backlog. Without a spill it does nothing.
func (in *Influx) relieve() {
	if in.spillOpen() == nil {
		return
	}
	threshold := in.cfg.QueueLen / 2
	if in.isFailing() {
		threshold = 0
	}
	for b := in.q.popAbove(threshold); b != nil; b = in.q.popAbove(threshold) {
		in.toSpill(b, dropSpillFull)
	}
}

// toSpill puts a fresh batch in the spill, or, when there is none or it is
// full, counts its points dropped for noSpill (or spill_full).
func (in *Influx) toSpill(b *batch, noSpill string) {
	defer in.q.recycle(b)
	sp := in.spillOpen()
	if sp == nil {
		in.drop(noSpill, b.n)
		return
	}
	switch err := sp.append(b.buf, b.n); {
	case err == nil:
		in.spilled.Add(uint64(b.n))
	case errors.Is(err, errSpillFull):
		in.drop(dropSpillFull, b.n)
	default:
		in.noteError(err)
		in.drop(dropSpillError, b.n)
	}
}

// replayer hands the spill's records to the senders, oldest first, until
// ctx ends.
func (in *Influx) replayer(ctx context.Context, sp *spill) {
	for {
		rec, lost, err := sp.next()
		if err != nil {
			in.log.Error("spill record unreadable; its segment's remaining points are lost", "error", err, "points", lost)
			in.drop(dropSpillError, lost)
			continue
		}
		if rec == nil {
			select {
			case <-sp.avail:
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case in.replay <- &batch{buf: rec.buf, n: rec.n, rec: rec}:
		case <-ctx.Done():
			sp.nack(rec)
			return
		}
	}
}

// sender takes batches — fresh ones first — and delivers them until drain
// ends and the memory queue is empty; sendCtx bounds the requests.
func (in *Influx) sender(drain, sendCtx context.Context) {
	ctx := drain
	for {
		if in.isFailing() {
			if !in.probeOnce(ctx, sendCtx) {
				return
			}
			continue
		}
		b, slot := in.take(ctx)
		if b == nil {
			return
		}
		in.deliver(sendCtx, b, maxAttempts)
		if slot {
			<-in.slots
		}
	}
}

// take waits for a batch: a fresh one if there is any, else one from the
// spill when fewer than Writers-1 replays are in flight. After ctx ends it
// returns only fresh batches, and nil once there are none. slot says the
// caller holds a replay slot, to release after delivery.
func (in *Influx) take(ctx context.Context) (b *batch, slot bool) {
	for {
		if b := in.q.pop(); b != nil {
			return b, false
		}
		if ctx.Err() != nil {
			return nil, false
		}
		var replay chan *batch
		select {
		case in.slots <- struct{}{}:
			slot, replay = true, in.replay
		default:
		}
		select {
		case b := <-replay:
			return b, true
		case <-in.q.ready:
		case <-ctx.Done():
		}
		if slot {
			<-in.slots
			slot = false
		}
	}
}

// probeOnce is a sender's turn while InfluxDB fails: one sender at a time
// waits out the probe interval, then sends one batch once. It returns
// false when the sender should stop.
func (in *Influx) probeOnce(ctx, sendCtx context.Context) bool {
	select {
	case in.probe <- struct{}{}:
	case <-ctx.Done():
		return false // Run puts what is queued in the spill
	}
	defer func() { <-in.probe }()
	if !in.isFailing() {
		return true
	}
	in.healthMu.Lock()
	wait := time.Until(in.probeAt)
	in.healthMu.Unlock()
	if !sleep(ctx, wait) {
		return false
	}
	b, slot := in.take(ctx)
	if b == nil {
		return false
	}
	in.deliver(sendCtx, b, 1)
	if slot {
		<-in.slots
	}
	return true
}

func (in *Influx) isFailing() bool {
	in.healthMu.Lock()
	defer in.healthMu.Unlock()
	return in.failing
}

// markFailing notes that a batch could not be written after its attempts,
// and schedules the next probe.
func (in *Influx) markFailing() {
	in.healthMu.Lock()
	defer in.healthMu.Unlock()
	if !in.failing {
		in.failing, in.probeGap = true, firstProbe
	} else {
		in.probeGap = min(2*in.probeGap, maxProbe)
	}
	in.probeAt = time.Now().Add(in.probeGap)
}

func (in *Influx) markHealthy() {
	in.healthMu.Lock()
	defer in.healthMu.Unlock()
	in.failing = false
}

// deliver writes one batch with up to attempts tries, retrying network
// errors, 429 and 5xx with backoff while ctx lasts and InfluxDB is not
// known to be failing, and accounts for every point: written, failed
// (rejected), or back to the spill.
func (in *Influx) deliver(ctx context.Context, b *batch, attempts int) {
	in.batches.Inc()
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		err := in.writeOnce(ctx, b.buf)
		if err == nil {
			in.written.Add(uint64(b.n))
			in.settle(b, true)
			in.markHealthy()
			in.noteWrite()
			return
		}
		in.writeErrors.Inc()
		in.noteError(err)
		var werr *writeError
		isWriteErr := errors.As(err, &werr)
		retryable := !isWriteErr || werr.status == http.StatusTooManyRequests || werr.status >= 500
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && in.spillOpen() != nil {
			// InfluxDB is slow, not down: the batch waits in the spill
			// (InfluxDB may well have stored it; a second copy costs
			// nothing) rather than holding a sender through more
			// timeouts, and the senders go on without probing.
			in.giveBack(b, err, attempt)
			return
		}
		if retryable && attempt < attempts && !in.isFailing() {
			wait := backoff
			if isWriteErr {
				wait = max(backoff, werr.retryAfter)
			}
			backoff = min(2*backoff, maxBackoff)
			if sleep(ctx, wait) {
				continue
			}
		}
		if retryable {
			in.markFailing()
			in.giveBack(b, err, attempt)
			return
		}
		failed := b.n
		if werr.status == http.StatusBadRequest {
			failed = partialWriteDropped(werr.msg, b.n)
		}
		in.written.Add(uint64(b.n - failed))
		in.failed.Add(uint64(failed))
		in.settle(b, false)
		in.log.Warn("influx batch not stored", "points", b.n, "failed", failed, "attempts", attempt, "error", err)
		return
	}
}

// settle is the end of a batch that InfluxDB answered: a spilled one
// leaves the spill.
func (in *Influx) settle(b *batch, ok bool) {
	if b.rec != nil {
		if ok {
			in.replayed.Add(uint64(b.n))
		}
		in.spillOpen().ack(b.rec)
		b.rec = nil
		return
	}
	in.q.recycle(b)
}

// giveBack handles a batch InfluxDB did not take: a replayed one goes back
// to the front of the spill, a fresh one into it; without a spill its
// points are failed.
func (in *Influx) giveBack(b *batch, err error, attempts int) {
	switch {
	case b.rec != nil:
		in.spillOpen().nack(b.rec)
	case in.spillOpen() != nil:
		in.toSpill(b, dropSpillFull)
	default:
		in.failed.Add(uint64(b.n))
		in.q.recycle(b)
		in.log.Warn("influx batch not stored", "points", b.n, "failed", b.n, "attempts", attempts, "error", err)
	}
}

// writeError is InfluxDB's answer to a write it did not accept.
type writeError struct {
	status     int
	msg        string
	retryAfter time.Duration
}

func (e *writeError) Error() string {
	return fmt.Sprintf("influx write: %d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

// writeOnce posts one batch of line protocol to /api/v2/write, which
// InfluxDB 1.8 and 2.x both serve.
func (in *Influx) writeOnce(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	var rd io.Reader = bytes.NewReader(body)
	if in.cfg.GZip {
		var buf bytes.Buffer
		zw, _ := in.gzips.Get().(*gzip.Writer)
		if zw == nil {
			zw = gzip.NewWriter(&buf)
		} else {
			zw.Reset(&buf)
		}
		zw.Write(body)
		zw.Close()
		in.gzips.Put(zw)
		rd = &buf
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.writeURL, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if in.cfg.GZip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if in.auth != "" {
		req.Header.Set("Authorization", in.auth)
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return fmt.Errorf("influx write: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	werr := &writeError{status: resp.StatusCode, msg: errorMessage(raw)}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		werr.retryAfter = time.Duration(s) * time.Second
	}
	return werr
}

// errorMessage reads the message of an error body: v2's {"message": …},
// 1.x's {"error": …}, or the text itself.
func errorMessage(raw []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && cmp.Or(e.Message, e.Error) != "" {
		return cmp.Or(e.Message, e.Error)
	}
	return strings.TrimSpace(string(raw))
}

// partialWriteDropped reads how many of n points a 400 response rejected.
// InfluxDB 1.x stores the rest of a batch with points beyond retention or
// field type conflicts and says "partial write: … dropped=N"; any other 400
// (or a dropped=0 from a parse error, which rejects an unknown number)
// counts the whole batch as failed.
func partialWriteDropped(msg string, n int) int {
	i := strings.LastIndex(msg, "dropped=")
	if !strings.Contains(msg, "partial write") || i < 0 {
		return n
	}
	digits := msg[i+len("dropped="):]
	if end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
		digits = digits[:end]
	}
	d, err := strconv.Atoi(digits)
	if err != nil || d <= 0 || d > n {
		return n
	}
	return d
}

// sleep waits for d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (in *Influx) noteWrite() {
	in.stateMu.Lock()
	defer in.stateMu.Unlock()
	if in.lastErrAt.After(in.lastWriteAt) {
		in.log.Info("influx writes recovered", "last_error", in.lastErr)
	}
	in.lastWriteAt = time.Now()
}

func (in *Influx) noteError(err error) {
	in.stateMu.Lock()
	defer in.stateMu.Unlock()
	in.lastErr = err.Error()
	in.lastErrAt = time.Now()
}

// Status reports the writer's counters, its spill and its last error.
func (in *Influx) Status() StoreStatus {
	sp := in.spillStats()
	in.stateMu.Lock()
	defer in.stateMu.Unlock()
	return StoreStatus{
		Backend:       SourceInfluxDB,
		URL:           redactURL(in.cfg.URL),
		Bucket:        in.cfg.Bucket,
		OK:            !in.lastErrAt.After(in.lastWriteAt),
		QueueDepth:    in.q.depth(),
		QueueCap:      in.cfg.QueueLen,
		Written:       in.written.Value(),
		Failed:        in.failed.Value(),
		Dropped:       in.droppedTotal(),
		Spilled:       uint64(sp.Points),
		SpillBytes:    sp.Bytes,
		SpillMaxBytes: in.cfg.SpillBytes,
		SpillSegments: sp.Segments,
		LastDropAt:    unixNano(in.lastDrop.Load()),
		WriteErrors:   in.writeErrors.Value(),
		Batches:       in.batches.Value(),
		LastError:     in.lastErr,
		LastErrorAt:   in.lastErrAt,
		LastWriteAt:   in.lastWriteAt,
	}
}

// History queries device's samples and transitions since the given time
// with Flux, at most the latest historyLimit of each, oldest first.
func (in *Influx) History(ctx context.Context, device string, since time.Time) (History, error) {
	if err := wire.ValidID(device); err != nil {
		// Also what makes device safe to put in a Flux string literal.
		return History{}, fmt.Errorf("metricstore: history: %w", err)
	}
	h := History{Device: device, Source: SourceInfluxDB, Samples: []Point{}, Transitions: []Transition{}}
	err := in.query(ctx, measurementHealth, device, since, func(at time.Time, v map[string]any) {
		p := Point{At: at, Status: statusOf(v)}
		for k, x := range v {
			// Metrics are the only float columns; tags (and the status
			// of old points) are strings, status_code is an integer.
			if f, ok := x.(float64); ok {
				if p.Metrics == nil {
					p.Metrics = make(map[string]float64)
				}
				p.Metrics[k] = f
			}
		}
		h.Samples = append(h.Samples, p)
	})
	if err != nil {
		return History{}, err
	}
	err = in.query(ctx, measurementDeviceState, device, since, func(at time.Time, v map[string]any) {
		h.Transitions = append(h.Transitions, Transition{
			At:     at,
			From:   wire.Status(str(v["from"])),
			To:     wire.Status(str(v["to"])),
			Reason: str(v["reason"]),
			Detail: str(v["detail"]),
			Cause:  str(v["cause"]),
		})
	})
	if err != nil {
		return History{}, err
	}
	// One table per tag set (a device that moved site has several), each
	// in time order: merge them and keep the latest.
	slices.SortStableFunc(h.Samples, func(a, b Point) int { return a.At.Compare(b.At) })
	slices.SortStableFunc(h.Transitions, func(a, b Transition) int { return a.At.Compare(b.At) })
	h.Samples = h.Samples[max(0, len(h.Samples)-historyLimit):]
	h.Transitions = h.Transitions[max(0, len(h.Transitions)-historyLimit):]
	return h, nil
}

// query runs one measurement's history for device, one row per timestamp
// with the fields as columns, and calls row for each.
func (in *Influx) query(ctx context.Context, measurement, device string, since time.Time, row func(time.Time, map[string]any)) error {
	// InfluxDB cannot represent times before 1677; the epoch is early enough.
	if since.Before(time.Unix(0, 0)) {
		since = time.Unix(0, 0)
	}
	flux := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s)
  |> filter(fn: (r) => r._measurement == %s and r.device == %s)
  |> tail(n: %d)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`,
		fluxString(in.cfg.Bucket), since.UTC().Format(time.RFC3339Nano),
		fluxString(measurement), fluxString(device), historyLimit)
	res, err := in.client.QueryAPI(in.cfg.Org).Query(ctx, flux)
	if err != nil {
		return fmt.Errorf("metricstore: query %s: %w", measurement, err)
	}
	defer res.Close()
	for res.Next() {
		row(res.Record().Time(), res.Record().Values())
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("metricstore: query %s: %w", measurement, err)
	}
	return nil
}

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`).Replace(s) + `"`
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// unixNano is t as a time, zero for 0.
func unixNano(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(0, t)
}
