package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// installHint is appended to every "binary not found" failure.
const installHint = "run `make deps` (scripts/deps.sh) to install it"

// lookBin finds the binary for a service: the path in envVar if set (an
// explicit choice, so a bad value fails rather than falling through), then
// name on PATH, then the fallbacks in order.
func lookBin(t testing.TB, name, envVar string, fallbacks ...string) string {
	t.Helper()
	p, err := findBin(name, envVar, fallbacks...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// findBin is lookBin for a program: it returns the error instead.
func findBin(name, envVar string, fallbacks ...string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		abs, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("testenv: $%s=%q is not an executable: %v; unset it or %s", envVar, p, err, installHint)
		}
		return abs, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range fallbacks {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("testenv: %s not found (looked at $%s, PATH, %s): %s: %w",
		name, envVar, strings.Join(fallbacks, ", "), installHint, ErrNotInstalled)
}

// ErrNotInstalled is wrapped by the errors of a service whose binary is
// not installed.
var ErrNotInstalled = errors.New("not installed")

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process can still take it before the caller binds it; services
// started by this package retry with a new port when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct free ports; the listeners are held open
// together so the kernel cannot hand out the same port twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := listenFree(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func listenFree(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: find free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startupTimeout bounds how long a service may take to become ready, and is
// shortened so that it ends before the test binary's own deadline.
func startupTimeout(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	return withDeadline(d, func() (time.Time, bool) { return testDeadline(t) })
}

// withDeadline is a context ending after d, or at deadline's time if that
// is sooner (deadline may be nil).
func withDeadline(d time.Duration, deadline func() (time.Time, bool)) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	if deadline == nil {
		return ctx, cancel
	}
	if dl, ok := deadline(); ok {
		ctx2, cancel2 := context.WithDeadline(ctx, dl)
		return ctx2, func() { cancel2(); cancel() }
	}
	return ctx, cancel
}

// testDeadline is t.Deadline() (only *testing.T has it) less a margin, so
// that contexts derived from it fail with a readable error and leave time for
// cleanup before `go test -timeout` panics.
func testDeadline(t testing.TB) (time.Time, bool) {
	d, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return time.Time{}, false
	}
	dl, ok := d.Deadline()
	if !ok {
		return time.Time{}, false
	}
	margin := min(time.Until(dl)/10, 10*time.Second)
	return dl.Add(-margin), true
}

// tailBuffer keeps the last max bytes written to it; it collects a child's
// stdout and stderr for dumping when a test fails.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// process is one run of a service binary.
type process struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
}

func startProcess(name, bin string, args, env []string, dir string, log *tailBuffer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = log
	cmd.Stderr = log
	// Bounds Wait if a grandchild keeps the output pipe open.
	cmd.WaitDelay = 2 * time.Second
	setProcAttr(cmd)
	fmt.Fprintf(log, "--- testenv: %s %s\n", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start %s: %w", name, err)
	}
	raiseFileLimit(cmd.Process.Pid)
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM so the service shuts down cleanly (Mosquitto writes its
// persistence file then), and kills it if it has not exited within grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("testenv: %s ignored SIGTERM for %v and was killed", p.name, grace)
	}
}

// errExited reports that the process ended before it became ready.
var errExited = errors.New("exited before it was ready")

// waitReady polls probe until it succeeds, the process exits or ctx ends.
func (p *process) waitReady(ctx context.Context, probe func(context.Context) error) error {
	const interval = 10 * time.Millisecond
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("testenv: %s %w (%v)", p.name, errExited, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("testenv: %s not ready: %w (last probe: %v)", p.name, ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// dialProbe succeeds once addr accepts TCP connections.
func dialProbe(addr string) func(context.Context) error {
	var d net.Dialer
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// addrInUse reports whether a failed start lost its port to another process.
func addrInUse(log *tailBuffer) bool {
	return strings.Contains(strings.ToLower(log.String()), "address already in use")
}

// writeFile writes a config file, failing the test on error.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("testenv: write %s: %v", filepath.Base(path), err)
	}
}
