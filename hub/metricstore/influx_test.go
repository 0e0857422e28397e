package metricstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// running is an Influx writer whose Run goroutine the test controls.
type running struct {
	*metricstore.Influx
	reg    *metrics.Registry
	log    *testenv.LogBuffer
	cancel context.CancelFunc
	done   chan error
}

func startInflux(t testing.TB, db *testenv.Influx, cfg metricstore.InfluxConfig) *running {
	t.Helper()
	cfg.URL, cfg.Token, cfg.Org, cfg.Bucket = db.URL(), db.Token(), db.Org(), db.Bucket()
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

// stop cancels Run and waits for it to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		r.done <- nil // a second stop returns at once
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30 s after its context ended")
	}
}

// waitFor polls cond, which watches another process's progress.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// citySamples returns rounds × devices samples, one report per device per
// second ending a minute ago, so every point has its own series and time.
func citySamples(devices, rounds int) []fleet.Sample {
	start := time.Now().Add(-time.Minute - time.Duration(rounds)*time.Second).Truncate(time.Millisecond)
	out := make([]fleet.Sample, 0, devices*rounds)
	for r := range rounds {
		for d := range devices {
			out = append(out, fleet.Sample{
				Device: fmt.Sprintf("cam-%02d", d), Agent: "agent-1", Site: "site-1", District: "Xicheng",
				Kind: wire.KindCamera, Status: wire.StatusOnline,
				Metrics: map[string]float64{"tcp_ms": float64(d), "fps": 25, "bitrate_kbps": float64(r) + 0.5},
				At:      start.Add(time.Duration(r) * time.Second),
			})
		}
	}
	return out
}

func fluxCount(t *testing.T, db *testenv.Influx, filter string) int64 {
	t.Helper()
	rows := db.Query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h)
  |> filter(fn: (r) => %s) |> group() |> count()`, db.Bucket(), filter))
	if len(rows) == 0 {
		return 0
	}
	return rows[0]["_value"].(int64)
}

func TestInfluxWritesEverythingAndFlushesOnShutdown(t *testing.T) {
	db := testenv.InfluxDB(t)
	// Batches of 1,000 and no timed flush: two full batches go out while
	// running, the last 500 samples and the changes only because shutdown
	// flushes.
	w := startInflux(t, db, metricstore.InfluxConfig{BatchSize: 1000, FlushInterval: time.Hour})

	samples := citySamples(25, 100)
	// Free-text tags must not break the line protocol, and a metric named
	// like a status field must not overwrite it.
	for i := range samples {
		if samples[i].Device == "cam-00" {
			samples[i].District = `Dist, with = "odd" chars\`
			samples[i].Metrics["status"] = 1
		}
	}
	for i := 0; i < len(samples); i += 100 {
		w.WriteSamples(samples[i : i+100])
	}
	at := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	cam := func(id string, status wire.Status) fleet.Device {
		return fleet.Device{ID: id, Agent: "agent-1", Site: "site-1", District: "Xicheng", Kind: wire.KindCamera, Status: status}
	}
	cam1 := cam("cam-01", wire.StatusOffline)
	w.WriteChange(fleet.Change{At: at, Kind: fleet.ChangeDevice, From: wire.StatusOnline, To: wire.StatusOffline,
		Reason: string(wire.ReasonRefused), Detail: "port 554 closed", Device: &cam1})
	lost := []fleet.Device{cam("cam-02", wire.StatusUnreachable), cam("cam-03", wire.StatusUnreachable)}
	for i := range lost {
		lost[i].Reason, lost[i].Reported = wire.ReasonAgentOffline, wire.StatusOnline
	}
	w.WriteChange(fleet.Change{At: at.Add(time.Second), Kind: fleet.ChangeAgent, From: wire.StatusOnline, To: wire.StatusOffline,
		Reason: "will", Agent: &fleet.Agent{ID: "agent-1", Site: "site-1", District: "Xicheng"}, Affected: lost})

	waitFor(t, "two full batches", func() bool { return w.Status().Written == 2000 })
	w.stop(t)

	st := w.Status()
	if want := uint64(len(samples) + 4); st.Written != want || st.Failed != 0 || st.Dropped != 0 || !st.OK {
		t.Fatalf("status = %+v, want %d written, nothing lost", st, want)
	}
	if got := fluxCount(t, db, `r._measurement == "device_health" and r._field == "status_code"`); got != int64(len(samples)) {
		t.Errorf("InfluxDB has %d device_health points, want %d", got, len(samples))
	}
	if got := fluxCount(t, db, `r._measurement == "device_health" and r._field == "fps"`); got != int64(len(samples)) {
		t.Errorf("InfluxDB has %d fps values, want %d", got, len(samples))
	}
	if got := fluxCount(t, db, `r._measurement == "device_state" and r._field == "to"`); got != 3 {
		t.Errorf("InfluxDB has %d device_state points, want 3", got)
	}

	rows := db.Query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "device_health" and r.device == "cam-00")
  |> last() |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`, db.Bucket()))
	// No string status beside status_code and no site tag (the agent's):
	// InfluxDB would store and index them for every sample.
	want := map[string]any{
		"agent": "agent-1", "district": `Dist, with = "odd" chars/`, "kind": "camera", "device": "cam-00",
		"status_code": int64(0), "tcp_ms": 0.0, "fps": 25.0, "bitrate_kbps": 99.5,
		"status": nil, "site": nil,
	}
	if len(rows) != 1 {
		t.Fatalf("last cam-00 sample: %d rows, want 1: %v", len(rows), rows)
	}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("last cam-00 sample: %s = %#v, want %#v (row %v)", k, rows[0][k], v, rows[0])
		}
	}

	rows = db.Query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "agent_state")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`, db.Bucket()))
	if len(rows) != 1 || rows[0]["affected"] != int64(2) || rows[0]["to"] != "offline" || rows[0]["reason"] != "will" {
		t.Errorf("agent_state rows = %v, want one offline by will affecting 2", rows)
	}

	h, err := w.History(context.Background(), "cam-02", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wantT := []metricstore.Transition{{At: at.Add(time.Second).UTC(), From: wire.StatusOnline, To: wire.StatusUnreachable,
		Reason: string(wire.ReasonAgentOffline), Cause: metricstore.CauseAgent}}
	if h.Source != metricstore.SourceInfluxDB || len(h.Samples) != 100 || fmt.Sprint(h.Transitions) != fmt.Sprint(wantT) {
		t.Errorf("History(cam-02) from %s: %d samples, transitions %+v; want 100 samples and %+v",
			h.Source, len(h.Samples), h.Transitions, wantT)
	}
	for i, p := range h.Samples {
		wantP := fmt.Sprint(metricstore.Point{At: samples[i*25+2].At.UTC(), Status: wire.StatusOnline, Metrics: samples[i*25+2].Metrics})
		if got := fmt.Sprint(p); got != wantP {
			t.Fatalf("History(cam-02) sample %d = %s, want %s", i, got, wantP)
		}
	}
	h, err = w.History(context.Background(), "cam-01", samples[len(samples)-1].At)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Samples) != 1 || len(h.Transitions) != 1 || h.Transitions[0].Detail != "port 554 closed" {
		t.Errorf("History(cam-01, since the last sample) = %+v, want 1 sample and the refused transition", h)
	}
	if _, err := w.History(context.Background(), `cam" or true`, time.Time{}); err == nil {
		t.Error("History accepted a device ID that is not one")
	}
}

