package testenv

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer is a NATS server with JetStream started for one test.
type NATSServer struct {
	srv      *server.Server
	mqttPort int
}

// NATS starts a NATS server with JetStream and an MQTT listener (as
// agents reach a clustered city), in the test process (the nats-server
// module: no binary to install), on free 127.0.0.1 ports with its store
// in t.TempDir(), and shuts it down in t.Cleanup.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	mqttPort := FreePort(t)
	srv, err := server.NewServer(&server.Options{
		ServerName: "test", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		MQTT: server.MQTTOpts{Host: "127.0.0.1", Port: mqttPort},
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
	return &NATSServer{srv: srv, mqttPort: mqttPort}
}

// URL is the server's client URL (nats://127.0.0.1:port).
func (n *NATSServer) URL() string { return n.srv.ClientURL() }

// MQTTURL is the server's MQTT listener (tcp://127.0.0.1:port).
func (n *NATSServer) MQTTURL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", n.mqttPort) }
