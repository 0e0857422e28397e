//go:build race

package e2e

// raceDetector: this test binary runs under the race detector, which
// makes every goroutine of the in-process simulator and NATS server
// several times slower and larger.
const raceDetector = true