// With InfluxDB gone, every point must end up counted as written, failed
// or dropped, and Run must still return promptly.
func TestInfluxOutageIsCounted(t *testing.T) {
	db := testenv.InfluxDB(t)
	w := startInflux(t, db, metricstore.InfluxConfig{
		BatchSize: 50, FlushInterval: 20 * time.Millisecond, QueueLen: 200,
		Timeout: time.Second, DrainTimeout: time.Second,
	})
	mem := metricstore.NewMemory(metricstore.MemoryOptions{})
	store := metricstore.NewStore(w.Influx, mem)

	samples := citySamples(10, 110)
	store.WriteSamples(samples[:100])
	waitFor(t, "the first 100 points", func() bool { return w.Status().Written == 100 })

	db.Stop()
	for i := 100; i < len(samples); i += 10 {
		store.WriteSamples(samples[i : i+10])
	}
	cam := fleet.Device{ID: "cam-01", Agent: "agent-1", Status: wire.StatusOffline}
	store.WriteChange(fleet.Change{At: time.Now(), Kind: fleet.ChangeDevice, From: wire.StatusOnline, To: wire.StatusOffline, Device: &cam})
	waitFor(t, "a batch to fail", func() bool { return w.Status().Failed > 0 })

	h, err := store.History(context.Background(), "cam-01", time.Time{})
	if err != nil || h.Source != metricstore.SourceMemory || h.Warning == "" || len(h.Transitions) != 1 {
		t.Errorf("History with InfluxDB down = %+v, %v; want the memory transition with a warning", h, err)
	}

	w.stop(t)
	store.WriteSamples(samples[:5]) // after Run: dropped, and counted

	st := w.Status()
	const sent = 1100 + 1 + 5
	if st.Written+st.Failed+st.Dropped != sent || st.Written != 100 || st.Failed == 0 || st.OK || st.LastError == "" {
		t.Errorf("status = %+v; want written 100 + failed + dropped = %d, failures reported", st, sent)
	}
	var text strings.Builder
	w.reg.WriteText(&text)
	for _, series := range []string{
		`citywatch_influx_points_dropped_total{reason="queue_full"} `,
		`citywatch_influx_points_dropped_total{reason="shutdown"} `,
		fmt.Sprintf("citywatch_influx_points_failed_total %d\n", st.Failed),
		"citywatch_influx_write_errors_total ",
		"citywatch_influx_queue_depth 0\n",
	} {
		if !strings.Contains(text.String(), series) {
			t.Errorf("metrics lack %q:\n%s", series, text.String())
		}
	}
	if !strings.Contains(w.log.String(), "some points were not stored") {
		t.Errorf("Run did not report the loss; log:\n%s", w.log.String())
	}
}

