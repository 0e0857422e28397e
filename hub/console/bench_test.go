package console

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// latencies is a histogram of delivery latencies in microseconds with 16
// buckets per power of two (at most 6 % wide), so 1,000 clients × millions
// of changes fit in a few kilobytes and recording one costs nanoseconds.
type latencies [64 * 16]uint64

func (h *latencies) add(d time.Duration) {
	us := uint64(max(d/time.Microsecond, 1))
	exp := bits.Len64(us) - 1 // us lies in [2^exp, 2^(exp+1))
	var sub uint64
	if exp >= 4 {
		sub = (us >> (exp - 4)) & 15
	} else {
		sub = (us << (4 - exp)) & 15
	}
	h[exp*16+int(sub)]++
}

func (h *latencies) merge(o *latencies) {
	for i, n := range o {
		h[i] += n
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *latencies) quantile(q float64) time.Duration {
	var total uint64
	for _, n := range h {
		total += n
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range h {
		seen += n
		if seen >= want {
			exp, sub := i/16, i%16
			upper := math.Ldexp(1+float64(sub+1)/16, exp)
			return time.Duration(upper * float64(time.Microsecond))
		}
	}
	return 0
}

// benchClient reads changes and records, for each, the time from its
// Publish to its arrival. It finds the changes by scanning for
// `{"seq":N,`, which only a change object starts with: decoding every
// device in full would make the benchmark measure the clients' JSON
// parsing more than the hub.
func benchClient(conn *websocket.Conn, published []atomic.Int64, hist *latencies, done func(error)) {
	var buf bytes.Buffer
	last := uint64(len(published) - 1)
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			done(err)
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			done(err)
			return
		}
		now := time.Now().UnixNano()
		b := buf.Bytes()
		var seq uint64
		for {
			i := bytes.Index(b, []byte(`{"seq":`))
			if i < 0 {
				break
			}
			b = b[i+len(`{"seq":`):]
			end := bytes.IndexByte(b, ',')
			if seq, err = strconv.ParseUint(string(b[:end]), 10, 64); err != nil || seq > last {
				done(fmt.Errorf("bad seq %q", b[:end]))
				return
			}
			hist.add(time.Duration(now - published[seq].Load()))
		}
		if seq == last {
			done(nil)
			return
		}
	}
}

// BenchmarkBroadcast publishes b.N device changes to 1,000 websocket
// clients over loopback, all in this process (so the clients' reading
// competes with the hub for CPU). ns/op is per change, until every client
// has every change; p50/p99 are per change and client, Publish to arrival.
// "burst" publishes back to back, an alarm storm at its worst; "10k/s"
// publishes 10 changes every millisecond.
func BenchmarkBroadcast(b *testing.B) {
	for _, clients := range []int{100, 1000} {
		for _, pace := range []struct {
			name    string
			perTick int // changes per millisecond; 0: no pacing
		}{
			{"burst", 0},
			{"10k/s", 10},
			{"1k/s", 1},
		} {
			broadcast(b, clients, pace.name, pace.perTick)
		}
	}
}

