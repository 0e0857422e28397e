package metricstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// fakeInflux is an InfluxDB write endpoint whose answer the test chooses
// through answer; it keeps every line it accepted.
type fakeInflux struct {
	*httptest.Server
	mu       sync.Mutex
	answer   func(body string) int // the status to answer; nil: 204
	lines    map[string]int        // accepted line → times
	requests []string              // accepted bodies, in order
}

func newFakeInflux(t *testing.T) *fakeInflux {
	f := &fakeInflux{lines: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/write" || r.URL.Query().Get("precision") != "ms" || r.URL.Query().Get("bucket") != "db/rp" ||
			r.Header.Get("Authorization") != "Token u:p" {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		answer := f.answer
		f.mu.Unlock()
		status := http.StatusNoContent
		if answer != nil {
			status = answer(string(body))
		}
		if status != http.StatusNoContent {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":"fake says %d"}`, status)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests = append(f.requests, string(body))
		for l := range strings.SplitSeq(strings.TrimSuffix(string(body), "\n"), "\n") {
			f.lines[l]++
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeInflux) setAnswer(a func(string) int) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func (f *fakeInflux) distinct() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lines)
}

func down(string) int { return http.StatusServiceUnavailable }

// startWriter runs a writer against url with a spill in dir.
func startWriter(t *testing.T, url, dir string, cfg metricstore.InfluxConfig) *running {
	t.Helper()
	cfg.URL, cfg.Token, cfg.Org, cfg.Bucket = url, "u:p", "o", "db/rp"
	if dir != "" {
		cfg.SpillDir = dir
		cfg.SpillBytes = cmpOr(cfg.SpillBytes, 64<<20)
	}
	r := &running{reg: metrics.NewRegistry(), log: new(testenv.LogBuffer), done: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(r.log, t.Output()), nil))
	in, err := metricstore.NewInflux(cfg, metricstore.Deps{Log: logger, Metrics: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	r.Influx = in
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- in.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func cmpOr(a, b int64) int64 {
	if a != 0 {
		return a
	}
	return b
}

// waitLong is waitFor for recoveries that wait out the writer's probe
// interval (up to 10 s) once or twice.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// encoded returns the lines the writer must send for samples, as a set.
func healthLines(samples []fleet.Sample) map[string]bool {
	out := map[string]bool{}
	for _, s := range samples {
		out[fmt.Sprintf("device_health,agent=%s,device=%s,district=%s,kind=%s status_code=0i,fps=25 %d",
			s.Agent, s.Device, s.District, s.Kind, s.At.UnixMilli())] = true
	}
	return out
}

func fpsSamples(devices, rounds int) []fleet.Sample {
	samples := citySamples(devices, rounds)
	for i := range samples {
		samples[i].Metrics = map[string]float64{"fps": 25}
	}
	return samples
}

func (f *fakeInflux) missing(want map[string]bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for l := range want {
		if f.lines[l] == 0 {
			n++
		}
	}
	return n
}

// InfluxDB answers 503 for a while: every sample written meanwhile waits
// in the spill, on disk, and reaches InfluxDB once it answers again, with
// its original timestamp. Nothing is dropped or failed; the spill is
// empty and its files gone at the end.
func TestSpillRidesOutAnOutage(t *testing.T) {
	db := newFakeInflux(t)
	dir := filepath.Join(t.TempDir(), "spill")
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 100, FlushInterval: 20 * time.Millisecond, QueueLen: 1000})

	samples := fpsSamples(20, 100)
	w.WriteSamples(samples[:100])
	waitFor(t, "the first batch", func() bool { return w.Status().Written == 100 })

	db.setAnswer(down)
	for i := 100; i < len(samples); i += 20 {
		w.WriteSamples(samples[i : i+20])
		// At an agent's pace, which the spill keeps up with.
		waitFor(t, "the queue relieved", func() bool { return w.Status().QueueDepth <= 500 })
	}
	// Everything is on disk: in memory there is room for half of it.
	waitLong(t, "the outage's samples in the spill", func() bool {
		return w.Status().Spilled == uint64(len(samples)-100)
	})
	st := w.Status()
	files, _ := filepath.Glob(filepath.Join(dir, "*.spill"))
	if st.OK || st.SpillBytes <= 0 || st.SpillSegments != len(files) || len(files) == 0 || st.QueueDepth != 0 {
		t.Errorf("during the outage: status %+v, files %v", st, files)
	}
	var text strings.Builder
	w.reg.WriteText(&text)
	for _, series := range []string{
		fmt.Sprintf("citywatch_influx_spill_points %d\n", len(samples)-100),
		fmt.Sprintf("citywatch_influx_spill_segments %d\n", len(files)),
		fmt.Sprintf("citywatch_influx_spill_bytes %d\n", st.SpillBytes),
		"citywatch_influx_spill_max_bytes 6.7108864e+07\n",
		fmt.Sprintf("citywatch_influx_points_spilled_total %d\n", len(samples)-100),
	} {
		if !strings.Contains(text.String(), series) {
			t.Errorf("metrics lack %q:\n%s", series, text.String())
		}
	}

	db.setAnswer(nil)
	want := healthLines(samples)
	waitLong(t, "every sample in InfluxDB", func() bool { return db.missing(want) == 0 })
	waitFor(t, "the spill emptied", func() bool { return w.Status().Spilled == 0 && w.Status().SpillSegments == 0 })
	w.stop(t)
	st = w.Status()
	if st.Dropped != 0 || st.Failed != 0 || st.Written < uint64(len(samples)) || !st.OK || st.SpillBytes != 0 {
		t.Errorf("after recovery: status %+v", st)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.spill")); len(files) != 0 {
		t.Errorf("spill files left: %v", files)
	}
	if n := db.distinct(); n != len(samples) {
		t.Errorf("InfluxDB got %d distinct lines, want %d", n, len(samples))
	}
}

// The hub stops while InfluxDB is down: what it could not send is in the
// spill when Run returns, and a new writer on the same directory (the hub
// restarted) replays it as soon as InfluxDB answers.
func TestSpillSurvivesARestart(t *testing.T) {
	db := newFakeInflux(t)
	dir := filepath.Join(t.TempDir(), "spill")
	db.setAnswer(down)
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 100, FlushInterval: time.Hour, DrainTimeout: time.Second})
	samples := fpsSamples(10, 50)
	for i := 0; i < len(samples); i += 10 {
		w.WriteSamples(samples[i : i+10])
	}
	w.stop(t) // the last, partial batch is sealed by the shutdown
	if st := w.Status(); st.Spilled != uint64(len(samples)) || st.Dropped != 0 || st.Written != 0 {
		t.Fatalf("after stopping during the outage: %+v", st)
	}

	db.setAnswer(nil)
	w2 := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 100, FlushInterval: 20 * time.Millisecond})
	want := healthLines(samples)
	waitLong(t, "the spilled samples in InfluxDB", func() bool { return db.missing(want) == 0 })
	waitFor(t, "the spill emptied", func() bool { return w2.Status().Spilled == 0 })
	if !strings.Contains(w2.log.String(), "replaying points spilled before the restart") {
		t.Errorf("the restart did not say it replays; log:\n%s", w2.log.String())
	}
}

