// Package e2e holds the tests that cross the agent/hub boundary: a
// simulated city publishing through a real broker into a real hub (and a
// real InfluxDB and Chromium where the test needs them), and the load
// benchmark behind `make bench`. It is the only place besides demo/ that
// imports both sides.
package e2e
