// Command citywatch-agent is the citywatch edge agent: it supervises the
// cameras and alarm sensors of one site and reports their health to the
// hub over MQTT. SIGHUP reloads the device list from the config file;
// SIGINT and SIGTERM stop it cleanly. "citywatch-agent discover" lists
// the ONVIF cameras on the site's LAN as configuration to paste.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/citywatch/citywatch/agent"
	"github.com/citywatch/citywatch/agent/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "discover" {
		if err := discover(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "citywatch-agent discover:", err)
			os.Exit(1)
		}
		return
	}
	path := flag.String("config", "configs/agent.yaml", "agent config file")
	logFormat := flag.String("log-format", "text", "log format: text or json")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	log := newLogger(*logFormat, *debug)
	if err := run(*path, log); err != nil {
		log.Error("agent failed", "err", err)
		os.Exit(1)
	}
}

func newLogger(format string, debug bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func run(path string, log *slog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Options{Logger: log, Version: version})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(a, path, log)
			}
		}
	}()

	log.Info("starting", "version", version, "config", path, "broker", cfg.Broker.URL, "agent", cfg.ID,
		"spool", cfg.Uplink.SpoolDir, "spool_bytes", cfg.Uplink.SpoolBytes)
	if err := a.Run(ctx); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("stopped")
	return nil
}

// reload keeps the running configuration when the new file is invalid: a
// typo must not take a site's supervision down.
func reload(a *agent.Agent, path string, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err == nil {
		err = a.Reload(cfg)
	}
	if err != nil {
		log.Error("reload failed; keeping the running config", "err", err)
		return
	}
	log.Info("reloaded", "config", path)
}
