package testenv

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer is a NATS server with JetStream started for one test.
type NATSServer struct {
	srv *server.Server
}

// NATS starts a NATS server with JetStream, in the test process (the
// nats-server module: no binary to install), on a free 127.0.0.1 port
// with its store in t.TempDir(), and shuts it down in t.Cleanup.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "test-" + t.Name(), Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatalf("testenv: NATS: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("testenv: NATS did not accept connections in 10s")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &NATSServer{srv: srv}
}

// URL is the server's client URL (nats://127.0.0.1:port).
func (n *NATSServer) URL() string { return n.srv.ClientURL() }
