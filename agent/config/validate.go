package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

// problems collects every validation failure, each prefixed with the YAML
// path of the offending value, e.g. "cameras[3].rtsp: missing".
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// Validate reports every problem of the configuration at once, joined with
// errors.Join; errors.Unwrap-ing the result as []error lists them. It checks
// what the wire contract will require of the inventory, so a config that
// validates never produces messages the hub rejects.
func (c Config) Validate() error {
	var p problems
	c.validateBroker(&p)
	checkID(&p, "id", c.ID)
	checkID(&p, "site.id", c.Site.ID)
	checkName(&p, "site.name", c.Site.Name)
	checkNames(&p, "site.names", c.Site.Names)
	checkDistrict(&p, "site.district", c.Site.District)
	checkNames(&p, "site.district_names", c.Site.DistrictNames)
	if c.Site.PowerFeed != "" {
		checkID(&p, "site.power_feed", c.Site.PowerFeed)
	}
	if c.Site.Location == (wire.Location{}) {
		p.add("site.location", "missing (0,0 counts as unset)")
	} else {
		checkLocation(&p, "site.location", c.Site.Location)
	}
	// The wire contract carries the interval in seconds up to an hour.
	checkDuration(&p, "interval", c.Interval, time.Second, time.Hour)
	c.Probe.validate(&p)
	c.Live.validate(&p)
	c.Uplink.validate(&p)

	if n := len(c.Cameras) + len(c.Sensors); n > wire.MaxDevices {
		p.add("cameras", "%d devices exceed the limit of %d per agent", n, wire.MaxDevices)
	}
	seen := make(map[string]string) // id → path of its first use
	unique := func(path, id string) {
		if first, ok := seen[id]; ok && id != "" {
			p.add(path, "id %q already used by %s", id, first)
			return
		}
		seen[id] = path
	}
	nodes := c.validateTopology(&p, unique)
	parent := func(path, id string) {
		if _, ok := nodes[id]; id != "" && !ok {
			p.add(path, "%q is not a topology node", id)
		}
	}
	for i, d := range c.Cameras {
		path := fmt.Sprintf("cameras[%d]", i)
		unique(path+".id", d.ID)
		d.validate(&p, path)
		parent(path+".parent", d.Parent)
	}
	for i, d := range c.Sensors {
		path := fmt.Sprintf("sensors[%d]", i)
		unique(path+".id", d.ID)
		d.validate(&p, path)
		parent(path+".parent", d.Parent)
	}
	return errors.Join(p...)
}

// validateTopology checks the nodes as the wire contract will (ids, kinds,
// parents that exist, no cycles) and returns each node's parent by id.
func (c Config) validateTopology(p *problems, unique func(path, id string)) map[string]string {
	if len(c.Topology) > wire.MaxDevices {
		p.add("topology", "%d nodes exceed the limit of %d", len(c.Topology), wire.MaxDevices)
	}
	nodes := make(map[string]string, len(c.Topology))
	for i, n := range c.Topology {
		path := fmt.Sprintf("topology[%d]", i)
		checkID(p, path+".id", n.ID)
		unique(path+".id", n.ID)
		checkName(p, path+".name", n.Name)
		if !slices.Contains(wire.NodeKinds, n.Kind) {
			p.add(path+".kind", "%q is not one of %v", n.Kind, wire.NodeKinds)
		}
		nodes[n.ID] = n.Parent
	}
	for i, n := range c.Topology {
		path := fmt.Sprintf("topology[%d].parent", i)
		if _, ok := nodes[n.Parent]; n.Parent != "" && !ok {
			p.add(path, "%q is not a topology node", n.Parent)
			continue
		}
		// A walk up longer than the node count has looped; reported once
		// per node on the loop, which names them all.
		at := n.ID
		for range len(nodes) {
			if at = nodes[at]; at == "" {
				break
			}
		}
		if at != "" {
			p.add(path, "node %q is its own ancestor", n.ID)
		}
	}
	return nodes
}

