// Command demo runs the whole of citywatch in one process for a first look:
// an embedded MQTT broker, the hub with its console, and a simulated city
// (6 districts, 20 sites, 200 devices with real RTSP cameras, one per site
// with an ONVIF service that says who it is, one of them with its clock
// drifted) whose scripted faults keep the console alive, drawn on a map of
// its districts and areas of interest, with a simulated week of history for
// the reports. It keeps
// its data in a fresh temporary directory, enrols every simulated agent,
// makes one demo account per role (and an operator scoped to one
// district) and prints them with the console URL, marked demo-only; with CITYWATCH_DEMO_TOKEN set it registers that
// value as an admin API token so scripts can drive it. It serves the
// simulator's fault control API. `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/identity"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "console and API address (a free port is used if taken)")
	control := flag.String("control", "127.0.0.1:8090", "simulator fault control address (a free port is used if taken)")
	mqttAddr := flag.String("mqtt", "127.0.0.1:1883", "embedded MQTT broker address (a free port is used if taken)")
	seed := flag.Uint64("seed", 1, "city generator seed")
	script := flag.Bool("script", true, "play the scripted faults")
	flag.Parse()

	cfg, err := config.Load("") // defaults, then INFLUX_* and CITYWATCH_* from the environment
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg.Broker = config.Broker{Enabled: true, Addr: *mqttAddr, FallbackToFreePort: true, MaxClients: 1000}
	// Hub, agents and browser share this machine: keep WebRTC on loopback.
	cfg.Live.LoopbackOnly = true
	// A second factor for admins, security admins and auditors is the
	// production default; the demo's accounts sign in with a password so a
	// first look needs no authenticator app. Anyone can enrol one from the
	// account menu.
	cfg.Auth.TOTPRoles = nil
	log := config.NewLogger(cfg.Log, os.Stderr)
	cfg.Listen = freeOr(*listen, log, "console")
	dir, err := os.MkdirTemp("", "citywatch-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	cfg.DataDir = dir
	cfg.Alarms.DB = filepath.Join(dir, "alarms.db")
	stopInflux := localInflux(&cfg, dir, log.With("side", "influxdb"))
	defer stopInflux()
	city := sim.CityOptions{Seed: *seed}
	plan, err := sim.GenerateCity(city)
	if err == nil {
		cfg.Map.Districts, cfg.Map.Areas, err = writeMap(plan, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		stopInflux()
		os.RemoveAll(dir)
		os.Exit(1)
	}
	now := time.Now()
	work := plannedWork(plan, now)
	cfg.Alarms.Maintenance = append(cfg.Alarms.Maintenance, work)
	week := simulatedWeek(plan, now, *seed, work)
	// The whole loop in a minute: an order 30 s after a fault, closed 30 s
	// after the devices are healthy again. One crew covers the city, with
	// the demo's maintainer in it.
	cfg.WorkOrders.Grace, cfg.WorkOrders.Hold = 30*time.Second, 30*time.Second
	var districts []string
	for _, d := range plan.Districts {
		districts = append(districts, d.Name)
	}
	cfg.WorkOrders.Crews = []config.Crew{{Name: "Crew 1", Members: []string{"maintainer"}, Districts: districts}}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once shutting down, a second signal kills the process the usual way.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, cfg, log, freeOr(*control, log, "fault control"), city, plan, week, *script); err != nil {
		log.Error("demo stopped", "error", err)
		stopInflux()
		os.RemoveAll(dir)
		os.Exit(1)
	}
}

// demoPassword is every demo account's password. The demo serves loopback
// only and its accounts die with it; a real hub has no default account.
const demoPassword = "Citywatch-demo-2026"

// demoAccounts makes one account per role, and an operator who sees one
// district only, and returns the lines that list them.
func demoAccounts(ctx context.Context, id *identity.Service, district string) ([]string, error) {
	actor := identity.Actor{Name: "demo", Remote: "local"}
	var lines []string
	add := func(name string, role auth.Role, scope auth.Scope) error {
		_, _, err := id.AddAccount(ctx, actor, identity.AccountSpec{Name: name, Role: role, Scope: scope,
			Password: demoPassword, OwnPassword: true})
		lines = append(lines, fmt.Sprintf("    %-20s %-15s %s", name, role, scope))
		return err
	}
	for _, r := range auth.Roles {
		if err := add(strings.ReplaceAll(string(r), "_", "-"), r, auth.Everything); err != nil {
			return nil, err
		}
	}
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(district))
	if err := add("operator-"+slug, auth.Operator, auth.Scope{Districts: []string{district}}); err != nil {
		return nil, err
	}
	if tok, ok := os.LookupEnv("CITYWATCH_DEMO_TOKEN"); ok {
		if _, err := id.RegisterToken(ctx, actor, identity.TokenSpec{Name: "demo", Role: auth.Admin, Scope: auth.Everything,
			ExpiresAt: time.Now().Add(30 * 24 * time.Hour)}, tok); err != nil {
			return nil, fmt.Errorf("CITYWATCH_DEMO_TOKEN: %w", err)
		}
		lines = append(lines, "    CITYWATCH_DEMO_TOKEN is an admin API token: Authorization: Bearer $CITYWATCH_DEMO_TOKEN")
	}
	return lines, nil
}

