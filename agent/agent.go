// Package agent wires one citywatch edge agent: configuration in, one
// supervisor per device, and the uplink that reports to the hub. It is the
// only package that knows every component; each gets just the settings it
// needs. New validates and starts nothing; Run blocks until its context
// ends and then stops the supervisors and leaves the broker cleanly.
package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/live"
	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/agent/sensor"
	"github.com/citywatch/citywatch/agent/supervise"
	"github.com/citywatch/citywatch/agent/uplink"
	"github.com/citywatch/citywatch/wire"
)

// SimCheckin is how often sensors of the built-in "sim" driver check in;
// config.DefaultSupervision allows three missed check-ins.
const SimCheckin = 10 * time.Second

// CameraProber probes cameras; see supervise.CameraProber.
type CameraProber = supervise.CameraProber

// Stats are the agent's uplink counters, its spool's among them.
type Stats = uplink.Stats

// LiveStats are the agent's live video counters.
type LiveStats = live.Stats

// Options are the agent's dependencies.
type Options struct {
	Logger *slog.Logger
	// Sensors adds or overrides sensor drivers by the name configs use
	// ("sim" is built in).
	Sensors map[string]sensor.Driver
	// Cameras probes cameras; nil means the real RTSP prober.
	Cameras CameraProber
	// BrokerTLS replaces the TLS settings of the config's broker section
	// (ca_file, cert_file, key_file, server_name) for a TLS broker URL:
	// the simulator's agents share certificates held in memory.
	BrokerTLS *tls.Config
	Version   string
}

// Agent is one running edge agent.
type Agent struct {
	base    *slog.Logger // for components, which add their own attributes
	log     *slog.Logger
	drivers map[string]sensor.Driver
	prober  CameraProber
	up      *uplink.Client
	live    *live.Manager

	mu  sync.Mutex // guards cfg, set and onvif
	cfg config.Config
	set *supervise.Set // nil until Run
	// onvif are the cameras' ONVIF clients by device id.
	onvif map[string]*onvifCamera
	// identities are what cameras said of themselves, by device id. idMu
	// is taken after mu when both are: a supervisor reports an identity
	// holding neither, while Reload holds mu waiting for supervisors.
	idMu       sync.Mutex
	identities map[string]supervise.Identity
	// streams are what the probes found cameras' streams to be, by
	// device id, under idMu like identities.
	streams map[string][]wire.Stream
	// invPending: an inventory is about to go again (resendInventory).
	invPending atomic.Bool
}

