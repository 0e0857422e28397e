// Package sim is the citywatch simulator: a fictional city of agents,
// cameras and alarm sensors in one process, for the demo, integration tests
// and benchmarks. Simulated cameras are real RTSP servers (gortsplib)
// streaming a pure-Go H.264 test card and serving JPEG snapshots over HTTP,
// some with an ONVIF service (ONVIF: identity, clock, snapshot URI,
// events); simulated sensors feed the agents' "sim" sensor driver; each
// agent runs in-process exactly as in production, with its own login if
// the broker wants one, and reaches the broker through a relay that the
// simulator can cut (a TLS session runs end to end through it). Faults —
// camera offline, auth failure, lost stream, hang, tampering and motion
// reported over ONVIF; sensor supervision loss and alarms; agent
// disconnect — are injected at run time through Sim.Fault, the HTTP control
// API (ControlHandler) or a Script. In scale mode an in-process prober
// stands in for the RTSP servers, so thousands of agents fit on a laptop.
package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/citywatch/citywatch/agent"
	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/agent/sensor"
)

// Options configures a Sim.
type Options struct {
	// BrokerURL is the MQTT broker the agents publish to: tcp:// or
	// mqtt://, or ssl://, tls:// or mqtts:// for MQTT over TLS. The agents
	// reach it through a TCP relay each; TLS runs end to end through it.
	// Several brokers of one cluster, separated by commas, give every
	// agent the list (a relay to each), as agents of a clustered city
	// are configured.
	BrokerURL string
	// Credentials gives each agent its own login, for a broker that
	// authenticates agents (the hub's: username = agent id, password =
	// the secret `citywatch-hub agents enroll` printed). It is asked once
	// per agent, by New; an empty username fails New.
	Credentials func(agentID string) (username, password string)
	// BrokerUsername and BrokerPassword are one login shared by every
	// agent, for brokers that take one; unused when Credentials is set.
	BrokerUsername string
	BrokerPassword string
	// TLS is what every agent's uplink uses with a TLS BrokerURL: roots
	// (nil: the system roots), client certificate, server name. The server
	// name defaults to BrokerURL's host, not the relay's.
	TLS *tls.Config
	// ClientCertificate gives each agent its own client certificate (its
	// common name the agent id), for a broker that ties certificates to
	// agents; it overrides TLS.Certificates. Asked once per agent, by New.
	ClientCertificate func(agentID string) (tls.Certificate, error)

	City CityOptions
	// Camera is the template of every simulated camera: credentials and
	// test card geometry. ID, Name and Addr are set per camera. No User
	// means admin / citywatch.
	Camera CameraConfig
	// ONVIF gives the cameras it names, by id, an ONVIF service (the
	// simulator's ONVIF, served on the snapshot server), whose clock runs
	// the given time ahead (more than 5 s is a warning at the hub). It answers with the identity the
	// city gave the camera, which its agent's configuration then leaves
	// out, as for a camera an installer entered bare: the agent learns it
	// from the camera. Its pictures come through its snapshot URI, and the
	// tamper, motion and restore faults drive its events. Not in scale
	// mode.
	ONVIF map[string]time.Duration
	// InProcessCameras runs scale mode: no RTSP servers and no snapshots;
	// the agents' camera probes are answered in-process from the fault
	// table, so 1,000 agents × 100 devices fit on two cores.
	InProcessCameras bool
	// Interval is the agents' health interval and camera probe interval;
	// zero keeps the agent defaults.
	Interval time.Duration
	// LiveLoopbackOnly makes the agents offer only loopback ICE candidates
	// for live video: for a hub on the same machine (the demo, tests).
	LiveLoopbackOnly bool
	// SnapshotAddr is the listen address of the snapshot HTTP server;
	// default 127.0.0.1:0.
	SnapshotAddr string
	// SpoolDir is where the agents keep what they cannot send (each in a
	// subdirectory of its own id) and SpoolBytes each one's quota; empty
	// and zero keep the agent defaults.
	SpoolDir   string
	SpoolBytes int64

	Logger  *slog.Logger
	Version string // reported by the agents; default "sim"
}

