package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
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

// Broker is a private Mosquitto broker started by [Mosquitto] or
// [MosquittoWith]. Its methods that can fail the test (Restart) must be
// called from the test goroutine.
type Broker struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	opts    MosquittoOptions
	log     *tailBuffer
	port    int // fixed once Mosquitto returns
	tlsPort int // 0 without a TLS listener

	mu   sync.Mutex // guards proc
	proc *process
}

// MosquittoOptions turn on authentication, access control and TLS.
type MosquittoOptions struct {
	// PasswordFile is a Mosquitto password file ("user:$7$..." lines).
	// When set, clients without a username are refused and each client's
	// id is replaced by its username (use_username_as_clientid), so ACL
	// patterns with %u and %c name the authenticated user.
	PasswordFile string
	// ACLFile is a Mosquitto ACL file ("user", "topic", "pattern" lines).
	ACLFile string
	// TLS adds an MQTT-over-TLS listener on another free port.
	TLS *MosquittoTLS
}

// MosquittoTLS is the TLS listener's configuration: PEM files.
type MosquittoTLS struct {
	CAFile   string // CA that client certificates must chain to
	CertFile string // server certificate, valid for 127.0.0.1
	KeyFile  string
	// RequireClientCert refuses clients without a certificate signed by
	// CAFile; they still authenticate with username and password.
	RequireClientCert bool
}

// Mosquitto starts a Mosquitto broker listening on a free 127.0.0.1 port,
// anonymous, with limits raised for load tests and persistence in
// t.TempDir() (so [Broker.Restart] keeps retained messages and persistent
// sessions, as a real broker restart does). It stops the broker when the test
// ends. The binary is $CITYWATCH_MOSQUITTO, `mosquitto` on PATH, or
// /usr/sbin/mosquitto.
func Mosquitto(t testing.TB) *Broker {
	t.Helper()
	return MosquittoWith(t, MosquittoOptions{})
}

// MosquittoWith is [Mosquitto] with authentication, an ACL or a TLS
// listener, as opts say.
func MosquittoWith(t testing.TB, opts MosquittoOptions) *Broker {
	t.Helper()
	b := &Broker{
		t:    t,
		bin:  lookBin(t, "mosquitto", "CITYWATCH_MOSQUITTO", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"),
		dir:  t.TempDir(),
		opts: opts,
		log:  newTailBuffer(256 << 10),
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
		ports := freePorts(t, 2)
		b.port = ports[0]
		if opts.TLS != nil {
			b.tlsPort = ports[1]
		}
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
	// Authentication settings are global (per_listener_settings false), so
	// both listeners share them; use_username_as_clientid is a listener
	// setting and is repeated.
	auth := "allow_anonymous true\n"
	perListener := ""
	if b.opts.PasswordFile != "" {
		auth = fmt.Sprintf("allow_anonymous false\npassword_file %s\n", b.opts.PasswordFile)
		perListener = "use_username_as_clientid true\n"
	}
	if b.opts.ACLFile != "" {
		auth += fmt.Sprintf("acl_file %s\n", b.opts.ACLFile)
	}
	listeners := fmt.Sprintf("listener %d 127.0.0.1\n%s", b.port, perListener)
	if tc := b.opts.TLS; tc != nil {
		listeners += fmt.Sprintf("\nlistener %d 127.0.0.1\n%scafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate %t\n",
			b.tlsPort, perListener, tc.CAFile, tc.CertFile, tc.KeyFile, tc.RequireClientCert)
	}
	return fmt.Sprintf(`# written by internal/testenv
%sper_listener_settings false
%s
%s
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
`, user, auth, listeners, b.dir)
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
	if err := p.waitReady(ctx, b.probe()); err != nil {
		_ = p.stop(stopGrace)
		return err
	}
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()
	b.t.Logf("testenv: mosquitto ready on %s in %v", b.Addr(), time.Since(start).Round(time.Millisecond))
	return nil
}

// probe succeeds once every listener accepts connections.
func (b *Broker) probe() func(context.Context) error {
	plain := dialProbe(b.Addr())
	if b.tlsPort == 0 {
		return plain
	}
	tls := dialProbe(b.TLSAddr())
	return func(ctx context.Context) error {
		if err := plain(ctx); err != nil {
			return err
		}
		return tls(ctx)
	}
}

// URL is the broker address for paho: tcp://127.0.0.1:PORT.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr is the broker's host:port.
func (b *Broker) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
}

// TLSURL is the TLS listener's address for paho: ssl://127.0.0.1:PORT;
// "" without MosquittoOptions.TLS.
func (b *Broker) TLSURL() string {
	if b.tlsPort == 0 {
		return ""
	}
	return "ssl://" + b.TLSAddr()
}

// TLSAddr is the TLS listener's host:port; "" without MosquittoOptions.TLS.
func (b *Broker) TLSAddr() string {
	if b.tlsPort == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.tlsPort))
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

// MosquittoPasswd adds username with password to the Mosquitto password
// file (creating it if need be) with mosquitto_passwd, so a test can check
// hashes made by Mosquitto's own tool. The binary is
// $CITYWATCH_MOSQUITTO_PASSWD, `mosquitto_passwd` on PATH, or
// /usr/bin/mosquitto_passwd.
func MosquittoPasswd(t testing.TB, file, username, password string) {
	t.Helper()
	bin := lookBin(t, "mosquitto_passwd", "CITYWATCH_MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd")
	args := []string{"-b", file, username, password}
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		args = append([]string{"-c"}, args...)
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: mosquitto_passwd %s: %v\n%s", username, err, out)
	}
}
