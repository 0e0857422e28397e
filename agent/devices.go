package agent

import (
	"cmp"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/agent/supervise"
	"github.com/citywatch/citywatch/wire"
)

// devices turns the configuration into supervisor settings; drivers were
// checked to exist by New or Reload. a.mu is held.
func (a *Agent) devices(cfg config.Config) []supervise.Device {
	out := make([]supervise.Device, 0, len(cfg.Cameras)+len(cfg.Sensors))
	for _, c := range cfg.Cameras {
		cam := &supervise.Camera{
			Target:                probe.Target{ID: c.ID, URL: c.RTSP},
			Sub:                   probe.Target{ID: c.ID, URL: c.RTSPSub},
			Interval:              cfg.Probe.Interval,
			StreamEvery:           cfg.Probe.StreamEvery,
			StreamSample:          cfg.Probe.StreamSample,
			FailuresBeforeOffline: cfg.Probe.FailuresBeforeOffline,
			MinFPS:                c.MinFPS,
		}
		if o := a.onvifOf(c); o != nil {
			cam.Identify, cam.Events = o, o
		}
		out = append(out, supervise.Device{ID: c.ID, Camera: cam})
	}
	for _, s := range cfg.Sensors {
		out = append(out, supervise.Device{ID: s.ID, Sensor: &supervise.Sensor{
			Driver:      a.drivers[s.Driver],
			Params:      s.Params,
			Supervision: s.Supervision,
		}})
	}
	return out
}

// inventory is what the hub learns about the site, its topology and its
// devices, with what cameras said of themselves (ids) and what their
// probes found their streams to be (streams; both may be nil);
// credentials and URLs stay on the agent.
func inventory(cfg config.Config, ids map[string]supervise.Identity, streams map[string][]wire.Stream) wire.Inventory {
	site := wire.Site{ID: cfg.Site.ID, Name: cfg.Site.Name, District: cfg.Site.District, Location: cfg.Site.Location, PowerFeed: cfg.Site.PowerFeed,
		Names: cfg.Site.Names, DistrictNames: cfg.Site.DistrictNames}
	var nodes []wire.Node
	for _, n := range cfg.Topology {
		nodes = append(nodes, wire.Node{ID: n.ID, Kind: n.Kind, Name: n.Name, Parent: n.Parent})
	}
	devs := make([]wire.Device, 0, len(cfg.Cameras)+len(cfg.Sensors))
	for _, c := range cfg.Cameras {
		vendor, asset := c.Vendor, c.Asset
		if id, ok := ids[c.ID]; ok {
			vendor, asset = cmp.Or(c.Vendor, id.Manufacturer), identified(c, id)
		}
		devs = append(devs, wire.Device{
			ID: c.ID, Name: c.Name, Names: c.Names, Kind: wire.KindCamera, District: c.District,
			Location: c.Location, Criticality: c.Criticality,
			Camera: &wire.CameraInfo{Heading: c.Heading, FOV: c.FOV, Range: c.RangeM, Snapshot: c.Snapshot != "" || c.ONVIF.URL != ""},
			Parent: c.Parent, Vendor: vendor,
			Model: asset.Model, Firmware: asset.Firmware, Serial: asset.Serial, Installed: asset.Installed,
			Streams: streams[c.ID],
		})
	}
	for _, s := range cfg.Sensors {
		devs = append(devs, wire.Device{
			ID: s.ID, Name: s.Name, Names: s.Names, Kind: wire.KindSensor, SensorKind: s.Kind, District: s.District,
			Location: s.Location, Criticality: s.Criticality, Parent: s.Parent, Vendor: s.Vendor,
			Model: s.Model, Firmware: s.Firmware, Serial: s.Serial, Installed: s.Installed,
		})
	}
	return wire.Inventory{Site: site, Topology: nodes, Devices: devs}
}