// Sim is the whole simulated world. New builds it, Run brings it to life.
type Sim struct {
	opts    Options
	log     *slog.Logger
	city    City
	cameras map[string]*Camera // nil in scale mode
	onvif   map[string]*ONVIF  // the cameras' ONVIF services, by camera id
	prober  *inProcessProber   // nil unless scale mode
	links   []*link            // per agent, in city order
	access  []access           // per agent, in city order
	sensors *sensor.Sim
	faults  *faultTable

	ready   chan struct{} // closed when every agent runs
	agents  []config.Config
	running []*agent.Agent // set with agents, before ready closes
}

// access is how one agent reaches and logs in to the broker.
type access struct {
	username string
	password secret.String
	tls      *tls.Config // nil for a plain broker
}

// New validates opts, generates the city and prepares every camera, relay
// and sensor, and each agent's login and TLS settings. It starts nothing.
func New(opts Options) (*Sim, error) {
	if opts.Logger == nil {
		return nil, errors.New("sim: a logger is required")
	}
	var u *url.URL
	var brokers []string // host:port of each broker
	for raw := range strings.SplitSeq(opts.BrokerURL, ",") {
		b, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || b.Host == "" || b.User != nil || u != nil && b.Scheme != u.Scheme {
			return nil, errors.New("sim: broker URL: want tcp://, mqtt://, ssl://, tls:// or mqtts://host:port, without credentials, several of one scheme separated by commas")
		}
		if u == nil {
			u = b
		}
		brokers = append(brokers, b.Host)
	}
	var useTLS bool
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		useTLS = true
	default:
		return nil, fmt.Errorf("sim: broker URL: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts", u.Scheme)
	}
	if !useTLS && (opts.TLS != nil || opts.ClientCertificate != nil) {
		return nil, fmt.Errorf("sim: TLS settings for a %s:// broker URL, which connects without TLS; use tls://", u.Scheme)
	}
	if u.Port() == "" {
		port := "1883"
		if useTLS {
			port = "8883"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if opts.Camera.User == "" {
		opts.Camera.User, opts.Camera.Password = "admin", "citywatch"
	}
	if opts.SnapshotAddr == "" {
		opts.SnapshotAddr = "127.0.0.1:0"
	}
	if opts.Version == "" {
		opts.Version = "sim"
	}
	city, err := GenerateCity(opts.City)
	if err != nil {
		return nil, err
	}
	s := &Sim{
		opts:    opts,
		log:     opts.Logger.With("component", "sim"),
		city:    city,
		sensors: sensor.NewSim(agent.SimCheckin),
		ready:   make(chan struct{}),
	}
	s.faults = newFaultTable(s.sensors)
	if opts.InProcessCameras && len(opts.ONVIF) > 0 {
		return nil, errors.New("sim: ONVIF cameras need real cameras, not scale mode")
	}
	s.onvif = make(map[string]*ONVIF, len(opts.ONVIF))
	s.faults.onvif = s.onvif
	if opts.InProcessCameras {
		s.prober = &inProcessProber{cameras: make(map[string]*virtualCamera)}
	} else {
		s.cameras = make(map[string]*Camera)
	}
	for _, a := range city.Agents {
		acc, err := accessFor(&opts, a.ID, u, useTLS)
		if err != nil {
			return nil, err
		}
		s.access = append(s.access, acc)
		l := newLink(brokers, s.log.With("agent", a.ID))
		s.links = append(s.links, l)
		s.faults.agents[a.ID] = l
		for _, c := range a.Cameras {
			if s.prober != nil {
				v := &virtualCamera{}
				s.prober.cameras[c.ID] = v
				s.faults.cameras[c.ID] = v
				continue
			}
			cfg := opts.Camera
			cfg.ID, cfg.Name, cfg.Addr = c.ID, c.Name, ""
			cam, err := NewCamera(cfg, opts.Logger)
			if err != nil {
				return nil, err
			}
			s.cameras[c.ID] = cam
			s.faults.cameras[c.ID] = cam
			if skew, ok := opts.ONVIF[c.ID]; ok {
				s.onvif[c.ID] = &ONVIF{Username: opts.Camera.User, Password: opts.Camera.Password, Skew: skew,
					Info: onvif.Info{Manufacturer: c.Vendor, Model: c.Asset.Model, Firmware: c.Asset.Firmware, Serial: c.Asset.Serial}}
			}
		}
		for _, d := range a.Sensors {
			s.faults.sensors[d.ID] = true
		}
	}
	for id := range opts.ONVIF {
		if s.onvif[id] == nil {
			return nil, fmt.Errorf("sim: ONVIF: the city has no camera %s", id)
		}
	}
	return s, nil
}

// accessFor returns the login and TLS settings of agent id.
func accessFor(opts *Options, id string, broker *url.URL, useTLS bool) (access, error) {
	acc := access{username: opts.BrokerUsername, password: secret.String(opts.BrokerPassword)}
	if opts.Credentials != nil {
		user, pass := opts.Credentials(id)
		if user == "" {
			return access{}, fmt.Errorf("sim: no credentials for agent %s", id)
		}
		acc.username, acc.password = user, secret.String(pass)
	}
	if !useTLS {
		return acc, nil
	}
	acc.tls = &tls.Config{}
	if opts.TLS != nil {
		acc.tls = opts.TLS.Clone()
	}
	if acc.tls.ServerName == "" {
		// The agent dials its relay, but the certificate is the broker's.
		acc.tls.ServerName = broker.Hostname()
	}
	if opts.ClientCertificate != nil {
		cert, err := opts.ClientCertificate(id)
		if err != nil {
			return access{}, fmt.Errorf("sim: client certificate of agent %s: %w", id, err)
		}
		acc.tls.Certificates = []tls.Certificate{cert}
	}
	return acc, nil
}

// City returns the generated city (camera URLs not filled in).
func (s *Sim) City() City { return s.city }

// Fault injects f; see Catalogue. It may be called before and during Run.
func (s *Sim) Fault(f Fault) error { return s.faults.Fault(f) }

// Faults returns the faults in force.
func (s *Sim) Faults() []ActiveFault { return s.faults.Faults() }

// Ready is closed once every agent runs (never, if Run fails first).
func (s *Sim) Ready() <-chan struct{} { return s.ready }

// Agents returns the agents' configurations as they run, with the real
// camera and broker relay addresses; nil before Ready.
func (s *Sim) Agents() []config.Config {
	select {
	case <-s.ready:
		return slices.Clone(s.agents)
	default:
		return nil
	}
}

// AgentStats returns each running agent's uplink counters by agent id;
// nil before Ready.
func (s *Sim) AgentStats() map[string]agent.Stats {
	select {
	case <-s.ready:
	default:
		return nil
	}
	stats := make(map[string]agent.Stats, len(s.running))
	for i, a := range s.running {
		stats[s.agents[i].ID] = a.Stats()
	}
	return stats
}

// Run starts the cameras, the snapshot server, the relays and the agents,
// and blocks until ctx ends. It then stops everything in reverse order,
// agents first, so they leave a clean offline state through their relays.
// Run must be called once.
func (s *Sim) Run(ctx context.Context) error {
	var closers []func() error
	shutdown := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}

	var snapshotHost string
	if s.cameras != nil {
		ln, err := net.Listen("tcp", s.opts.SnapshotAddr)
		if err != nil {
			return fmt.Errorf("sim: snapshots: %w", err)
		}
		snapshotHost = ln.Addr().String()
		for id, o := range s.onvif {
			// As a camera's media service gives it: no credentials in it.
			o.Snapshot = "http://" + snapshotHost + "/snapshot/" + id
		}
		srv := &http.Server{Handler: s.snapshotHandler(), ReadHeaderTimeout: 5 * time.Second}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		closers = append(closers, func() error {
			srv.Close()
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("sim: snapshots: %w", err)
			}
			return nil
		})
		for _, cam := range s.cameras {
			if err := cam.Start(); err != nil {
				return errors.Join(err, shutdown())
			}
			// Closing a camera also ends snapshot requests hanging on it.
			closers = append(closers, func() error { cam.Close(); return nil })
		}
	}
	for _, l := range s.links {
		if err := l.start(); err != nil {
			return errors.Join(fmt.Errorf("sim: relay: %w", err), shutdown())
		}
		closers = append(closers, func() error { l.close(); return nil })
	}

	agents := make([]*agent.Agent, len(s.city.Agents))
	cfgs := make([]config.Config, len(s.city.Agents))
	for i, cfg := range s.city.Agents {
		cfgs[i] = s.bind(cfg, s.links[i], s.access[i], snapshotHost)
		opts := agent.Options{
			Logger:    s.opts.Logger,
			Sensors:   map[string]sensor.Driver{SensorDriver: s.sensors},
			BrokerTLS: s.access[i].tls,
			Version:   s.opts.Version,
		}
		if s.prober != nil {
			opts.Cameras = s.prober
		}
		a, err := agent.New(cfgs[i], opts)
		if err != nil {
			return errors.Join(fmt.Errorf("sim: agent %s: %w", cfg.ID, err), shutdown())
		}
		agents[i] = a
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, a := range agents {
		g.Go(func() error { return a.Run(gctx) })
	}
	s.agents, s.running = cfgs, agents
	close(s.ready)
	cams, sensors := s.city.Devices()
	s.log.Info("simulated city running", "agents", len(agents), "cameras", cams, "sensors", sensors,
		"in_process_cameras", s.prober != nil)

	err := g.Wait()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = nil // stopped, not failed
	}
	return errors.Join(err, shutdown())
}