func TestNewInfluxValidates(t *testing.T) {
	_, err := metricstore.NewInflux(metricstore.InfluxConfig{URL: "localhost:8086", QueueLen: -1}, metricstore.Deps{})
	if err == nil {
		t.Fatal("NewInflux accepted a config without scheme or bucket and with a negative queue")
	}
	for _, want := range []string{"url", "bucket", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// A real InfluxDB goes down: the samples written meanwhile wait in the
// spill and are all in InfluxDB, counted by a query, once it is back —
// including those of a writer that stopped during the outage and whose
// successor (the hub restarted) replays its spill.
func TestSpillRidesOutARealInfluxDBOutage(t *testing.T) {
	db := testenv.InfluxDB(t)
	dir := filepath.Join(t.TempDir(), "spill")
	cfg := metricstore.InfluxConfig{BatchSize: 500, FlushInterval: 50 * time.Millisecond, QueueLen: 5000,
		Timeout: 2 * time.Second, DrainTimeout: time.Second, SpillDir: dir, SpillBytes: 64 << 20}
	w := startInflux(t, db, cfg)
	samples := citySamples(100, 100) // 10,000 samples, each its own series and time
	w.WriteSamples(samples[:1000])
	waitFor(t, "the first samples", func() bool { return w.Status().Written == 1000 })

	db.Stop()
	for i := 1000; i < 6000; i += 100 {
		w.WriteSamples(samples[i : i+100])
		waitFor(t, "the queue relieved", func() bool { return w.Status().QueueDepth <= 2500 })
	}
	// The hub restarts during the outage: its successor has the spill.
	w.stop(t)
	if st := w.Status(); st.Spilled != 5000 || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("first writer stopped with %+v; want the outage's 5000 samples spilled", st)
	}
	w2 := startInflux(t, db, cfg)
	for i := 6000; i < len(samples); i += 100 {
		w2.WriteSamples(samples[i : i+100])
		waitFor(t, "the queue relieved", func() bool { return w2.Status().QueueDepth <= 2500 })
	}
	waitFor(t, "the second writer's samples spilled too", func() bool { return w2.Status().Spilled == 9000 })

	db.Restart()
	deadline := time.Now().Add(90 * time.Second)
	for fluxCount(t, db, `r._measurement == "device_health" and r._field == "status_code"`) != int64(len(samples)) {
		if time.Now().After(deadline) {
			t.Fatalf("InfluxDB has %d of %d samples; writer %+v",
				fluxCount(t, db, `r._measurement == "device_health" and r._field == "status_code"`), len(samples), w2.Status())
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor(t, "the spill emptied", func() bool { return w2.Status().Spilled == 0 })
	w2.stop(t)
	if st := w2.Status(); st.Dropped != 0 || st.Failed != 0 || st.Written < 9000 || st.SpillSegments != 0 {
		t.Errorf("second writer: %+v", st)
	}
	// The original timestamps: the last sample of cam-07 is where it was.
	rows := db.Query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "device_health" and r.device == "cam-07" and r._field == "bitrate_kbps") |> last()`, db.Bucket()))
	if last := samples[len(samples)-100+7]; len(rows) != 1 || !rows[0]["_time"].(time.Time).Equal(last.At) || rows[0]["_value"] != 99.5 {
		t.Errorf("last cam-07 sample %v, want at %s", rows, last.At)
	}
}

// Stored returns once what was queued before it is in InfluxDB — a hub
// of a cluster acknowledges the agents' messages only then — or, with
// InfluxDB down, once it has been counted failed: it never waits for ever.
func TestStoredWaitsForInfluxDB(t *testing.T) {
	db := testenv.InfluxDB(t)
	w := startInflux(t, db, metricstore.InfluxConfig{BatchSize: 100_000, FlushInterval: 200 * time.Millisecond,
		Timeout: time.Second, DrainTimeout: time.Second})
	samples := citySamples(10, 100)
	w.WriteSamples(samples)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.Stored(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Status(); st.Written != uint64(len(samples)) {
		t.Fatalf("Stored returned with %d of %d points written", st.Written, len(samples))
	}
	if n := fluxCount(t, db, `r._measurement == "device_health" and r._field == "fps"`); n != int64(len(samples)) {
		t.Fatalf("InfluxDB holds %d of %d points once Stored returned", n, len(samples))
	}
	if err := w.Stored(ctx); err != nil {
		t.Fatalf("Stored with nothing queued: %v", err)
	}

	db.Stop()
	w.WriteSamples(samples[:10])
	short, cancelShort := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancelShort()
	if err := w.Stored(short); err == nil {
		t.Fatal("Stored returned while InfluxDB was down and the points neither stored nor failed")
	}
	if err := w.Stored(ctx); err != nil {
		t.Fatalf("Stored with InfluxDB down: %v", err)
	}
	if st := w.Status(); st.Failed != 10 {
		t.Fatalf("Stored returned with InfluxDB down and %+v; want the 10 points counted failed", st)
	}
}
