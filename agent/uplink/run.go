package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/wire"
)

// Run connects (retrying with backoff until it succeeds) and publishes
// until ctx ends. Then it flushes what it can, publishes a retained clean
// offline state (Will false, so the hub knows the agent stopped on
// purpose) and disconnects, all within the shutdown timeout. Run must be
// called once.
func (c *Client) Run(ctx context.Context) error {
	acks := make(chan paho.Token, maxInFlight)
	ackCtx, stopAcks := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.countAcks(ackCtx, acks) })
	wg.Go(func() { c.runCommands(ctx) })
	defer func() {
		stopAcks()
		wg.Wait()
	}()

	// With ConnectRetry the token completes once connected and resumed.
	tok := c.mqtt.Connect()
	c.mu.Lock()
	c.connectTok = tok
	c.mu.Unlock()
	connected := tok.Done()
	for {
		c.drain(ctx, acks)
		select {
		case <-ctx.Done():
			return c.shutdown(acks)
		case <-c.queue.wake:
		case <-connected:
			connected = nil
		}
	}
}

// drain publishes while the connection is ready: the birth message and
// the inventory first on a new connection, then any new inventory, then
// the queue in order. Acknowledgements are left to countAcks.
func (c *Client) drain(ctx context.Context, acks chan<- paho.Token) {
	for ctx.Err() == nil {
		tok, ok := c.sendNext()
		if !ok {
			return
		}
		if tok == nil {
			continue
		}
		select {
		case acks <- tok:
		case <-ctx.Done():
			return
		}
	}
}

// sendNext hands the next message to paho and returns its token (nil when
// the message could not be encoded); false means nothing more can be sent
// now. It holds c.publishing from the readiness check to the end of the
// Publish call, so that a reconnect (see onReconnecting) cannot slip in
// between and let a message onto the new connection ahead of its birth.
func (c *Client) sendNext() (paho.Token, bool) {
	c.publishing.Lock()
	defer c.publishing.Unlock()
	if !c.mqtt.IsConnectionOpen() {
		return nil, false
	}
	c.mu.Lock()
	birth, conn := c.needBirth, c.conns
	ready := c.ready || (birth && c.resumed(conn))
	if ready && birth {
		c.invDirty = c.inventory != nil
	}
	c.mu.Unlock()
	switch {
	case !ready:
		return nil, false // between a drop and the next connect, or resuming
	case birth:
		tok, ok := c.publish(c.topics.state, true, c.state(wire.AgentOnline, false, conn))
		if ok {
			c.mu.Lock()
			if c.conns == conn { // still the same connection
				c.needBirth, c.ready = false, true
			}
			c.mu.Unlock()
		}
		return tok, ok
	}
	if inv := c.takeInventory(); inv != nil {
		tok, ok := c.publish(c.topics.inventory, true, inv)
		if !ok {
			c.mu.Lock()
			c.invDirty = true
			c.mu.Unlock()
		}
		return tok, ok
	}
	it, ok := c.queue.pop()
	if !ok {
		return nil, false
	}
	topic, msg := c.message(it)
	tok, ok := c.publish(topic, false, msg)
	switch {
	case !ok:
		c.queue.pushFront(it)
	case len(it.health) > 1:
		it.health = it.health[1:] // the other parts of the report go next
		c.queue.pushFront(it)
	}
	return tok, ok
}

// resumed reports whether paho has resent the stored messages on
// connection n, so that the birth can follow them; c.mu must be held.
func (c *Client) resumed(n uint32) bool {
	if n > 1 {
		return c.store.listings.Load() > c.listingsBefore && !c.store.unacknowledged()
	}
	select {
	case <-c.connectTok.Done():
		return true
	default:
		return false
	}
}

// takeInventory returns the inventory to publish, if it changed.
func (c *Client) takeInventory() *wire.Inventory {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.invDirty {
		return nil
	}
	c.invDirty = false
	inv := *c.inventory
	inv.Header = c.header(time.Now())
	return &inv
}

