// Command citywatch-hub runs the hub: it takes agents' reports from an MQTT
// broker, keeps the state of every device, stores metrics in InfluxDB and
// serves the console and its API. Its subcommands administer the hub on
// its own machine (hub/cli; `citywatch-hub -h` lists them).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/citywatch/citywatch/hub/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once shutting down, a second signal kills the process the usual way.
	context.AfterFunc(ctx, stop)
	os.Exit(cli.Main(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Env: os.LookupEnv}))
}
