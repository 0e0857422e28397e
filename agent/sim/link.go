package sim

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// link is one agent's network path to the broker: a local TCP port that
// relays to the broker (one per broker of a cluster) and that the simulator can cut like a failing site
// uplink. Cutting closes both sides abruptly, so the broker publishes the
// agent's Last Will and the agent's MQTT client reconnects on its own;
// during a down window new connections are accepted and dropped at once,
// so the reconnects fail and the client backs off, as behind a dead router.
// Working below MQTT keeps the agent unaware of the simulation.
type link struct {
	brokers []string // host:port, the brokers of a cluster: one relay port each
	log     *slog.Logger

	lns []net.Listener // set by start (one per broker), closed by close
	wg  sync.WaitGroup

	mu        sync.Mutex
	conns     map[net.Conn]struct{} // both ends of every relayed connection
	downUntil time.Time
	closed    bool
}

func newLink(brokers []string, logger *slog.Logger) *link {
	return &link{brokers: brokers, log: logger, conns: make(map[net.Conn]struct{})}
}

// start listens on a free loopback port per broker and relays until close.
func (l *link) start() error {
	for _, b := range l.brokers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		l.lns = append(l.lns, ln)
		l.wg.Add(1)
		go l.accept(ln, b)
	}
	return nil
}

// addrs are where the agent connects instead of the brokers, in order.
func (l *link) addrs() []string {
	out := make([]string, len(l.lns))
	for i, ln := range l.lns {
		out[i] = ln.Addr().String()
	}
	return out
}

func (l *link) accept(ln net.Listener, broker string) {
	defer l.wg.Done()
	for {
		agent, err := ln.Accept()
		if err != nil {
			return // closed
		}
		l.mu.Lock()
		refuse := l.closed || time.Now().Before(l.downUntil)
		l.mu.Unlock()
		if refuse {
			agent.Close()
			continue
		}
		l.wg.Add(1)
		go l.relay(agent, broker)
	}
}

func (l *link) relay(agent net.Conn, to string) {
	defer l.wg.Done()
	broker, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		l.log.Warn("link: broker unreachable", "err", err)
		agent.Close()
		return
	}
	if !l.track(agent, broker) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		// MQTT packets are small; a small buffer keeps thousands of links cheap.
		_, _ = io.CopyBuffer(dst, src, make([]byte, 4096))
		// Pass the end on as a half-close: closing dst outright could
		// reset it with data unread, and a reset can lose the agent's
		// DISCONNECT on its way to the broker, which would then publish
		// the Last Will of an agent that left cleanly.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(broker, agent)
	go pipe(agent, broker)
	<-done
	<-done
	l.untrack(agent, broker)
}

// track registers a relayed pair; it refuses (and closes) it if the link
// was cut or closed while the broker was being dialled.
func (l *link) track(agent, broker net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || time.Now().Before(l.downUntil) {
		agent.Close()
		broker.Close()
		return false
	}
	l.conns[agent] = struct{}{}
	l.conns[broker] = struct{}{}
	return true
}

func (l *link) untrack(conns ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(l.conns, c)
	}
}

// cut drops every relayed connection now and refuses new ones for d.
func (l *link) cut(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.downUntil = time.Now().Add(d)
	for c := range l.conns {
		c.Close()
	}
}

// restore ends a down window early.
func (l *link) restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.downUntil = time.Time{}
}

// closeGrace is how long close lets relayed connections end by themselves.
const closeGrace = 2 * time.Second

// close stops accepting, lets the relayed connections finish for a moment
// and then cuts what is left. The moment matters: an agent that has just
// said goodbye has closed its socket, but its DISCONNECT may still be on
// its way through the relay, and cutting it would make the broker publish
// the Last Will of an agent that left cleanly.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	for _, ln := range l.lns {
		ln.Close()
	}
	drained := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		return
	case <-time.After(closeGrace):
	}
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	<-drained
}
