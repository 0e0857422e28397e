package live

import (
	"bytes"
	"fmt"
	"testing"
)

// The datagrams of a flush arrive as they were written, with segmentation
// offload and without: runs of one size, a shorter one ending a run, runs
// longer than the kernel takes in one message, sizes that rise.
func TestBatchWriterSegments(t *testing.T) {
	var sizes []int
	for range 70 {
		sizes = append(sizes, 1180)
	}
	sizes = append(sizes, 600, 1180, 1180, 100, 1180, 40, 1200, 1180)
	for _, gso := range []bool{true, false} {
		t.Run(fmt.Sprintf("gso=%t", gso), func(t *testing.T) {
			s := relaySockets(t)
			c := s.listen(t)
			if gso && !c.batch.gso {
				t.Log("the kernel has no UDP segmentation offload: the writer falls back to one message a datagram")
			}
			c.batch.gso = gso
			p := newPeer(t)
			var data []byte
			for i, n := range sizes {
				data = append(data, datagram(byte(i), n)...)
			}
			if unsent, err := c.batch.send(p.addr, data, sizes); err != nil || unsent != 0 {
				t.Fatalf("send: %d unsent, %v", unsent, err)
			}
			for i, d := range p.read(len(sizes)) {
				if want := datagram(byte(i), sizes[i]); !bytes.Equal(d, want) {
					t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, len(d), d[0], len(want), want[0])
				}
			}
		})
	}
}

// What the kernel refuses is counted, datagram by datagram: here the
// third message is larger than UDP allows, so it and the one after it are
// not sent, and the two before it are.
func TestBatchWriterCountsRefused(t *testing.T) {
	s := relaySockets(t)
	c := s.listen(t)
	c.batch.gso = false
	p := newPeer(t)
	sizes := []int{100, 200, 70000, 300}
	var data []byte
	for i, n := range sizes {
		data = append(data, datagram(byte(i), n)...)
	}
	unsent, err := c.batch.send(p.addr, data, sizes)
	if err == nil || unsent != 2 {
		t.Fatalf("send of an oversized datagram: %d unsent, error %v; want 2 and an error", unsent, err)
	}
	for i, d := range p.read(2) {
		if want := datagram(byte(i), sizes[i]); !bytes.Equal(d, want) {
			t.Fatalf("datagram %d: %d bytes, want %d", i, len(d), len(want))
		}
	}
}