func (c Config) validateBroker(p *problems) {
	if c.Broker.URL == "" {
		p.add("broker.url", "missing")
	}
	withTLS := 0
	urls := strings.Split(c.Broker.URL, ",")
	for _, raw := range urls {
		if c.Broker.URL == "" {
			break
		}
		u, err := url.Parse(strings.TrimSpace(raw))
		switch {
		case err != nil:
			p.add("broker.url", "not a valid URL") // the error would quote credentials
		case !brokerSchemes[u.Scheme]:
			p.add("broker.url", "scheme %q is not one of tcp, mqtt, ssl, tls, mqtts", u.Scheme)
		case u.Host == "":
			p.add("broker.url", "no host")
		case u.User != nil:
			p.add("broker.url", "must not carry credentials; use broker.username and broker.password")
		case tlsSchemes[u.Scheme]:
			withTLS++
		}
	}
	if withTLS != 0 && withTLS != len(urls) {
		p.add("broker.url", "brokers of one agent must all use TLS or none")
	}
	if c.Broker.Password != "" && c.Broker.Username == "" {
		p.add("broker.password", "set without a username")
	}
	if c.Broker.ClientID == "" {
		p.add("broker.client_id", "missing (it defaults to the agent id)")
	}
	c.Broker.validateTLS(p)
}

// brokerSchemes are the URL schemes the uplink dials; websockets are not
// supported because the uplink wraps the TCP connection itself.
var brokerSchemes = map[string]bool{"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true}

func (pr Probe) validate(p *problems) {
	checkDuration(p, "probe.interval", pr.Interval, 100*time.Millisecond, time.Hour)
	checkDuration(p, "probe.timeout", pr.Timeout, 10*time.Millisecond, time.Minute)
	if pr.Timeout >= pr.Interval && pr.Interval > 0 {
		p.add("probe.timeout", "%v must be shorter than probe.interval %v", pr.Timeout, pr.Interval)
	}
	if pr.StreamEvery != 0 {
		checkDuration(p, "probe.stream_every", pr.StreamEvery, pr.Interval, 24*time.Hour)
		checkDuration(p, "probe.stream_sample", pr.StreamSample, 100*time.Millisecond, time.Minute)
	}
	if pr.FailuresBeforeOffline < 1 || pr.FailuresBeforeOffline > 100 {
		p.add("probe.failures_before_offline", "%d out of range 1–100", pr.FailuresBeforeOffline)
	}
	checkFPS(p, "probe.min_fps", pr.MinFPS)
}

// maxLiveSessions: more concurrent streams than this out of one site
// exceed any site uplink.
const maxLiveSessions = 64

func (l Live) validate(p *problems) {
	if l.MaxSessions < 1 || l.MaxSessions > maxLiveSessions {
		p.add("live.max_sessions", "%d out of range 1–%d", l.MaxSessions, maxLiveSessions)
	}
	lo, hi, err := l.Ports()
	switch {
	case err != nil:
		p.add("live.udp_ports", "%v", err)
	case lo != 0 && int(hi-lo)+1 < l.MaxSessions:
		// Each session takes a port per network interface.
		p.add("live.udp_ports", "%d ports are fewer than live.max_sessions %d", int(hi-lo)+1, l.MaxSessions)
	}
}

// Spool bounds: below a megabyte one large health report would not fit;
// the upper bound catches a quota typed in the wrong unit.
const (
	minSpoolBytes = 1 << 20
	maxSpoolBytes = 1 << 40
	maxResendRate = 100000
)

func (u Uplink) validate(p *problems) {
	if u.SpoolBytes != 0 {
		if u.SpoolBytes < minSpoolBytes || u.SpoolBytes > maxSpoolBytes {
			p.add("uplink.spool_bytes", "%d out of range %d–%d (0 disables the spool)", u.SpoolBytes, minSpoolBytes, int64(maxSpoolBytes))
		}
		switch {
		case u.SpoolDir == "":
			p.add("uplink.spool_dir", "missing (set uplink.spool_bytes: 0 to disable the spool)")
		case !filepath.IsAbs(u.SpoolDir):
			p.add("uplink.spool_dir", "%q is not an absolute path", u.SpoolDir)
		}
	}
	if !finite(u.ResendRate) || u.ResendRate < 1 || u.ResendRate > maxResendRate {
		p.add("uplink.resend_rate", "%v out of range 1–%d messages a second", u.ResendRate, maxResendRate)
	}
}

func (d Camera) validate(p *problems, path string) {
	checkID(p, path+".id", d.ID)
	checkName(p, path+".name", d.Name)
	checkNames(p, path+".names", d.Names)
	checkURL(p, path+".rtsp", d.RTSP, true, "rtsp", "rtsps")
	checkURL(p, path+".rtsp_sub", d.RTSPSub, false, "rtsp", "rtsps")
	checkURL(p, path+".snapshot", d.Snapshot, false, "http", "https")
	d.ONVIF.validate(p, path+".onvif")
	checkLocation(p, path+".location", d.Location)
	if !finite(d.Heading) || d.Heading < 0 || d.Heading >= 360 {
		p.add(path+".heading", "%v out of range [0, 360)", d.Heading)
	}
	if !finite(d.FOV) || d.FOV <= 0 || d.FOV > 360 {
		p.add(path+".fov", "%v out of range (0, 360]", d.FOV)
	}
	if !finite(d.RangeM) || d.RangeM < 0 || d.RangeM > 10000 {
		p.add(path+".range_m", "%v out of range [0, 10000]", d.RangeM)
	}
	checkDistrict(p, path+".district", d.District)
	checkCriticality(p, path+".criticality", d.Criticality)
	checkFPS(p, path+".min_fps", d.MinFPS)
}

func (d Sensor) validate(p *problems, path string) {
	checkID(p, path+".id", d.ID)
	checkName(p, path+".name", d.Name)
	checkNames(p, path+".names", d.Names)
	if !d.Kind.Valid() {
		p.add(path+".kind", "%q is not one of %v", d.Kind, wire.SensorKinds)
	}
	checkLocation(p, path+".location", d.Location)
	checkDistrict(p, path+".district", d.District)
	// Which drivers exist is known only to the agent (tests and the
	// simulator add their own), so only presence is checked here.
	if d.Driver == "" {
		p.add(path+".driver", "missing")
	}
	checkDuration(p, path+".supervision", d.Supervision, time.Second, 24*time.Hour)
	checkCriticality(p, path+".criticality", d.Criticality)
}

func checkID(p *problems, path, id string) {
	if err := wire.ValidID(id); err != nil {
		p.add(path, "%v", err)
	}
}

func checkName(p *problems, path, name string) {
	if len(name) > wire.MaxNameLen {
		p.add(path, "longer than %d bytes", wire.MaxNameLen)
	}
}

func checkNames(p *problems, path string, n wire.Names) {
	if err := n.Check(); err != nil {
		p.add(path, "%v", err)
	}
}

func checkDistrict(p *problems, path, d string) {
	switch {
	case d == "":
		p.add(path, "missing (devices default to site.district)")
	case len(d) > wire.MaxNameLen:
		p.add(path, "longer than %d bytes", wire.MaxNameLen)
	}
}

func checkLocation(p *problems, path string, l wire.Location) {
	if !finite(l.Lat) || !finite(l.Lon) || l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180 {
		p.add(path, "%v,%v is not a WGS-84 position", l.Lat, l.Lon)
	}
}

func checkDuration(p *problems, path string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		p.add(path, "%v out of range %v–%v", d, lo, hi)
	}
}

