package console

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/wire"
)

// fakeFleet is a FleetReader configured through function fields.
type fakeFleet struct {
	devices func() []fleet.Device
	device  func(id string) (fleet.Device, bool)
	agents  func() []fleet.Agent
	agent   func(id string) (fleet.Agent, bool)
	summary func() fleet.Summary
}

func (f *fakeFleet) Devices() []fleet.Device               { return f.devices() }
func (f *fakeFleet) Device(id string) (fleet.Device, bool) { return f.device(id) }
func (f *fakeFleet) Agents() []fleet.Agent                 { return f.agents() }
func (f *fakeFleet) Agent(id string) (fleet.Agent, bool)   { return f.agent(id) }
func (f *fakeFleet) Summary() fleet.Summary                { return f.summary() }

func (f *fakeFleet) DevicesWhere(keep func(district, site string) bool) []fleet.Device {
	var out []fleet.Device
	for _, d := range f.devices() {
		if keep(d.District, d.Site) {
			out = append(out, d)
		}
	}
	return out
}

// QueryDevices answers a query over f.devices() without indexes.
func (f *fakeFleet) QueryDevices(q fleet.DeviceQuery) fleet.DevicePage {
	devs := f.devices()
	slices.SortFunc(devs, func(a, b fleet.Device) int { return strings.Compare(a.ID, b.ID) })
	var p fleet.DevicePage
	skip := q.Offset
	for _, d := range devs {
		if !q.Match(&d) {
			continue
		}
		p.Total++
		switch {
		case d.ID <= q.After && q.After != "":
		case skip > 0:
			skip--
		case q.Limit == 0 || len(p.Devices) < q.Limit:
			p.Devices = append(p.Devices, d)
		case p.Next == "":
			p.Next = p.Devices[len(p.Devices)-1].ID
		}
	}
	if q.NoTotal {
		p.Total = 0
	}
	return p
}

// SummaryWhere counts the kept devices as the registry does, without its
// running tallies.
func (f *fakeFleet) SummaryWhere(keep func(district, site string) bool) fleet.Summary {
	var devs []fleet.Device
	for _, d := range f.devices() {
		if keep(d.District, d.Site) {
			devs = append(devs, d)
		}
	}
	var agents []fleet.Agent
	for _, a := range f.agents() {
		if keep(a.District, a.Site) {
			agents = append(agents, a)
		}
	}
	return summaryOf(devs, agents)
}

// summaryOf counts devices and agents as fleet.Summary does.
func summaryOf(devs []fleet.Device, agents []fleet.Agent) fleet.Summary {
	s := fleet.Summary{At: t0, Devices: len(devs), ByStatus: map[wire.Status]int{}, Agents: map[wire.Status]int{}}
	byDistrict := map[string]*fleet.DistrictSummary{}
	rates := func(by map[wire.Status]int, n int) (float64, float64) {
		if n == 0 {
			return 0, 0
		}
		return float64(by[wire.StatusOnline]+by[wire.StatusDegraded]) / float64(n), float64(by[wire.StatusOnline]) / float64(n)
	}
	for _, d := range devs {
		s.ByStatus[d.Status]++
		ds := byDistrict[d.District]
		if ds == nil {
			ds = &fleet.DistrictSummary{District: d.District, ByStatus: map[wire.Status]int{}}
			byDistrict[d.District] = ds
		}
		ds.Devices++
		ds.ByStatus[d.Status]++
	}
	s.OnlineRate, s.IntactRate = rates(s.ByStatus, s.Devices)
	for _, ds := range byDistrict {
		ds.OnlineRate, ds.IntactRate = rates(ds.ByStatus, ds.Devices)
		s.Districts = append(s.Districts, *ds)
	}
	for _, a := range agents {
		s.Agents[a.Status]++
	}
	return s
}

// staticFleet serves fixed devices and agents.
func staticFleet(devices []fleet.Device, agents []fleet.Agent) *fakeFleet {
	return &fakeFleet{
		devices: func() []fleet.Device { return append([]fleet.Device(nil), devices...) },
		device: func(id string) (fleet.Device, bool) {
			for _, d := range devices {
				if d.ID == id {
					return d, true
				}
			}
			return fleet.Device{}, false
		},
		agents: func() []fleet.Agent { return append([]fleet.Agent(nil), agents...) },
		agent: func(id string) (fleet.Agent, bool) {
			for _, a := range agents {
				if a.ID == id {
					return a, true
				}
			}
			return fleet.Agent{}, false
		},
		summary: func() fleet.Summary { return testSummary },
	}
}

