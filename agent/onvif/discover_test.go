package onvif_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/sim"
)

// TestDiscover probes two simulated cameras' discovery ports (on loopback,
// as the multicast group would reach them on a LAN) and one that answers
// garbage: the two cameras are found with their device service, name and
// model; the garbage is skipped and counted.
func TestDiscover(t *testing.T) {
	group := listen(t) // stands in for the multicast group: it forwards each probe to the cameras
	cams := []struct {
		endpoint, xaddr, name string
		o                     *sim.ONVIF
	}{
		{"urn:uuid:0c8b5a44-0000-4000-8000-000000000001", "http://192.0.2.11/onvif/device_service", "Gate east", &sim.ONVIF{Info: onvif.Info{Model: "DS-2CD2T47G2-L"}}},
		{"urn:uuid:0c8b5a44-0000-4000-8000-000000000002", "http://192.0.2.12/onvif/device_service", "Hall 大厅", &sim.ONVIF{Info: onvif.Info{Model: "IPC-HFW2431S"}}},
	}
	var ports []net.PacketConn
	for _, c := range cams {
		conn := listen(t)
		go c.o.ServeDiscovery(conn, c.endpoint, c.xaddr, c.name)
		ports = append(ports, conn)
	}
	go func() {
		buf := make([]byte, 64<<10)
		n, from, err := group.ReadFrom(buf)
		if err != nil {
			return
		}
		for _, p := range ports {
			// Each camera answers the prober itself, from its own port.
			relay := listen(t)
			go func() {
				b := make([]byte, 64<<10)
				m, _, err := relay.ReadFrom(b)
				if err == nil {
					relay.WriteTo(b[:m], from)
				}
			}()
			relay.WriteTo(buf[:n], p.LocalAddr())
		}
		group.WriteTo([]byte("<not a discovery answer"), from)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	found, skipped, err := onvif.Discover(ctx, group.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || skipped != 1 {
		t.Fatalf("found %+v, skipped %d; want the two cameras and one skipped", found, skipped)
	}
	for _, c := range cams {
		i := 0
		if found[0].Endpoint != c.endpoint {
			i = 1
		}
		f := found[i]
		if f.Endpoint != c.endpoint || len(f.XAddrs) != 1 || f.XAddrs[0] != c.xaddr || f.Name != c.name || f.Hardware != c.o.Info.Model {
			t.Errorf("found %+v, want %s at %s named %q (%s)", f, c.endpoint, c.xaddr, c.name, c.o.Info.Model)
		}
	}
}

func listen(t *testing.T) net.PacketConn {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
