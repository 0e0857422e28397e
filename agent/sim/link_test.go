package sim

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer stands in for the broker: it echoes every line back.
func echoServer(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return ln
}

// roundTrip connects through the link and reports whether a line echoes.
func roundTrip(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return c, false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return c, err == nil && line == "ping\n"
}

func TestLink(t *testing.T) {
	l := newLink([]string{echoServer(t).Addr().String()}, testLogger(t))
	if err := l.start(); err != nil {
		t.Fatal(err)
	}
	defer l.close()

	c, ok := roundTrip(t, l.addrs()[0])
	if !ok {
		t.Fatal("no relay")
	}

	l.cut(time.Hour)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection survived the cut")
	}
	if _, ok := roundTrip(t, l.addrs()[0]); ok {
		t.Fatal("relayed during the down window")
	}
	l.restore()
	if _, ok := roundTrip(t, l.addrs()[0]); !ok {
		t.Fatal("no relay after restore")
	}

	// A short window ends by itself.
	l.cut(50 * time.Millisecond)
	waitFor(t, "the window to end", func() bool {
		c, ok := roundTrip(t, l.addrs()[0])
		c.Close()
		return ok
	})
}
