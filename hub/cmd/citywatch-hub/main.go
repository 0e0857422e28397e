// Command citywatch-hub runs the hub: it takes agents' reports from an MQTT
// broker, keeps the state of every device, stores metrics in InfluxDB and
// serves the console and its API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/config"
)

func main() {
	path := flag.String("config", "", "YAML configuration file (defaults and environment variables apply without one)")
	flag.Parse()

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := config.NewLogger(cfg.Log, os.Stderr)
	hub, err := app.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once shutting down, a second signal kills the process the usual way.
	context.AfterFunc(ctx, stop)
	if err := hub.Run(ctx); err != nil {
		log.Error("hub stopped", "error", err)
		os.Exit(1)
	}
}
