//go:build !linux

package live

import (
	"net"
	"net/netip"
)

// batchWriter sends a viewer's datagrams one by one: batched sends are
// Linux's (outbox_linux.go).
type batchWriter struct{ c *net.UDPConn }

func newBatchWriter(c *net.UDPConn) *batchWriter { return &batchWriter{c: c} }

// send sends the datagrams held for to, in order, and says how many of
// them the kernel refused.
func (w *batchWriter) send(to netip.AddrPort, data []byte, sizes []int) (unsent int, err error) {
	for i, n := range sizes {
		if _, err := w.c.WriteToUDPAddrPort(data[:n], to); err != nil {
			return len(sizes) - i, err
		}
		data = data[n:]
	}
	return 0, nil
}