// New validates cfg and builds the agent without starting anything.
func New(cfg config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	drivers := map[string]sensor.Driver{"sim": sensor.NewSim(SimCheckin)}
	for name, d := range opts.Sensors {
		drivers[name] = d
	}
	a := &Agent{base: opts.Logger, log: opts.Logger.With("component", "agent"), drivers: drivers, prober: opts.Cameras, cfg: cfg,
		onvif: map[string]*onvifCamera{}, identities: map[string]supervise.Identity{}, streams: map[string][]wire.Stream{}}
	if err := a.check(cfg); err != nil {
		return nil, err
	}
	if a.prober == nil {
		a.prober = &probe.Prober{Timeout: cfg.Probe.Timeout}
	}
	lo, hi, _ := cfg.Live.Ports() // checked by Validate
	lm, err := live.New(live.Options{
		Cameras: a.cameraStreams,
		// a.up is set below, before any command can arrive.
		Publish:      func(l wire.Live) { a.up.PublishLive(l) },
		MaxSessions:  cfg.Live.MaxSessions,
		PortMin:      lo,
		PortMax:      hi,
		LoopbackOnly: cfg.Live.LoopbackOnly,
		// A probe may be tuned tight; a stream must ride out the wait for
		// the camera's next keyframe.
		RTSPTimeout: max(cfg.Probe.Timeout, live.DefaultRTSPTimeout),
		Logger:      opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.live = lm
	brokerTLS := opts.BrokerTLS
	if brokerTLS == nil {
		// Validated by check; a file changed since fails here.
		if brokerTLS, err = cfg.Broker.TLS(); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	up, err := uplink.New(uplink.Config{
		BrokerURL: cfg.Broker.URL,
		Username:  cfg.Broker.Username,
		Password:  cfg.Broker.Password,
		ClientID:  cfg.Broker.ClientID,
		TLS:       brokerTLS,
		Agent:     cfg.ID,
		Site:      cfg.Site.ID,
		Version:   opts.Version,
		Interval:  cfg.Interval,
		Boot:      time.Now(),
		// Reports the broker cannot take now wait on disk and follow
		// after the reconnect.
		SpoolDir:   cfg.Uplink.SpoolDir,
		SpoolBytes: cfg.Uplink.SpoolBytes,
		ResendRate: cfg.Uplink.ResendRate,
		Commands: map[string]uplink.CommandHandler{
			wire.CommandProbe:         a.probeCommand,
			wire.CommandSnapshot:      a.snapshotCommand,
			wire.CommandInventory:     a.inventoryCommand,
			wire.CommandReport:        a.reportCommand,
			wire.CommandLiveStart:     lm.Handle,
			wire.CommandLiveCandidate: lm.Handle,
			wire.CommandLiveStop:      lm.Handle,
		},
		Logger: opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.up = up
	up.SetInventory(inventory(cfg, nil, nil))
	return a, nil
}

// check validates cfg, that every sensor's driver exists and that the
// inventory fits one message: unlike health reports it cannot be split,
// being one retained message.
func (a *Agent) check(cfg config.Config) error {
	errs := []error{cfg.Validate()}
	for i, s := range cfg.Sensors {
		if _, ok := a.drivers[s.Driver]; !ok {
			errs = append(errs, fmt.Errorf("sensors[%d].driver: unknown driver %q", i, s.Driver))
		}
	}
	inv := inventory(cfg, nil, nil)
	if b, err := json.Marshal(inv); err == nil && len(b) > inventoryBudget {
		errs = append(errs, fmt.Errorf("cameras, sensors: the inventory of %d devices takes %d bytes, over the hub's limit of %d; split the site between agents",
			len(inv.Devices), len(b), inventoryBudget))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: invalid config: %w", err)
	}
	return nil
}

// inventoryBudget leaves room for the header within the hub's limit.
const inventoryBudget = wire.MaxPayload - 512

// Run supervises the devices and reports until ctx ends. Then it stops
// the supervisors and live sessions first, so no event or stopped message
// is lost between them and the uplink, and then the uplink, which
// publishes a clean offline state within its shutdown timeout.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	cfg := a.cfg
	set := supervise.New(ctx, supervise.Options{Prober: a.prober, OnEvent: a.up.PublishEvent, OnIdentity: a.onIdentity,
		OnStreams: a.onStreams, Logger: a.base})
	set.Apply(a.devices(cfg))
	a.set = set
	a.mu.Unlock()

	liveDone := make(chan error, 1)
	go func() { liveDone <- a.live.Run(ctx) }()
	// The uplink outlives ctx to say goodbye.
	upCtx, stopUplink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUplink()
	upDone := make(chan error, 1)
	go func() { upDone <- a.up.Run(upCtx) }()
	a.log.Info("agent running", "agent", cfg.ID, "cameras", len(cfg.Cameras), "sensors", len(cfg.Sensors))

	a.reportHealth(ctx, set, cfg.Interval)
	set.Stop()
	liveErr := <-liveDone
	stopUplink()
	return errors.Join(liveErr, <-upDone)
}

// reportHealth publishes the health of every device each interval until
// ctx ends; the report doubles as the agent's heartbeat.
func (a *Agent) reportHealth(ctx context.Context, set *supervise.Set, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.up.PublishHealth(set.Health())
		}
	}
}

// Reload applies a new configuration live: device changes start, stop or
// restart supervisors, and the inventory is republished. The agent id,
// broker, site id and interval are part of the agent's identity on the
// wire and need a restart, as do the live and uplink settings.
func (a *Agent) Reload(cfg config.Config) error {
	if err := a.check(cfg); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg
	if cfg.ID != old.ID || cfg.Broker != old.Broker || cfg.Site.ID != old.Site.ID || cfg.Interval != old.Interval ||
		cfg.Live != old.Live || cfg.Uplink != old.Uplink {
		return errors.New("agent: reload cannot change id, broker, site.id, interval, live or uplink; restart the agent")
	}
	a.cfg = cfg
	if a.set != nil {
		a.set.Apply(a.devices(cfg))
	}
	a.up.SetInventory(a.inventoryLocked())
	a.log.Info("config reloaded", "cameras", len(cfg.Cameras), "sensors", len(cfg.Sensors))
	return nil
}

// cameraStreams is the live manager's view of the configured cameras (a
// camera with ONVIF and no rtsp_sub may find its sub-stream there); a
// reload applies to sessions started after it.
func (a *Agent) cameraStreams(id string) (live.Streams, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.cfg.Cameras {
		if c.ID == id {
			st := live.Streams{Main: c.RTSP, Sub: c.RTSPSub}
			if o := a.onvif[c.ID]; o != nil && c.RTSPSub == "" {
				main := c.RTSP
				st.FindSub = func(ctx context.Context) (secret.URL, error) { return o.subStream(ctx, main) }
			}
			return st, true
		}
	}
	return live.Streams{}, false
}

// DropConnection cuts the broker connection without a DISCONNECT, so the
// broker publishes the agent's Last Will; the agent reconnects.
func (a *Agent) DropConnection() { a.up.DropConnection() }

// Stats returns the uplink's counters.
func (a *Agent) Stats() Stats { return a.up.Stats() }

// LiveStats returns the live video counters.
func (a *Agent) LiveStats() LiveStats { return a.live.Stats() }

// inventoryCommand publishes the inventory again: the hub heard from this
// agent without knowing its devices.
func (a *Agent) inventoryCommand(_ context.Context, cmd wire.Command) {
	a.mu.Lock()
	inv := a.inventoryLocked()
	a.mu.Unlock()
	a.log.Info("the hub asked for the inventory again", "command", cmd.ID)
	a.up.SetInventory(inv)
}

// reportCommand publishes a health report now: a hub that has just
// started knows the devices but not their status.
func (a *Agent) reportCommand(context.Context, wire.Command) {
	a.mu.Lock()
	set := a.set
	a.mu.Unlock()
	a.up.PublishHealth(set.Health())
}

// probeCommand probes the devices a hub command names and publishes a
// health report right after, so the console sees the answer at once.
func (a *Agent) probeCommand(ctx context.Context, cmd wire.Command) {
	a.mu.Lock()
	set := a.set
	a.mu.Unlock()
	if unknown := set.ProbeNow(ctx, cmd.Devices); len(unknown) > 0 {
		a.log.Warn("probe command names unknown devices", "command", cmd.ID, "devices", unknown)
	}
	a.up.PublishHealth(set.Health())
}
