package onvif_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/sim"
)

var info = onvif.Info{Manufacturer: "Hikvision", Model: "DS-2CD2T47G2-L", Firmware: "V5.7.3 build 220112", Serial: "DS-2CD2T47G2-L20220101AACHJ12345678", HardwareID: "88"}

func camera(t *testing.T, o *sim.ONVIF) *onvif.Client {
	t.Helper()
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	c, err := onvif.New(onvif.Options{URL: srv.URL + "/onvif/device_service", Username: "admin", Password: "s3cret&<ok>"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDeviceInformation: the camera's identity, with a digest the camera
// checks; wrong credentials are ErrNotAuthorized.
func TestDeviceInformation(t *testing.T) {
	o := &sim.ONVIF{Info: info, Username: "admin", Password: "s3cret&<ok>"}
	got, err := camera(t, o).DeviceInformation(context.Background())
	if err != nil || got != info {
		t.Fatalf("DeviceInformation = %+v, %v; want %+v", got, err, info)
	}

	wrong := &sim.ONVIF{Info: info, Username: "admin", Password: "other"}
	if _, err := camera(t, wrong).DeviceInformation(context.Background()); !errors.Is(err, onvif.ErrNotAuthorized) {
		t.Fatalf("with the wrong password: %v, want ErrNotAuthorized", err)
	}
}

// TestClockDrift: a camera whose clock is two minutes ahead refuses
// digests stamped in the agent's time; once the client has read the
// camera's clock (which needs no credentials) it stamps them in the
// camera's, and reports the drift.
func TestClockDrift(t *testing.T) {
	o := &sim.ONVIF{Info: info, Username: "admin", Password: "s3cret&<ok>", Skew: 2 * time.Minute}
	c := camera(t, o)
	if _, err := c.DeviceInformation(context.Background()); !errors.Is(err, onvif.ErrNotAuthorized) {
		t.Fatalf("before reading the camera's clock: %v, want ErrNotAuthorized", err)
	}
	clk, err := c.SystemTime(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := clk.Drift - 2*time.Minute; d < -2*time.Second || d > 2*time.Second {
		t.Errorf("drift %v, want about 2m", clk.Drift)
	}
	if got, err := c.DeviceInformation(context.Background()); err != nil || got != info {
		t.Fatalf("after reading the camera's clock: %+v, %v", got, err)
	}
	if n := o.Calls("GetDeviceInformation"); n != 2 {
		t.Errorf("%d GetDeviceInformation calls, want 2", n)
	}
}

// TestBadAnswers: whatever a camera (or something pretending to be one)
// answers, the client says what is wrong and returns nothing of it.
func TestBadAnswers(t *testing.T) {
	const env = `<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>`
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"not XML", 200, "<html>login</html", "not SOAP"},
		{"an HTML error page", 500, "<html><body>Internal error</body></html>", "HTTP 500"},
		{"empty answer", 200, env + `<GetDeviceInformationResponse/></s:Body></s:Envelope>`, "says nothing of the device"},
		{"another fault", 400, env + `<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>ter:ActionNotSupported</s:Value></s:Subcode></s:Code><s:Reason><s:Text>` + strings.Repeat("x", 5000) + `</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>`, "Receiver ActionNotSupported"},
		{"too large", 200, env + strings.Repeat(" ", onvif.MaxResponse) + `</s:Body></s:Envelope>`, "over"},
		{"401 without a body", 401, "", "not authorized"},
		{"entity expansion", 200, `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>` + env + `<GetDeviceInformationResponse><Model>&b;</Model></GetDeviceInformationResponse></s:Body></s:Envelope>`, "not SOAP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := onvif.New(onvif.Options{URL: srv.URL, Username: "admin", Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.DeviceInformation(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || got != (onvif.Info{}) {
				t.Fatalf("DeviceInformation = %+v, %v; want an error saying %q", got, err, tt.want)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

// TestNewRefuses: URLs that are not a device service, or that carry
// credentials (errors quote the URL).
func TestNewRefuses(t *testing.T) {
	for _, u := range []string{"", "rtsp://cam/onvif", "http://", "http://admin:pw@cam/onvif/device_service", "::"} {
		if _, err := onvif.New(onvif.Options{URL: u}); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%q) = %v, want a refusal that quotes no password", u, err)
		}
	}
}
