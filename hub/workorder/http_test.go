package workorder

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/wire"
)

type auditLog struct {
	mu      sync.Mutex
	records []audit.Record
}

func (a *auditLog) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = append(a.records, r)
	return r, nil
}

// serve calls the routes as name with role's permissions within scope.
func serve(_ testing.TB, routes []auth.Route, method, target, body, name string, role auth.Role, scope auth.Scope) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	p := &auth.Principal{Name: name, Role: role, Perms: auth.NewSet(role, nil), Scope: scope}
	for _, rt := range routes {
		mux.Handle(rt.Pattern(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !p.Can(rt.Perm) {
				auth.WriteError(w, http.StatusForbidden, "forbidden", string(rt.Perm))
				return
			}
			rt.Handler.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		}))
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	return w
}

// The routes: roles get what their permissions say, scope hides orders,
// refusals are conflicts, every action is audited, and the figures
// download parses.
func TestRoutes(t *testing.T) {
	r := newRig(t, Options{})
	id := r.cameraOrder("cam-1", alarm.Major)
	log := &auditLog{}
	routes := r.m.Routes(log)
	north := auth.Scope{Districts: []string{"North"}}

	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/assign", `{"to":"wang"}`, "wang", auth.Maintainer, north); w.Code != http.StatusForbidden {
		t.Errorf("a maintainer dispatching: %d", w.Code)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/assign", `{"to":"wang","crew":"north"}`, "chen", auth.Supervisor, north); w.Code != 200 {
		t.Fatalf("a supervisor dispatching: %d %s", w.Code, w.Body)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/hold", `{}`, "wang", auth.Maintainer, north); w.Code != http.StatusBadRequest {
		t.Errorf("hold without a reason: %d", w.Code)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/resume", `{}`, "wang", auth.Maintainer, north); w.Code != http.StatusConflict {
		t.Errorf("resume what is not on hold: %d", w.Code)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/start", `{"notes":"x"}`, "wang", auth.Maintainer, north); w.Code != http.StatusBadRequest {
		t.Errorf("an unknown field: %d", w.Code)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/start", ``, "wang", auth.Maintainer, auth.Scope{Districts: []string{"South"}}); w.Code != http.StatusNotFound {
		t.Errorf("out of scope: %d", w.Code)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+id+"/start", `{"note":"on my way"}`, "wang", auth.Maintainer, north); w.Code != 200 {
		t.Fatalf("start: %d %s", w.Code, w.Body)
	}
	var l struct {
		Orders []Ranked `json:"orders"`
		Total  int      `json:"total"`
	}
	w := serve(t, routes, "GET", "/api/workorders?mine=true&state=in_progress", "", "wang", auth.Maintainer, north)
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil || l.Total != 1 || l.Orders[0].Rank.Why == "" {
		t.Errorf("wang's list: %v %s", err, w.Body)
	}
	for _, bad := range []string{"?state=done", "?sort=age", "?mine=yes", "?limit=0", "?colour=red"} {
		if w := serve(t, routes, "GET", "/api/workorders"+bad, "", "wang", auth.Maintainer, north); w.Code != http.StatusBadRequest {
			t.Errorf("GET /api/workorders%s: %d", bad, w.Code)
		}
	}
	var acts []string
	for _, rec := range log.records {
		acts = append(acts, rec.Actor+" "+rec.Action+" "+string(rec.Outcome))
	}
	if strings.Join(acts, ",") != "chen workorder.assign success,wang workorder.hold failure,wang workorder.resume failure,wang workorder.start success" {
		t.Errorf("audit %q", acts)
	}

	if w := serve(t, routes, "GET", "/api/reports/maintenance?group=district&format=csv", "", "wang", auth.Maintainer, north); w.Code != http.StatusForbidden {
		t.Errorf("figures for a maintainer: %d", w.Code)
	}
	w = serve(t, routes, "GET", "/api/reports/maintenance?group=district&format=csv&from=2026-12-01T00:00:00Z&to=2026-12-06T00:00:00Z", "", "ana", auth.Analyst, auth.Everything)
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(w.Body.String(), "\uFEFF"))).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][0] != "key" || rows[1][0] != "North" || rows[1][1] != "1" || rows[3][12] != "1" {
		t.Errorf("figures CSV %d %q %v", w.Code, rows, err)
	}
}

