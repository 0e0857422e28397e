// Package app wires the hub: it is the one package that knows every
// component. New builds them from the configuration, handing each only the
// settings it needs, and opens the identity and audit databases in
// data_dir (so a bad directory fails at once) but starts nothing; Run
// starts them in dependency order and stops them in reverse, so that
// messages already taken from the broker reach the stores before the
// stores flush and close, and the audit trail is the last to close. Every
// route of every domain goes into one auth.Router; the identity service
// authenticates its callers and the embedded broker's agents.
package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/alarmstore"
	"github.com/citywatch/citywatch/hub/alarmview"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/coverage"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/handover"
	"github.com/citywatch/citywatch/hub/history"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/hub/ingest"
	"github.com/citywatch/citywatch/hub/live"
	"github.com/citywatch/citywatch/hub/maintenance"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/hub/notify"
	"github.com/citywatch/citywatch/hub/workorder"
	"github.com/citywatch/citywatch/hub/workview"
	"github.com/citywatch/citywatch/internal/certs"
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
	cluster   *cluster.Node // nil unless cluster.nats_url is set
	// owned are the partitions this hub owns (nil until the cluster's
	// first round, and without a cluster): the agents of the others are
	// in the fleet for the read view only.
	owned   atomic.Pointer[ownership]
	live    *live.SFU
	alarms  *alarm.Engine
	windows *maintenance.Schedule
	// httpCert and mqttCert are the served certificates a reload may
	// replace; nil without TLS or with a self-signed one.
	httpCert, mqttCert *certificate
	alarmDB            *alarmstore.Store // nil without alarms.db; opened by Run
	// alarmView is the cluster's alarms as one (nil without a cluster):
	// this hub's engine and what the other hubs announce.
	alarmView  *alarmview.View
	notifier   *notify.Notifier
	console    *console.Server
	router     *auth.Router
	audit      *audit.Log
	idStore    *identity.DBStore
	history    *history.History // device transitions and availability reports
	agentDrops *agentDrops      // what agents say they lost
	coverage   *coverage.Model
	workDB     *workorder.DBStore
	// workView shares the work orders with the cluster's other hubs (nil
	// without a cluster); keeping serialises keepWork.
	workView   *workview.View
	keeping    sync.Mutex
	work       *workorder.Manager
	handoverDB *handover.Store
	handover   *handover.Service
	identity   *identity.Service
	hubCred    broker.Credential // the hub's own login on the embedded broker

	ready     chan struct{}
	brokerURL string // set before ready closes
}

