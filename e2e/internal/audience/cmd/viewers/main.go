// Command viewers runs an audience of WHEP viewers (package audience) for
// the live video benchmark. The endpoint gets the bearer token in
// $WHEP_TOKEN, if set. Each line read from stdin asks for a report, one
// line of JSON (audience.Report) on stdout; the first comes unasked, once
// every session is answered or has failed. At the end of stdin, or on
// SIGINT or SIGTERM, the sessions end and a last report is printed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/citywatch/citywatch/e2e/internal/audience"
)

func main() {
	o := audience.Options{Token: os.Getenv("WHEP_TOKEN")}
	flag.StringVar(&o.URL, "url", "", "WHEP endpoint")
	flag.IntVar(&o.Viewers, "n", 1, "viewers")
	flag.UintVar(&o.MTU, "mtu", 1200, "receive MTU: the largest datagram read")
	flag.IntVar(&o.Parallel, "parallel", 10, "offers sent at once")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := audience.Run(ctx, o, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "viewers:", err)
		os.Exit(1)
	}
}