func run(ctx context.Context, cfg config.Config, log *slog.Logger, control string, city sim.CityOptions, plan sim.City,
	week []fleet.DeviceTransition, script bool) error {
	hub, err := app.New(cfg, log.With("side", "hub"))
	if err != nil {
		return err
	}
	// The simulated week goes in through the history's own write path,
	// marked simulated, before the hub hears its first live report.
	if err := hub.History().Seed(ctx, week, true); err != nil {
		return errors.Join(err, hub.Close())
	}
	// The hub stops last: when the demo is told to stop, the simulated
	// agents first say goodbye through its broker (their offline state,
	// acknowledged), then the hub shuts down. It has a context of its own
	// for that; if it stops by itself, the group stops everything else.
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	hubDone := make(chan struct{})
	var hubErr error
	go func() { hubErr = hub.Run(hubCtx); close(hubDone) }()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case <-hubDone:
			return errHubStopped
		case <-ctx.Done():
			return nil
		}
	})
	// finish stops the hub once the rest has stopped, and returns what
	// went wrong: err, the group's, the hub's.
	finish := func(err error) error {
		if werr := g.Wait(); !errors.Is(werr, errHubStopped) && !errors.Is(werr, errStopped) {
			err = errors.Join(err, werr)
		}
		stopHub()
		<-hubDone
		return errors.Join(err, hubErr)
	}
	select {
	case <-hub.Ready():
	case <-ctx.Done():
		return finish(nil)
	}

	// Every simulated agent gets its own credential, as a real one would
	// from citywatch-hub agents enroll.
	secrets := map[string]string{}
	for _, a := range plan.Agents {
		if secrets[a.ID], err = hub.Identity().EnrollAgent(ctx, identity.Actor{Name: "demo", Remote: "local"}, a.ID); err != nil {
			return finish(stop(g, err))
		}
	}
	accounts, err := demoAccounts(ctx, hub.Identity(), plan.Districts[0].Name)
	if err != nil {
		return finish(stop(g, err))
	}
	onvif, drifted := sim.DemoONVIF(plan)
	world, err := sim.New(sim.Options{
		BrokerURL:        hub.BrokerURL(),
		City:             city,
		ONVIF:            onvif,
		Credentials:      func(agent string) (string, string) { return agent, secrets[agent] },
		LiveLoopbackOnly: true,
		Logger:           log.With("side", "sim"),
	})
	if err != nil {
		return finish(stop(g, err))
	}
	g.Go(func() error { return world.Run(ctx) })

	ln, err := net.Listen("tcp", control)
	if err != nil {
		return finish(stop(g, fmt.Errorf("fault control: %w", err)))
	}
	srv := &http.Server{Handler: sim.ControlHandler(world), ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("fault control: %w", err)
		}
		return nil
	})
	if script {
		sc := sim.DemoScript(world.City())
		sc.Steps = append(sc.Steps, sim.DemoONVIFSteps(world.City())...)
		g.Go(func() error { return sc.Run(ctx, world, log.With("side", "script")) })
	}

	cams, sensors := world.City().Devices()
	fmt.Printf(`
  citywatch demo — %d sites, %d cameras, %d sensors in %d districts

  console:        %s

  DEMO ONLY — accounts for a first look, gone when the demo stops; every
  one has the password %s
%s

  MQTT broker:    %s  (enrolled agents only)
  fault control:  http://%s/faults   (GET lists devices and faults)
      curl -XPOST http://%s/faults -d '{"device":"<id>","fault":"offline"}'
  ONVIF cameras:  %d, saying who they are (the second camera of each site);
      %s's clock runs %v ahead; make one report motion or tampering:
      curl -XPOST http://%s/faults -d '{"device":"<id>","fault":"motion"}'   ("tamper"; "restore" ends both)
  metrics:        %s
  reports:        a simulated week of device history (%d transitions, marked simulated), then live

  Ctrl-C stops everything.

`, len(world.City().Agents), cams, sensors, len(world.City().Districts), hub.ConsoleURL(), demoPassword,
		strings.Join(accounts, "\n"), hub.BrokerURL(),
		ln.Addr(), ln.Addr(), len(onvif), drifted, sim.DemoDrift, ln.Addr(), historyNote(cfg), len(week))
	return finish(nil)
}

var errStopped = errors.New("demo: start-up failed")

// errHubStopped stops the rest of the demo when the hub stops by itself;
// the hub's own error says why.
var errHubStopped = errors.New("demo: the hub stopped")

// stop is for start-up failures once the hub runs: it makes the group
// stop (a member returning an error cancels the group's context) and
// returns err.
func stop(g *errgroup.Group, err error) error {
	g.Go(func() error { return errStopped })
	return err
}

func historyNote(cfg config.Config) string {
	if cfg.Influx.Enabled() {
		return "InfluxDB " + cfg.Influx.URL + " bucket " + cfg.Influx.Bucket
	}
	return "kept in memory only (set INFLUX_URL, INFLUX_ORG, INFLUX_BUCKET, INFLUX_TOKEN to keep them in InfluxDB)"
}

// freeOr returns addr if it can be listened on, else a free port on the
// same host, saying so: a demo must start on a machine where 8080 is taken.
func freeOr(addr string, log *slog.Logger, what string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr
	}
	host, _, _ := net.SplitHostPort(addr)
	ln, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return addr // let the component report the original problem
	}
	defer ln.Close()
	log.Warn("address taken; using a free port instead", "for", what, "wanted", addr, "using", ln.Addr().String(), "error", err)
	return ln.Addr().String()
}