// New builds the hub from cfg. It validates everything, opens the identity
// and audit databases, and starts nothing; Run closes them when it
// returns, Close when Run is never called.
func New(cfg config.Config, log *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, metrics: metrics.NewRegistry(), ready: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.Close())
		}
	}()
	if err := a.openStores(); err != nil {
		return nil, err
	}
	httpTLS, httpCert, err := serverTLS(cfg.HTTP.TLS, cfg.DataDir, "http", certHosts(cfg.Listen, cfg.HTTP.AllowedHosts), log)
	if err != nil {
		return nil, fmt.Errorf("config: http.tls: %w", err)
	}
	a.httpCert = httpCert
	a.identity, err = identity.New(IdentityConfig(cfg), identity.Deps{
		Store: a.idStore, Log: log, Metrics: a.metrics, Audit: a.audit, Cameras: cameras{a},
		OnSessionsEnded: a.sessionsEnded, OnAgentRevoked: a.agentRevoked,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Broker.Enabled {
		if err := a.newBroker(); err != nil {
			return nil, err
		}
	}
	mem := metricstore.NewMemory(metricstore.MemoryOptions{Samples: cfg.Memory.Samples, Transitions: cfg.Memory.Transitions, Fallback: cfg.Influx.Enabled()})
	if cfg.Influx.Enabled() {
		a.influx, err = metricstore.NewInflux(metricstore.InfluxConfig{
			URL: cfg.Influx.URL, Token: string(cfg.Influx.Token), Org: cfg.Influx.Org, Bucket: cfg.Influx.Bucket,
			BatchSize: cfg.Influx.BatchSize, FlushInterval: cfg.Influx.FlushInterval,
			Timeout: cfg.Influx.Timeout, QueueLen: cfg.Influx.Queue, Writers: cfg.Influx.Writers,
			SpillDir: filepath.Join(cfg.DataDir, "spill"), SpillBytes: cfg.Influx.SpillBytes,
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
	windows, err := maintenanceWindows(cfg.Alarms.Maintenance)
	if err != nil {
		return nil, err
	}
	// One schedule for every part that reads windows; Reload replaces it.
	if a.windows, err = maintenance.NewSchedule(windows); err != nil {
		return nil, fmt.Errorf("config: alarms.maintenance: %w", err)
	}
	if err := a.openHistory(a.windows); err != nil {
		return nil, err
	}
	a.alarms = alarm.New(rules, alarm.Options{Now: time.Now, OnEvent: a.onAlarm, KeepClosed: keepClosed, Maintenance: a.windows,
		IDPrefix: alarmIDPrefix(cfg.Cluster), Judges: a.judgesIn(cfg.Cluster),
		// Called in the engine's order, so the database never has an
		// older row over a newer one. alarmDB and alarmView are set
		// before any change can reach the engine.
		OnTransition: func(al alarm.Alarm, t alarm.Transition) {
			if a.alarmDB != nil {
				a.alarmDB.Record(al, t)
			}
			if a.alarmView != nil {
				a.alarmView.Record(al, t)
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
		// In a cluster a hub judges the silence of the agents it owns.
		Judges: a.judgesIn(cfg.Cluster),
	})
	a.agentDrops = newAgentDrops(a.fleet, a.alarms.Notice, log, a.metrics)
	a.coverage, err = coverage.New(coverage.Config{
		CellSize: cfg.Map.CellSize, Districts: cfg.Map.Districts, Areas: cfg.Map.Areas, Buildings: cfg.Map.Buildings,
		Basemap: cfg.Map.Basemap, Maintenance: a.windows,
	}, coverage.Deps{Log: log, Metrics: a.metrics, Fleet: a.fleet, History: a.history, Audit: a.audit, Simulated: a.history.Simulated})
	if err != nil {
		return nil, fmt.Errorf("config: map: %w", err)
	}
	if err := a.openWork(a.windows); err != nil {
		return nil, err
	}
	if err := a.openHandover(); err != nil {
		return nil, err
	}
	a.live, err = live.New(live.Config{
		Linger: cfg.Live.Linger, MaxUpstreamsPerAgent: cfg.Live.MaxUpstreamsPerAgent, UDPPort: cfg.Live.UDPPort,
		LoopbackOnly: cfg.Live.LoopbackOnly, PublicIPs: cfg.Live.PublicIPs, UpstreamTimeout: cfg.Live.UpstreamTimeout,
		KeyframeInterval: cfg.Live.KeyframeInterval, StallTimeout: cfg.Live.StallTimeout,
		AllowOrigins: cfg.Live.AllowOrigins, MaxSessionsPerAccount: cfg.Live.MaxSessionsPerAccount,
	}, live.Deps{Log: log, Metrics: a.metrics, Fleet: a.fleet, Commands: ingestCommands{a}, Store: a.store, Audit: a.audit})
	if err != nil {
		return nil, err
	}
	mqttTLS, err := clientTLS(cfg.MQTT)
	if err != nil {
		return nil, err
	}
	a.ingestCfg = ingest.Config{
		BrokerURL: cfg.MQTT.URL, ClientID: cfg.MQTT.ClientID,
		Username: cfg.MQTT.Username, Password: string(cfg.MQTT.Password),
		Workers: cfg.MQTT.Workers, QueueLen: cfg.MQTT.Queue, TLS: mqttTLS,
		FromStream: cfg.Cluster.Enabled(),
	}
	if cfg.Cluster.Enabled() {
		c := cfg.Cluster
		a.cluster, err = cluster.NewNode(cluster.NodeConfig{NATSURL: c.NATSURL, Retention: c.Retention,
			Leases: cluster.Config{Hub: c.HubID, Partitions: c.Partitions, TTL: c.LeaseTTL, Replicas: c.Replicas}},
			cluster.NodeDeps{Log: log, Apply: func(_ context.Context, m cluster.Message) {
				if m.Record {
					a.ingest.ApplyRecord(m.Agent, m.Payload)
					return
				}
				a.ingest.Apply(wire.Topic(m.Agent, m.Channel), m.Payload, m.Retained, m.Follow)
			}, Record: a.record, Agents: a.agentIDs, OnOwned: a.ownPartitions, Stored: a.stored})
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		a.alarmView, err = alarmview.New(alarmview.Config{NATSURL: c.NATSURL, Hub: c.HubID, Partitions: c.Partitions, Partition: cluster.Partition},
			alarmview.Deps{Engine: a.alarms, Log: log,
				// console is made below, before anything runs.
				OnEvent: func(ev alarm.Event) {
					a.console.PublishAlarm(ev)
					a.work.ObserveAlarm(ev) // the hub keeping the orders opens them from every hub's alarms
				}})
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if a.broker == nil {
		// With the embedded broker the URL is known only once it listens,
		// so Run builds the ingest then.
		if err := a.newIngest(); err != nil {
			return nil, err
		}
	}
	a.router, err = auth.NewRouter(auth.Config{AllowedHosts: cfg.HTTP.AllowedHosts, AllowedOrigins: cfg.HTTP.AllowedOrigins,
		TLS: httpTLS != nil, TrustedProxies: cfg.HTTP.Proxies()},
		auth.Deps{Log: log, Metrics: a.metrics, Authenticator: a.identity, Denied: a.denied})
	if err != nil {
		return nil, fmt.Errorf("config: http: %w", err)
	}
	a.router.Handle(a.identity.Routes()...)
	a.router.Handle(a.audit.Routes()...)
	a.router.Handle(a.live.Routes()...)
	a.router.Handle(a.coverage.Routes()...)
	a.router.Handle(a.history.Routes(a.audit)...)
	a.router.Handle(a.work.Routes(a.audit)...)
	a.router.Handle(a.handover.Routes(a.audit)...)
	a.console, err = console.New(console.Config{
		Listen: cfg.Listen, TLS: httpTLS, ReadTimeout: cfg.HTTP.ReadTimeout, MaxWebsockets: cfg.HTTP.MaxWebsockets,
		MaxShelve: cfg.Alarms.MaxShelve,
	}, console.Deps{
		Log: log, Fleet: a.fleet, History: a.store, Assets: a.history, Health: a.health, Metrics: a.metrics, UI: ui.FS(),
		Router: a.router, Audit: a.audit, Alarms: a.consoleAlarms(), SessionActive: a.identity.SessionActive,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// openStores opens the audit trail and the identity database — in
// data_dir, or the cluster's PostgreSQL — creating data_dir readable by
// the hub's user only (the audit chain's key is there).
func (a *App) openStores() error {
	dir := a.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	var err error
	a.audit, err = audit.Open(a.cfg.SharedDB("audit.db"),
		audit.Options{KeyFile: filepath.Join(dir, "audit.key"), Retention: a.cfg.Audit.Retention},
		audit.Deps{Log: a.log, Metrics: a.metrics})
	if err != nil {
		return err
	}
	a.idStore, err = identity.Open(a.cfg.SharedDB("identity.db"))
	return err
}

// openHistory opens the record of device transitions in data_dir; its
// days begin in reports.timezone.
func (a *App) openHistory(windows *maintenance.Schedule) error {
	loc, err := time.LoadLocation(a.cfg.Reports.Timezone)
	if err != nil {
		return fmt.Errorf("config: reports.timezone: %w", err)
	}
	a.history, err = history.Open(filepath.Join(a.cfg.DataDir, "history.db"),
		history.Options{Location: loc, Windows: windows, Now: time.Now}, history.Deps{Log: a.log, Metrics: a.metrics})
	return err
}

// openWork opens the work orders in data_dir.
func (a *App) openWork(windows *maintenance.Schedule) error {
	w := a.cfg.WorkOrders
	sla := map[workorder.Priority]workorder.SLA{}
	for p, s := range w.SLA {
		n, err := strconv.Atoi(strings.TrimPrefix(p, "p"))
		if err != nil {
			return fmt.Errorf("config: workorders.sla: %q", p)
		}
		sla[workorder.Priority(n)] = workorder.SLA{Respond: s.Respond, Fix: s.Fix}
	}
	var crews []workorder.Crew
	for _, c := range w.Crews {
		crews = append(crews, workorder.Crew{Name: c.Name, Members: c.Members, Districts: c.Districts})
	}
	var hours *workorder.Hours
	if b := w.BusinessHours; b.Days != "" {
		var err error
		if hours, err = workorder.ParseHours(b.Days, b.Hours, cmp.Or(b.Timezone, a.cfg.Reports.Timezone)); err != nil {
			return fmt.Errorf("config: workorders.business_hours: %w", err)
		}
	}
	var err error
	if a.workDB, err = workorder.OpenStore(a.cfg.SharedDB("workorders.db")); err != nil {
		return err
	}
	// Photos were files in data_dir before they moved into the database.
	if n, err := a.workDB.ImportPhotos(filepath.Join(a.cfg.DataDir, "photos")); err != nil {
		a.log.Error("work-order photos kept as files not all imported; the rest stay in data_dir/photos", "imported", n, "err", err)
	} else if n > 0 {
		a.log.Info("work-order photos kept as files imported into the database", "photos", n)
	}
	deps := workorder.Deps{Log: a.log, Fleet: a.fleet, Store: a.workDB, Prober: ingestProber{a}, Coverage: a.coverage, OnEvent: a.onWorkOrder}
	if c := a.cfg.Cluster; c.Enabled() {
		// One hub keeps the orders: the owner of the partition "workorders"
		// hashes to (ownPartitions hands them over).
		part := cluster.Partition(workKey, c.Partitions)
		a.workView, err = workview.New(workview.Config{NATSURL: c.NATSURL, Hub: c.HubID},
			workview.Deps{Log: a.log, Leads: func() bool { return a.cluster.Owns(part) },
				OnEvent: func(ev workorder.Event) { a.console.PublishWorkOrder(ev) }})
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		deps.Leader = a.workView
	}
	c := a.cfg.Cluster
	a.work, err = workorder.New(workorder.Options{Grace: w.Grace, Hold: w.Hold, RepeatWindow: w.RepeatWindow, SLA: sla, Maintenance: windows, Crews: crews, Hours: hours,
		Replica: c.Enabled() && c.PostgresURL == ""}, deps)
	if err == nil && a.workView != nil {
		a.workView.Serve(a.work)
	}
	return err
}

// workKey is what a cluster hashes to the partition whose owner keeps the
// work orders.
const workKey = "workorders"

// keepWork makes this hub keep the cluster's work orders, or stop, as it
// owns the partition workKey hashes to: a hub taking them over reads them
// from the shared store and takes the alarms open across the city, whose
// faults open orders once their grace has passed.
func (a *App) keepWork(owns []bool) {
	a.keeping.Lock()
	defer a.keeping.Unlock()
	keep := owns[cluster.Partition(workKey, len(owns))]
	switch {
	case keep && !a.work.Leading():
		if err := a.work.TakeLead(a.alarmView.Alarms(alarm.Filter{})); err != nil {
			// Nobody keeps the orders meanwhile: try again soon, with the
			// partitions this hub owns then.
			a.log.Error("work orders not taken over; trying again in 5 s", "err", err)
			time.AfterFunc(5*time.Second, func() {
				if o := a.owned.Load(); o != nil {
					a.keepWork(o.owns)
				}
			})
		}
	case !keep && a.work.Leading():
		if err := a.work.StandDown(); err != nil {
			a.log.Error("work orders not read back after standing down; showing this hub's last view", "err", err)
		}
	}
}

// openHandover opens the shift handovers in data_dir; their reports
// print dates in reports.timezone.
func (a *App) openHandover() error {
	loc, err := time.LoadLocation(a.cfg.Reports.Timezone)
	if err != nil {
		return fmt.Errorf("config: reports.timezone: %w", err)
	}
	if a.handoverDB, err = handover.OpenStore(filepath.Join(a.cfg.DataDir, "handovers.db")); err != nil {
		return err
	}
	a.handover, err = handover.New(handover.Options{Location: loc},
		handover.Deps{Log: a.log, Store: a.handoverDB, Alarms: alarmShifts{a}, Outages: a.history, Work: a.work})
	return err
}

// alarmShifts reads shift figures from the alarm database, which Run
// opens; without one (alarms.db not set) there is no alarm history.
type alarmShifts struct{ a *App }

func (s alarmShifts) Shift(ctx context.Context, from, to time.Time, scope auth.Scope) (alarmstore.Shift, error) {
	if s.a.alarmDB == nil {
		return alarmstore.Shift{}, fmt.Errorf("%w: alarm figures need alarms.db, which is not set (alarms are kept in memory only)", handover.ErrUnavailable)
	}
	return s.a.alarmDB.Shift(ctx, from, to, scope)
}

// ingestProber sends commands through the hub's ingest as it is when
// asked: Run replaces it when the broker's address is only known then.
type ingestProber struct{ a *App }

func (p ingestProber) SendCommand(agent string, cmd wire.Command) error {
	return p.a.ingest.SendCommand(agent, cmd)
}

// onWorkOrder sends a work-order event to the consoles and to the webhooks
// that asked for it; a breach is also an alarm, so it reaches the alarm
// desk and the alarm webhooks.
func (a *App) onWorkOrder(ev workorder.Event) {
	a.console.PublishWorkOrder(ev)
	if !a.work.Leading() {
		return // another hub's change, in this hub's view: that hub notifies
	}
	if a.workView != nil {
		a.workView.Announce(ev)
	}
	a.notifier.NotifyWorkOrder(ev)
	if ev.Kind != workorder.EventBreach {
		return
	}
	a.alarms.Notice(breachAlarm(ev.Order, ev.Transition.Note))
}

// breachAlarm is the alarm of an order's latest breach; note is the
// breach's transition note.
func breachAlarm(o workorder.Order, note string) alarm.Alarm {
	which := o.Breached[len(o.Breached)-1]
	due := o.FixBy
	if which == "respond" {
		due = o.RespondBy
	}
	return alarm.Alarm{Key: string(alarm.SourceWorkOrder) + ":workorder/" + o.ID + "/" + which, Source: alarm.SourceWorkOrder,
		Type: which + "_breach", Site: o.Site, District: o.District, Criticality: 5 - int(o.Priority), Detail: o.ID + ": " + note,
		Args: map[string]string{"order": o.ID, "due": due.UTC().Format(time.RFC3339), "priority": strconv.Itoa(int(o.Priority))}}
}

// History exposes the record of device transitions to code composing the
// hub in one process (the demo seeds its simulated week through it).
func (a *App) History() *history.History { return a.history }

// Close closes the databases New opened; Run does so itself when it
// returns.
func (a *App) Close() error {
	var errs []error
	if a.history != nil {
		errs = append(errs, a.history.Close())
		a.history = nil
	}
	if a.workDB != nil {
		errs = append(errs, a.workDB.Close())
		a.workDB = nil
	}
	if a.handoverDB != nil {
		errs = append(errs, a.handoverDB.Close())
		a.handoverDB = nil
	}
	if a.idStore != nil {
		errs = append(errs, a.idStore.Close())
		a.idStore = nil
	}
	if a.audit != nil {
		errs = append(errs, a.audit.Close())
		a.audit = nil
	}
	return errors.Join(errs...)
}

// hubUser is the embedded broker's name for the hub's own client; agent
// ids cannot contain '@', so no agent can be it.
const hubUser = "citywatch@hub"

func (a *App) newBroker() error {
	c := a.cfg.Broker
	var tlsCfg *tls.Config
	if c.TLSAddr != "" {
		var err error
		if tlsCfg, a.mqttCert, err = serverTLS(c.TLS, a.cfg.DataDir, "mqtt", certHosts(c.TLSAddr, a.cfg.HTTP.AllowedHosts), a.log); err != nil {
			return fmt.Errorf("config: broker.tls: %w", err)
		}
		if err := clientCAs(tlsCfg, c.ClientCA, c.RequireClientCert); err != nil {
			return fmt.Errorf("config: broker.client_ca: %w", err)
		}
	}
	// A new password at every start: only this process ever uses it.
	a.hubCred = broker.Credential{Username: hubUser, Password: rand.Text()}
	var err error
	a.broker, err = broker.New(broker.Config{
		Addr: c.Addr, FallbackToFreePort: c.FallbackToFreePort, TLSAddr: c.TLSAddr, TLS: tlsCfg,
		Hub: a.hubCred, AllowAnonymous: c.AllowAnonymous, MaxClients: c.MaxClients,
	}, broker.Deps{Log: a.log, Metrics: a.metrics, Clients: a.identity})
	return err
}

// IdentityConfig maps the auth section onto the identity policy; the
// command line uses the same mapping.
func IdentityConfig(cfg config.Config) identity.Config {
	c := identity.DefaultConfig()
	p := cfg.Auth
	c.Password = identity.PasswordPolicy{MinLength: p.Password.MinLength, MinClasses: p.Password.MinClasses,
		MaxAge: p.Password.MaxAge, History: p.Password.History}
	c.Lockout = identity.LockoutPolicy{Threshold: p.Lockout.Threshold, Window: p.Lockout.Window,
		Duration: p.Lockout.Duration, AddressThreshold: p.Lockout.AddressThreshold}
	c.SessionIdle, c.SessionLifetime = p.Session.IdleTimeout, p.Session.Lifetime
	c.TOTPRoles = nil
	for _, r := range p.TOTPRoles {
		c.TOTPRoles = append(c.TOTPRoles, auth.Role(r))
	}
	c.MaxTokenLifetime, c.MaxAgents = p.MaxTokenLifetime, p.MaxAgents
	c.SecureCookies = cfg.HTTP.TLS.On()
	return c
}

// cameras lets identity check a viewing link's camera against the fleet.
type cameras struct{ a *App }

func (c cameras) Camera(id string) (district, site string, ok bool) {
	d, ok := c.a.fleet.Device(id)
	if !ok || d.Kind != wire.KindCamera {
		return "", "", false
	}
	return d.District, d.Site, true
}

// denied records a request the gate refused after authenticating it.
func (a *App) denied(r *http.Request, p *auth.Principal, route auth.Route, reason string) {
	rec := audit.By(p, "access.denied", route.Pattern(), audit.Denied, reason+": "+r.Method+" "+r.URL.Path)
	if _, err := a.audit.Append(r.Context(), rec); err != nil {
		a.log.Error("refusal not audited", "who", p.Name, "route", route.Pattern(), "err", err)
	}
}

// sessionsEnded closes the event streams and video of login sessions that
// ended.
func (a *App) sessionsEnded(ids []string) {
	a.console.EndSessions(ids)
	a.live.EndSessions(ids)
}

// agentRevoked acts on a revoked credential, whoever revoked it (the
// console, the command line): the agent's MQTT session ends at once, its
// retained birth and inventory leave the broker, it leaves the fleet, and
// an alarm says so. A credential replaced by a new one only ends the
// session made with the old.
func (a *App) agentRevoked(agent string) {
	if a.broker != nil && a.broker.Kick(agent) {
		a.log.Info("agent disconnected: its credential changed", "agent", agent)
	}
	if !a.identity.AgentRevoked(agent) {
		return
	}
	if a.ingest != nil {
		if err := a.ingest.ClearRetained(agent); err != nil {
			a.log.Warn("revoked agent's retained messages not cleared", "agent", agent, "err", err)
		}
	}
	ag, _ := a.fleet.Agent(agent)
	a.fleet.Retire(agent)
	a.alarms.Notice(alarm.Alarm{
		Key: string(alarm.SourceSecurity) + ":agent/" + agent, Source: alarm.SourceSecurity, Type: alarm.TypeAgentRevoked,
		Agent: agent, Site: ag.Site, District: ag.District,
		Detail: "credential revoked: the agent was disconnected and left the fleet",
		Args:   map[string]string{"agent": agent},
	})
}

func (a *App) newIngest() error {
	var err error
	a.ingest, err = ingest.New(a.ingestCfg, ingest.Deps{Log: a.log, Fleet: a.fleet, Records: a.fleet, Samples: samplesTo{a.store, a.alarms},
		Metrics: a.metrics, Live: a.live, Snapshots: a.work, Now: time.Now, Revoked: a.identity.AgentRevoked})
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

// onChange fans a fleet change out to the console, the transition logs
// (InfluxDB's and the history's), the coverage model and the alarm engine;
// all only enqueue or update memory. The console gets the change first, so
// a client sees a device's change before the alarm it raises.
func (a *App) onChange(c fleet.Change) {
	a.console.Publish(c)
	// An agent another hub owns is in the read view (consoles, coverage)
	// and in this hub's history, so that its reports cover the city; its
	// transitions in InfluxDB, alarms and work are the owner's.
	own := !a.followed(c)
	a.history.Observe(c)
	if own {
		a.store.WriteChange(c)
		if agent := changeAgent(c); a.cluster != nil && agent != "" {
			a.cluster.Changed(agent) // for the other hubs' view
		}
	}
	a.coverage.Apply(c)
	if own {
		a.alarms.Observe(c)
	} else {
		a.alarms.Follow(c) // for the power feeds its agents share with this hub's
	}
	a.work.Observe(c) // the hub keeping the orders follows every device
}

// onAlarm fans an alarm event out; it must not block (alarm.Options).
func (a *App) onAlarm(ev alarm.Event) {
	a.console.PublishAlarm(ev)
	a.notifier.Notify(ev)
	a.work.ObserveAlarm(ev)
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

// maintenanceWindows turns the configured windows into hub/maintenance's,
// listing every problem.
func maintenanceWindows(cfg []config.Maintenance) (maintenance.Windows, error) {
	var windows maintenance.Windows
	var errs []error
	for i, m := range cfg {
		w := maintenance.Window{Name: m.Name, ApprovedBy: m.ApprovedBy, Devices: m.Devices, Agents: m.Agents, Sites: m.Sites, Districts: m.Districts,
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
// engine, before any fleet change can reach it. A hub of a cluster with
// cluster.postgres_url shares that database with the others: its engine
// starts with its own notices only and takes the alarms of the partitions
// it comes to own (ownPartitions).
func (a *App) openAlarms() error {
	dsn, name, shared := a.cfg.Alarms.DB, "alarms.db "+a.cfg.Alarms.DB, a.cfg.Cluster.PostgresURL != ""
	if shared {
		dsn, name = string(a.cfg.Cluster.PostgresURL), "cluster.postgres_url"
	}
	if dsn == "" {
		a.log.Warn("no alarms.db configured: alarms are kept in memory and lost on restart")
		return nil
	}
	n := a.cfg.Cluster.Partitions
	st, err := alarmstore.OpenWith(dsn, alarmstore.Options{Logger: a.log,
		Partition: func(al alarm.Alarm) int { return alarmPartition(al, n) }})
	if err != nil {
		return err
	}
	var alarms []alarm.Alarm
	var trails map[string][]alarm.Transition
	var next uint64
	if shared {
		// The hub's own notices (no agent, partition -1) are no other
		// hub's to take over: they come back with it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		prefix := alarmIDPrefix(a.cfg.Cluster)
		if next, err = st.NextID(ctx, prefix); err == nil {
			alarms, trails, err = st.LoadPartitions(ctx, []int{-1})
			alarms = slices.DeleteFunc(alarms, func(al alarm.Alarm) bool { return !strings.HasPrefix(al.ID, prefix) })
		}
		cancel()
	} else {
		alarms, trails, next, err = st.Load(keepClosed)
	}
	if err == nil {
		err = a.alarms.Restore(alarms, trails, next)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("%s: %w", name, err), st.Close())
	}
	a.alarmDB = st
	if a.alarmView != nil && shared {
		a.alarmView.UseStore(st)
	}
	a.metrics.GaugeFunc("citywatch_alarmdb_transitions_written", "Alarm transitions committed to the alarm database since start.",
		func() float64 { return float64(st.Written()) })
	a.metrics.GaugeFunc("citywatch_alarmdb_transitions_dropped", "Alarm transitions lost: queue full or a failed write.",
		func() float64 { return float64(st.Dropped()) })
	a.log.Info("alarms restored", "db", name, "alarms", len(alarms))
	return nil
}

// alarmIDPrefix starts the ids of this hub's alarms: "A" alone, "A<hub>-"
// in a cluster, where the hubs share one alarm store.
func alarmIDPrefix(c config.Cluster) string {
	if !c.Enabled() {
		return ""
	}
	return "A" + c.HubID + "-"
}

// alarmPartition is the partition of an alarm's partition key (its
// agent, or a power feed's key: alarm.Alarm.PartitionKey); alarms of none
// (the hub's own notices) stay with the hub that raised them, in
// partition -1.
func alarmPartition(al alarm.Alarm, partitions int) int {
	k := al.PartitionKey()
	if k == "" || partitions < 1 {
		return -1
	}
	return cluster.Partition(k, partitions)
}

// consoleAlarms is what the console lists and acts on: the cluster's
// alarms, or this hub's engine's on its own.
func (a *App) consoleAlarms() console.Alarms {
	if a.alarmView != nil {
		return a.alarmView
	}
	return a.alarms
}

// reconcileAlarms re-evaluates restored alarms against the live state once
// the agents have had time to report (two intervals): a device that
// recovered while the hub was down clears through its normal hysteresis.
func (a *App) reconcileAlarms(ctx context.Context) error {
	select {
	case <-time.After(2 * a.cfg.Fleet.DefaultInterval):
		a.reconcile()
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done() // a stage that returns stops the hub
	return nil
}

// reconcile hands the alarm engine the fleet one agent at a time, which
// Reconcile allows (subjects left out keep their conditions). A snapshot
// of every device at once, each with its metrics, copied again by agent,
// was the largest thing the hub ever held: at 40,000 devices it raised
// the live heap by some 50 MB, and the peak RSS by as much, for a moment.
func (a *App) reconcile() {
	for _, ag := range a.fleet.Agents() {
		if !a.followed(fleet.Change{Agent: &ag}) {
			a.reconcileAgent(ag)
		}
	}
}

func (a *App) reconcileAgent(ag fleet.Agent) {
	page := a.fleet.QueryDevices(fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Agents: []string{ag.ID}}, NoTotal: true})
	a.alarms.Reconcile(page.Devices, []fleet.Agent{ag})
}

func (a *App) health() console.HealthReport {
	r := console.HealthReport{}
	if a.ingest.Connected() {
		r["mqtt"] = console.ComponentHealth{Status: console.HealthOK}
	} else {
		r["mqtt"] = console.ComponentHealth{Status: console.HealthFailing, Reason: "not connected to the MQTT broker " + a.brokerURL}
	}
	if a.cluster != nil {
		r["cluster"] = clusterHealth(a.cluster.Status(), a.alarmView.Stats(), a.workView.Stats())
	}
	if ok, why, since := a.audit.Health(); ok {
		r["audit"] = console.ComponentHealth{Status: console.HealthOK}
	} else {
		// Actions still happen; what they leave behind does not: that is
		// an outage of the evidence.
		r["audit"] = console.ComponentHealth{Status: console.HealthFailing, Reason: "audit trail: " + why, Since: since}
	}
	if ok, why := a.history.Health(); ok {
		r["transitions"] = console.ComponentHealth{Status: console.HealthOK}
	} else {
		r["transitions"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: why}
	}
	if ok, why, since := a.agentDrops.health(); ok {
		r["agents"] = console.ComponentHealth{Status: console.HealthOK}
	} else {
		r["agents"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: why, Since: since}
	}
	st := a.store.Status()
	switch {
	case st.Backend == metricstore.SourceMemory:
		r["history"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: "no InfluxDB configured: history is kept in memory only"}
	case !st.OK:
		r["history"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: "InfluxDB: " + st.LastError, Since: st.LastErrorAt}
	default:
		if why, _ := a.metricsTrouble(); why != "" {
			r["history"] = console.ComponentHealth{Status: console.HealthDegraded, Reason: why, Since: st.LastDropAt}
			break
		}
		r["history"] = console.ComponentHealth{Status: console.HealthOK}
	}
	return r
}

// Ready is closed once the console listens and, when enabled, the embedded
// broker too; ConsoleURL and BrokerURL are valid from then on.
func (a *App) Ready() <-chan struct{} { return a.ready }

// ConsoleURL is where the console is served, valid after Ready.
func (a *App) ConsoleURL() string { return a.console.URL() }

// BrokerURL is the MQTT broker the hub uses, valid after Ready.
func (a *App) BrokerURL() string { return a.brokerURL }

// Fleet exposes the registry to code composing the hub in one process
// (the demo and end-to-end tests).
func (a *App) Fleet() *fleet.Registry { return a.fleet }

// Identity exposes accounts, tokens and agent credentials to code
// composing the hub in one process (the demo and end-to-end tests).
func (a *App) Identity() *identity.Service { return a.identity }

// Audit exposes the audit trail likewise.
func (a *App) Audit() *audit.Log { return a.audit }

// Routes lists every route the hub serves, with its permission.
func (a *App) Routes() []auth.Route { return a.router.Routes() }

// BrokerTLSURL is the embedded broker's MQTT over TLS address, ssl://…,
// or "" without one; valid after Ready.
func (a *App) BrokerTLSURL() string {
	if a.broker == nil || a.cfg.Broker.TLSAddr == "" {
		return ""
	}
	return a.broker.TLSURL()
}

// Run runs the hub until ctx ends or a component fails, then stops the
// components in reverse order of start and returns their errors joined.
func (a *App) Run(ctx context.Context) (err error) {
	defer func() { err = errors.Join(err, a.Close()) }()
	a.brokerURL = a.cfg.MQTT.URL
	// The trail runs first and stops last: every other stage may write
	// to it while it stops.
	// The history stops after the fleet, so every transition is written.
	stages := []stage{{"audit", a.audit.Run}, {"identity", a.identity.Run}, {"history", a.history.Run}}
	if a.broker != nil {
		if err := a.broker.Listen(); err != nil {
			return err
		}
		// The embedded broker is the hub's broker: mqtt.url is ignored.
		a.brokerURL = a.broker.URL()
		a.ingestCfg.BrokerURL = a.brokerURL
		// The hub's own login; its client id, like its name, is no
		// possible agent id, so no agent can take over its session.
		a.ingestCfg.Username, a.ingestCfg.Password, a.ingestCfg.TLS = a.hubCred.Username, a.hubCred.Password, nil
		a.ingestCfg.ClientID = hubUser
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
	// Always running: a reload may add the first webhook.
	stages = append(stages, stage{"notify", a.notifier.Run})
	stages = append(stages,
		stage{"fleet", a.fleet.Run},
		stage{"alarms", a.alarms.Run},
		stage{"workorders", a.work.Run},
		stage{"alarm-reconcile", a.reconcileAlarms},
		stage{"audit-watch", a.watchAudit},
		stage{"loss-watch", a.watchLosses},
		stage{"agent-drop-watch", a.agentDrops.run},
		stage{"console", a.console.Run},
		stage{"ingest", a.ingest.Run},
	)
	if a.cluster != nil {
		// After ingest, which applies what the partitions deliver, and
		// the alarm view, which the partitions' owner hands alarms to.
		stages = append(stages, stage{"alarm-view", a.alarmView.Run}, stage{"work-view", a.workView.Run}, stage{"cluster", a.cluster.Run})
	}
	stages = append(stages,
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
	return runStages(ctx, a.log, stages, shutdownTimeout)
}

// shutdownTimeout bounds how long one stage may take to stop: a stage
// still running then is named in the log and the error, and left behind.
const shutdownTimeout = 30 * time.Second

// Reload applies what a running hub can change without dropping a
// connection — alarm rules, maintenance windows, webhooks and the served
// TLS certificates — from cfg, all or nothing: a problem anywhere changes
// nothing and is returned. The rest of cfg takes effect at the next start.
// The reload, applied or refused, is in the audit trail.
func (a *App) Reload(ctx context.Context, cfg config.Config) error {
	err := a.reload(cfg)
	outcome, detail := audit.Success, "rules, maintenance windows, webhooks and certificates"
	if err != nil {
		outcome, detail = audit.Failure, err.Error()
		a.log.Error("configuration not reloaded; nothing changed", "err", err)
	}
	if _, aerr := a.audit.Append(ctx, audit.Record{Actor: "system", Remote: "local", Action: "config.reload", Outcome: outcome, Detail: detail}); aerr != nil {
		a.log.Error("configuration reload not audited", "err", aerr)
	}
	return err
}

func (a *App) reload(cfg config.Config) error {
	var errs []error
	rules, err := loadRules(cfg.Alarms.Rules)
	errs = append(errs, err)
	windows, err := maintenanceWindows(cfg.Alarms.Maintenance)
	errs = append(errs, err)
	hooks, err := webhooks(cfg.Alarms.Webhooks)
	errs = append(errs, err)
	if err == nil {
		errs = append(errs, notify.Validate(hooks))
	}
	type swap struct {
		slot *certificate
		cert *tls.Certificate
		pair *certs.Pair
	}
	var swaps []swap
	for _, c := range []struct {
		slot *certificate
		t    config.TLS
	}{{a.httpCert, cfg.HTTP.TLS}, {a.mqttCert, cfg.Broker.TLS}} {
		if c.slot == nil {
			continue
		}
		cert, pair, err := c.slot.load(c.t)
		errs = append(errs, err)
		swaps = append(swaps, swap{c.slot, cert, pair})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Every part is valid: apply them all.
	a.alarms.SetRules(rules)
	if err := a.windows.Set(windows); err != nil {
		return err // validated above; kept for the contract
	}
	if err := a.notifier.SetWebhooks(hooks); err != nil {
		return err
	}
	for _, s := range swaps {
		s.slot.cur.Store(s.cert)
		a.log.Info("TLS certificate reloaded", "for", s.slot.name, "sha256", s.pair.Fingerprint(), "expires", s.pair.NotAfter())
	}
	a.log.Info("configuration reloaded", "rules", len(rules), "maintenance_windows", len(windows), "webhooks", len(hooks), "certificates", len(swaps))
	return nil
}

type stage struct {
	name string
	run  func(context.Context) error
}

// runStages starts every stage, waits until ctx ends or one stage returns,
// then cancels the stages from the last to the first, waiting for each to
// return before cancelling the one it depends on. Each stage has timeout
// to stop: one that outlives it is named and left behind, and the ones
// before it are stopped all the same, so the hub always exits.
func runStages(ctx context.Context, log *slog.Logger, stages []stage, timeout time.Duration) error {
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
		wait := time.NewTimer(timeout)
		select {
		case <-rs[i].done:
			wait.Stop()
		case <-wait.C:
			log.Error("component did not stop in time; leaving it behind", "component", stages[i].name, "timeout", timeout)
			errs = append(errs, fmt.Errorf("%s: did not stop within %s", stages[i].name, timeout))
			continue
		}
		if err := rs[i].err; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", stages[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// ownership is the partitions a hub of a cluster owns, and since when.
type ownership struct {
	owns  []bool
	since []time.Time
}

// takeOverGrace is how long a hub that takes a partition over leaves its
// agents' silence unjudged: they were last heard through their records,
// up to a refresh old, and the partition's messages since its last owner
// stopped are still being applied.
const takeOverGrace = 15 * time.Second

// ownPartitions takes the partitions this hub owns now. The alarms of
// partitions it gave up leave its engine without a transition (their new
// owner carries them on); those of partitions it took over come into it
// from the shared store, and then their agents' alarms are reconciled with
// their state, which the read view already holds: an alarm still open
// goes on, a condition nobody had raised starts its hold.
func (a *App) ownPartitions(owned []int) {
	n := a.cfg.Cluster.Partitions
	now := &ownership{owns: make([]bool, n), since: make([]time.Time, n)}
	was := a.owned.Load()
	for _, p := range owned {
		now.owns[p], now.since[p] = true, time.Now()
		if was != nil && was.owns[p] {
			now.since[p] = was.since[p]
		}
	}
	a.owned.Store(now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	a.alarmView.Own(ctx, owned)
	cancel()
	a.keepWork(now.owns)
	var gained, lost int
	for _, ag := range a.fleet.Agents() {
		p := cluster.Partition(ag.ID, n)
		before := was != nil && was.owns[p]
		switch {
		case now.owns[p] && !before:
			a.reconcileAgent(ag)
			gained++
		case !now.owns[p] && before:
			lost++
		}
	}
	a.log.Info("partitions owned", "partitions", len(owned), "agents taken over", gained, "agents handed over", lost)
}

// changeAgent is the agent a change is of; "" for none.
func changeAgent(c fleet.Change) string {
	switch {
	case c.Agent != nil:
		return c.Agent.ID
	case c.Device != nil:
		return c.Device.Agent
	}
	return ""
}

// followed reports whether the change is of an agent another hub of the
// cluster owns.
func (a *App) followed(c fleet.Change) bool {
	owned := a.owned.Load()
	if owned == nil {
		return a.cluster != nil // before the first round nothing is this hub's
	}
	agent := changeAgent(c)
	return agent != "" && !owned.owns[cluster.Partition(agent, len(owned.owns))]
}

// judgesIn is Judges of the fleet and the alarm engine: nil (every one)
// for a hub on its own, judges in a cluster.
func (a *App) judgesIn(c config.Cluster) func(string) bool {
	if !c.Enabled() {
		return nil
	}
	return a.judges
}

// judges reports whether this hub judges an agent's silence, or a power
// feed's root cause (its alarm's key): one whose partition it owns, and
// has owned for takeOverGrace (the last owner's alarms are adopted by
// then).
func (a *App) judges(key string) bool {
	owned := a.owned.Load()
	if owned == nil {
		return false
	}
	p := cluster.Partition(key, len(owned.owns))
	return owned.owns[p] && time.Since(owned.since[p]) >= takeOverGrace
}

// stored waits until the samples applied so far are in InfluxDB (or its
// spill); without InfluxDB there is nothing to wait for (history is in
// memory, and goes with the hub).
func (a *App) stored(ctx context.Context) error {
	if a.influx == nil {
		return nil
	}
	return a.influx.Stored(ctx)
}

// record is an agent's record for the other hubs' view.
func (a *App) record(agent string) ([]byte, bool) {
	rec, ok := a.fleet.Record(agent)
	if !ok {
		return nil, false
	}
	b, err := rec.Encode()
	if err != nil {
		a.log.Error("agent's record not made", "agent", agent, "err", err)
		return nil, false
	}
	return b, true
}

func (a *App) agentIDs() []string {
	ags := a.fleet.Agents()
	ids := make([]string, len(ags))
	for i := range ags {
		ids[i] = ags[i].ID
	}
	return ids
}

// clusterHealth is the cluster's component of /healthz: failing until the
// hub reaches NATS and its stream, then what it holds.
func clusterHealth(st cluster.Status, av alarmview.Stats, wv workview.Stats) console.ComponentHealth {
	if !st.Ready {
		return console.ComponentHealth{Status: console.HealthFailing, Reason: "hub " + st.Hub + ": not connected to NATS or the agents' stream not ready"}
	}
	c := st.Consumers
	h := console.ComponentHealth{Status: console.HealthOK, Reason: fmt.Sprintf("hub %s consumes %d partitions %v; leases claimed %d, lost %d; "+
		"messages applied %d, followed %d, dropped outside the contract %d; consumers stood down %d, failed %d, working again %d, "+
		"failing now %d; deliveries read again after a gap %d; acknowledged before the metric store had them %d; "+
		"records of its agents sent to the others %d (inventories %d), not stored yet %d; "+
		"alarms of other hubs in view %d, their changes applied %d, stale %d; this hub's announced %d, not announced %d; actions routed %d; "+
		"work orders kept by %s, changes applied here %d (missed and read again %d), asked of the keeper %d, read again %d; this hub's announced %d, not announced %d, "+
		"refused after its lease ran out %d",
		st.Hub, len(st.Owned), st.Owned, st.Leases.Claimed, st.Leases.Lost, c.Applied, c.Followed, c.BadSubject, c.StoodDown, c.Errors,
		c.Restarts, c.Failing, c.Gaps, c.Unstored, st.View.Records, st.View.Inventories, st.View.Failed, av.Remote, av.Applied, av.Stale, av.Announced, av.Dropped, av.Routed,
		cmp.Or(wv.Keeper, "no hub yet"), wv.Applied, wv.Gaps, wv.Asked, wv.Reloads, wv.Announced, wv.Dropped, wv.Refused)}
	// A failing consumer is being tried again (and logged); while it
	// fails its partition is not applied, or not followed, here.
	if c.BadSubject > 0 || av.Dropped > 0 || wv.Dropped > 0 || c.Failing > 0 {
		// Each was logged when dropped; the count stays in sight.
		h.Status = console.HealthDegraded
	}
	return h
}
