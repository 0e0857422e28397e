package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	mosquittoStartTimeout = 15 * time.Second
	stopGrace             = 10 * time.Second
	portAttempts          = 3
)

// Broker is a private Mosquitto broker started by [Mosquitto]. Its methods
// that can fail the test (Restart) must be called from the test goroutine.
type Broker struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	log  *tailBuffer
	port int // fixed once Mosquitto returns

	mu   sync.Mutex // guards proc
	proc *process
}

// Mosquitto starts a Mosquitto broker listening on a free 127.0.0.1 port,
// anonymous, with limits raised for load tests and persistence in
// t.TempDir() (so [Broker.Restart] keeps retained messages and persistent
// sessions, as a real broker restart does). It stops the broker when the test
// ends. The binary is $CITYWATCH_MOSQUITTO, `mosquitto` on PATH, or
// /usr/sbin/mosquitto.
func Mosquitto(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{
		t:   t,
		bin: lookBin(t, "mosquitto", "CITYWATCH_MOSQUITTO", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"),
		dir: t.TempDir(),
		log: newTailBuffer(256 << 10),
	}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	// Registered after t.TempDir so it runs before the directory is removed.
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("testenv: mosquitto log (%s):\n%s", b.Addr(), b.log.String())
		}
	})

	var err error
	for range portAttempts {
		b.port = FreePort(t)
		writeFile(t, b.conf, b.config())
		if err = b.start(); err == nil || !addrInUse(b.log) {
			break
		}
	}
	if err != nil {
		t.Fatalf("testenv: mosquitto: %v\n%s", err, b.log.String())
	}
	return b
}

func (b *Broker) config() string {
	// With persistence, a broker started as root must keep root: the default
	// drops to user "mosquitto", which cannot write the 0700 temp dir.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n"
	}
	return fmt.Sprintf(`# written by internal/testenv
%slistener %d 127.0.0.1
allow_anonymous true

persistence true
persistence_location %s/
# Save only on shutdown: keeps load tests free of periodic disk writes.
autosave_interval 0

# Load tests: no in-flight window (0 = unlimited) and a deep per-client queue
# (default 1000), so the broker is not what drops messages.
max_inflight_messages 0
max_queued_messages 100000
set_tcp_nodelay true

log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S
`, user, b.port, b.dir)
}

// start runs mosquitto with the current config and waits until its port
// accepts connections.
func (b *Broker) start() error {
	b.t.Helper()
	start := time.Now()
	p, err := startProcess("mosquitto", b.bin, []string{"-c", b.conf}, os.Environ(), b.dir, b.log)
	if err != nil {
		return err
	}
	ctx, cancel := startupTimeout(b.t, mosquittoStartTimeout)
	defer cancel()
	if err := p.waitReady(ctx, dialProbe(b.Addr())); err != nil {
		_ = p.stop(stopGrace)
		return err
	}
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()
	b.t.Logf("testenv: mosquitto ready on %s in %v", b.Addr(), time.Since(start).Round(time.Millisecond))
	return nil
}

// URL is the broker address for paho: tcp://127.0.0.1:PORT.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr is the broker's host:port.
func (b *Broker) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
}

// Stop shuts the broker down (SIGTERM, then kill after a grace period) and
// waits for it to exit, dropping every client connection. Stopping a stopped
// broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	p := b.proc
	b.proc = nil
	b.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.stop(stopGrace); err != nil {
		b.t.Log(err)
	}
}

// Restart stops the broker and starts it again on the same port with the
// same persistence file, for tests of client reconnection.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	if err := b.start(); err != nil {
		b.t.Fatalf("testenv: mosquitto restart: %v\n%s", err, b.log.String())
	}
}