func (c *Client) header(ts time.Time) wire.Header {
	return wire.Header{V: wire.Version, Agent: c.cfg.Agent, Boot: c.cfg.Boot.UnixMilli(), Seq: c.seq.Add(1), TS: ts}
}

// message fills the header of a queued item (the first part of a health
// report) at send time, so that sequence numbers follow the order of the
// wire.
func (c *Client) message(it item) (string, any) {
	switch {
	case it.event != nil:
		e := *it.event
		e.Header = c.header(it.ts)
		return c.topics.events, &e
	case it.live != nil:
		l := *it.live
		l.Header = c.header(it.ts)
		return c.topics.live, &l
	case it.snapshot != nil:
		s := *it.snapshot
		s.Header = c.header(it.ts)
		return c.topics.snapshot, &s
	}
	return c.topics.health, &wire.Health{Header: c.header(it.ts), Interval: c.cfg.Interval.Seconds(), Devices: it.health[0]}
}

// publish encodes msg and hands it to paho at QoS 1. It returns false when
// the connection went away under it, so the caller keeps the message for
// the next connection, and a nil token for a message that cannot be
// encoded (counted and logged: retrying cannot help it).
func (c *Client) publish(topic string, retained bool, msg any) (paho.Token, bool) {
	data, err := json.Marshal(msg)
	if err == nil && len(data) > wire.MaxPayload {
		err = fmt.Errorf("%d bytes exceed the hub's limit of %d", len(data), wire.MaxPayload)
	}
	if err != nil {
		c.failed.Add(1)
		c.log.Error("message not published", "topic", topic, "err", err)
		return nil, true
	}
	tok := c.mqtt.Publish(topic, 1, retained, data)
	select {
	case <-tok.Done():
		if errors.Is(tok.Error(), paho.ErrNotConnected) {
			return nil, false
		}
	default:
	}
	return tok, true
}

// countAcks waits for publish tokens in order. Waiting here rather than in
// the sender lets hundreds of messages be in flight at once instead of
// one per round trip.
func (c *Client) countAcks(ctx context.Context, acks <-chan paho.Token) {
	for {
		var tok paho.Token
		select {
		case <-ctx.Done():
			return
		case tok = <-acks:
		}
		select {
		case <-ctx.Done():
			return
		case <-tok.Done():
		}
		if err := tok.Error(); err != nil {
			c.failed.Add(1)
			if ok, n := c.failLog.allow(); ok {
				c.log.Warn("publish failed", "err", err, "suppressed", n)
			}
			continue
		}
		c.published.Add(1)
	}
}

// shutdown publishes the clean offline state and disconnects within the
// shutdown timeout. Without a connection there is nothing to do: the
// broker already holds the will of the last one.
func (c *Client) shutdown(acks chan<- paho.Token) error {
	deadline := time.Now().Add(c.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	c.drain(ctx, acks) // best effort: the queue may hold the last events

	c.mu.Lock()
	ready, conn := c.ready, c.conns
	c.mu.Unlock()
	var err error
	if ready && c.mqtt.IsConnectionOpen() {
		err = c.publishOffline(conn, deadline)
	}
	// Whatever time is left lets paho send the DISCONNECT; at least a
	// moment, so the broker discards the will instead of firing it.
	// Without a connection (a broker down or refusing the agent) there is
	// nothing to send, and paho would spend the whole wait on it.
	quiesce := 100 * time.Millisecond
	if c.mqtt.IsConnectionOpen() {
		quiesce = max(quiesce, time.Until(deadline))
	}
	c.mqtt.Disconnect(uint(quiesce.Milliseconds()))
	return err
}

func (c *Client) publishOffline(conn uint32, deadline time.Time) error {
	data, err := json.Marshal(c.state(wire.AgentOffline, false, conn))
	if err != nil {
		return fmt.Errorf("uplink: offline state: %w", err)
	}
	c.publishing.Lock()
	tok := c.mqtt.Publish(c.topics.state, 1, true, data)
	c.publishing.Unlock()
	if !tok.WaitTimeout(time.Until(deadline)) {
		return errors.New("uplink: offline state not acknowledged before the shutdown timeout")
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("uplink: offline state: %w", err)
	}
	return nil
}
