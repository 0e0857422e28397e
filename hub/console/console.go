// Package console is the hub's HTTP face: the JSON API over the fleet's
// state and the alarms, with the operators' alarm actions, a websocket at
// /api/events that pushes every fleet change and alarm event as it happens,
// /metrics in the Prometheus text format, /healthz, and the static console
// UI. Its routes go into the hub's auth.Router with the permission each
// needs, next to other domains' routes (live video, accounts, the audit
// trail), and the server serves that router. Every answer is limited to the
// caller's scope: a console scoped to one district never sees, lists,
// counts or receives another district's devices, agents or alarms. It
// reads the fleet and the metric store through small interfaces declared
// here, so it can be tested with fakes and knows nothing of MQTT or
// InfluxDB. Broadcasting is built for alarm storms: a change is encoded
// once, bursts are coalesced into a few messages, every group of clients
// that sees the same part of the city shares its messages, every client
// has one writer and a bounded queue, and a client that cannot keep up is
// cut rather than allowed to slow the others.
package console

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/hub/workorder"
)

// Config holds the console's own settings.
type Config struct {
	// Listen is the host:port to serve on; port 0 picks a free port, which
	// Addr reports. Default 127.0.0.1:8080.
	Listen string
	// TLS, when set, serves HTTPS with it.
	TLS *tls.Config
	// SendQueue is how many messages may wait for one websocket client
	// before it is cut as too slow. Default 256.
	SendQueue int
	// WriteTimeout bounds one websocket write, and how long a client may
	// take to answer a ping. Default 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often idle websocket clients are pinged. Default 30 s.
	PingInterval time.Duration
	// BatchWindow is how long changes are gathered into one websocket
	// message after a message has just been sent; the first change after a
	// quiet spell goes out at once. Default 5 ms.
	BatchWindow time.Duration
	// ShutdownTimeout bounds the graceful shutdown after Run's context ends.
	// Default 5 s.
	ShutdownTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, so a
	// client trickling a body cannot hold a connection. Default 30 s.
	ReadTimeout time.Duration
	// MaxWebsockets is how many event streams one account (or token) may
	// hold open at once. Default 16.
	MaxWebsockets int
	// MaxShelve is the longest an alarm may be shelved. Default 7 days.
	MaxShelve time.Duration
}

// Defaults.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultSendQueue       = 256
	DefaultWriteTimeout    = 10 * time.Second
	DefaultPingInterval    = 30 * time.Second
	DefaultBatchWindow     = 5 * time.Millisecond
	DefaultShutdownTimeout = 5 * time.Second
	DefaultReadTimeout     = 30 * time.Second
	DefaultMaxWebsockets   = 16
	DefaultMaxShelve       = 7 * 24 * time.Hour
)

// FleetReader is what the console reads of the fleet. Values returned are
// snapshots the console may keep and sort.
type FleetReader interface {
	Devices() []fleet.Device
	// QueryDevices returns a page of the devices a query selects, in id
	// order, from the registry's indexes (fleet.Registry does).
	QueryDevices(q fleet.DeviceQuery) fleet.DevicePage
	// DevicesWhere returns the devices whose district and site keep
	// accepts, sorted by id.
	DevicesWhere(keep func(district, site string) bool) []fleet.Device
	Device(id string) (fleet.Device, bool)
	Agents() []fleet.Agent
	Agent(id string) (fleet.Agent, bool)
	Summary() fleet.Summary
	// SummaryWhere is Summary of the part of the city keep accepts.
	SummaryWhere(keep func(district, site string) bool) fleet.Summary
}

// HistoryReader returns a device's recent samples and transitions
// (metricstore.Store does).
type HistoryReader interface {
	History(ctx context.Context, device string, since time.Time) (metricstore.History, error)
}

// AssetReader reads a device's recorded unit changes (hub/history).
type AssetReader interface {
	Assets(ctx context.Context, device string) ([]fleet.AssetChange, error)
}

// Auditor records what callers did (hub/audit's Log).
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// HealthStatus is the state of one hub component.
type HealthStatus string

