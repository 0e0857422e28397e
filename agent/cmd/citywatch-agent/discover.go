package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citywatch/citywatch/agent/onvif"
)

// discover probes the site's LAN for ONVIF cameras (WS-Discovery) and
// prints them as the cameras of an agent configuration, to check and
// paste: nothing is added by itself, and each needs its RTSP URL and
// credentials filled in.
func discover(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("discover", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for answers")
	addr := fs.String("addr", onvif.DiscoveryAddr, "where the probe goes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *timeout <= 0 || *timeout > time.Minute {
		return fmt.Errorf("-timeout %s out of range (0, 1m]", *timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	found, skipped, err := onvif.Discover(ctx, *addr)
	if err != nil {
		return err
	}
	return printFound(out, found, skipped)
}

// discovered is a found camera as configuration.
type discovered struct {
	ID    string            `yaml:"id"`
	Name  string            `yaml:"name,omitempty"`
	RTSP  string            `yaml:"rtsp"`
	ONVIF map[string]string `yaml:"onvif"`
}

func printFound(out io.Writer, found []onvif.Found, skipped int) error {
	fmt.Fprintf(out, "# %d ONVIF cameras answered", len(found))
	if skipped > 0 {
		fmt.Fprintf(out, " (%d answers did not decode and were skipped)", skipped)
	}
	fmt.Fprint(out, ".\n# Check each, fill in rtsp (and rtsp_sub), the ONVIF username and password,\n# location, heading, fov and range_m, then paste under cameras:.\n")
	if len(found) == 0 {
		return nil
	}
	cams := make([]discovered, len(found))
	for i, f := range found {
		name := f.Name
		if f.Hardware != "" && f.Hardware != name {
			name = strings.TrimSpace(name + " (" + f.Hardware + ")")
		}
		cams[i] = discovered{ID: cameraID(f.Endpoint, i), Name: name, ONVIF: map[string]string{"url": f.XAddrs[0], "username": "", "password": ""}}
	}
	b, err := yaml.Marshal(map[string]any{"cameras": cams})
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

// cameraID makes an id from the end of a camera's endpoint (urn:uuid:…),
// which stays the same for the camera: "cam-" and 12 letters or digits.
func cameraID(endpoint string, i int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(endpoint) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) < 4 {
		return fmt.Sprintf("cam-%d", i+1)
	}
	return "cam-" + s[max(0, len(s)-12):]
}
