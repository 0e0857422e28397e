package metricstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	"github.com/influxdata/influxdb-client-go/v2/api"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// InfluxConfig says where and how to write. Zero values take the defaults
// noted; at 10,000 samples/s the defaults send two requests a second and
// ride out a ten-second outage without dropping.
type InfluxConfig struct {
	URL    string // http(s)://host:port; required
	Token  string // v2 token, or "user:password" for InfluxDB 1.8
	Org    string // ignored by InfluxDB 1.8
	Bucket string // required; "database/retention-policy" for InfluxDB 1.8

	BatchSize     uint          // points per request; 0 means 5,000
	FlushInterval time.Duration // longest a point waits for a full batch; 0 means 1 s
	Timeout       time.Duration // per request; 0 means 10 s
	QueueLen      int           // points waiting to be written; 0 means 100,000
	DrainTimeout  time.Duration // how long Run keeps writing after ctx ends; 0 means 5 s
	// Writers bounds the batches in flight at once; 0 means 4. One
	// serial writer cannot keep up with tens of thousands of points a
	// second against one request's round trip.
	Writers int
	GZip    bool // compress requests: saves bandwidth to a remote server, costs CPU
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
	if c.FlushInterval < 0 || c.Timeout < 0 || c.DrainTimeout < 0 || c.QueueLen < 0 || c.Writers < 0 || c.Writers > 64 {
		errs = append(errs, errors.New("flush interval, timeout, drain timeout and queue length must not be negative"))
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

// Retry policy for a failed batch: four attempts over about 3.5 s. The
// queue absorbs what arrives meanwhile; longer retries would only move
// the loss from this batch to the queue.
const (
	maxAttempts  = 4
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 4 * time.Second
)

// historyLimit caps the samples and the transitions one History returns.
const historyLimit = 1000

// Influx writes samples and changes to InfluxDB. WriteSamples and
// WriteChange convert to points in the caller's goroutine and enqueue them
// without blocking; Run's single goroutine batches them and writes each
// batch with the blocking write API, so it knows the fate of every point.
// (The client's non-blocking API retries only when the next write comes,
// and its retry buffer silently drops the oldest batches.)
type Influx struct {
	cfg    InfluxConfig
	log    *slog.Logger
	client influxdb2.Client
	writer api.WriteAPIBlocking

	queue chan *write.Point
	// mu guards stopped. Producers hold it shared while enqueueing, so once
	// the drain has set stopped, nothing more enters the queue and every
	// point is accounted for exactly once.
	mu      sync.RWMutex
	stopped bool

	written, failed, writeErrors, batches *metrics.Counter
	droppedFull, droppedShutdown          *metrics.Counter

	lastDrop, lastDropLog, dropsSince atomic.Int64 // full-queue drops: when, when logged, how many since

	stateMu     sync.Mutex // guards the fields below
	lastErr     string
	lastErrAt   time.Time
	lastWriteAt time.Time
}

// NewInflux validates cfg and prepares the client; it connects to nothing.
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
		SetPrecision(time.Millisecond).
		SetUseGZip(cfg.GZip).
		// Each request also runs under its own context deadline; this only
		// keeps the client's 20 s default from cutting a longer Timeout short.
		SetHTTPRequestTimeout(uint(math.Ceil(cfg.Timeout.Seconds())))
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	in := &Influx{
		cfg:    cfg,
		log:    log.With("component", "metricstore"),
		client: client,
		writer: client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		queue:  make(chan *write.Point, cfg.QueueLen),
		written: reg.Counter("citywatch_influx_points_written_total",
			"Points InfluxDB accepted."),
		failed: reg.Counter("citywatch_influx_points_failed_total",
			"Points sent to InfluxDB but not stored: rejected, or retries exhausted."),
		writeErrors: reg.Counter("citywatch_influx_write_errors_total",
			"Failed write requests to InfluxDB, retries included."),
		batches: reg.Counter("citywatch_influx_batches_total",
			"Batches sent to InfluxDB, each counted once however many attempts it took."),
	}
	dropped := reg.CounterVec("citywatch_influx_points_dropped_total",
		"Points never sent to InfluxDB: queue_full (InfluxDB too slow or down), shutdown (drain deadline passed, or written after Run ended).",
		"reason")
	in.droppedFull = dropped.With("queue_full")
	in.droppedShutdown = dropped.With("shutdown")
	reg.GaugeFunc("citywatch_influx_queue_depth", "Points waiting to be written to InfluxDB.",
		func() float64 { return float64(len(in.queue)) })
	return in, nil
}

// WriteSamples enqueues one device_health point per sample. It never
// blocks: when the queue is full the points are dropped and counted.
func (in *Influx) WriteSamples(samples []fleet.Sample) {
	in.mu.RLock()
	defer in.mu.RUnlock()
	for i := range samples {
		in.enqueue(healthPoint(&samples[i]))
	}
}

// WriteChange enqueues the change's agent_state and device_state points,
// without blocking, like WriteSamples.
func (in *Influx) WriteChange(c fleet.Change) {
	points := changePoints(&c)
	in.mu.RLock()
	defer in.mu.RUnlock()
	for _, p := range points {
		in.enqueue(p)
	}
}

// enqueue must be called with mu held shared.
func (in *Influx) enqueue(p *write.Point) {
	if in.stopped {
		in.droppedShutdown.Inc()
		return
	}
	select {
	case in.queue <- p:
	default:
		in.droppedFull.Inc()
		in.dropped()
	}
}

// dropLogEvery spaces the log lines about a full queue.
const dropLogEvery = 10 * time.Second

// dropped notes a point lost to a full queue: logged at once, then at most
// every dropLogEvery with the count since, so a loss is never silent.
func (in *Influx) dropped() {
	now := time.Now()
	in.lastDrop.Store(now.UnixNano())
	in.dropsSince.Add(1)
	last := in.lastDropLog.Load()
	if now.UnixNano()-last < int64(dropLogEvery) || !in.lastDropLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	in.log.Warn("InfluxDB falling behind: its queue is full and points are dropped",
		"dropped", in.dropsSince.Swap(0), "queue", cap(in.queue), "total_dropped", in.droppedFull.Value())
}

// Run writes batches until ctx ends, then keeps writing what is queued and
// in flight for at most DrainTimeout, logs what could not be stored, and
// closes the client. It returns nil: losses are counted, not fatal.
func (in *Influx) Run(ctx context.Context) error {
	defer in.client.Close()
	in.log.Info("writing metrics to InfluxDB", "influx", in.cfg)

	// Requests and retries run under sendCtx, which outlives ctx by
	// DrainTimeout, so the batch in flight at shutdown is not cut off.
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

	// One batcher fills batches; Writers senders write them, so that many
	// requests are in flight while the next batch fills. A batcher
	// waiting for a free sender leaves points in the queue, which is the
	// bound.
	batches := make(chan []*write.Point)
	var senders sync.WaitGroup
	for range in.cfg.Writers {
		senders.Go(func() {
			for b := range batches {
				in.send(sendCtx, b)
			}
		})
	}
	finish := func(batch []*write.Point) {
		close(batches)
		senders.Wait()
		in.drain(sendCtx, batch)
	}
	batch := make([]*write.Point, 0, in.cfg.BatchSize)
	tick := time.NewTicker(in.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case p := <-in.queue:
			batch = append(batch, p)
			if uint(len(batch)) < in.cfg.BatchSize {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 {
				continue
			}
		case <-ctx.Done():
			finish(batch)
			return nil
		}
		select {
		case batches <- batch:
		case <-ctx.Done():
			finish(batch)
			return nil
		}
		batch = make([]*write.Point, 0, in.cfg.BatchSize)
	}
}

// drain stops the queue and writes what is left while ctx lasts; what it
// cannot send in time is dropped and counted.
func (in *Influx) drain(ctx context.Context, batch []*write.Point) {
	in.mu.Lock()
	in.stopped = true
	in.mu.Unlock()
	for {
		for uint(len(batch)) < in.cfg.BatchSize && len(in.queue) > 0 {
			batch = append(batch, <-in.queue)
		}
		if len(batch) == 0 {
			break
		}
		if ctx.Err() != nil {
			in.droppedShutdown.Add(uint64(len(batch) + len(in.queue)))
			for len(in.queue) > 0 {
				<-in.queue
			}
			break
		}
		in.send(ctx, batch)
		batch = batch[:0]
	}
	st := in.Status()
	if lost := st.Failed + st.Dropped; lost > 0 {
		in.log.Warn("influx writer stopped; some points were not stored", "written", st.Written, "failed", st.Failed, "dropped", st.Dropped)
	} else {
		in.log.Info("influx writer stopped", "written", st.Written)
	}
}

// send writes one batch, retrying network errors, 429 and 5xx with backoff
// while ctx lasts, and counts each point as written or failed.
func (in *Influx) send(ctx context.Context, points []*write.Point) {
	n := len(points)
	in.batches.Inc()
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		err := in.writeOnce(ctx, points)
		if err == nil {
			in.written.Add(uint64(n))
			in.noteWrite()
			return
		}
		in.writeErrors.Inc()
		in.noteError(err)
		var herr *ihttp.Error
		retryable := errors.As(err, &herr) && (herr.StatusCode == 0 ||
			herr.StatusCode == http.StatusTooManyRequests || herr.StatusCode >= 500)
		if retryable && attempt < maxAttempts {
			wait := max(backoff, time.Duration(herr.RetryAfter)*time.Second)
			backoff = min(2*backoff, maxBackoff)
			if sleep(ctx, wait) {
				continue
			}
		}
		failed := n
		if herr != nil && herr.StatusCode == http.StatusBadRequest {
			failed = partialWriteDropped(herr.Message, n)
		}
		in.written.Add(uint64(n - failed))
		in.failed.Add(uint64(failed))
		in.log.Warn("influx batch not stored", "points", n, "failed", failed, "attempts", attempt, "error", err)
		return
	}
}

func (in *Influx) writeOnce(ctx context.Context, points []*write.Point) error {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	return in.writer.WritePoint(ctx, points...)
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

// Status reports the writer's counters and its last error.
func (in *Influx) Status() StoreStatus {
	in.stateMu.Lock()
	defer in.stateMu.Unlock()
	return StoreStatus{
		Backend:     SourceInfluxDB,
		URL:         redactURL(in.cfg.URL),
		Bucket:      in.cfg.Bucket,
		OK:          !in.lastErrAt.After(in.lastWriteAt),
		QueueDepth:  len(in.queue),
		QueueCap:    cap(in.queue),
		Written:     in.written.Value(),
		Failed:      in.failed.Value(),
		Dropped:     in.droppedFull.Value() + in.droppedShutdown.Value(),
		LastDropAt:  unixNano(in.lastDrop.Load()),
		WriteErrors: in.writeErrors.Value(),
		Batches:     in.batches.Value(),
		LastError:   in.lastErr,
		LastErrorAt: in.lastErrAt,
		LastWriteAt: in.lastWriteAt,
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
		p := Point{At: at, Status: wire.Status(str(v[fieldStatus]))}
		for k, x := range v {
			// Metrics are the only float columns; tags and status are
			// strings, status_code is an integer.
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