// Health statuses. A failing component makes /healthz answer 503; a degraded
// one is reported but still answers 200, because the hub still does its job.
const (
	HealthOK       HealthStatus = "ok"
	HealthDegraded HealthStatus = "degraded"
	HealthFailing  HealthStatus = "failing"
)

// ComponentHealth is what one component says about itself.
type ComponentHealth struct {
	Status HealthStatus `json:"status"`
	Reason string       `json:"reason,omitempty"` // for operators: "mqtt: connection refused"
	Since  time.Time    `json:"since,omitzero"`
}

// HealthReport maps component names ("mqtt", "influxdb") to their health.
type HealthReport map[string]ComponentHealth

// Deps are the console's collaborators.
type Deps struct {
	Log     *slog.Logger
	Fleet   FleetReader
	History HistoryReader       // optional: without it device pages carry no history
	Assets  AssetReader         // optional: without it device pages carry no unit changes
	Health  func() HealthReport // optional: without it /healthz reports only the console
	Metrics *metrics.Registry
	UI      fs.FS // static console files; index.html at the root
	// Router is where the console adds its routes and what it serves:
	// other domains add theirs to the same router before Run.
	Router *auth.Router
	// Audit records the operators' alarm actions; required with Alarms.
	Audit Auditor
	// Alarms serves /api/alarms (hub/alarm's Engine); optional: without it
	// those paths are 404 and the websocket hello carries no alarm counts.
	Alarms Alarms
	// SessionActive reports whether a login session still stands; the
	// event stream checks it at every ping and ends the connection of a
	// session that has ended. Optional.
	SessionActive func(id string) bool
}

// Server serves the console. Create it with New, start it with Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	fleet   FleetReader
	history HistoryReader
	assets  AssetReader
	health  func() HealthReport
	reg     *metrics.Registry
	ui      fs.FS
	alarms  Alarms
	audit   Auditor
	router  *auth.Router

	hub *hub

	ready chan struct{}
	addr  net.Addr // set before ready is closed
	once  sync.Once
}

// New checks cfg and deps, adds the console's routes to deps.Router and
// returns a server that has not started.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = withDefaults(cfg)
	if err := validate(cfg); err != nil {
		return nil, err
	}
	switch {
	case deps.Log == nil:
		return nil, errors.New("console: Deps.Log is required")
	case deps.Fleet == nil:
		return nil, errors.New("console: Deps.Fleet is required")
	case deps.Metrics == nil:
		return nil, errors.New("console: Deps.Metrics is required")
	case deps.UI == nil:
		return nil, errors.New("console: Deps.UI is required")
	case deps.Router == nil:
		return nil, errors.New("console: Deps.Router is required")
	case deps.Alarms != nil && deps.Audit == nil:
		return nil, errors.New("console: Deps.Audit is required with Deps.Alarms: every alarm action is audited")
	}
	if _, err := fs.Stat(deps.UI, "index.html"); err != nil {
		return nil, fmt.Errorf("console: UI has no index.html: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     deps.Log.With("component", "console"),
		fleet:   deps.Fleet,
		history: deps.History,
		assets:  deps.Assets,
		health:  deps.Health,
		reg:     deps.Metrics,
		ui:      deps.UI,
		alarms:  deps.Alarms,
		audit:   deps.Audit,
		router:  deps.Router,
		ready:   make(chan struct{}),
	}
	s.hub = newHub(cfg, s.log, deps.Metrics, deps.SessionActive)
	deps.Router.Handle(s.routes()...)
	return s, nil
}

func withDefaults(c Config) Config {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.SendQueue = cmp.Or(c.SendQueue, DefaultSendQueue)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.PingInterval = cmp.Or(c.PingInterval, DefaultPingInterval)
	c.BatchWindow = cmp.Or(c.BatchWindow, DefaultBatchWindow)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, DefaultReadTimeout)
	c.MaxWebsockets = cmp.Or(c.MaxWebsockets, DefaultMaxWebsockets)
	c.MaxShelve = cmp.Or(c.MaxShelve, DefaultMaxShelve)
	return c
}

