package live

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"
)

// relaySockets is the relay's network, as newAPIs makes it.
func relaySockets(t *testing.T) *sockets {
	t.Helper()
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	return &sockets{Net: std}
}

// listen opens one of the relay's sockets on loopback.
func (s *sockets) listen(t *testing.T) *batchConn {
	t.Helper()
	c, err := s.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*batchConn)
}

// peer is a viewer's socket: it reads datagrams.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadBuffer(1 << 20)
	return &peer{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// read returns the next n datagrams.
func (p *peer) read(n int) [][]byte {
	p.t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	for range n {
		p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := p.conn.Read(buf)
		if err != nil {
			p.t.Fatalf("after %d of %d datagrams: %v", len(out), n, err)
		}
		out = append(out, bytes.Clone(buf[:m]))
	}
	return out
}

// datagram is size bytes of id.
func datagram(id byte, size int) []byte { return bytes.Repeat([]byte{id}, size) }

// While a viewer's outbox is held, datagrams to it through the socket it
// holds wait and then leave in order; others go at once: to another
// address, through another socket, or when it is not held.
func TestOutbox(t *testing.T) {
	s := relaySockets(t)
	c, other := s.listen(t), s.listen(t)
	v, w := newPeer(t), newPeer(t)
	o := &outbox{to: v.addr}
	s.outboxes.Store(o.to, o)
	write := func(c *batchConn, to *peer, d []byte) {
		t.Helper()
		if n, err := c.WriteToAddrPort(d, to.addr); n != len(d) || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
	}

	write(c, v, datagram(1, 100))
	if got := v.read(1); !bytes.Equal(got[0], datagram(1, 100)) {
		t.Fatalf("not held: got %v", got)
	}
	o.hold()
	write(c, v, datagram(2, 1180))
	write(c, v, datagram(3, 1180))
	write(c, w, datagram(4, 50))     // another viewer
	write(other, v, datagram(5, 60)) // another socket
	if _, err := c.WriteTo(datagram(6, 1180), net.UDPAddrFromAddrPort(v.addr)); err != nil {
		t.Fatal(err)
	}
	if got := w.read(1); !bytes.Equal(got[0], datagram(4, 50)) {
		t.Fatalf("another viewer's datagram: %v", got)
	}
	if got := v.read(1); !bytes.Equal(got[0], datagram(5, 60)) {
		t.Fatalf("through another socket: got %d bytes of %d first", len(got[0]), got[0][0])
	}
	if unsent, err := o.flush(); err != nil || unsent != 0 {
		t.Fatalf("flush: %d unsent, %v", unsent, err)
	}
	for i, d := range v.read(3) {
		if want := datagram([]byte{2, 3, 6}[i], 1180); !bytes.Equal(d, want) {
			t.Errorf("datagram %d held: %d bytes of %d, want %d of %d", i, len(d), d[0], len(want), want[0])
		}
	}
	if unsent, err := o.flush(); err != nil || unsent != 0 {
		t.Fatalf("an empty flush: %d unsent, %v", unsent, err)
	}
}
