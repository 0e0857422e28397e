package testenv

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream connects a client to the NATS servers at urls (comma-separated)
// for the test, closed when it ends; js.Conn() is its connection.
func JetStream(t testing.TB, urls string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatalf("testenv: connect to NATS at %s: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: JetStream: %v", err)
	}
	return js
}

// NATSServer is a NATS server with JetStream started for one test.
type NATSServer struct {
	srv  *server.Server
	opts *server.Options // the server's own: it writes the ports it listens on
}

// NATS starts a NATS server with JetStream and an MQTT listener (as
// agents reach a clustered city), in the test process (the nats-server
// module: no binary to install), on free 127.0.0.1 ports with its store
// in t.TempDir(), and shuts it down in t.Cleanup.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	n := startNATS(t, natsOptions(t, "test"))
	waitNATS(t, n)
	return n
}

func natsOptions(t testing.TB, name string) *server.Options {
	return &server.Options{
		ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		// A port the server picks: one picked here could be taken by
		// another test's server before this one listens.
		MQTT: server.MQTTOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT},
	}
}

func startNATS(t testing.TB, opts *server.Options) *NATSServer {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testenv: NATS %s: %v", opts.ServerName, err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &NATSServer{srv: srv, opts: opts}
}

// waitNATS waits until n listens; the machine may be busy with other
// tests' servers.
func waitNATS(t testing.TB, n *NATSServer) {
	t.Helper()
	if !n.srv.ReadyForConnections(30 * time.Second) {
		t.Fatalf("testenv: NATS %s did not accept connections in 30s", n.srv.Name())
	}
}

// URL is the server's client URL (nats://127.0.0.1:port).
func (n *NATSServer) URL() string { return n.srv.ClientURL() }

// MQTTURL is the server's MQTT listener (tcp://127.0.0.1:port), once
// it listens.
func (n *NATSServer) MQTTURL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", n.opts.MQTT.Port) }

// Stop shuts the server down, as a node of a cluster dies.
func (n *NATSServer) Stop() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// NATSCluster is a cluster of NATS servers with JetStream, in the test
// process, each with its own MQTT listener and store.
type NATSCluster struct {
	Nodes []*NATSServer
}

// StartNATSCluster starts n routed NATS servers (a JetStream cluster
// whose replicated streams survive one node) and waits until JetStream
// has a leader.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	routes := make([]string, n)
	opts := make([]*server.Options, n)
	for i := range n {
		opts[i] = natsOptions(t, fmt.Sprintf("node-%d", i+1))
		opts[i].Cluster = server.ClusterOpts{Name: "citywatch-test", Host: "127.0.0.1", Port: FreePort(t)}
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", opts[i].Cluster.Port)
	}
	c := &NATSCluster{}
	for i := range n {
		opts[i].Routes = server.RoutesFromStr(strings.Join(routes, ","))
		c.Nodes = append(c.Nodes, startNATS(t, opts[i]))
	}
	for _, node := range c.Nodes {
		waitNATS(t, node)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, node := range c.Nodes {
			ready = ready && node.srv.JetStreamIsClustered() && node.srv.JetStreamIsCurrent()
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("testenv: the NATS cluster's JetStream has no leader after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// URLs are the nodes' client URLs, comma-separated.
func (c *NATSCluster) URLs() string { return c.join((*NATSServer).URL) }

// MQTTURLs are the nodes' MQTT listeners, comma-separated.
func (c *NATSCluster) MQTTURLs() string { return c.join((*NATSServer).MQTTURL) }

func (c *NATSCluster) join(f func(*NATSServer) string) string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = f(n)
	}
	return strings.Join(out, ",")
}
