package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
)

// localInflux starts the InfluxDB `make deps` installs, when no other is
// configured, so the demo keeps its metrics as a city's hub would; the
// returned stop ends it. Without one the hub keeps a recent window in
// memory, and says so.
func localInflux(cfg *config.Config, dir string, log *slog.Logger) (stop func()) {
	if cfg.Influx.Enabled() {
		return func() {}
	}
	in, err := testenv.StartInfluxDB(filepath.Join(dir, "influxdb"), func(format string, args ...any) {
		log.Info(fmt.Sprintf(format, args...))
	})
	switch {
	case errors.Is(err, testenv.ErrNotInstalled):
		log.Info("no influxd installed (make deps installs InfluxDB 1.8.10): metrics are kept in memory only")
		return func() {}
	case err != nil:
		log.Warn("influxd did not start: metrics are kept in memory only", "err", err)
		return func() {}
	}
	cfg.Influx.URL, cfg.Influx.Org, cfg.Influx.Bucket, cfg.Influx.Token = in.URL(), in.Org(), in.Bucket(), config.Secret(in.Token())
	return in.Stop
}
