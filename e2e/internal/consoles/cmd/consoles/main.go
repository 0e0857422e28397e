// Command consoles runs the alarm storm benchmark's consoles (package
// consoles): -n websocket clients of the hub at -url, with the bearer
// tokens in $CONSOLE_TOKENS (comma-separated; console i uses the i-th
// modulo their number). It answers commands on stdin with JSON lines on
// stdout, as the package says, until stdin ends or SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/citywatch/citywatch/e2e/internal/consoles"
)

func main() {
	o := consoles.Options{}
	if t := os.Getenv("CONSOLE_TOKENS"); t != "" {
		o.Tokens = strings.Split(t, ",")
	}
	flag.StringVar(&o.URL, "url", "", "the hub's base URL, http://host:port/")
	flag.IntVar(&o.N, "n", 1, "consoles")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := consoles.Run(ctx, o, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consoles:", err)
		os.Exit(1)
	}
}