// bind points a generated config at this sim: the broker through the
// agent's relay with its login, cameras at their RTSP servers and snapshot
// URLs, or at their ONVIF services.
func (s *Sim) bind(cfg config.Config, l *link, acc access, snapshotHost string) config.Config {
	scheme := "tcp"
	if acc.tls != nil {
		scheme = "tls"
	}
	var urls []string
	for _, a := range l.addrs() {
		urls = append(urls, scheme+"://"+a)
	}
	cfg.Broker.URL = strings.Join(urls, ",")
	cfg.Broker.Username, cfg.Broker.Password = acc.username, acc.password
	cfg.Live.LoopbackOnly = s.opts.LiveLoopbackOnly
	if s.opts.SpoolDir != "" {
		cfg.Uplink.SpoolDir = s.opts.SpoolDir
	}
	if s.opts.SpoolBytes > 0 {
		cfg.Uplink.SpoolBytes = s.opts.SpoolBytes
	}
	if s.opts.Interval > 0 {
		cfg.Interval, cfg.Probe.Interval = s.opts.Interval, s.opts.Interval
		cfg.Probe.Timeout = min(cfg.Probe.Timeout, s.opts.Interval/2)
	}
	cams := make([]config.Camera, len(cfg.Cameras))
	for i, c := range cfg.Cameras {
		if cam := s.cameras[c.ID]; cam != nil {
			c.RTSP = secret.URL(cam.URL())
			snap := url.URL{
				Scheme: "http",
				User:   url.UserPassword(s.opts.Camera.User, s.opts.Camera.Password),
				Host:   snapshotHost,
				Path:   "/snapshot/" + c.ID,
			}
			c.Snapshot = secret.URL(snap.String())
			if s.onvif[c.ID] != nil {
				// The camera says who it is, and gives its snapshot URI.
				c.Vendor, c.Asset, c.Snapshot = "", config.Asset{Installed: c.Asset.Installed}, ""
				c.ONVIF = config.ONVIF{URL: "http://" + snapshotHost + "/onvif/" + c.ID + "/device_service",
					Username: s.opts.Camera.User, Password: secret.String(s.opts.Camera.Password)}
			}
		} else {
			// Never dialled: the in-process prober answers by device id.
			c.RTSP = secret.URL("rtsp://127.0.0.1:554/" + c.ID)
		}
		cams[i] = c
	}
	cfg.Cameras = cams
	return cfg
}

// snapshotHandler serves GET /snapshot/{camera} and the ONVIF services,
// POST /onvif/{camera}/device_service.
func (s *Sim) snapshotHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /onvif/{camera}/device_service", byCamera(s.onvif))
	mux.Handle("GET /snapshot/{camera}", byCamera(s.cameras))
	return mux
}

// byCamera serves a request with the handler of the camera its path
// names; 404 for a camera it does not have.
func byCamera[H http.Handler](handlers map[string]H) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h, ok := handlers[r.PathValue("camera")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}
}
