package live

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Limits of one datagram sent with UDP segmentation offload: the kernel
// takes at most 64 segments, and their sum is one IP packet.
const (
	maxSegments = 64
	maxGSOBytes = 65000
)

// batchWriter sends a viewer's datagrams in one sendmmsg: each run of
// datagrams of one size (and a shorter one ending it) is one message with
// UDP segmentation offload (Linux 4.18), which the kernel cuts into the
// datagrams; without it, each datagram is a message.
type batchWriter struct {
	pc *ipv4.PacketConn

	mu   sync.Mutex // several outboxes may share a socket (one UDP port for all)
	gso  bool
	msgs []ipv4.Message
	segs []int // datagrams in each message
	bufs [][]byte
	oob  []byte
}

func newBatchWriter(c *net.UDPConn) *batchWriter {
	w := &batchWriter{pc: ipv4.NewPacketConn(c)}
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			w.gso = err == nil
		})
	}
	return w
}

// send sends the datagrams held for to, in order, and says how many of
// them the kernel refused.
func (w *batchWriter) send(to netip.AddrPort, data []byte, sizes []int) (unsent int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	addr := net.UDPAddrFromAddrPort(to)
	for {
		w.build(addr, data, sizes)
		unsent, err = w.write()
		// A device without checksum offload refuses segmentation offload:
		// send those one by one from now on.
		if err == nil || !w.gso || !errors.Is(err, unix.EIO) {
			return unsent, err
		}
		w.gso = false
	}
}

// build makes the messages.
func (w *batchWriter) build(addr *net.UDPAddr, data []byte, sizes []int) {
	w.msgs, w.segs, w.bufs, w.oob = w.msgs[:0], w.segs[:0], w.bufs[:0], w.oob[:0]
	space := unix.CmsgSpace(2)
	for off, i := 0, 0; i < len(sizes); {
		size, n, total := sizes[i], 1, sizes[i]
		for w.gso && i+n < len(sizes) && n < maxSegments && total+sizes[i+n] <= maxGSOBytes && sizes[i+n] <= size {
			total += sizes[i+n]
			n++
			if sizes[i+n-1] < size {
				break // only the last segment may be shorter
			}
		}
		w.bufs = append(w.bufs, data[off:off+total])
		m := ipv4.Message{Buffers: w.bufs[len(w.bufs)-1:], Addr: addr}
		if n > 1 {
			at := len(w.oob)
			w.oob = append(w.oob, make([]byte, space)...)
			h := (*unix.Cmsghdr)(unsafe.Pointer(&w.oob[at]))
			h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&w.oob[at+unix.CmsgLen(0)])) = uint16(size)
			m.OOB = w.oob[at : at+space]
		}
		w.msgs, w.segs = append(w.msgs, m), append(w.segs, n)
		off += total
		i += n
	}
}

// write sends the messages built, as many calls as the kernel needs; on
// an error, it says how many datagrams were not sent.
func (w *batchWriter) write() (unsent int, err error) {
	for done := 0; done < len(w.msgs); {
		n, err := w.pc.WriteBatch(w.msgs[done:], 0)
		if err != nil {
			for _, k := range w.segs[done:] {
				unsent += k
			}
			return unsent, err
		}
		done += n
	}
	return 0, nil
}
