package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// snapshotTimeout bounds fetching one picture from a camera.
const snapshotTimeout = 10 * time.Second

// snapshotClient fetches cameras' pictures; it follows no redirects (a
// camera's snapshot URL answers itself).
var snapshotClient = &http.Client{Timeout: snapshotTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// snapshotCommand answers a hub's snapshot command with the camera's
// picture from its snapshot URL, or why there is none.
func (a *Agent) snapshotCommand(ctx context.Context, cmd wire.Command) {
	s := wire.Snapshot{Request: cmd.ID, Device: cmd.Devices[0]}
	pic, err := a.snapshot(ctx, s.Device)
	if err != nil {
		s.Error = err.Error()
		if len(s.Error) > wire.MaxDetailLen {
			s.Error = s.Error[:wire.MaxDetailLen]
		}
		a.log.Warn("snapshot failed", "command", cmd.ID, "device", s.Device, "err", err)
	} else {
		s.JPEG = pic
	}
	a.up.PublishSnapshot(s)
}

var errNoSnapshot = errors.New("the camera has no snapshot URL or ONVIF service configured")

// snapshot fetches a camera's JPEG, from its snapshot URL, else through
// its ONVIF service. Credentials in the URL go as HTTP basic
// authentication; errors never quote the URL (it may hold them).
func (a *Agent) snapshot(ctx context.Context, id string) ([]byte, error) {
	a.mu.Lock()
	var url string
	var ov *onvifCamera
	found := false
	for _, c := range a.cfg.Cameras {
		if c.ID == id {
			url, ov, found = c.Snapshot.Reveal(), a.onvif[c.ID], true
		}
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	var pic []byte
	var err error
	switch {
	case !found:
		return nil, fmt.Errorf("no camera %s at this agent", id)
	case url != "":
		pic, err = fetchSnapshot(ctx, url)
	case ov != nil:
		pic, err = ov.snapshot(ctx)
	default:
		return nil, errNoSnapshot
	}
	switch {
	case err != nil:
		return nil, err
	case !bytes.HasPrefix(pic, []byte{0xFF, 0xD8, 0xFF}):
		return nil, errors.New("the camera did not answer with a JPEG picture")
	}
	return pic, nil
}

// fetchSnapshot GETs a snapshot URL, at most wire.MaxSnapshot bytes.
func fetchSnapshot(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, errors.New("the snapshot URL is not valid")
	}
	resp, err := snapshotClient.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // url.Error quotes the URL
		}
		return nil, fmt.Errorf("GET snapshot: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET snapshot: %s", resp.Status)
	}
	pic, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxSnapshot+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("GET snapshot: %v", err)
	case len(pic) > wire.MaxSnapshot:
		return nil, fmt.Errorf("the picture is larger than %d KiB", wire.MaxSnapshot>>10)
	}
	return pic, nil
}
