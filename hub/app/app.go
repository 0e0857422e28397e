// Package app wires the hub: it is the one package that knows every
// component. New builds them from the configuration, handing each only the
// settings it needs; Run starts them in dependency order and stops them in
// reverse, so that messages already taken from the broker reach the stores
// before the stores flush and close.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/alarmstore"
	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/ingest"
	"github.com/citywatch/citywatch/hub/live"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/hub/notify"
	"github.com/citywatch/citywatch/ui"
	"github.com/citywatch/citywatch/wire"
)

// App is a configured hub.
type App struct {
	cfg     config.Config
	log     *slog.Logger
	metrics *metrics.Registry

	broker    *broker.Broker // nil unless the embedded broker is enabled
	influx    *metricstore.Influx
	store     *metricstore.Store
	fleet     *fleet.Registry
	ingest    *ingest.Ingest
	ingestCfg ingest.Config
	live      *live.SFU
	alarms    *alarm.Engine
	alarmDB   *alarmstore.Store // nil without alarms.db; opened by Run
	notifier  *notify.Notifier
	console   *console.Server

	ready     chan struct{}
	brokerURL string // set before ready closes
}

// New builds the hub from cfg. It validates everything and starts nothing.
func New(cfg config.Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, metrics: metrics.NewRegistry(), ready: make(chan struct{})}
	var err error
	if cfg.Broker.Enabled {
		a.broker, err = broker.New(broker.Config{Addr: cfg.Broker.Addr, FallbackToFreePort: cfg.Broker.FallbackToFreePort}, log)
		if err != nil {
			return nil, err
		}
	}
	mem := metricstore.NewMemory(metricstore.MemoryOptions{Samples: cfg.Memory.Samples, Transitions: cfg.Memory.Transitions})
	if cfg.Influx.Enabled() {
		a.influx, err = metricstore.NewInflux(metricstore.InfluxConfig{
			URL: cfg.Influx.URL, Token: string(cfg.Influx.Token), Org: cfg.Influx.Org, Bucket: cfg.Influx.Bucket,
			BatchSize: cfg.Influx.BatchSize, FlushInterval: cfg.Influx.FlushInterval,
			Timeout: cfg.Influx.Timeout, QueueLen: cfg.Influx.Queue,
		}, metricstore.Deps{Log: log, Metrics: a.metrics})
		if err != nil {
			return nil, err
		}
	}
	a.store = metricstore.NewStore(a.influx, mem)

	rules, err := loadRules(cfg.Alarms.Rules)
	if err != nil {
		return nil, err
	}
	windows, err := maintenance(cfg.Alarms.Maintenance)
	if err != nil {
		return nil, err
	}
	a.alarms = alarm.New(rules, alarm.Options{Now: time.Now, OnEvent: a.onAlarm, KeepClosed: keepClosed, Maintenance: windows,
		// Called in the engine's order, so the database never has an
		// older row over a newer one. alarmDB is set before any change
		// can reach the engine.
		OnTransition: func(al alarm.Alarm, t alarm.Transition) {
			if a.alarmDB != nil {
				a.alarmDB.Record(al, t)
			}
		}})
	hooks, err := webhooks(cfg.Alarms.Webhooks)
	if err != nil {
		return nil, err
	}
	if a.notifier, err = notify.New(hooks, notify.Deps{Log: log, Metrics: a.metrics}); err != nil {
		return nil, fmt.Errorf("config: alarms.webhooks: %w", err)
	}

	a.fleet = fleet.New(fleet.Options{
		Now:              time.Now,
		MissedHeartbeats: cfg.Fleet.MissedHeartbeats,
		DefaultInterval:  cfg.Fleet.DefaultInterval,
		OnChange:         a.onChange,
		// While the hub cannot hear the broker, silence is not the agents'
		// fault: without this a broker restart would mark the city offline.
		Live: func() bool { return a.ingest.Connected() },
	})
	a.live, err = live.New(live.Config{
		Linger: cfg.Live.Linger, MaxUpstreamsPerAgent: cfg.Live.MaxUpstreamsPerAgent, UDPPort: cfg.Live.UDPPort,
		LoopbackOnly: cfg.Live.LoopbackOnly, PublicIPs: cfg.Live.PublicIPs, UpstreamTimeout: cfg.Live.UpstreamTimeout,
		KeyframeInterval: cfg.Live.KeyframeInterval, StallTimeout: cfg.Live.StallTimeout,
		AllowOrigins: cfg.Live.AllowOrigins,
	}, live.Deps{Log: log, Metrics: a.metrics, Fleet: a.fleet, Commands: ingestCommands{a}, Store: a.store})
	if err != nil {
		return nil, err
	}
	a.ingestCfg = ingest.Config{
		BrokerURL: cfg.MQTT.URL, ClientID: cfg.MQTT.ClientID,
		Username: cfg.MQTT.Username, Password: string(cfg.MQTT.Password),
		Workers: cfg.MQTT.Workers, QueueLen: cfg.MQTT.Queue,
	}
	if a.broker == nil {
		// With the embedded broker the URL is known only once it listens,
		// so Run builds the ingest then.
		if err := a.newIngest(); err != nil {
			return nil, err
		}
	}
	a.console, err = console.New(console.Config{Listen: cfg.Listen}, console.Deps{
		Log: log, Fleet: a.fleet, History: a.store, Health: a.health, Metrics: a.metrics, UI: ui.FS(),
		Live: a.live.Handler(), Alarms: a.alarms,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (a *App) newIngest() error {
	var err error
	a.ingest, err = ingest.New(a.ingestCfg, ingest.Deps{Log: a.log, Fleet: a.fleet, Samples: samplesTo{a.store, a.alarms}, Metrics: a.metrics, Live: a.live, Now: time.Now})
	return err
}

// samplesTo hands accepted health samples to the metric store and to the
// alarm engine's metric thresholds; neither blocks.
type samplesTo struct {
	store  ingest.SampleWriter
	alarms *alarm.Engine
}

func (s samplesTo) WriteSamples(samples []fleet.Sample) {
	s.store.WriteSamples(samples)
	s.alarms.ObserveSamples(samples)
}

// ingestCommands sends live video's commands through the ingest's MQTT
// client, which with the embedded broker exists only once Run has begun.
type ingestCommands struct{ a *App }

func (c ingestCommands) SendCommand(agent string, cmd wire.Command) error {
	return c.a.ingest.SendCommand(agent, cmd)
}

// loadRules reads the alarm rules file, or returns the defaults without one.
func loadRules(path string) (alarm.Rules, error) {
	if path == "" {
		return alarm.DefaultRules(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: alarms.rules: %w", err)
	}
	rules, err := alarm.ParseRules(data)
	if err != nil {
		// ParseRules joins one error per problem, one per line.
		return nil, fmt.Errorf("config: alarms.rules %s:\n%w", path, err)
	}
	return rules, nil
}

// onChange fans a fleet change out to the console, the transition log and
// the alarm engine; all only enqueue or update memory. The console gets the
// change first, so a client sees a device's change before the alarm it
// raises.
func (a *App) onChange(c fleet.Change) {
	a.console.Publish(c)
	a.store.WriteChange(c)
	a.alarms.Observe(c)
}

// onAlarm fans an alarm event out; it must not block (alarm.Options).
func (a *App) onAlarm(ev alarm.Event) {
	a.console.PublishAlarm(ev)
	a.notifier.Notify(ev)
}

// keepClosed is how many closed alarms the engine keeps in memory and loads
// back at start; older ones stay in the database as history.
const keepClosed = 1000

// webhooks turns the configured hooks into the notifier's.
func webhooks(cfg []config.Webhook) ([]notify.Webhook, error) {
	var hooks []notify.Webhook
	var errs []error
	for i, w := range cfg {
		h := notify.Webhook{Name: w.Name, URL: w.URL, Tiers: w.Tiers, MaxAttempts: w.MaxAttempts, Headers: map[string]string{}}
		for k, v := range w.Headers {
			h.Headers[k] = string(v)
		}
		if w.MinSeverity != "" {
			sev, err := alarm.ParseSeverity(w.MinSeverity)
			if err != nil {
				errs = append(errs, fmt.Errorf("alarms.webhooks[%d].min_severity: %w", i, err))
			}
			h.MinSeverity = sev
		}
		for _, k := range w.Kinds {
			h.Kinds = append(h.Kinds, alarm.EventKind(k))
		}
		hooks = append(hooks, h)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return hooks, nil
}

// maintenance turns the configured windows into the engine's, listing every
// problem.
func maintenance(cfg []config.Maintenance) ([]alarm.Window, error) {
	var windows []alarm.Window
	var errs []error
	for i, m := range cfg {
		w := alarm.Window{Name: m.Name, Devices: m.Devices, Agents: m.Agents, Sites: m.Sites, Districts: m.Districts,
			From: m.From, To: m.To, Daily: m.Daily}
		if m.Timezone != "" {
			loc, err := time.LoadLocation(m.Timezone)
			if err != nil {
				errs = append(errs, fmt.Errorf("alarms.maintenance[%d].timezone: %w", i, err))
			}
			w.Location = loc
		}
		if err := w.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("alarms.maintenance[%d]: %w", i, err))
		}
		windows = append(windows, w)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return windows, nil
}

// openAlarms opens the alarm database and puts its alarms back into the
// engine, before any fleet change can reach it.
func (a *App) openAlarms() error {
	if a.cfg.Alarms.DB == "" {
		a.log.Warn("no alarms.db configured: alarms are kept in memory and lost on restart")
		return nil
	}
	st, err := alarmstore.Open(a.cfg.Alarms.DB, a.log)
	if err != nil {
		return err
	}
	alarms, trails, next, err := st.Load(keepClosed)
	if err == nil {
		err = a.alarms.Restore(alarms, trails, next)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("alarms.db %s: %w", a.cfg.Alarms.DB, err), st.Close())
	}
	a.alarmDB = st
	a.metrics.GaugeFunc("citywatch_alarmdb_transitions_written", "Alarm transitions committed to the alarm database since start.",
		func() float64 { return float64(st.Written()) })
	a.metrics.GaugeFunc("citywatch_alarmdb_transitions_dropped", "Alarm transitions lost: queue full or a failed write.",
		func() float64 { return float64(st.Dropped()) })
	a.log.Info("alarms restored", "db", a.cfg.Alarms.DB, "alarms", len(alarms))
	return nil
}

// reconcileAlarms re-evaluates restored alarms against the live state once
// the agents have had time to report (two intervals): a device that
// recovered while the hub was down clears through its normal hysteresis.
func (a *App) reconcileAlarms(ctx context.Context) error {
	select {
	case <-time.After(2 * a.cfg.Fleet.DefaultInterval):
		a.alarms.Reconcile(a.fleet.Devices(), a.fleet.Agents())
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done() // a stage that returns stops the hub
	return nil
}

func (a *App) health() console.HealthReport {
	r := console.HealthReport{}
	if a.ingest.Connected() {
		r["mqtt"] = console.ComponentHealth{Status: console.HealthOK}
	} else {
		r["mqtt"] = console.ComponentHealth{Status: console.HealthFailing, Reason: "not connected to the MQTT broker " + a.brokerURL}
	}
	st := a.store.Status()
	switch {
	case st.Backend == metricstore.SourceMemory:
		r["history"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: "no InfluxDB configured: history is kept in memory only"}
	case !st.OK:
		r["history"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: "InfluxDB: " + st.LastError, Since: st.LastErrorAt}
	default:
		r["history"] = console.ComponentHealth{Status: console.HealthOK}
	}
	return r
}

// Ready is closed once the console listens and, when enabled, the embedded
// broker too; ConsoleURL and BrokerURL are valid from then on.
func (a *App) Ready() <-chan struct{} { return a.ready }

// ConsoleURL is where the console is served, valid after Ready.
func (a *App) ConsoleURL() string { return "http://" + hostPort(a.console.Addr()) + "/" }

// BrokerURL is the MQTT broker the hub uses, valid after Ready.
func (a *App) BrokerURL() string { return a.brokerURL }

// Fleet exposes the registry to code composing the hub in one process
// (the demo and end-to-end tests).
func (a *App) Fleet() *fleet.Registry { return a.fleet }

func hostPort(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return fmt.Sprintf("127.0.0.1:%d", tcp.Port)
	}
	return addr.String()
}

// Run runs the hub until ctx ends or a component fails, then stops the
// components in reverse order of start and returns their errors joined.
func (a *App) Run(ctx context.Context) error {
	a.brokerURL = a.cfg.MQTT.URL
	var stages []stage
	if a.broker != nil {
		if err := a.broker.Listen(); err != nil {
			return err
		}
		// The embedded broker is the hub's broker: mqtt.url is ignored.
		a.brokerURL = a.broker.URL()
		a.ingestCfg.BrokerURL = a.brokerURL
		if err := a.newIngest(); err != nil {
			return err
		}
		stages = append(stages, stage{"broker", a.broker.Run})
	}
	if a.influx != nil {
		stages = append(stages, stage{"influxdb", a.influx.Run})
	} else {
		a.log.Warn("no InfluxDB configured (INFLUX_URL): history is not stored; the console shows a recent in-memory window only")
	}
	if err := a.openAlarms(); err != nil {
		return err
	}
	if a.alarmDB != nil {
		// Stops after the engine (later stages stop first), so every
		// transition is written before the database closes.
		stages = append(stages, stage{"alarmdb", a.alarmDB.Run})
		defer a.alarmDB.Close()
	}
	if len(a.cfg.Alarms.Webhooks) > 0 {
		stages = append(stages, stage{"notify", a.notifier.Run})
	}
	stages = append(stages,
		stage{"fleet", a.fleet.Run},
		stage{"alarms", a.alarms.Run},
		stage{"alarm-reconcile", a.reconcileAlarms},
		stage{"console", a.console.Run},
		stage{"ingest", a.ingest.Run},
		// Live video sends its commands through ingest, so it stops first:
		// the agents hear live_stop before the MQTT client goes.
		stage{"live", a.live.Run},
	)
	go func() {
		select {
		case <-a.console.Ready():
			a.log.Info("hub ready", "console", a.ConsoleURL(), "mqtt", a.brokerURL)
			close(a.ready)
		case <-ctx.Done():
		}
	}()
	return runStages(ctx, a.log, stages)
}

type stage struct {
	name string
	run  func(context.Context) error
}

// runStages starts every stage, waits until ctx ends or one stage returns,
// then cancels the stages from the last to the first, waiting for each to
// return before cancelling the one it depends on.
func runStages(ctx context.Context, log *slog.Logger, stages []stage) error {
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
		err    error
	}
	rs := make([]*running, len(stages))
	stopped := make(chan string, len(stages))
	for i, s := range stages {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := &running{cancel: cancel, done: make(chan struct{})}
		rs[i] = r
		go func() {
			defer close(r.done)
			r.err = s.run(sctx)
			stopped <- s.name
		}()
	}
	select {
	case <-ctx.Done():
	case name := <-stopped:
		if ctx.Err() == nil {
			log.Error("component stopped; shutting the hub down", "component", name)
		}
	}
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		rs[i].cancel()
		<-rs[i].done
		if err := rs[i].err; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", stages[i].name, err))
		}
	}
	return errors.Join(errs...)
}
