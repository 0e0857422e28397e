package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
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
	c.openSpool()
	defer c.closeSpool()
	acks := make(chan sent, maxInFlight)
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
	var paced <-chan time.Time // the backlog's next turn
	for {
		if wait := c.drain(ctx, acks); wait > 0 {
			paced = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return c.shutdown(acks)
		case <-c.queue.wake:
		case <-connected:
			connected = nil
		case <-paced:
			paced = nil
		}
	}
}

// openSpool opens the backlog on disk, if configured. Without it (a
// directory that cannot be made or locked) the agent runs on, its reports
// waiting in memory only.
func (c *Client) openSpool() {
	if c.cfg.SpoolBytes <= 0 {
		return
	}
	sp, stale, err := openSpool(spoolOptions{
		root: filepath.Join(c.cfg.SpoolDir, c.cfg.Agent), quota: c.cfg.SpoolBytes, segment: c.cfg.segmentSize,
		create: c.cfg.createSegment, drop: c.lost, counters: &c.spoolC,
	})
	if err != nil {
		c.spoolC.errors.Add(1)
		c.log.Error("spool unavailable; reports that cannot be sent wait in memory only", "err", err)
		return
	}
	c.spoolC.stale.Add(stale.health + stale.events)
	c.spoolC.corrupt.Add(stale.corrupt)
	if stale.health+stale.events+stale.corrupt > 0 {
		// An earlier boot's seqs would be rejected by the hub as replays.
		c.log.Warn("discarded what an earlier run left unsent in the spool",
			"health", stale.health, "events", stale.events, "corrupt", stale.corrupt)
	}
	if stale.inUse > 0 {
		c.log.Warn("another running process uses the spool directory; give each agent its own", "dir", c.cfg.SpoolDir)
	}
	c.lane.Lock()
	c.spool = sp
	c.lane.Unlock()
}

// closeSpool deletes this run's spool; what is still in it cannot be sent
// by a later run (see openSpool).
func (c *Client) closeSpool() {
	c.lane.Lock()
	sp := c.spool
	c.spool = nil
	c.lane.Unlock()
	if sp == nil {
		return
	}
	left, err := sp.close()
	if left > 0 {
		c.log.Warn("stopped with reports still in the spool; they are discarded", "reports", left)
	}
	if err != nil {
		c.log.Warn("spool directory not removed", "err", err)
	}
}

// sent is a message handed to paho.
type sent struct {
	tok       paho.Token
	conn      uint32 // the connection it was handed to
	backlog   bool   // from the spool
	inventory bool
	birth     bool
	// again is a report's message as an item of its own, to go again if
	// the publish fails (see publishFailed); empty for the other messages.
	again item
}

// drain publishes while the connection is ready: the birth message and
// the inventory first on a new connection, then any new inventory, then
// the fresh lane in order, then the backlog. Acknowledgements are left to
// countAcks. It returns how long until the backlog may go on, if its pace
// stopped it.
func (c *Client) drain(ctx context.Context, acks chan<- sent) time.Duration {
	defer func() { c.backlogWait = 0 }()
	for ctx.Err() == nil {
		s, ok := c.sendNext()
		if !ok {
			return c.backlogWait
		}
		if s.tok == nil {
			continue
		}
		select {
		case acks <- s:
		case <-ctx.Done():
			return 0
		}
	}
	return 0
}

// sendNext hands the next message to paho and returns its token (nil when
// the message could not be encoded); false means nothing more can be sent
// now. It holds c.publishing from the readiness check to the end of the
// Publish call, so that a reconnect (see onReconnecting) cannot slip in
// between and let a message onto the new connection ahead of its birth.
func (c *Client) sendNext() (sent, bool) {
	c.publishing.Lock()
	defer c.publishing.Unlock()
	if !c.mqtt.IsConnectionOpen() {
		c.lane.Lock()
		if c.spool != nil {
			c.spillLocked()
		}
		c.lane.Unlock()
		return sent{}, false
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
		return sent{}, false // between a drop and the next connect, or resuming
	case birth:
		tok, ok := c.publish(c.topics.state, true, c.state(wire.AgentOnline, false, conn))
		if ok {
			c.mu.Lock()
			if c.conns == conn { // still the same connection
				c.needBirth, c.ready = false, true
			}
			c.mu.Unlock()
		}
		return sent{tok: tok, conn: conn, birth: true}, ok
	}
	if inv := c.takeInventory(); inv != nil {
		tok, ok := c.publish(c.topics.inventory, true, inv)
		if !ok {
			c.mu.Lock()
			c.invDirty = true
			c.mu.Unlock()
		}
		return sent{tok: tok, inventory: true}, ok
	}
	if c.pending == nil {
		if it, ok := c.queue.pop(); ok {
			c.pending = &it
		}
	}
	if c.pending != nil {
		return c.sendFresh(conn)
	}
	return c.sendBacklog(conn)
}

