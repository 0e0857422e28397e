package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

func cityServer(t testing.TB, c *city) *Server {
	deps := testDeps()
	deps.Fleet = c.r
	return mustNew(t, Config{}, deps)
}

func getDevices(t testing.TB, s *Server, target string, header http.Header) DeviceList {
	t.Helper()
	rec := do(t, s, "GET", target, header)
	var l DeviceList
	if rec.Code != 200 {
		t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return l
}

func deviceIDs(l DeviceList) []string {
	out := make([]string, len(l.Devices))
	for i, d := range l.Devices {
		out[i] = d.ID
	}
	return out
}

// TestDevicePagesWhileStatusesChange pages through a district with after
// while a goroutine changes statuses: every device of the district is
// listed exactly once, in id order, and every page's total is the
// district's size. A status filter under the same churn may gain and
// lose devices between pages, but never lists one twice or out of order.
func TestDevicePagesWhileStatusesChange(t *testing.T) {
	c := newCity(t, 64, 50)
	s := cityServer(t, c)
	stop := make(chan struct{})
	done := c.churn(20_000, 0.2, stop)
	defer func() { close(stop); <-done }()

	var want []string
	for i := range c.agents {
		if cityDistrict(i) == "district-03" {
			for j := range c.perAgent {
				want = append(want, cityDevice(i, j))
			}
		}
	}
	for _, tc := range []struct {
		query string
		exact bool
	}{
		{"district=district-03", true},
		{"district=district-03&status=offline&status=degraded", false},
		{"", false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var seen []string
			after := ""
			for pages := 0; ; pages++ {
				target := "/api/devices?limit=37&" + tc.query
				if after != "" {
					target += "&after=" + url.QueryEscape(after)
				}
				l := getDevices(t, s, target, nil)
				if tc.exact && l.Total != len(want) {
					t.Fatalf("page %d: total %d, want %d", pages, l.Total, len(want))
				}
				if len(l.Devices) > 37 || l.Next != "" && len(l.Devices) != 37 {
					t.Fatalf("page %d: %d devices, next %q", pages, len(l.Devices), l.Next)
				}
				seen = append(seen, deviceIDs(l)...)
				if l.Next == "" {
					break
				}
				after = l.Next
				// Beside the churn, for certain: statuses change in the
				// district between every two pages.
				for i := 3; i < c.agents; i += 16 {
					c.report(i, 0.5)
				}
			}
			if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != len(seen) {
				t.Fatalf("pages repeat or are out of order: %v", seen)
			}
			if tc.exact && !slices.Equal(seen, want) {
				t.Fatalf("paged %d devices, want the district's %d", len(seen), len(want))
			}
			if tc.query == "" && len(seen) != c.agents*c.perAgent {
				t.Fatalf("paged %d devices of %d", len(seen), c.agents*c.perAgent)
			}
		})
	}
}

// TestDeviceQueriesAgainstTheFleet checks answers from the registry's
// indexes, for the whole city and for scoped callers, against filtering
// the registry's full list by hand.
func TestDeviceQueriesAgainstTheFleet(t *testing.T) {
	c := newCity(t, 40, 30)
	for i := range c.agents {
		c.report(i, 0.3)
	}
	s := cityServer(t, c)
	all := c.r.Devices()
	for _, tc := range []struct {
		scope string // "" is the whole city
		query string
		keep  func(d *fleet.Device) bool
	}{
		{"", "", func(*fleet.Device) bool { return true }},
		{"", "district=district-05&district=district-06", func(d *fleet.Device) bool {
			return d.District == "district-05" || d.District == "district-06"
		}},
		{"", "status=offline&kind=sensor", func(d *fleet.Device) bool {
			return d.Status == wire.StatusOffline && d.Kind == wire.KindSensor
		}},
		{"", "agent=agent-0007&status=online", func(d *fleet.Device) bool {
			return d.Agent == "agent-0007" && d.Status == wire.StatusOnline
		}},
		{"", "site=site-0012&q=DOOR", func(d *fleet.Device) bool {
			return d.Site == "site-0012" && d.Kind == wire.KindSensor
		}},
		{"", "q=camera%2012/", func(d *fleet.Device) bool { return strings.HasPrefix(d.Name, "Camera 12/") }},
		{"", "district=Nowhere", func(*fleet.Device) bool { return false }},
		{"district:district-03,site:site-0004", "", func(d *fleet.Device) bool {
			return d.District == "district-03" || d.Site == "site-0004"
		}},
		{"district:district-03,site:site-0004", "status=degraded", func(d *fleet.Device) bool {
			return (d.District == "district-03" || d.Site == "site-0004") && d.Status == wire.StatusDegraded
		}},
		// A filter narrows the scope, never widens it.
		{"district:district-03", "district=district-04", func(*fleet.Device) bool { return false }},
		{"district:district-03", "agent=agent-0005", func(*fleet.Device) bool { return false }},
		{"site:site-0004", "q=camera", func(d *fleet.Device) bool { return d.Site == "site-0004" && d.Kind == wire.KindCamera }},
	} {
		t.Run(tc.scope+"?"+tc.query, func(t *testing.T) {
			var header http.Header
			if tc.scope != "" {
				header = http.Header{"Authorization": {"Bearer operator@" + tc.scope}}
			}
			var want []string
			for i := range all {
				if tc.keep(&all[i]) {
					want = append(want, all[i].ID)
				}
			}
			whole := getDevices(t, s, "/api/devices?"+tc.query, header)
			if got := deviceIDs(whole); !slices.Equal(got, want) || whole.Total != len(want) || whole.Next != "" {
				t.Fatalf("list: %d devices (total %d, next %q), want %d", len(got), whole.Total, whole.Next, len(want))
			}
			page := getDevices(t, s, "/api/devices?limit=10&offset=3&"+tc.query, header)
			wantPage := want[min(3, len(want)):min(13, len(want))]
			if got := deviceIDs(page); !slices.Equal(got, wantPage) || page.Total != len(want) || (page.Next != "") != (len(want) > 13) {
				t.Fatalf("page: %v total %d next %q, want %v total %d", got, page.Total, page.Next, wantPage, len(want))
			}
		})
	}
}

