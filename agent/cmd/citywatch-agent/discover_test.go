package main

import (
	"bytes"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/onvif"
)

// TestPrintFound: found cameras print as configuration that parses, with
// their device service and a name, and ids the agent accepts.
func TestPrintFound(t *testing.T) {
	var out bytes.Buffer
	err := printFound(&out, []onvif.Found{
		{Endpoint: "urn:uuid:0c8b5a44-0000-4000-8000-00000000aa01", XAddrs: []string{"http://192.0.2.11/onvif/device_service"}, Name: "Gate: east \"B\"", Hardware: "DS-2CD2T47G2-L"},
		{Endpoint: "x", XAddrs: []string{"http://192.0.2.12/onvif/device_service"}},
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.HasPrefix(text, "# 2 ONVIF cameras answered (1 answers did not decode and were skipped).") {
		t.Errorf("header: %q", text)
	}
	var got struct{ Cameras []config.Camera }
	if err := yaml.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v in\n%s", err, text)
	}
	if len(got.Cameras) != 2 || got.Cameras[0].ID != "cam-00000000aa01" ||
		got.Cameras[0].Name != `Gate: east "B" (DS-2CD2T47G2-L)` || got.Cameras[0].ONVIF.URL != "http://192.0.2.11/onvif/device_service" || got.Cameras[1].ID != "cam-2" {
		t.Errorf("cameras %+v from\n%s", got.Cameras, text)
	}
}
