package sim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sensor"
)

// fakeCamera records the faults set on it.
type fakeCamera struct{ fault string }

func (c *fakeCamera) SetFault(f string) error { c.fault = f; return nil }

func newTestTable(t *testing.T) (*faultTable, *fakeCamera) {
	ft := newFaultTable(sensor.NewSim(time.Second))
	cam := &fakeCamera{}
	ft.cameras["cam-1"] = cam
	ft.sensors["pir-1"] = true
	ft.agents["agent-1"] = newLink([]string{"127.0.0.1:1"}, testLogger(t))
	return ft, cam
}

func TestControlAPI(t *testing.T) {
	ft, cam := newTestTable(t)
	srv := httptest.NewServer(ControlHandler(ft))
	defer srv.Close()

	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantInBody string
	}{
		{"camera offline", "POST", `{"device":"cam-1","fault":"offline"}`, 200, `"fault":"offline"`},
		{"camera recover", "POST", `{"device":"cam-1","fault":"recover"}`, 200, `"active":[]`},
		{"sensor supervision loss", "POST", `{"device":"pir-1","fault":"supervision_loss"}`, 200, `"supervision_loss"`},
		{"sensor trigger", "POST", `{"device":"pir-1","fault":"trigger"}`, 200, `"trigger"`},
		{"sensor recover", "POST", `{"device":"pir-1","fault":"recover"}`, 200, `"active":[]`},
		{"agent disconnect for", "POST", `{"agent":"agent-1","fault":"disconnect","for":"20s"}`, 200, `"until"`},
		{"agent recover", "POST", `{"agent":"agent-1","fault":"recover"}`, 200, `"active":[]`},
		{"agent disconnect", "POST", `{"agent":"agent-1","fault":"disconnect"}`, 200, `"active":[]`},
		{"unknown device", "POST", `{"device":"cam-9","fault":"offline"}`, 404, `unknown device \"cam-9\"`},
		{"unknown agent", "POST", `{"agent":"agent-9","fault":"disconnect"}`, 404, "unknown agent"},
		{"unknown fault", "POST", `{"device":"cam-1","fault":"melt"}`, 400, "camera faults are offline, auth"},
		{"sensor fault on a camera", "POST", `{"device":"cam-1","fault":"trigger"}`, 400, "camera faults are"},
		{"motion on a camera without ONVIF", "POST", `{"device":"cam-1","fault":"motion"}`, 400, "no ONVIF service"},
		{"camera fault on a sensor", "POST", `{"device":"pir-1","fault":"hang"}`, 400, "sensor faults are"},
		{"device and agent", "POST", `{"device":"cam-1","agent":"agent-1","fault":"offline"}`, 400, "exactly one"},
		{"no target", "POST", `{"fault":"offline"}`, 400, "exactly one"},
		{"missing fault", "POST", `{"device":"cam-1"}`, 400, `\"fault\" is missing`},
		{"bad duration", "POST", `{"agent":"agent-1","fault":"disconnect","for":"soon"}`, 400, `\"for\"`},
		{"negative duration", "POST", `{"agent":"agent-1","fault":"disconnect","for":"-1s"}`, 400, "negative"},
		{"for on a camera", "POST", `{"device":"cam-1","fault":"offline","for":"5s"}`, 400, "agent disconnect only"},
		{"unknown field", "POST", `{"device":"cam-1","fault":"offline","why":"x"}`, 400, "unknown field"},
		{"not JSON", "POST", `offline`, 400, "bad JSON"},
		{"trailing data", "POST", `{"device":"cam-1","fault":"offline"} {}`, 400, "trailing"},
		{"too large", "POST", `{"device":"` + strings.Repeat("x", 5000) + `","fault":"offline"}`, 400, "too large"},
		{"list", "GET", "", 200, `"catalogue"`},
		{"wrong method", "DELETE", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+"/faults", strings.NewReader(tt.body))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantInBody) {
				t.Errorf("got %d %s, want %d containing %s", res.StatusCode, body, tt.wantStatus, tt.wantInBody)
			}
		})
	}
	if cam.fault != FaultRecover {
		t.Errorf("camera fault %q after the table, want the last one applied (recover)", cam.fault)
	}
}

