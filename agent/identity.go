package agent

import (
	"cmp"
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/agent/supervise"
	"github.com/citywatch/citywatch/wire"
)

// onvifCamera asks a camera's ONVIF device service who it is: its clock
// first (digests are then stamped in the camera's time, so a camera whose
// clock is off still takes them), then its identity.
type onvifCamera struct {
	client *onvif.Client
	cfg    config.ONVIF

	mu        sync.Mutex
	clockRead bool       // the client stamps digests in the camera's time
	snapURI   string     // the camera's snapshot URI, once asked
	subURI    secret.URL // its H.264 sub-stream, once found
}

// readClock reads the camera's clock before the first call that needs
// credentials, whichever comes first (events follow from the start, a
// snapshot may be asked for before the first probe): a camera whose clock
// is off refuses digests stamped in the agent's time.
func (o *onvifCamera) readClock(ctx context.Context) error {
	o.mu.Lock()
	read := o.clockRead
	o.mu.Unlock()
	if read {
		return nil
	}
	_, err := o.client.SystemTime(ctx)
	o.mu.Lock()
	o.clockRead = o.clockRead || err == nil
	o.mu.Unlock()
	return err
}

// subStream finds the camera's first H.264 profile among its ONVIF
// profiles, with the main RTSP URL's credentials when the profile's URI
// has none (ONVIF gives them bare).
func (o *onvifCamera) subStream(ctx context.Context, main secret.URL) (secret.URL, error) {
	o.mu.Lock()
	sub := o.subURI
	o.mu.Unlock()
	if sub != "" {
		return sub, nil
	}
	if err := o.readClock(ctx); err != nil {
		return "", err
	}
	streams, err := o.client.Streams(ctx)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(streams, func(s onvif.Stream) bool { return s.Encoding == "H264" })
	if i < 0 {
		return "", errors.New("none of the camera's ONVIF profiles is H.264")
	}
	u, err := url.Parse(streams[i].URI)
	if err != nil {
		return "", errors.New("the camera's H.264 profile has no valid stream URI")
	}
	if m, err := url.Parse(main.Reveal()); err == nil && u.User == nil {
		u.User = m.User
	}
	sub = secret.URL(u.String())
	o.mu.Lock()
	o.subURI = sub
	o.mu.Unlock()
	return sub, nil
}

func (o *onvifCamera) Identify(ctx context.Context) (supervise.Identity, error) {
	clk, err := o.client.SystemTime(ctx)
	if err != nil {
		return supervise.Identity{}, err
	}
	o.mu.Lock()
	o.clockRead = true
	o.mu.Unlock()
	info, err := o.client.DeviceInformation(ctx)
	if err != nil {
		return supervise.Identity{}, err
	}
	return supervise.Identity{Manufacturer: info.Manufacturer, Model: info.Model, Firmware: info.Firmware, Serial: info.Serial, Drift: clk.Drift}, nil
}

// snapshot fetches the camera's picture from the snapshot URI its media
// service gives (asked once, and again after a failed fetch: a camera
// reset may move it).
func (o *onvifCamera) snapshot(ctx context.Context) ([]byte, error) {
	o.mu.Lock()
	uri := o.snapURI
	o.mu.Unlock()
	if uri == "" {
		if err := o.readClock(ctx); err != nil {
			return nil, err
		}
		var err error
		if uri, err = o.client.SnapshotURI(ctx); err != nil {
			return nil, err
		}
	}
	pic, err := o.client.Fetch(ctx, uri, wire.MaxSnapshot)
	o.mu.Lock()
	if err != nil {
		o.snapURI = ""
	} else {
		o.snapURI = uri
	}
	o.mu.Unlock()
	return pic, err
}

