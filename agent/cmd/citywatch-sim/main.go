// Command citywatch-sim runs a simulated city — agents with RTSP cameras
// and alarm sensors — against any MQTT broker, with the fault control API
// on 127.0.0.1:8090 and the demo fault script. With -scale it runs
// thousands of agents whose cameras are answered in-process, for load
// tests. Against a broker that authenticates agents it logs each agent in
// with its own secret (-credentials) and speaks MQTT over TLS (-ca, -cert,
// -key). See docs/simulator.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/wire"
)

// envBrokerPassword keeps the broker password off the command line, where
// every user of the machine could read it.
const envBrokerPassword = "CITYWATCH_SIM_BROKER_PASSWORD"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "citywatch-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		broker     = flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker `URL`: tcp:// or mqtt://; ssl://, tls:// or mqtts:// for TLS")
		brokerUser = flag.String("broker-user", "", "one MQTT username for every agent (password from $"+envBrokerPassword+")")
		creds      = flag.String("credentials", "", "YAML `file` of agent id: secret (from `citywatch-hub agents enroll`); each agent logs in as itself")
		caFile     = flag.String("ca", "", "PEM `file` of the CAs to trust for a TLS broker (default: the system roots)")
		certFile   = flag.String("cert", "", "client certificate PEM `file` for a TLS broker; "+agentPlaceholder+" in the path stands for each agent's id")
		keyFile    = flag.String("key", "", "client key PEM `file`, with "+agentPlaceholder+" as for -cert")
		list       = flag.Bool("list-agents", false, "print the simulated agents' ids, one a line, and exit (to enrol them)")
		control    = flag.String("control", "127.0.0.1:8090", "listen `address` of the fault control API; empty disables it")
		agents     = flag.Int("agents", sim.DefaultSites, "simulated agents, one per site")
		devices    = flag.Int("devices", sim.DefaultDevices, "devices in total, about 60% cameras")
		districts  = flag.Int("districts", sim.DefaultDistricts, "districts of the city")
		seed       = flag.Uint64("seed", 1, "seed of the city generator")
		scale      = flag.Bool("scale", false, "scale mode: cameras answered in-process instead of RTSP servers")
		script     = flag.Bool("script", true, "play the demo fault script")
		interval   = flag.Duration("interval", 0, "agents' health and probe interval (0: agent default)")
		snapshots  = flag.String("snapshots", "127.0.0.1:0", "listen `address` of the camera snapshot server")
		logLevel   = flag.String("log-level", "info", "debug, info, warn or error")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	city := sim.CityOptions{Seed: *seed, Districts: *districts, Sites: *agents, Devices: *devices}
	if *list {
		return listAgents(city)
	}

	opts := sim.Options{
		BrokerURL:        *broker,
		BrokerUsername:   *brokerUser,
		BrokerPassword:   os.Getenv(envBrokerPassword),
		City:             city,
		InProcessCameras: *scale,
		Interval:         *interval,
		SnapshotAddr:     *snapshots,
		Logger:           logger,
	}
	var (
		secrets map[string]string
		err     error
	)
	if *creds != "" {
		if *brokerUser != "" {
			return errors.New("-credentials and -broker-user exclude each other")
		}
		if secrets, err = loadCredentials(*creds); err != nil {
			return err
		}
		opts.Credentials = func(id string) (string, string) {
			if s, ok := secrets[id]; ok {
				return id, s
			}
			return "", "" // sim.New names the agent
		}
	}
	if *caFile != "" || *certFile != "" || *keyFile != "" {
		if opts.TLS, opts.ClientCertificate, err = clientTLS(*caFile, *certFile, *keyFile); err != nil {
			return err
		}
	}
	s, err := sim.New(opts)
	if err != nil {
		return err
	}
	warnUnknownAgents(logger, s.City(), secrets)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(ctx) })
	if *control != "" {
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			return fmt.Errorf("control API: %w", err)
		}
		logger.Info("fault control API listening", "addr", ln.Addr().String())
		g.Go(func() error { return serve(ctx, ln, sim.ControlHandler(s)) })
	}
	if *script {
		g.Go(func() error { return sim.DemoScript(s.City()).Run(ctx, s, logger) })
	}
	return g.Wait()
}

// listAgents prints the ids of the agents of city, one a line.
func listAgents(opts sim.CityOptions) error {
	city, err := sim.GenerateCity(opts)
	if err != nil {
		return err
	}
	for _, a := range city.Agents {
		fmt.Println(a.ID)
	}
	return nil
}

// loadCredentials reads a YAML map of agent id to secret. Errors never
// quote a secret.
func loadCredentials(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	var secrets map[string]string
	if err := yaml.Unmarshal(data, &secrets); err != nil {
		return nil, fmt.Errorf("credentials %s: want a YAML map of agent id: secret: %w", path, err)
	}
	var errs []error
	for id, secret := range secrets {
		if err := wire.ValidID(id); err != nil {
			errs = append(errs, fmt.Errorf("credentials %s: %w", path, err))
		}
		if secret == "" {
			errs = append(errs, fmt.Errorf("credentials %s: agent %s: empty secret", path, id))
		}
	}
	if len(secrets) == 0 {
		errs = append(errs, fmt.Errorf("credentials %s: no agents", path))
	}
	return secrets, errors.Join(errs...)
}

// warnUnknownAgents logs credentials no simulated agent uses: most likely
// the city was sized or seeded differently from the one enrolled.
func warnUnknownAgents(log *slog.Logger, city sim.City, secrets map[string]string) {
	var unknown []string
	for id := range secrets {
		if !slices.ContainsFunc(city.Agents, func(a config.Config) bool { return a.ID == id }) {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		log.Warn("credentials for agents the simulated city does not have; check -agents, -districts and -seed", "agents", unknown)
	}
}

// agentPlaceholder in -cert and -key stands for each agent's id.
const agentPlaceholder = "{agent}"

// clientTLS builds the agents' TLS settings from the -ca, -cert and -key
// files. With agentPlaceholder in -cert or -key, each agent gets its own
// certificate, loaded by sim.New.
func clientTLS(ca, cert, key string) (*tls.Config, func(string) (tls.Certificate, error), error) {
	perAgent := strings.Contains(cert, agentPlaceholder) || strings.Contains(key, agentPlaceholder)
	files := config.TLSFiles{CAFile: ca}
	if !perAgent {
		files.CertFile, files.KeyFile = cert, key
	}
	cfg, err := files.Load()
	if err != nil {
		return nil, nil, fmt.Errorf("TLS (-ca, -cert, -key): %w", err)
	}
	if !perAgent {
		return cfg, nil, nil
	}
	return cfg, func(id string) (tls.Certificate, error) {
		own, err := config.TLSFiles{
			CertFile: strings.ReplaceAll(cert, agentPlaceholder, id),
			KeyFile:  strings.ReplaceAll(key, agentPlaceholder, id),
		}.Load()
		if err != nil {
			return tls.Certificate{}, err
		}
		return own.Certificates[0], nil
	}, nil
}

// serve serves h on ln until ctx ends.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	})
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control API: %w", err)
	}
	return nil
}