// fakeHistory is a HistoryReader configured through a function field.
type fakeHistory func(ctx context.Context, device string, since time.Time) (metricstore.History, error)

func (f fakeHistory) History(ctx context.Context, device string, since time.Time) (metricstore.History, error) {
	return f(ctx, device, since)
}

var t0 = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

// testDevices is a small city: two districts, three sites, cameras and
// sensors in every status. Deliberately not sorted by id.
var testDevices = []fleet.Device{
	{ID: "cam-gate-2", Name: "North Gate 2", Kind: wire.KindCamera, Agent: "agent-north", Site: "north-gate",
		SiteName: "North Gate", District: "Xicheng", Location: wire.Location{Lat: 39.91, Lon: 116.36}, Criticality: 3,
		Camera: &wire.CameraInfo{Heading: 90, FOV: 80, Range: 60}, Status: wire.StatusOffline,
		Reason: wire.ReasonRefused, Since: t0.Add(-10 * time.Minute), LastSeen: t0},
	{ID: "cam-gate-1", Name: "North Gate 1", Kind: wire.KindCamera, Agent: "agent-north", Site: "north-gate",
		SiteName: "North Gate", District: "Xicheng", Location: wire.Location{Lat: 39.91, Lon: 116.36}, Criticality: 3,
		Status: wire.StatusOnline, Since: t0.Add(-time.Hour), LastSeen: t0,
		Metrics: map[string]float64{wire.MetricFPS: 25}},
	{ID: "door-1", Kind: wire.KindSensor, SensorKind: wire.SensorDoor, Agent: "agent-north", Site: "north-gate",
		District: "Xicheng", Criticality: 4, Status: wire.StatusDegraded, Since: t0, LastSeen: t0, Triggered: true},
	{ID: "cam-market", Name: "Market Square", Kind: wire.KindCamera, Agent: "agent-east", Site: "market",
		SiteName: "Market", District: "Dongcheng", Criticality: 2, Status: wire.StatusUnreachable,
		Reported: wire.StatusOnline, Since: t0.Add(-5 * time.Minute), LastSeen: t0.Add(-6 * time.Minute)},
	{ID: "smoke-1", Kind: wire.KindSensor, SensorKind: wire.SensorSmoke, Agent: "agent-east", Site: "depot",
		District: "Dongcheng", Criticality: 5, Status: wire.StatusUnknown, Since: t0},
}

var testAgents = []fleet.Agent{
	{ID: "agent-north", Site: "north-gate", SiteName: "North Gate", District: "Xicheng", Status: wire.StatusOnline,
		Since: t0.Add(-24 * time.Hour), LastSeen: t0, Boot: 1740790000000, Conn: 1, Seq: 420, Interval: 10,
		Version: "0.1.0", Devices: 3},
	{ID: "agent-east", Site: "market", District: "Dongcheng", Status: wire.StatusOffline, Reason: "will",
		Since: t0.Add(-5 * time.Minute), LastSeen: t0.Add(-6 * time.Minute), Boot: 1740780000000, Conn: 2,
		Seq: 77, Gaps: 3, Interval: 10, Devices: 2},
}

var testSummary = fleet.Summary{
	At: t0, Devices: 5,
	ByStatus: map[wire.Status]int{wire.StatusOnline: 1, wire.StatusDegraded: 1, wire.StatusOffline: 1,
		wire.StatusUnknown: 1, wire.StatusUnreachable: 1},
	OnlineRate: 0.4, IntactRate: 0.2,
	Agents: map[wire.Status]int{wire.StatusOnline: 1, wire.StatusOffline: 1, wire.StatusUnknown: 0},
	Districts: []fleet.DistrictSummary{
		{District: "Dongcheng", Devices: 2, ByStatus: map[wire.Status]int{wire.StatusUnknown: 1, wire.StatusUnreachable: 1}},
		{District: "Xicheng", Devices: 3, ByStatus: map[wire.Status]int{wire.StatusOnline: 1, wire.StatusDegraded: 1, wire.StatusOffline: 1},
			OnlineRate: 2.0 / 3, IntactRate: 1.0 / 3},
	},
}

