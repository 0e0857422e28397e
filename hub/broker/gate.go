package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// gate is the broker's mochi listener. It stands in for mochi's own
// (listeners.Net) to bound what a client can hold before it has
// authenticated — mochi sets no deadline until it has read CONNECT and
// counts only authenticated clients against a limit, so one host could park
// any number of silent connections — and to shut down cleanly: it closes
// every connection it accepted and waits for mochi to finish with each,
// which mochi's listener does not do for clients still in CONNECT.
type gate struct {
	id      string
	ln      net.Listener
	tls     *tls.Config // nil: plain MQTT
	timeout time.Duration
	max     int64
	refused func(reason, remote string)
	// disconnect ends the sessions of the listener's clients gracefully.
	disconnect func(listener string)
	log        *slog.Logger

	pending   atomic.Int64 // accepted, no CONNECT answered yet
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	open    map[*gatedConn]struct{}
	serving sync.WaitGroup // connections handed to mochi and not yet done
}

var _ listeners.Listener = (*gate)(nil)

func (g *gate) ID() string              { return g.id }
func (g *gate) Address() string         { return g.ln.Addr().String() }
func (g *gate) Protocol() string        { return "tcp" }
func (g *gate) Init(*slog.Logger) error { return nil }

// Serve hands each accepted connection to mochi until the gate is closed.
func (g *gate) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := g.accept()
		if err != nil {
			return
		}
		go func() {
			defer g.serving.Done()
			// The error only says how the connection ended: refusals are
			// counted and logged by the access hook, and a client dropping
			// its connection is routine (the hub sees its Last Will).
			_ = establish(g.id, conn)
		}()
	}
}

// accept returns the next connection that fits under the pending limit,
// with a deadline for its TLS handshake and CONNECT (mochi replaces it with
// the keepalive once the client is admitted). It fails only once the gate
// is closed: transient errors (out of file descriptors) are waited out.
func (g *gate) accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := g.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.log.Warn("MQTT accept failed; retrying", "addr", g.Address(), "error", err, "retry_in", backoff)
			select {
			case <-g.done:
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if g.pending.Add(1) > g.max {
			g.pending.Add(-1)
			g.refused(refusedPending, c.RemoteAddr().String())
			c.Close()
			continue
		}
		_ = c.SetDeadline(time.Now().Add(g.timeout))
		gc := &gatedConn{Conn: c, gate: g}
		if !g.track(gc) {
			gc.Close()
			return nil, net.ErrClosed
		}
		if g.tls != nil {
			return tls.Server(gc, g.tls), nil
		}
		return gc, nil
	}
}

// track records an open connection that is about to be served; false once
// the gate is closed. Counting it under the lock that Close takes first
// keeps every Add before Close's Wait.
func (g *gate) track(c *gatedConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.open[c] = struct{}{}
	g.serving.Add(1)
	return true
}

func (g *gate) untrack(c *gatedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.open, c)
}

// Close disconnects the listener's clients, stops accepting, closes every
// connection still open and waits until mochi is done with them. It
// ignores mochi's CloseFn: that finds the clients through
// Clients.GetByListener, which read-locks the client map twice and so
// deadlocks against a client connecting or leaving at that moment (mochi
// v2.7.9).
func (g *gate) Close(listeners.CloseFn) {
	g.closeOnce.Do(func() {
		close(g.done)
		g.disconnect(g.id)
		_ = g.ln.Close()
		g.mu.Lock()
		g.closed = true
		conns := make([]*gatedConn, 0, len(g.open))
		for c := range g.open {
			conns = append(conns, c)
		}
		g.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		g.serving.Wait()
	})
}

// gatedConn is a connection counted as pending until its CONNECT has been
// answered (settle) or it closes.
type gatedConn struct {
	net.Conn
	gate    *gate
	settled atomic.Bool
}

// settle takes the connection off the pending count, once.
func (c *gatedConn) settle() bool {
	if !c.settled.CompareAndSwap(false, true) {
		return false
	}
	c.gate.pending.Add(-1)
	return true
}

// Close counts a connection that ends before its CONNECT was answered.
func (c *gatedConn) Close() error {
	if c.settle() {
		c.gate.refused(refusedNoConnect, c.RemoteAddr().String())
	}
	c.gate.untrack(c)
	return c.Conn.Close()
}

// gated finds the gatedConn under a connection mochi holds.
func gated(conn net.Conn) *gatedConn {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	gc, _ := conn.(*gatedConn)
	return gc
}