func TestFaultsListing(t *testing.T) {
	ft, _ := newTestTable(t)
	for _, f := range []Fault{
		{Device: "cam-1", Fault: FaultAuth},
		{Device: "cam-1", Fault: FaultHang}, // replaces auth
		{Device: "pir-1", Fault: FaultSupervisionLoss},
		{Device: "pir-1", Fault: FaultTrigger},
		{Device: "pir-1", Fault: FaultRestore}, // ends the trigger only
		{Agent: "agent-1", Fault: FaultDisconnect, For: time.Hour},
	} {
		if err := ft.Fault(f); err != nil {
			t.Fatal(err)
		}
	}
	got := make(map[string]string)
	for _, a := range ft.Faults() {
		got[a.Device+a.Agent] = a.Fault
	}
	want := map[string]string{"cam-1": FaultHang, "pir-1": FaultSupervisionLoss, "agent-1": FaultDisconnect}
	if len(got) != len(want) {
		t.Fatalf("active %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	b, _ := json.Marshal(ft.Faults())
	if strings.Count(string(b), `"until"`) != 1 {
		t.Errorf("only the disconnect window has an end: %s", b)
	}
}

// TestCameraEvents: tamper and motion go to an ONVIF camera's events, as
// its analytics would send them, and stand beside its RTSP fault, which
// they do not touch; restore ends them, recover ends everything; a camera
// without ONVIF refuses them.
func TestCameraEvents(t *testing.T) {
	ft, bare := newTestTable(t)
	cam, o := &fakeCamera{}, &ONVIF{}
	ft.cameras["cam-2"], ft.onvif["cam-2"] = cam, o
	sent := func() []string { // the events waiting for a pull, in short
		o.mu.Lock()
		defer o.mu.Unlock()
		var out []string
		for _, e := range o.events {
			for _, w := range []string{"Tamper", "MotionAlarm", `Value="true"`, `Value="false"`} {
				if strings.Contains(e, w) {
					out = append(out, w)
				}
			}
		}
		o.events = nil
		return out
	}
	active := func() []string {
		var out []string
		for _, a := range ft.Faults() {
			if a.Device == "cam-2" {
				out = append(out, a.Fault)
			}
		}
		slices.Sort(out)
		return out
	}
	steps := []struct {
		fault        string
		rtsp         string   // the camera's RTSP fault after it
		active, sent []string // faults listed; events sent
	}{
		{FaultMotion, "", []string{FaultMotion}, []string{"MotionAlarm", `Value="true"`}},
		{FaultOffline, FaultOffline, []string{FaultMotion, FaultOffline}, nil},
		{FaultTamper, FaultOffline, []string{FaultMotion, FaultOffline, FaultTamper}, []string{"Tamper", `Value="true"`}},
		{FaultAuth, FaultAuth, []string{FaultAuth, FaultMotion, FaultTamper}, nil},
		{FaultRestore, FaultAuth, []string{FaultAuth}, []string{"MotionAlarm", "Tamper", `Value="false"`, `Value="false"`}},
		{FaultMotion, FaultAuth, []string{FaultAuth, FaultMotion}, []string{"MotionAlarm", `Value="true"`}},
		{FaultRecover, FaultRecover, nil, []string{"MotionAlarm", `Value="false"`}},
	}
	for i, st := range steps {
		if err := ft.Fault(Fault{Device: "cam-2", Fault: st.fault}); err != nil {
			t.Fatalf("step %d (%s): %v", i, st.fault, err)
		}
		got := sent()
		slices.Sort(got)
		slices.Sort(st.sent)
		if !slices.Equal(got, st.sent) || cam.fault != st.rtsp || !slices.Equal(active(), st.active) {
			t.Errorf("after %s: sent %v, RTSP fault %q, active %v; want %v, %q, %v", st.fault, got, cam.fault, active(), st.sent, st.rtsp, st.active)
		}
	}
	for _, f := range []string{FaultMotion, FaultTamper, FaultRestore} {
		if err := ft.Fault(Fault{Device: "cam-1", Fault: f}); !errors.Is(err, ErrBadFault) || bare.fault != "" {
			t.Errorf("%s on a camera without ONVIF: %v (its RTSP fault %q)", f, err, bare.fault)
		}
	}
}