var testUI = fstest.MapFS{
	"index.html":    {Data: []byte("<!doctype html><title>citywatch</title><script type=module src=app.js></script>")},
	"app.js":        {Data: []byte("import './api.js';\n")},
	"style.css":     {Data: []byte("body{margin:0}\n")},
	"i18n/zh.json":  {Data: []byte(`{"online":"在线"}`)},
	"img/logo.webp": {Data: []byte("RIFF0000WEBPVP8 ")},
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testAuthn is a fake authenticator for this package's tests: "Bearer
// ROLE" is a caller of that role who sees the whole city, "Bearer
// ROLE@SCOPE" one limited to SCOPE ("operator@district:Xicheng").
type testAuthn struct{}

func (testAuthn) Authenticate(r *http.Request, _ bool) (*auth.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, auth.ErrNoCredentials
	}
	name, scopeText, scoped := strings.Cut(tok, "@")
	role, err := auth.ParseRole(name)
	if err != nil {
		return nil, errors.New("unknown token")
	}
	scope := auth.Everything
	if scoped {
		if scope, err = auth.ParseScope(scopeText); err != nil {
			return nil, err
		}
	}
	return &auth.Principal{Name: tok, Role: role, Perms: auth.NewSet(role, nil), Scope: scope, Via: auth.ViaToken, Session: "s-" + tok}, nil
}

// recordingAuditor keeps what is audited.
type recordingAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *recordingAuditor) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r.Seq = uint64(len(a.recs) + 1)
	a.recs = append(a.recs, r)
	return r, nil
}

func (a *recordingAuditor) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.recs)
}

// testDeps returns working deps over the static fleet, with a router
// whose callers are testAuthn's; tests change what they need.
func testDeps() Deps {
	reg := metrics.NewRegistry()
	rt, err := auth.NewRouter(auth.Config{AllowedHosts: []string{"example.com"}},
		auth.Deps{Log: quietLog(), Metrics: reg, Authenticator: testAuthn{}})
	if err != nil {
		panic(err)
	}
	return Deps{
		Log:     quietLog(),
		Fleet:   staticFleet(testDevices, testAgents),
		Metrics: reg,
		UI:      testUI,
		Router:  rt,
		Audit:   &recordingAuditor{},
	}
}

func mustNew(t testing.TB, cfg Config, deps Deps) *Server {
	t.Helper()
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// running starts s on a free port and stops it when the test ends, failing
// the test if Run returns an error. It returns the base URL.
func running(t testing.TB, s *Server) (baseURL string, stop func()) {
	t.Helper()
	s.cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return "http://" + s.Addr().String(), stop
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, testDeps()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	_, err := New(Config{Listen: "nonsense", SendQueue: -1, WriteTimeout: -time.Second, MaxWebsockets: -1}, testDeps())
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"listen", "send queue", "write timeout", "max websockets"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}

	for name, mutate := range map[string]func(*Deps){
		"no log":     func(d *Deps) { d.Log = nil },
		"no fleet":   func(d *Deps) { d.Fleet = nil },
		"no metrics": func(d *Deps) { d.Metrics = nil },
		"no UI":      func(d *Deps) { d.UI = nil },
		"no router":  func(d *Deps) { d.Router = nil },
		"alarms without audit": func(d *Deps) {
			d.Alarms = alarm.New(nil, alarm.Options{})
			d.Audit = nil
		},
		"no index":    func(d *Deps) { d.UI = fstest.MapFS{"app.js": {}} },
		"empty fs UI": func(d *Deps) { d.UI = fstest.MapFS{} },
	} {
		t.Run(name, func(t *testing.T) {
			deps := testDeps()
			mutate(&deps)
			if _, err := New(Config{}, deps); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestRunReportsListenError(t *testing.T) {
	first := mustNew(t, Config{}, testDeps())
	base, _ := running(t, first)
	second := mustNew(t, Config{Listen: strings.TrimPrefix(base, "http://")}, testDeps())
	if err := second.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a busy port = %v, want a listen error", err)
	}
	if second.Addr() != nil {
		t.Error("Addr is set although Run never listened")
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	s := mustNew(t, Config{}, testDeps())
	base, stop := running(t, s)
	res, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("healthz = %d", res.StatusCode)
	}
	stop()
	if res, err := http.Get(base + "/healthz"); err == nil {
		res.Body.Close()
		t.Fatal("still serving after Run returned")
	}
}

// adminGet is http.Get as an admin.
func adminGet(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer admin")
	return http.DefaultClient.Do(req)
}