// sendFresh sends the next message of the pending item. An item the
// connection dropped under stays pending, to go first on the next one.
func (c *Client) sendFresh(conn uint32) (sent, bool) {
	it := c.pending
	if why := c.stale(*it); why != "" {
		c.pending = nil
		c.lost(it.kind, 1, why)
		return sent{}, true
	}
	tok, ok := c.publishData(c.topicOf(it.kind), false, it.parts[0].data)
	if !ok {
		return sent{}, false
	}
	s := sent{tok: tok, conn: conn, again: partOf(*it, 0)}
	if it.parts = it.parts[1:]; len(it.parts) == 0 {
		c.pending = nil
	}
	return s, true
}

// sendBacklog sends the next message of the oldest spooled item, at the
// pace of c.resend; the item leaves the spool once all its messages are
// out.
func (c *Client) sendBacklog(conn uint32) (sent, bool) {
	if c.spool == nil {
		return sent{}, false
	}
	it, ok := c.spool.peek()
	if !ok {
		return sent{}, false
	}
	if why := c.stale(it); why != "" {
		c.spool.remove(it)
		c.lost(it.kind, 1, why)
		return sent{}, true
	}
	if wait := c.resend.take(c.cfg.now()); wait > 0 {
		c.backlogWait = wait
		return sent{}, false
	}
	i := 0
	if c.partial.first == it.parts[0].seq && c.partial.done < len(it.parts) {
		i = c.partial.done
	}
	tok, ok := c.publishData(c.topicOf(it.kind), false, it.parts[i].data)
	if !ok {
		return sent{}, false
	}
	c.partial.first, c.partial.done = it.parts[0].seq, i+1
	if i+1 == len(it.parts) {
		c.spool.remove(it)
		c.partial.first, c.partial.done = 0, 0
	}
	return sent{tok: tok, conn: conn, backlog: true, again: partOf(it, i)}, true
}

// partOf is message i of it as an item of its own, the unit that goes
// again after a failed publish. Live messages do not go again: a viewer's
// signalling is a short exchange that the hub abandons when an answer is
// late, and never waits in the backlog either.
func partOf(it item, i int) item {
	if !it.kind.spooled() {
		return item{}
	}
	it.parts = it.parts[i : i+1 : i+1]
	return it
}