// A spill too small for the outage: what does not fit is dropped — counted
// by reason, logged at once, dated for /healthz — and every point is
// accounted for: written, dropped, or still in the spill.
func TestSpillFullDropsAreCounted(t *testing.T) {
	db := newFakeInflux(t)
	dir := filepath.Join(t.TempDir(), "spill")
	db.setAnswer(down)
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 50, FlushInterval: 20 * time.Millisecond,
		QueueLen: 200, SpillBytes: 24 << 10})
	samples := fpsSamples(10, 200) // ~200 KiB of line protocol
	for i := 0; i < len(samples); i += 10 {
		w.WriteSamples(samples[i : i+10])
		// At an agent's pace: the spill, not the memory queue, overflows.
		waitFor(t, "the queue relieved", func() bool { return w.Status().QueueDepth <= 100 })
	}
	waitFor(t, "the memory queue emptied into the spill", func() bool {
		st := w.Status()
		return st.QueueDepth == 0 && st.Spilled+st.Dropped == uint64(len(samples))
	})
	st := w.Status()
	if st.Dropped == 0 || st.Spilled == 0 || st.SpillBytes > 24<<10 || st.LastDropAt.IsZero() {
		t.Fatalf("status %+v: want drops, a full spill within its size", st)
	}
	var text strings.Builder
	w.reg.WriteText(&text)
	if !strings.Contains(text.String(), `citywatch_influx_points_dropped_total{reason="spill_full"} `) {
		t.Errorf("no spill_full drops in the metrics:\n%s", text.String())
	}
	if !strings.Contains(w.log.String(), "reason=spill_full") {
		t.Errorf("the drop was not logged:\n%s", w.log.String())
	}

	db.setAnswer(nil)
	spilled := st.Spilled
	waitLong(t, "the spill replayed", func() bool { return w.Status().Spilled == 0 })
	w.stop(t)
	st = w.Status()
	if st.Written != spilled || st.Written+st.Dropped != uint64(len(samples)) || st.Failed != 0 {
		t.Errorf("status %+v: want the %d spilled written and written + dropped = %d", st, spilled, len(samples))
	}
}