// A crew's photo is kept with the order, served back as it was sent, and
// outlives a restart; what is not a picture is refused.
func TestPhotos(t *testing.T) {
	r := newRig(t, Options{})
	o, err := r.m.OpenByHand("chen", []string{"cam-1"}, "mount bent", P3)
	if err != nil {
		t.Fatal(err)
	}
	routes := r.m.Routes(&auditLog{})
	jpeg := append([]byte("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00"), bytes.Repeat([]byte{0x42}, 500)...)
	w := serve(t, routes, "POST", "/api/workorders/"+o.ID+"/photos?note=before", string(jpeg), "wang", auth.Maintainer, auth.Everything)
	var ph Photo
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &ph) != nil || ph.Type != "image/jpeg" || ph.Size != len(jpeg) || ph.Who != "wang" {
		t.Fatalf("upload: %d %s", w.Code, w.Body)
	}
	if w := serve(t, routes, "POST", "/api/workorders/"+o.ID+"/photos", "<script>alert(1)</script>", "wang", auth.Maintainer, auth.Everything); w.Code != http.StatusBadRequest {
		t.Errorf("HTML as a photo: %d", w.Code)
	}
	r.open()
	routes = r.m.Routes(&auditLog{})
	got, _, _ := r.m.Order(o.ID)
	if len(got.Photos) != 1 || got.Photos[0].Note != "before" {
		t.Fatalf("after a restart: %+v", got.Photos)
	}
	w = serve(t, routes, "GET", "/api/workorders/"+o.ID+"/photos/"+ph.SHA256, "", "li", auth.Operator, auth.Everything)
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), jpeg) || w.Header().Get("Content-Type") != "image/jpeg" {
		t.Errorf("download: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w := serve(t, routes, "GET", "/api/workorders/"+o.ID+"/photos/"+strings.Repeat("0", 64), "", "li", auth.Operator, auth.Everything); w.Code != http.StatusNotFound {
		t.Errorf("a photo the order does not have: %d", w.Code)
	}
}

// fakeAgents answers snapshot commands at once, as an agent would over
// MQTT: with a picture for cam-1, an error for the others.
type fakeAgents struct{ m *Manager }

func (f *fakeAgents) SendCommand(agent string, cmd wire.Command) error {
	s := wire.Snapshot{Request: cmd.ID, Device: cmd.Devices[0]}
	if cmd.Devices[0] == "cam-1" {
		s.JPEG = []byte("\xFF\xD8\xFF\xE0 picture of cam-1")
	} else {
		s.Error = "401 Unauthorized"
	}
	go f.m.HandleSnapshot(agent, s)
	return nil
}

// A snapshot request keeps each camera's picture with the order, says
// why a camera gave none, and ignores pictures nobody asked for.
func TestSnapshots(t *testing.T) {
	r := newRig(t, Options{})
	for _, id := range []string{"cam-1", "cam-2"} {
		d := r.fleet.devices[id]
		d.Camera = &wire.CameraInfo{Snapshot: true}
		r.fleet.devices[id] = d
	}
	agents := &fakeAgents{}
	st, err := OpenStore(filepath.Join(t.TempDir(), "wo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := New(Options{}, Deps{Log: slog.New(slog.DiscardHandler), Fleet: r.fleet, Store: st, Prober: agents})
	if err != nil {
		t.Fatal(err)
	}
	agents.m = m
	o, err := m.OpenByHand("chen", []string{"cam-1", "cam-2"}, "pointing at the sky", P3)
	if err != nil {
		t.Fatal(err)
	}
	m.HandleSnapshot("a1", wire.Snapshot{Request: "snap-unasked", Device: "cam-1", JPEG: []byte("\xFF\xD8\xFF")})
	res, err := m.Snapshot(context.Background(), o.ID, "wang")
	if err != nil || len(res) != 2 || res[0].Photo == nil || res[0].Photo.Who != "wang" || res[1].Error != "401 Unauthorized" {
		t.Fatalf("%v %+v", err, res)
	}
	got, _, _ := m.Order(o.ID)
	if len(got.Photos) != 1 || got.Photos[0].Note != "snapshot of cam-1" {
		t.Errorf("photos %+v", got.Photos)
	}
}