// Watch follows the camera's events (a pull-point subscription) and
// reports what they say of the picture — tampering (TamperDetector,
// GlobalSceneChange), too blurry, dark or bright, and motion (MotionAlarm,
// CellMotionDetector), which is no fault but a device event — until ctx
// ends or the subscription fails.
func (o *onvifCamera) Watch(ctx context.Context, report func(kind string, active bool)) error {
	if err := o.readClock(ctx); err != nil {
		return err
	}
	sub, err := o.client.Subscribe(ctx)
	if err != nil {
		return err
	}
	for {
		events, err := sub.Pull(ctx, 10*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, e := range events {
			if !e.Known {
				continue // says no state: nothing to report
			}
			switch k := e.Kind(); k {
			case onvif.KindTamper:
				report(supervise.KindTamper, e.Active)
			case onvif.KindMotion:
				report(supervise.KindMotion, e.Active)
			case onvif.KindBlurry, onvif.KindDark, onvif.KindBright:
				report(k, e.Active)
			}
		}
	}
}

// onvifOf returns camera c's ONVIF client, nil without ONVIF; the same one
// while its ONVIF settings stay, so that a reload does not restart its
// supervisor. a.mu is held.
func (a *Agent) onvifOf(c config.Camera) *onvifCamera {
	if c.ONVIF.URL == "" {
		return nil
	}
	if o, ok := a.onvif[c.ID]; ok && o.cfg == c.ONVIF {
		return o
	}
	client, err := onvif.New(onvif.Options{URL: c.ONVIF.URL, Username: c.ONVIF.Username, Password: c.ONVIF.Password.Reveal()})
	if err != nil {
		// Validate checked the URL; say so if it ever gets here.
		a.log.Error("camera's ONVIF service not used", "device", c.ID, "err", err)
		return nil
	}
	o := &onvifCamera{client: client, cfg: c.ONVIF}
	a.onvif[c.ID] = o
	return o
}

// onIdentity keeps what a camera said of itself. The inventory carries it
// (the camera's own model, firmware and serial over the configuration's)
// and goes again when it changed: a new serial is a camera replaced, which
// the hub records. It runs on the camera's supervisor, which Reload may be
// waiting for while holding a.mu: the inventory is sent from a goroutine.
func (a *Agent) onIdentity(device string, id supervise.Identity) {
	id.Drift = 0 // reported with health, not part of the inventory
	a.idMu.Lock()
	prev, known := a.identities[device]
	a.identities[device] = id
	a.idMu.Unlock()
	if known && prev == id {
		return
	}
	if known && prev.Serial != id.Serial {
		a.log.Warn("camera's serial changed: replaced", "device", device, "was", prev.Serial, "now", id.Serial)
	} else {
		a.log.Info("camera identified (ONVIF)", "device", device, "model", id.Model, "firmware", id.Firmware, "serial", id.Serial)
	}
	a.resendInventory()
}

// onStreams keeps what a camera's probes found its streams to be; the
// inventory carries them and goes again when they changed (the hub
// records a main stream whose codec or size changed). Like onIdentity it
// runs on the camera's supervisor.
func (a *Agent) onStreams(device string, streams []wire.Stream) {
	a.idMu.Lock()
	prev := a.streams[device]
	a.streams[device] = streams
	a.idMu.Unlock()
	if slices.Equal(prev, streams) {
		return
	}
	a.resendInventory()
}

// resendInventory publishes the inventory again a moment later (from a
// timer's goroutine: the supervisors that learn what goes in it may be
// waited for by Reload, which holds a.mu), once for what all cameras
// learn meanwhile: at start every camera's first probe finds its streams,
// and a site of 90 cameras sends one inventory, not 90.
func (a *Agent) resendInventory() {
	if !a.invPending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(inventoryCoalesce, func() {
		a.invPending.Store(false)
		a.mu.Lock()
		inv := a.inventoryLocked()
		a.mu.Unlock()
		a.up.SetInventory(inv)
	})
}

// inventoryCoalesce is how long resendInventory gathers changes.
const inventoryCoalesce = time.Second

// inventoryLocked is the inventory of a.cfg with what the cameras said of
// themselves and what their probes found; a.mu is held.
func (a *Agent) inventoryLocked() wire.Inventory {
	a.idMu.Lock()
	defer a.idMu.Unlock()
	return inventory(a.cfg, a.identities, a.streams)
}

// identified fills a camera's asset fields from what it said of itself.
func identified(c config.Camera, id supervise.Identity) config.Asset {
	return config.Asset{Model: cmp.Or(id.Model, c.Model), Firmware: cmp.Or(id.Firmware, c.Firmware), Serial: cmp.Or(id.Serial, c.Serial), Installed: c.Installed}
}