// stale says why an item is no longer worth sending, if it is not: a
// live message of an earlier connection (its session is gone) or a
// snapshot older than snapshotMaxAge.
func (c *Client) stale(it item) string {
	switch {
	case it.kind == kindLive && it.epoch != c.epoch.Load():
		return "its connection was lost"
	case it.kind == kindSnapshot && c.cfg.now().Sub(it.made) > snapshotMaxAge:
		return "older than a minute"
	}
	return ""
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

// retryInventory publishes the inventory again after a publish of it
// failed. paho fails a publish it could not hand to a busy connection
// within the write timeout ("publish was broken by timeout") and keeps it
// only for a reconnect that may never come: without this the hub would
// not learn the agent's devices until it asked. The inventory is the
// agent's present, so the current one goes, a moment later.
func (c *Client) retryInventory() {
	c.mu.Lock()
	c.invDirty = c.inventory != nil
	c.mu.Unlock()
	time.AfterFunc(inventoryRetry, c.queue.signal)
}

// retryBirth publishes connection n's birth again after its publish failed
// on it: until it lands the broker keeps the will of the connection before
// as the agent's retained state, which a hub that starts reads. The
// inventory follows it, as after any birth.
func (c *Client) retryBirth(n uint32) {
	c.mu.Lock()
	if c.conns == n {
		c.needBirth = true
	}
	c.mu.Unlock()
	time.AfterFunc(inventoryRetry, c.queue.signal)
}

// inventoryRetry paces retryInventory and retryBirth on a connection that
// keeps failing.
const inventoryRetry = time.Second

// maxFailures bounds the failed publishes of one report's message on
// connections that stayed up; then it is dropped and counted. A writer
// too busy to take a message for five write timeouts in a row is a link
// about to drop, and a failure that is not congestion must not send the
// message round for ever.
const maxFailures = 5

// publishFailed deals with a publish paho failed. The usual cause is a
// writer too busy to take the message within the write timeout
// ("publish was broken by timeout"): the message was never written, and
// paho keeps it only for a reconnect that may never come on a link that
// stays up. So a report's message that failed on the connection still
// open goes again, put back with its bytes as made (its seq and time: it
// is history, which the hub takes late); one whose connection was lost is
// paho's to resend after the reconnect, and counts as failed.
func (c *Client) publishFailed(s sent, err error) {
	again := true
	switch {
	case s.inventory:
		c.retryInventory()
	case s.birth && c.current(s.conn):
		c.retryBirth(s.conn)
	case len(s.again.parts) == 0 || !c.current(s.conn):
		again = false
	case s.again.tries+1 >= maxFailures:
		c.failed.Add(1)
		c.lost(s.again.kind, 1, fmt.Sprintf("its publish failed %d times, last: %v", maxFailures, err))
		return
	default:
		s.again.tries++
		c.putBack(s.again)
	}
	if again {
		c.retried.Add(1)
	} else {
		c.failed.Add(1)
	}
	if ok, n := c.failLog.allow(); ok {
		c.log.Warn("publish failed", "err", err, "inventory", s.inventory, "again", again, "suppressed", n)
	}
}

// current reports whether connection n is the one open now.
func (c *Client) current(n uint32) bool {
	c.mu.Lock()
	same := c.conns == n
	c.mu.Unlock()
	return same && c.mqtt.IsConnectionOpen()
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

// encode encodes msg for topic; a message that cannot be encoded or
// exceeds the hub's limit is counted and logged (retrying cannot help it).
func (c *Client) encode(topic string, msg any) ([]byte, bool) {
	data, err := json.Marshal(msg)
	if err == nil && len(data) > wire.MaxPayload {
		err = fmt.Errorf("%d bytes exceed the hub's limit of %d", len(data), wire.MaxPayload)
	}
	if err != nil {
		c.failed.Add(1)
		c.log.Error("message not published", "topic", topic, "err", err)
		return nil, false
	}
	return data, true
}

// publish encodes msg and hands it to paho; see publishData. A message
// that cannot be encoded yields a nil token.
func (c *Client) publish(topic string, retained bool, msg any) (paho.Token, bool) {
	data, ok := c.encode(topic, msg)
	if !ok {
		return nil, true
	}
	return c.publishData(topic, retained, data)
}

// publishData hands an encoded message to paho at QoS 1. It returns false
// when the connection went away under it, so the caller keeps the message
// for the next connection.
func (c *Client) publishData(topic string, retained bool, data []byte) (paho.Token, bool) {
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
func (c *Client) countAcks(ctx context.Context, acks <-chan sent) {
	for {
		var s sent
		select {
		case <-ctx.Done():
			return
		case s = <-acks:
		}
		tok := s.tok
		select {
		case <-ctx.Done():
			return
		case <-tok.Done():
		}
		if err := tok.Error(); err != nil {
			c.publishFailed(s, err)
			continue
		}
		c.published.Add(1)
		if s.backlog {
			c.spoolC.resent.Add(1)
		}
	}
}

// bucket paces the backlog: rate messages a second, in bursts of up to a
// second's worth.
type bucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

// take spends a token if there is one, else returns how long until there
// is.
func (b *bucket) take(now time.Time) time.Duration {
	burst := max(b.rate, 1)
	switch {
	case b.last.IsZero():
		b.tokens = burst
		b.last = now
	case now.After(b.last):
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1-b.tokens)/b.rate*float64(time.Second)) + time.Millisecond
}

// shutdown publishes the clean offline state and disconnects within the
// shutdown timeout. Without a connection there is nothing to do: the
// broker already holds the will of the last one.
func (c *Client) shutdown(acks chan<- sent) error {
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
