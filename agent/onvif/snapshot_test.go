package onvif_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/sim"
)

var jpeg = []byte{0xFF, 0xD8, 0xFF, 0xE0, 'p', 'i', 'c'}

// digestCamera serves jpeg at /snap behind HTTP digest authentication
// (MD5, qop auth), as most cameras guard their snapshot URI.
func digestCamera(t *testing.T, user, pass string) *httptest.Server {
	t.Helper()
	const realm, nonce = "IP Camera(C2358)", "4e6f6e6365"
	field := func(h, k string) string {
		m := regexp.MustCompile(k + `="?([^",]*)"?`).FindStringSubmatch(h)
		if m == nil {
			return ""
		}
		return m[1]
	}
	md := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		ha1, ha2 := md(user+":"+realm+":"+pass), md("GET:"+r.URL.RequestURI())
		want := md(ha1 + ":" + nonce + ":" + field(h, "nc") + ":" + field(h, "cnonce") + ":auth:" + ha2)
		if field(h, "username") != user || field(h, "uri") != r.URL.RequestURI() || field(h, "response") != want {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm=%q, qop="auth,auth-int", nonce=%q, opaque="x", algorithm=MD5`, realm, nonce))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write(jpeg)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSnapshot: the snapshot URI comes from the media service (its
// address from GetCapabilities, its first profile), and the picture from
// there with digest authentication; wrong credentials are
// ErrNotAuthorized, a bigger picture than allowed an error.
func TestSnapshot(t *testing.T) {
	pics := digestCamera(t, "admin", "s3cret&<ok>")
	o := &sim.ONVIF{Username: "admin", Password: "s3cret&<ok>", Snapshot: pics.URL + "/snap?channel=1"}
	c := camera(t, o)
	uri, err := c.SnapshotURI(context.Background())
	if err != nil || uri != pics.URL+"/snap?channel=1" {
		t.Fatalf("SnapshotURI = %q, %v", uri, err)
	}
	if o.Calls("GetCapabilities") != 1 || o.Calls("GetProfiles") != 1 || o.Calls("GetSnapshotUri") != 1 {
		t.Errorf("calls: capabilities %d, profiles %d, snapshot uri %d", o.Calls("GetCapabilities"), o.Calls("GetProfiles"), o.Calls("GetSnapshotUri"))
	}
	pic, err := c.Fetch(context.Background(), uri, 1<<20)
	if err != nil || string(pic) != string(jpeg) {
		t.Fatalf("Fetch = %q, %v", pic, err)
	}
	if _, err := c.Fetch(context.Background(), uri, 3); err == nil {
		t.Error("a picture over the limit was taken")
	}

	wrong, err := onvif.New(onvif.Options{URL: "http://192.0.2.1/onvif/device_service", Username: "admin", Password: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Fetch(context.Background(), uri, 1<<20); !errors.Is(err, onvif.ErrNotAuthorized) {
		t.Errorf("with the wrong password: %v, want ErrNotAuthorized", err)
	}

	none := &sim.ONVIF{Username: "admin", Password: "s3cret&<ok>"}
	if _, err := camera(t, none).SnapshotURI(context.Background()); err == nil {
		t.Error("a camera without snapshots gave a URI")
	}
}

// TestStreams: the camera's profiles, main stream first, with encoding,
// resolution and RTSP URI; a profile streaming something else is left out.
func TestStreams(t *testing.T) {
	o := &sim.ONVIF{Username: "admin", Password: "s3cret&<ok>", Profiles: []onvif.Stream{
		{Token: "Profile_1", Encoding: "H265", Width: 2688, Height: 1520, URI: "rtsp://192.0.2.11:554/Streaming/Channels/101"},
		{Token: "Profile_2", Encoding: "H264", Width: 640, Height: 360, URI: "rtsp://192.0.2.11:554/Streaming/Channels/102"},
		{Token: "Profile_3", Encoding: "JPEG", Width: 640, Height: 360, URI: "http://192.0.2.11/mjpeg"},
	}}
	got, err := camera(t, o).Streams(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != o.Profiles[0] || got[1] != o.Profiles[1] {
		t.Fatalf("Streams = %+v, want the first two profiles", got)
	}
}