// recordingFleet records the queries the console makes.
type recordingFleet struct {
	FleetReader
	mu      sync.Mutex
	queries []fleet.DeviceQuery
}

func (f *recordingFleet) QueryDevices(q fleet.DeviceQuery) fleet.DevicePage {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	return f.FleetReader.QueryDevices(q)
}

// TestDeviceListStreams lists a fleet without a limit, and with a limit
// beyond a chunk: the console reads it in chunks of at most deviceChunk by
// keyset, never asks for the whole fleet at once, and the body still lists
// every device once with its total.
func TestDeviceListStreams(t *testing.T) {
	c := newCity(t, 30, 100)
	rf := &recordingFleet{FleetReader: c.r}
	deps := testDeps()
	deps.Fleet = rf
	s := mustNew(t, Config{}, deps)
	n := c.agents * c.perAgent
	for _, tc := range []struct {
		query  string
		listed int
		total  int
		next   string
	}{
		{"", n, n, ""},
		{"offset=1000", n - 1000, n, ""},
		{"offset=5000", 0, n, ""},
		{"kind=sensor", n / 10, n / 10, ""},
		{"q=door", n / 10, n / 10, ""},
		{"limit=1500", 1500, n, cityDevice(14, 99)},
		{"limit=1500&after=" + cityDevice(14, 99), 1500, n, ""},
		{"limit=1500&offset=2000", 1000, n, ""},
		{"limit=1024&kind=camera", 1024, n * 9 / 10, "cam-0011-036"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rf.queries = nil
			l := getDevices(t, s, "/api/devices?"+tc.query, nil)
			if len(l.Devices) != tc.listed || l.Total != tc.total || l.Next != tc.next {
				t.Fatalf("%d devices, total %d, next %q; want %d, %d, %q", len(l.Devices), l.Total, l.Next, tc.listed, tc.total, tc.next)
			}
			ids := deviceIDs(l)
			if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
				t.Fatal("devices repeat or are out of order")
			}
			if want := max(1, (tc.listed+deviceChunk-1)/deviceChunk); len(rf.queries) != want {
				t.Errorf("%d reads of the fleet, want %d", len(rf.queries), want)
			}
			for i, q := range rf.queries {
				if q.Limit > deviceChunk || i > 0 && (q.After == "" || q.Offset != 0 || !q.NoTotal) {
					t.Fatalf("read %d is %+v: want chunks of at most %d by keyset", i, q, deviceChunk)
				}
			}
		})
	}
}

// TestDeviceQueryScope turns scopes into the registry's Within.
func TestDeviceQueryScope(t *testing.T) {
	lq := listQuery{districts: []string{"a"}, limit: 5}
	if q := lq.deviceQuery(auth.Everything); q.Within != nil || q.Limit != 5 || !slices.Equal(q.Districts, []string{"a"}) {
		t.Errorf("whole city: %+v", q)
	}
	scope := auth.Scope{Districts: []string{"d"}, Sites: []string{"s"}}
	if q := lq.deviceQuery(scope); q.Within == nil || !slices.Equal(q.Within.Districts, scope.Districts) || !slices.Equal(q.Within.Sites, scope.Sites) {
		t.Errorf("scoped: %+v", q)
	}
	if q := lq.deviceQuery(auth.Scope{}); q.Within == nil || q.Within.Contains("d", "s") {
		t.Errorf("empty scope sees something: %+v", q)
	}
	for _, d := range []string{"d", "x"} {
		for _, site := range []string{"s", "y", ""} {
			if got, want := lq.deviceQuery(scope).Within.Contains(d, site), scope.Allows(d, site); got != want {
				t.Errorf("Contains(%q, %q) = %v, Scope.Allows %v", d, site, got, want)
			}
		}
	}
}
