package live

import (
	"net"
	"net/netip"
	"sync"

	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// Batched sends. Each packet pion sends is one sendto system call, and on
// the hub that call is most of a viewer's cost. So every UDP socket pion
// opens for the relay is a batchConn, and a viewer's writer holds its
// viewer's address while it sends an access unit: the datagrams wait in
// the viewer's outbox, and leave together when it is flushed, in one
// sendmmsg with UDP segmentation offload where the kernel has it
// (outbox_linux.go). Datagrams to an address nobody holds, or sent through
// another socket than the first one held, go at once, as before.

// sockets is the relay's network for pion: the standard one, with every
// UDP socket a batchConn.
type sockets struct {
	transport.Net
	outboxes sync.Map // netip.AddrPort → *outbox, by viewer address
}

// ListenUDP implements transport.Net.
func (s *sockets) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := s.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if uc, ok := c.(*net.UDPConn); ok {
		return s.wrap(uc), nil
	}
	return c, nil
}

func (s *sockets) wrap(c *net.UDPConn) *batchConn {
	return &batchConn{UDPConn: c, s: s, batch: newBatchWriter(c)}
}

// open returns an outbox for the viewer's address, the remote end of its
// selected ICE candidate pair, or nil when its packets cannot wait in one:
// the pair is unknown, or another viewer has that address (a player that
// multiplexes its sessions on one port). An outbox follows one address:
// should ICE pick another pair, packets go one by one.
func (s *sockets) open(sender *webrtc.RTPSender) *outbox {
	dtls := sender.Transport()
	if dtls == nil {
		return nil
	}
	pair, err := dtls.ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Remote == nil {
		return nil
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return nil
	}
	o := &outbox{to: netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port)}
	if _, taken := s.outboxes.LoadOrStore(o.to, o); taken {
		return nil
	}
	return o
}

// close forgets o.
func (s *sockets) close(o *outbox) { s.outboxes.CompareAndDelete(o.to, o) }

// batchConn is a UDP socket of pion's whose datagrams to a held address
// wait in that address's outbox.
type batchConn struct {
	*net.UDPConn
	s     *sockets
	batch *batchWriter
}

// WriteToAddrPort is what pion's ICE sends with.
func (c *batchConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if o, ok := c.s.outboxes.Load(to); ok && o.(*outbox).put(c, b) {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

// WriteTo implements net.PacketConn.
func (c *batchConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if ua, ok := to.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(b, ua.AddrPort())
	}
	return c.UDPConn.WriteTo(b, to)
}

// ReadFromAddrPort is what pion's ICE reads with.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

// outbox holds a viewer's datagrams while its writer sends an access unit.
type outbox struct {
	to netip.AddrPort

	mu    sync.Mutex
	held  bool
	conn  *batchConn // the socket of the datagrams held
	data  []byte     // the datagrams held, back to back
	sizes []int
}

// hold makes datagrams to the viewer wait.
func (o *outbox) hold() {
	o.mu.Lock()
	o.held = true
	o.mu.Unlock()
}

// put keeps a copy of b if the outbox is held and b goes through the same
// socket as what it holds.
func (o *outbox) put(c *batchConn, b []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.held || (o.conn != nil && o.conn != c) {
		return false
	}
	o.conn = c
	o.data = append(o.data, b...)
	o.sizes = append(o.sizes, len(b))
	return true
}

// flush sends what waits and lets datagrams go at once again. What the
// kernel refuses is lost, as on a lossy link (the viewer may ask for it
// again); flush says how many datagrams that was, to be counted.
func (o *outbox) flush() (unsent int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.held = false
	if len(o.sizes) == 0 {
		return 0, nil
	}
	unsent, err = o.conn.batch.send(o.to, o.data, o.sizes)
	o.conn, o.data, o.sizes = nil, o.data[:0], o.sizes[:0]
	return unsent, err
}
