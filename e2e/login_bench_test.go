package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/internal/testenv"
)

// BenchmarkLoginBurst measures what a burst of 1,000 failed logins does to
// someone already at work: a signed-in operator reads /api/devices and
// /api/summary over a city of CITYWATCH_LOGIN_DEVICES devices (2,000) on a
// hub in its own process, first for CITYWATCH_LOGIN_SECONDS (10) without
// a burst, then during a burst from 4 source addresses (the login rate
// limit refuses most attempts before any hashing, and the addresses are
// locked out), then during one from 100 addresses (10 attempts each: every
// one is hashed, the worst case for the CPU). It prints the operator's
// request latency, p50 and p99, for each. The attackers run in this
// process on the same two cores as the hub, so part of the slowdown is
// theirs. Run with -benchtime 1x.
func BenchmarkLoginBurst(b *testing.B) {
	devices, window := envInt(b, "CITYWATCH_LOGIN_DEVICES", 2000), time.Duration(envInt(b, "CITYWATCH_LOGIN_SECONDS", 10))*time.Second
	const attempts = 1000
	broker := testenv.Mosquitto(b)
	hub := startHubProcess(b, hubProcessOptions{brokerURL: broker.URL()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // before the cleanups, which wait for the sim
	startScaleCity(b, ctx, broker.URL(), hub, sim.CityOptions{Seed: 5, Districts: 4, Sites: max(1, devices/100), Devices: devices}, 10*time.Second)

	hub.admin(b, testPassword+"\n", "users", "add", "-role", "operator", "-scope", "all", "-password-stdin", "otto")
	var op *apiClient
	eventually(b, 30*time.Second, func() error { // the hub notices the new account within its poll
		var err error
		op, err = login(hub.base, "otto", testPassword, nil)
		return err
	})

	// Each burst from its own addresses, so that the lockouts of one do not
	// carry over to the next.
	addresses := func(net, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("127.0.%d.%d", net, 1+i)
		}
		return out
	}
	type phase struct {
		name          string
		addrs         []string
		p50, p99      time.Duration
		reads, errors int
		tried         int
		codes         map[int]int
		took          time.Duration
	}
	phases := []*phase{{name: "no burst"}, {name: "burst from 4 addresses", addrs: addresses(1, 4)}, {name: "burst from 100 addresses", addrs: addresses(2, 100)}}
	b.ResetTimer()
	for _, ph := range phases {
		stop := make(chan struct{})
		var lat []time.Duration
		var errs atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			paths := []string{"api/devices", "api/summary"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				t := time.Now()
				code, _, err := op.send(http.MethodGet, paths[i%2], "", nil)
				if err != nil || code != http.StatusOK {
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t))
			}
		})
		start := time.Now()
		if ph.addrs == nil {
			time.Sleep(window) // the baseline window: the reader runs alone
		} else {
			closed := make(chan struct{})
			close(closed)
			ph.tried, ph.codes = loginBurst(hub.base, ph.addrs, "", attempts, 0, 16, closed)
		}
		ph.took = time.Since(start)
		close(stop)
		wg.Wait()
		ph.p50, ph.p99, ph.reads = percentiles(lat)
		ph.errors = int(errs.Load())
	}
	b.StopTimer()

	fmt.Printf("\n== citywatch login burst: a signed-in operator's API requests (/api/devices, /api/summary; %d devices) while %d logins fail ==\n", devices, attempts)
	base := phases[0].p99
	for _, ph := range phases {
		fmt.Printf("%-26s operator p50 %s, p99 %s over %d requests, %d failed", ph.name+":", ph.p50, ph.p99, ph.reads, ph.errors)
		if ph.addrs != nil {
			fmt.Printf("; p99 %.1f× the baseline; %d logins in %s, by status %v", float64(ph.p99)/float64(max(base, 1)), ph.tried, ph.took.Round(time.Millisecond), ph.codes)
		}
		fmt.Println()
	}
	b.ReportMetric(ms(phases[0].p99), "baseline-p99-ms")
	b.ReportMetric(ms(phases[1].p99), "burst4-p99-ms")
	b.ReportMetric(ms(phases[2].p99), "burst100-p99-ms")
}