func broadcast(b *testing.B, clients int, pace string, perTick int) {
	b.Run(fmt.Sprintf("clients=%d/%s", clients, pace), func(b *testing.B) {
		// The test authenticator signs every client in as one account,
		// which may hold only so many streams (DefaultMaxWebsockets).
		s := mustNew(b, Config{MaxWebsockets: clients}, testDeps())
		base, _ := running(b, s)
		conns := make([]*websocket.Conn, clients)
		for i := range conns {
			conns[i] = dial(b, base, nil)
			readHello(b, conns[i])
		}
		hists := make([]latencies, clients)
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		last := uint64(b.N)
		published := make([]atomic.Int64, last+1) // by seq: when Publish was called
		for i, conn := range conns {
			wg.Add(1)
			conn.SetReadDeadline(time.Time{})
			go benchClient(conn, published, &hists[i], func(err error) {
				if err != nil {
					errs <- err
				}
				wg.Done()
			})
		}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()

		b.ResetTimer()
		for seq := uint64(1); seq <= last; seq++ {
			if perTick > 0 && seq%uint64(perTick) == 0 {
				<-tick.C
			}
			published[seq].Store(time.Now().UnixNano())
			s.Publish(deviceChange(seq))
		}
		wg.Wait()
		b.StopTimer()

		close(errs)
		for err := range errs {
			b.Fatalf("client: %v (dropped %v, clients %v)", err, metric(b, base, "citywatch_ws_dropped_clients_total"), metric(b, base, "citywatch_ws_clients"))
		}
		if dropped := metric(b, base, "citywatch_ws_dropped_clients_total"); dropped > 0 {
			b.Fatalf("%v clients were cut as too slow", dropped)
		}
		var all latencies
		for i := range hists {
			all.merge(&hists[i])
		}
		b.ReportMetric(float64(all.quantile(0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all.quantile(0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(metric(b, base, "citywatch_ws_messages_sent_total")/float64(clients), "msgs/client")
	})
}

// BenchmarkDevicesPage100k measures GET /api/devices over a real registry
// of 100,000 devices (1,000 agents of 100) while a goroutine applies
// 10,000 health lines a second through it, flipping 2 % of the statuses:
// a page of 100, a district's first page, a filter matching nothing, a
// search, a status page deep in the fleet by after, and the whole list
// streamed. p50/p99 are per request, through the router (authentication
// included) into a writer that discards the body; state-MB is the heap
// after building the fleet; index-ms and corpus-ms are the first query's
// and the first search's, which build the index and the search corpus.
func BenchmarkDevicesPage100k(b *testing.B) {
	c := newCity(b, 1000, 100)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	stateMB := float64(ms.HeapAlloc) / (1 << 20)
	s := cityServer(b, c)
	h := s.router.Handler()
	// The first query builds the index (and the first search its
	// corpus), once per change of the fleet's device set: measured apart.
	first := func(target string) float64 {
		start := time.Now()
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer admin")
		h.ServeHTTP(&discard{header: http.Header{}}, req)
		return float64(time.Since(start).Microseconds()) / 1000
	}
	indexMS, corpusMS := first("/api/devices?limit=1"), first("/api/devices?q=x&limit=1")
	stop := make(chan struct{})
	done := c.churn(10_000, 0.02, stop)
	defer func() { close(stop); <-done }()
	for _, tc := range []struct{ name, target string }{
		{"page100", "/api/devices?limit=100"},
		{"district", "/api/devices?district=district-03&limit=100"},
		{"nomatch", "/api/devices?district=Nowhere&status=offline&limit=100"},
		{"search", "/api/devices?q=camera%20500/&limit=100"},
		{"after", "/api/devices?status=online&after=cam-0700-000&limit=100"},
		{"full", "/api/devices"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var took []time.Duration
			var bytes int64
			lines, began := c.lines.Load(), time.Now()
			for b.Loop() {
				req := httptest.NewRequest("GET", tc.target, nil)
				req.Header.Set("Authorization", "Bearer admin")
				w := &discard{header: http.Header{}}
				start := time.Now()
				h.ServeHTTP(w, req)
				took = append(took, time.Since(start))
				if w.code != 0 && w.code != 200 {
					b.Fatalf("%s: %d", tc.target, w.code)
				}
				bytes += w.n
			}
			churn := float64(c.lines.Load()-lines) / time.Since(began).Seconds()
			slices.Sort(took)
			q := func(p float64) float64 {
				return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(float64(bytes)/float64(len(took)), "body-B")
			b.ReportMetric(churn, "churn-lines/s")
			b.ReportMetric(stateMB, "state-MB")
			b.ReportMetric(indexMS, "index-ms")
			b.ReportMetric(corpusMS, "corpus-ms")
		})
	}
}

// discard is a ResponseWriter that counts the body and keeps none of it.
type discard struct {
	header http.Header
	code   int
	n      int64
}

func (d *discard) Header() http.Header { return d.header }
func (d *discard) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

func (d *discard) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	return len(p), nil
}
