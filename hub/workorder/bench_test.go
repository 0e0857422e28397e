package workorder

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

const benchOrders = 10_000

// benchManager has benchOrders open orders, one per site, each with two
// cameras, in 20 districts.
func benchManager(b *testing.B) (*Manager, []auth.Route) {
	b.Helper()
	ff := &fakeFleet{devices: map[string]fleet.Device{}}
	for i := range benchOrders {
		for k := range 2 {
			id := fmt.Sprintf("cam-%05d-%d", i, k)
			ff.devices[id] = fleet.Device{ID: id, Kind: wire.KindCamera, Site: fmt.Sprintf("S%05d", i), District: fmt.Sprintf("D%02d", i%20),
				Status: wire.StatusOffline, Reason: wire.ReasonRefused, Criticality: 1 + i%5}
		}
	}
	st, err := OpenStore(filepath.Join(b.TempDir(), "wo.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	m, err := New(Options{Crews: []Crew{{Name: "north", Members: []string{"wang"}, Districts: []string{"D01"}}}},
		Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Fleet: ff, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchOrders {
		if _, err := m.OpenByHand("chen", []string{fmt.Sprintf("cam-%05d-0", i), fmt.Sprintf("cam-%05d-1", i)}, "bench", Priority(1+i%4)); err != nil {
			b.Fatal(err)
		}
	}
	return m, m.Routes(&auditLog{})
}

// p99 runs do n times and reports the 99th percentile and median in ms.
func p99(b *testing.B, n int, do func(i int)) {
	lat := make([]time.Duration, n)
	for i := range n {
		t := time.Now()
		do(i)
		lat[i] = time.Since(t)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkListAndDispatch10k: with 10,000 open orders, a supervisor's
// first page of the whole list (ranked), a district's page, a crew
// member's own list, and dispatching orders (assign), through the HTTP
// handlers. Target: p99 ≤ 50 ms each.
func BenchmarkListAndDispatch10k(b *testing.B) {
	_, routes := benchManager(b)
	get := func(target string, role auth.Role, name string) func(int) {
		return func(int) {
			if w := serve(nil, routes, http.MethodGet, target, "", name, role, auth.Everything); w.Code != http.StatusOK {
				b.Fatalf("%s: %d", target, w.Code)
			}
		}
	}
	for _, c := range []struct {
		name string
		do   func(int)
	}{
		{"list", get("/api/workorders?limit=100", auth.Supervisor, "chen")},
		{"district", get("/api/workorders?district=D07&limit=100", auth.Supervisor, "chen")},
		{"mine", get("/api/workorders?mine=true", auth.Maintainer, "wang")},
		{"dispatch", func(i int) {
			target := fmt.Sprintf("/api/workorders/WO-%d/assign", 1+i%benchOrders)
			if w := serve(nil, routes, http.MethodPost, target, `{"crew":"north","to":"wang"}`, "chen", auth.Supervisor, auth.Everything); w.Code != http.StatusOK {
				b.Fatalf("%s: %d %s", target, w.Code, w.Body)
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				p99(b, 200, c.do)
			}
		})
	}
}