// While the spill is replayed, fresh points are not kept waiting: with two
// senders, one replays and the other takes the fresh batch, which reaches
// InfluxDB while most of the backlog is still on disk.
func TestFreshPointsGoBeforeTheBacklog(t *testing.T) {
	db := newFakeInflux(t)
	dir := filepath.Join(t.TempDir(), "spill")
	db.setAnswer(down)
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 10, FlushInterval: 20 * time.Millisecond, Writers: 2})
	backlog := fpsSamples(10, 40)
	for i := 0; i < len(backlog); i += 10 {
		w.WriteSamples(backlog[i : i+10])
	}
	waitLong(t, "the backlog in the spill", func() bool { return w.Status().Spilled == uint64(len(backlog)) })

	// InfluxDB comes back slow: each request waits for the test's go.
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the server closes, which waits for its handlers
	var fresh []fleet.Sample
	for i := range 10 {
		fresh = append(fresh, fleet.Sample{Device: fmt.Sprintf("new-%d", i), Agent: "agent-1", District: "Xicheng", Kind: wire.KindCamera,
			Status: wire.StatusOnline, Metrics: map[string]float64{"fps": 25}, At: time.Now().Truncate(time.Millisecond)})
	}
	freshSeen := make(chan int, 1) // backlog points still spilled when the fresh batch arrived
	db.setAnswer(func(body string) int {
		if strings.Contains(body, "device=new-") {
			select {
			case freshSeen <- int(w.Status().Spilled):
			default:
			}
		}
		<-gate
		return http.StatusNoContent
	})
	gate <- struct{}{} // the probe: InfluxDB is back
	waitFor(t, "the probe to succeed", func() bool { return w.Status().OK })
	w.WriteSamples(fresh)
	var left int
	for done := false; !done; {
		select {
		case left = <-freshSeen:
			done = true
		case gate <- struct{}{}:
		case <-time.After(60 * time.Second):
			t.Fatal("the fresh batch never reached InfluxDB")
		}
	}
	if left < len(backlog)/2 {
		t.Errorf("the fresh batch came when only %d of %d backlog points were left in the spill", left, len(backlog))
	}
	release()
	db.setAnswer(nil)
	want := healthLines(append(backlog, fresh...))
	waitLong(t, "everything in InfluxDB", func() bool { return db.missing(want) == 0 })
}

// A batch InfluxDB rejects (400) is failed, not spilled and replayed
// forever; a partial write counts only the points InfluxDB dropped.
func TestRejectedBatchesAreNotSpilled(t *testing.T) {
	db := newFakeInflux(t)
	dir := filepath.Join(t.TempDir(), "spill")
	db.setAnswer(func(body string) int { return http.StatusBadRequest })
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 10, FlushInterval: 20 * time.Millisecond})
	w.WriteSamples(fpsSamples(10, 1))
	waitFor(t, "the batch failed", func() bool { return w.Status().Failed == 10 })
	if st := w.Status(); st.Spilled != 0 || st.WriteErrors != 1 || st.Dropped != 0 {
		t.Errorf("status %+v: want one request, nothing spilled", st)
	}
}

