package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// NATSProc is a NATS server with JetStream and an MQTT listener in a
// process of its own, built from the nats-server module this repository
// requires (Debian's is too old for the agents' stream's partitioning).
// A test whose own process is busy uses it — the race detector slows
// every goroutine of the test's process, an embedded server's too, until
// JetStream stops answering in time — so that the server runs as it does
// in the field.
type NATSProc struct {
	port, mqttPort int
}

// NATSProcess builds and starts a NATS server on free 127.0.0.1 ports with
// its store in a directory of the test's, and stops it when the test ends.
func NATSProcess(t testing.TB) *NATSProc {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("testenv: building nats-server: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ports := freePorts(t, 2)
	n := &NATSProc{port: ports[0], mqttPort: ports[1]}
	conf := filepath.Join(dir, "nats.conf")
	writeFile(t, conf, fmt.Sprintf("server_name: test\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\nmqtt { listen: 127.0.0.1:%d }\n",
		n.port, filepath.Join(dir, "store"), n.mqttPort))
	log := newTailBuffer(64 << 10)
	p, err := startProcess("nats-server", bin, []string{"-c", conf}, os.Environ(), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Shutting JetStream down with a thousand MQTT sessions in it can
		// take longer; what it does then no longer matters to the test.
		if err := p.stop(30 * time.Second); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			t.Logf("testenv: nats-server log:\n%s", log)
		}
	})
	ctx, cancel := startupTimeout(t, 30*time.Second)
	defer cancel()
	for _, port := range ports {
		if err := p.waitReady(ctx, dialProbe(fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
			t.Fatalf("testenv: nats-server not ready: %v\n%s", err, log)
		}
	}
	return n
}

// URL is the server's client URL.
func (n *NATSProc) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// MQTTURL is the server's MQTT listener.
func (n *NATSProc) MQTTURL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", n.mqttPort) }