// validate reports every problem at once.
func validate(c Config) error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q is not host:port", c.Listen))
	}
	if c.SendQueue < 1 {
		errs = append(errs, fmt.Errorf("send queue %d is not positive", c.SendQueue))
	}
	if c.MaxWebsockets < 1 {
		errs = append(errs, fmt.Errorf("max websockets %d is not positive", c.MaxWebsockets))
	}
	for name, d := range map[string]time.Duration{
		"write timeout": c.WriteTimeout, "ping interval": c.PingInterval,
		"batch window": c.BatchWindow, "shutdown timeout": c.ShutdownTimeout,
		"read timeout": c.ReadTimeout, "max shelve": c.MaxShelve,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// Ready is closed once Run is listening; Addr is valid from then on.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address Run listens on, or nil before Ready is closed.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// URL is where the console is served, valid after Ready: http:// or
// https:// and the address, with 127.0.0.1 for an unspecified one.
func (s *Server) URL() string {
	addr := s.Addr().String()
	if tcp, ok := s.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		addr = fmt.Sprintf("127.0.0.1:%d", tcp.Port)
	}
	if s.cfg.TLS != nil {
		return "https://" + addr + "/"
	}
	return "http://" + addr + "/"
}

// EndSessions closes at once the event streams opened with any of the
// given login sessions (after a logout, a disabled account, a reset
// password).
func (s *Server) EndSessions(ids []string) { s.hub.endSessions(ids) }

// Publish offers a change to every websocket client. It never blocks on a
// client. Call it in Seq order: clients receive changes in call order.
func (s *Server) Publish(c fleet.Change) { s.hub.publish(c) }

// PublishAlarm offers an alarm event to every websocket client, in order
// with the changes published before it. It never blocks on a client.
func (s *Server) PublishAlarm(ev alarm.Event) { s.hub.publishAlarm(ev, s.placeOf) }

// WorkOrderMessage is {"type":"workorder"}: one work-order event.
type WorkOrderMessage struct {
	Type  string          `json:"type"` // "workorder"
	Event workorder.Event `json:"event"`
}

// PublishWorkOrder sends a work-order event to the clients whose scope
// sees the order's site.
func (s *Server) PublishWorkOrder(ev workorder.Event) {
	s.hub.publishMessage(WorkOrderMessage{Type: "workorder", Event: ev}, ev.Order.District, ev.Order.Site)
}

// placeOf is an agent's district and site.
func (s *Server) placeOf(agent string) (district, site string) {
	a, _ := s.fleet.Agent(agent)
	return a.District, a.Site
}

// Run serves until ctx ends, then shuts down gracefully: it stops accepting,
// closes websockets with 1001 (going away) and waits up to
// Config.ShutdownTimeout for requests in flight. It returns an error only if
// it cannot listen or serving fails; a shutdown that runs out of time closes
// what is left and is not an error of the caller's making, so it is logged.
// Run is called once: a server that has shut down stays shut.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("console: listen: %w", err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	srv := &http.Server{
		Handler:           s.router.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// The whole request, body included: a body trickled a byte at a
		// time must not hold a connection for ever. Websockets set their
		// own deadlines once upgraded.
		ReadTimeout:    s.cfg.ReadTimeout,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.once.Do(func() {
		s.addr = ln.Addr()
		close(s.ready)
	})
	s.log.Info("serving", "addr", ln.Addr().String())

	// The broadcast loop also stops when serving fails on its own.
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.hub.run(loopCtx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}

	// The context that bounds shutdown must outlive ctx, which has ended.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	stopLoop()
	<-loopDone
	// Hijacked websocket connections are not the http.Server's any more:
	// the hub says goodbye to them while the server drains requests.
	var wg sync.WaitGroup
	wg.Go(func() { s.hub.shutdown(sctx) })
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("http shutdown incomplete, closing connections", "err", err)
		srv.Close()
	}
	wg.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("console: serve: %w", serveErr)
	}
	return nil
}