// The ingest path never waits for InfluxDB: with every request hanging,
// writes return and the points wait in memory, then in the spill.
func TestIngestNeverWaitsForInfluxDB(t *testing.T) {
	db := newFakeInflux(t)
	hang := make(chan struct{})
	db.setAnswer(func(string) int { <-hang; return http.StatusNoContent })
	defer close(hang)
	dir := filepath.Join(t.TempDir(), "spill")
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 10, FlushInterval: 20 * time.Millisecond,
		QueueLen: 100, Writers: 2, Timeout: time.Hour})
	samples := fpsSamples(10, 100)
	returned := make(chan struct{})
	go func() {
		for i := 0; i < len(samples); i += 10 {
			w.WriteSamples(samples[i : i+10])
		}
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("WriteSamples blocked on a hanging InfluxDB")
	}
	// Two batches hang in flight; the rest is queued, spilled past half
	// the queue, or dropped for a full queue — all counted. The spill runs
	// beside the producer: on a loaded machine every point can be queued or
	// dropped before it moves any, so wait for both.
	waitFor(t, "every point accounted for, some spilled", func() bool {
		st := w.Status()
		return st.Spilled > 0 && st.QueueDepth+int(st.Spilled+st.Dropped)+20 == len(samples)
	})
}

func TestNewInfluxNeedsADirectoryForTheSpill(t *testing.T) {
	_, err := metricstore.NewInflux(metricstore.InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "b", SpillBytes: 1 << 20}, metricstore.Deps{})
	if err == nil || !strings.Contains(err.Error(), "spill") {
		t.Errorf("NewInflux with spill bytes but no directory: %v", err)
	}
}

// Run fails when the spill cannot be opened, rather than running without
// the protection it was configured with.
func TestRunFailsWithoutItsSpill(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := metricstore.NewInflux(metricstore.InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "b", SpillDir: file, SpillBytes: 1 << 20}, metricstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "spill") {
		t.Errorf("Run with a file for a spill directory: %v", err)
	}
}

// A request that times out means InfluxDB is slow, not down: the batch
// goes to the spill at once, without retries holding the only sender, and
// the next batch is sent while the slow one waits there to be replayed.
func TestTimedOutBatchIsSpilledNotRetried(t *testing.T) {
	db := newFakeInflux(t)
	var mu sync.Mutex
	slow, hung := true, 0
	db.setAnswer(func(body string) int {
		mu.Lock()
		stall := slow && strings.Contains(body, "device=slow-")
		if stall {
			hung++
		}
		mu.Unlock()
		if stall {
			time.Sleep(2 * time.Second) // beyond the writer's timeout
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	dir := filepath.Join(t.TempDir(), "spill")
	w := startWriter(t, db.URL, dir, metricstore.InfluxConfig{BatchSize: 10, FlushInterval: 20 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Writers: 1})
	stalled := fpsSamples(10, 1)
	for i := range stalled {
		stalled[i].Device = fmt.Sprintf("slow-%d", i)
	}
	w.WriteSamples(stalled)
	hungAtSpill := 0
	waitFor(t, "the timed-out batch spilled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		hungAtSpill = hung
		return w.Status().Spilled == 10
	})
	// Spilled after the one request that timed out (a replay may have
	// begun since); retried in place it would have taken four.
	if hungAtSpill > 2 {
		t.Errorf("the slow batch was sent %d times before it was spilled", hungAtSpill)
	}
	fresh := fpsSamples(10, 2)[10:]
	w.WriteSamples(fresh)
	waitLong(t, "the next batch written", func() bool { return db.missing(healthLines(fresh)) == 0 })
	if n := db.missing(healthLines(stalled)); n != len(stalled) {
		t.Fatalf("%d of the slow batch's points missing; the fake never accepts them while slow", n)
	}
	mu.Lock()
	slow = false
	mu.Unlock()
	waitLong(t, "the spilled batch replayed", func() bool { return db.missing(healthLines(stalled)) == 0 })
	if st := w.Status(); st.Failed != 0 || st.Dropped != 0 || st.Spilled != 0 {
		t.Errorf("status %+v", st)
	}
}
