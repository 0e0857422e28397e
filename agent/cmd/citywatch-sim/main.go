// Command citywatch-sim runs a simulated city — agents with RTSP cameras
// and alarm sensors — against any MQTT broker, with the fault control API
// on 127.0.0.1:8090 and the demo fault script. With -scale it runs
// thousands of agents whose cameras are answered in-process, for load
// tests. See docs/simulator.md.
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
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/citywatch/citywatch/agent/sim"
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
		broker     = flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker `URL` (tcp:// or mqtt://)")
		brokerUser = flag.String("broker-user", "", "MQTT username (password from $"+envBrokerPassword+")")
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

	s, err := sim.New(sim.Options{
		BrokerURL:        *broker,
		BrokerUsername:   *brokerUser,
		BrokerPassword:   os.Getenv(envBrokerPassword),
		City:             sim.CityOptions{Seed: *seed, Districts: *districts, Sites: *agents, Devices: *devices},
		InProcessCameras: *scale,
		Interval:         *interval,
		SnapshotAddr:     *snapshots,
		Logger:           logger,
	})
	if err != nil {
		return err
	}

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
