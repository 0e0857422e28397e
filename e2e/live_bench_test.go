package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/internal/testenv"
)

// BenchmarkLive measures live video end to end: WHEP players against the
// hub (its own process), which relays simulated 720p30 cameras (1 s
// keyframe interval) from real agents through a real Mosquitto. It prints
// time to first frame for a running stream and for a cold start (POST of the
// offer → first RTP packet at the player, which is always the start of a
// keyframe), then hub CPU per viewer and packets forwarded per second with
// 100 viewers spread over 4 cameras. Run with -benchtime 1x.
func BenchmarkLive(b *testing.B) {
	broker := testenv.Mosquitto(b)
	hub := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL(), yaml: "live: {loopback_only: true, linger: 300ms, max_upstreams_per_agent: 8, max_sessions_per_account: 200}\n"})
	ctx, cancel := context.WithCancel(context.Background())
	world, err := sim.New(sim.Options{
		BrokerURL: broker.URL(), LiveLoopbackOnly: true, Logger: testLogger(b),
		City:   sim.CityOptions{Seed: 3, Districts: 2, Sites: 6, Devices: 60},
		Camera: sim.CameraConfig{Width: 1280, Height: 720, FPS: 30},
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- world.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cams := devicesOfCity(world)
	eventually(b, 2*time.Minute, func() error {
		var s fleet.Summary
		if err := hub.get("api/summary", &s); err != nil {
			return err
		}
		if s.ByStatus["online"] != 60 {
			return fmt.Errorf("%d of 60 devices online", s.ByStatus["online"])
		}
		return nil
	})

	ttff := func(cam string) time.Duration {
		start := time.Now()
		p, err := tryPlayWHEP(b, hub.api, cam)
		if err != nil {
			b.Fatal(err)
		}
		eventually(b, 10*time.Second, func() error {
			if p.firstPacketAt().IsZero() {
				return fmt.Errorf("no packet from %s", cam)
			}
			return nil
		})
		d := p.firstPacketAt().Sub(start)
		p.stop(b)
		return d
	}
	b.ResetTimer()
	// Cold: cameras nobody watches, each once.
	var cold []time.Duration
	for _, cam := range cams[4:min(len(cams), 24)] {
		cold = append(cold, ttff(cam))
	}
	// Running: a held viewer keeps cams[0] streaming; newcomers join it.
	held, err := tryPlayWHEP(b, hub.api, cams[0])
	if err != nil {
		b.Fatal(err)
	}
	held.awaitFrames(b, 30, 20*time.Second)
	var running []time.Duration
	for range 40 {
		running = append(running, ttff(cams[0]))
	}
	held.stop(b)

	// Load: 100 viewers over 4 cameras.
	const viewers = 100
	players := make([]*whepClient, viewers)
	errs := make([]error, viewers)
	var wg sync.WaitGroup
	for i := range players {
		wg.Go(func() { players[i], errs[i] = tryPlayWHEP(b, hub.api, cams[i%4]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range players {
		p.awaitFrames(b, 30, 60*time.Second)
	}
	const window = 20 * time.Second
	by0 := hub.metric(b, "citywatch_live_bytes_forwarded_total")
	cpu0, pk0, t0 := hub.cpuSeconds(b), hub.metric(b, "citywatch_live_packets_forwarded_total"), time.Now()
	time.Sleep(window) // the measurement window: load runs, nothing to wait for
	cpu1, pk1, t1 := hub.cpuSeconds(b), hub.metric(b, "citywatch_live_packets_forwarded_total"), time.Now()
	by1 := hub.metric(b, "citywatch_live_bytes_forwarded_total")
	b.StopTimer()
	for _, p := range players {
		p.stop(b)
	}
	secs := t1.Sub(t0).Seconds()
	cores := (cpu1 - cpu0) / secs
	cp50, cp95 := pct(cold, 50), pct(cold, 95)
	rp50, rp95 := pct(running, 50), pct(running, 95)
	fmt.Printf(`
== citywatch live video benchmark: 720p30 simulated cameras, 1 s keyframe interval, hub in its own process ==
time to first frame, running stream:  p50 %s  p95 %s over %d joins   (targets p50 ≤ 150ms: %s, p95 ≤ 400ms: %s)
time to first frame, cold start:      p50 %s  p95 %s over %d cameras (target p95 ≤ 1.5s: %s)
100 viewers over 4 cameras:           hub %.3f cores → %.0f viewers per hub core (target ≥ 500: %s)
packets forwarded:                    %.0f /s (%.2f Mbit/s per viewer)
`,
		rp50, rp95, len(running), verdict(rp50 <= 150*time.Millisecond), verdict(rp95 <= 400*time.Millisecond),
		cp50, cp95, len(cold), verdict(cp95 <= 1500*time.Millisecond),
		cores, viewers/max(cores, 1e-9), verdict(viewers/max(cores, 1e-9) >= 500),
		(pk1-pk0)/secs, (by1-by0)*8/secs/viewers/1e6)
	b.ReportMetric(float64(rp95.Milliseconds()), "running-p95-ms")
	b.ReportMetric(float64(cp95.Milliseconds()), "cold-p95-ms")
	b.ReportMetric(viewers/max(cores, 1e-9), "viewers/core")
	b.ReportMetric((pk1-pk0)/secs, "packets/s")
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}