func checkCriticality(p *problems, path string, c int) {
	if c < 1 || c > 5 {
		p.add(path, "%d out of range 1–5", c)
	}
}

func checkFPS(p *problems, path string, fps float64) {
	if !finite(fps) || fps < 0 || fps > 240 {
		p.add(path, "%v out of range 0–240", fps)
	}
}

// checkURL never puts the URL itself into the message: it may carry a
// password, and validation errors end up in logs.
func checkURL(p *problems, path string, s secret.URL, required bool, schemes ...string) {
	if s == "" {
		if required {
			p.add(path, "missing")
		}
		return
	}
	u, err := url.Parse(s.Reveal())
	if err != nil {
		p.add(path, "not a valid URL")
		return
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok {
		p.add(path, "scheme %q is not one of %v", u.Scheme, schemes)
	}
	if u.Hostname() == "" {
		p.add(path, "no host")
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func (o ONVIF) validate(p *problems, path string) {
	if o.URL == "" {
		if o.Username != "" || o.Password != "" {
			p.add(path+".url", "missing (username or password given)")
		}
		return
	}
	checkURL(p, path+".url", secret.URL(o.URL), true, "http", "https")
	if u, err := url.Parse(o.URL); err == nil && u.User != nil {
		p.add(path+".url", "holds credentials; give them as username and password")
	}
}
