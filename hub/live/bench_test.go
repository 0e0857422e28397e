package live

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchFrame makes the fake cameras send about 2 Mbit/s: a 8 KB slice 30
// times a second, seven packets each.
var benchFrame = append([]byte{0x41, 0x9a, 0x02}, bytes.Repeat([]byte{0xcd}, 8000)...)

// BenchmarkTTFF measures a viewer's time to first frame as a WHEP player
// sees it: from sending the offer to the first RTP packet received, with
// the peer connection set up in between. running joins a stream that is
// already relayed; cold starts the camera's stream first (the fake agent
// answers at once and its camera starts with a keyframe, so this is the
// hub's and WebRTC's share of a cold start, not a camera's).
// The targets: running p50 ≤ 150 ms, p95 ≤ 400 ms; cold p95 ≤ 1.5 s.
func BenchmarkTTFF(b *testing.B) {
	b.Run("running", func(b *testing.B) {
		e := newEnv(b, testConfig())
		e.watch("cam-1").awaitPackets(1)
		var ttff []time.Duration
		for b.Loop() {
			ttff = append(ttff, timeToFirstFrame(e, "cam-1"))
		}
		reportPercentiles(b, ttff)
	})
	b.Run("cold", func(b *testing.B) {
		cfg := testConfig()
		cfg.Linger = time.Millisecond
		e := newEnv(b, cfg)
		var ttff []time.Duration
		for b.Loop() {
			ttff = append(ttff, timeToFirstFrame(e, "cam-1"))
			b.StopTimer()
			eventually(b, "the stream stopped", func() bool { return len(e.streams()) == 0 })
			b.StartTimer()
		}
		reportPercentiles(b, ttff)
	})
}

func timeToFirstFrame(e *env, camera string) time.Duration {
	c, offer := newWHEPClient(e.t, false)
	start := time.Now()
	res, body := e.post(camera, offer, nil)
	if res.StatusCode != http.StatusCreated {
		e.t.Fatalf("POST = %d %s", res.StatusCode, body)
	}
	c.accept(res, body)
	select {
	case <-c.got:
	case <-time.After(10 * time.Second):
		e.t.Fatal("no packet within 10 s")
	}
	d := time.Since(start)
	e.leave(c)
	return d
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	ms := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.95), "p95-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkViewersPerCore measures the CPU one more viewer of a 2 Mbit/s
// stream costs, from the process's CPU time with one viewer and with
// many, and reports how many viewers one core carries. The WHEP players
// run in the same process, so their receiving (SRTP decryption, RTCP) is
// counted too: the hub alone carries more.
func BenchmarkViewersPerCore(b *testing.B) {
	for _, n := range []int{50, 200} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			cfg := testConfig()
			cfg.MaxSessionsPerAccount = n // one account watches them all
			e := newEnv(b, cfg)
			e.agent.frame = benchFrame
			first := e.watch("cam-1")
			first.awaitPackets(100)
			one := cpuCores(2 * time.Second)
			var wg sync.WaitGroup
			clients := make([]*whepClient, n-1)
			for i := range clients {
				wg.Go(func() { clients[i] = e.watch("cam-1") })
				if i%20 == 19 {
					wg.Wait() // joins in waves, as a control room does
				}
			}
			wg.Wait()
			for _, c := range clients {
				c.awaitPackets(50)
			}
			var many float64
			for b.Loop() {
				many = cpuCores(2 * time.Second)
			}
			perViewer := (many - one) / float64(n-1)
			b.ReportMetric(many, "cores")
			b.ReportMetric(1/perViewer, "viewers/core")
			b.ReportMetric(e.metric("citywatch_live_packets_dropped_total"), "dropped")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// cpuCores returns the CPU time the process used over d, in cores.
func cpuCores(d time.Duration) float64 {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, t0 := cpu(), time.Now()
	time.Sleep(d)
	return float64(cpu()-c0) / float64(time.Since(t0))
}
