package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// Websocket close codes and reasons the console sends.
const (
	closeGoingAway = websocket.CloseGoingAway     // 1001: the hub shuts down
	closeTooSlow   = websocket.CloseTryAgainLater // 1013: the client fell SendQueue messages behind
	reasonTooSlow  = "too slow"
	reasonShutdown = "hub shutting down"
)

// maxMessage is the size above which a burst of changes is split into
// several messages, so that one storm does not become one message of many
// megabytes that a browser must parse before it can paint anything.
const maxMessage = 1 << 20

// maxClientMessage bounds what a client may send: nothing is expected but
// control frames, so anything large is a misbehaving client.
const maxClientMessage = 4 << 10

// Message types on /api/events.
type helloMessage struct {
	Type    string        `json:"type"` // "hello"
	Seq     uint64        `json:"seq"`
	Summary fleet.Summary `json:"summary"`
	// Alarms counts active, unshelved alarms by severity; absent when the
	// hub runs without an alarm engine.
	Alarms *AlarmCounts `json:"alarms,omitempty"`
}

// alarmMessage is {"type":"alarm"}: one alarm event.
type alarmMessage struct {
	Type  string      `json:"type"` // "alarm"
	Event alarm.Event `json:"event"`
}

// pendingChange is a change encoded by Publish, or a whole alarm message
// encoded by PublishAlarm, waiting for the broadcast loop. Both wait in one
// queue so that clients see them in the order they were published: a
// device's change comes before the alarm it raised.
type pendingChange struct {
	seq   uint64 // 0 for an alarm event: alarms have no fleet sequence
	json  []byte
	alarm bool // json is a complete message, sent on its own
}

// client is one websocket connection. Its writer goroutine is the only one
// that writes data to conn; the broadcast loop only offers messages to queue.
type client struct {
	conn  *websocket.Conn
	queue chan *websocket.PreparedMessage
	kick  chan struct{} // closed by the hub to end the connection with code/reason
	done  chan struct{} // closed when the reader has finished: the peer is gone

	// Guarded by hub.mu; code and reason are written before kick is closed.
	kicked bool
	code   int
	reason string
}

// hub fans changes out to websocket clients. mu guards the pending changes,
// the set of clients and the sequence number a new client starts from;
// nothing slow ever happens under it.
type hub struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{} // capacity 1: "pending is not empty"

	mu      sync.Mutex
	pending []pendingChange
	clients map[*client]struct{}
	sent    uint64 // Seq of the last change handed to clients: a new client's hello carries it
	closed  bool

	conns sync.WaitGroup // one per registered connection handler
	snap  []*client      // reused by the broadcast loop only

	dropped *metrics.Counter
	written *metrics.Counter
}

func newHub(cfg Config, log *slog.Logger, reg *metrics.Registry) *hub {
	h := &hub{
		cfg:     cfg,
		log:     log,
		wake:    make(chan struct{}, 1),
		clients: make(map[*client]struct{}),
		dropped: reg.Counter("citywatch_ws_dropped_clients_total",
			"Websocket clients cut because their send queue was full."),
		written: reg.Counter("citywatch_ws_messages_sent_total",
			"Websocket messages written to clients (one batch of changes is one message)."),
	}
	reg.GaugeFunc("citywatch_ws_clients", "Open websocket connections on /api/events.", func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(len(h.clients))
	})
	return h
}

// publish encodes c once and queues it for the broadcast loop. It never
// waits for a client.
func (h *hub) publish(c fleet.Change) {
	h.mu.Lock()
	if h.idleLocked(c.Seq) {
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()

	// Encode outside the lock: with several ingest shards publishing, the
	// CPU work then runs in parallel.
	b, err := json.Marshal(wireChange(c))
	if err != nil {
		h.log.Error("cannot encode change", "seq", c.Seq, "err", err)
		return
	}
	h.mu.Lock()
	if !h.idleLocked(c.Seq) {
		h.pending = append(h.pending, pendingChange{seq: c.Seq, json: b})
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default: // a wake-up is already due
	}
}

// affectedDevice is what an agent change says of each device it affects:
// only what changed. Full snapshots would make a district power cut (100
// agents × 100 devices) megabytes per console; the console merges these
// into the rows it already has.
type affectedDevice struct {
	ID       string      `json:"id"`
	Status   wire.Status `json:"status"`
	Reason   wire.Reason `json:"reason,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Since    time.Time   `json:"since"`
	Reported wire.Status `json:"reported,omitempty"`
}

// compactChange is an agent change as the websocket carries it.
type compactChange struct {
	fleet.Change
	Affected []affectedDevice `json:"affected,omitempty"` // shadows Change.Affected
}

// wireChange returns what the websocket sends for c: agent changes with
// their affected devices compacted, everything else as it is (an inventory
// change's devices are new to the console and go whole).
func wireChange(c fleet.Change) any {
	if c.Kind != fleet.ChangeAgent || len(c.Affected) == 0 {
		return c
	}
	cc := compactChange{Change: c, Affected: make([]affectedDevice, len(c.Affected))}
	for i, d := range c.Affected {
		cc.Affected[i] = affectedDevice{ID: d.ID, Status: d.Status, Reason: d.Reason, Detail: d.Detail, Since: d.Since, Reported: d.Reported}
	}
	return cc
}

// publishAlarm encodes ev once, as a whole message, and queues it behind
// the changes already pending. With no client connected it is dropped: a
// client that connects later reads the alarms' state from the API.
func (h *hub) publishAlarm(ev alarm.Event) {
	h.mu.Lock()
	idle := len(h.clients) == 0
	h.mu.Unlock()
	if idle {
		return
	}
	b, err := json.Marshal(alarmMessage{Type: "alarm", Event: ev})
	if err != nil {
		h.log.Error("cannot encode alarm event", "alarm", ev.Alarm.ID, "err", err)
		return
	}
	h.mu.Lock()
	if len(h.clients) > 0 {
		h.pending = append(h.pending, pendingChange{json: b, alarm: true})
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// idleLocked reports whether no client could receive a change with seq, and
// if so records seq as sent: a client that connects later starts after it.
// Pending changes are dropped too, since nobody connected when they came.
func (h *hub) idleLocked(seq uint64) bool {
	if len(h.clients) > 0 {
		return false
	}
	h.pending = h.pending[:0]
	h.sent = max(h.sent, seq)
	return true
}

// run is the broadcast loop. It sends what is pending as soon as it wakes.
// After each send it holds the next one back for BatchWindow, and longer,
// up to maxHold windows, while many clients are still writing the last one:
// during a storm changes then gather into fewer, larger messages, and a
// client's cost is mostly per write, not per byte. A change after a quiet
// spell is not delayed at all.
func (h *hub) run(ctx context.Context) {
	timer := time.NewTimer(h.cfg.BatchWindow)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		}
		h.flush()
		until := time.Now().Add(maxHold * h.cfg.BatchWindow)
		for step := h.cfg.BatchWindow; ; step = max(h.cfg.BatchWindow/4, time.Millisecond) {
			timer.Reset(step)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			if !h.busy() || !time.Now().Before(until) {
				break
			}
		}
	}
}

// maxHold bounds, in batch windows, how long a send waits for clients
// still busy with the last one.
const maxHold = 4

// busy reports whether more than a tenth of the clients of the last send
// still have messages queued.
func (h *hub) busy() bool {
	n := 0
	for _, c := range h.snap {
		if len(c.queue) > 0 {
			n++
		}
	}
	return n*10 > len(h.snap)
}

// flush hands every pending change to every client that is not being cut.
func (h *hub) flush() {
	h.mu.Lock()
	batch := h.pending
	h.pending = nil
	h.snap = h.snap[:0]
	for c := range h.clients {
		if !c.kicked {
			h.snap = append(h.snap, c)
		}
	}
	// Alarm events carry no seq, so the last entry need not have the highest.
	for _, p := range batch {
		h.sent = max(h.sent, p.seq)
	}
	h.mu.Unlock()
	if len(batch) == 0 || len(h.snap) == 0 {
		return
	}
	msgs := h.prepare(batch)
	for _, c := range h.snap {
		for _, m := range msgs {
			select {
			case c.queue <- m:
				continue
			default:
			}
			h.kick(c, closeTooSlow, reasonTooSlow)
			break
		}
	}
}

// prepare builds the websocket messages for a batch: {"type":"change"} for a
// single change, {"type":"changes"} for several, split at maxMessage and at
// alarm events, which go out as their own messages in their place. Each is
// framed once for all clients.
func (h *hub) prepare(batch []pendingChange) []*websocket.PreparedMessage {
	var msgs []*websocket.PreparedMessage
	frame := func(buf []byte) {
		m, err := websocket.NewPreparedMessage(websocket.TextMessage, buf)
		if err != nil { // only a write to memory can fail here, and it does not
			h.log.Error("cannot frame websocket message", "err", err)
		} else {
			msgs = append(msgs, m)
		}
	}
	for len(batch) > 0 {
		if batch[0].alarm {
			frame(batch[0].json)
			batch = batch[1:]
			continue
		}
		n, size := 1, len(batch[0].json)
		for n < len(batch) && !batch[n].alarm && size+len(batch[n].json)+1 <= maxMessage {
			size += len(batch[n].json) + 1
			n++
		}
		var buf []byte
		if n == 1 {
			buf = make([]byte, 0, size+32)
			buf = append(buf, `{"type":"change","change":`...)
			buf = append(buf, batch[0].json...)
			buf = append(buf, '}')
		} else {
			buf = make([]byte, 0, size+34)
			buf = append(buf, `{"type":"changes","changes":[`...)
			for i, p := range batch[:n] {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, p.json...)
			}
			buf = append(buf, "]}"...)
		}
		frame(buf)
		batch = batch[n:]
	}
	return msgs
}

// add registers a new connection and returns the Seq its hello carries:
// the client receives every change after it. It fails once the hub shuts
// down.
func (h *hub) add(c *client) (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, false
	}
	h.clients[c] = struct{}{}
	h.conns.Add(1)
	return h.sent, true
}

// remove forgets a connection whose handler is finishing.
func (h *hub) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	h.conns.Done()
}

// kick stops broadcasting to c and tells its writer to close with code.
func (h *hub) kick(c *client, code int, reason string) {
	h.mu.Lock()
	kicked := h.kickLocked(c, code, reason)
	h.mu.Unlock()
	if kicked && code == closeTooSlow {
		h.dropped.Inc()
		h.log.Warn("websocket client too slow, disconnecting", "remote", c.conn.RemoteAddr().String())
	}
}

// kickLocked reports whether c was kicked now rather than before.
func (h *hub) kickLocked(c *client, code int, reason string) bool {
	if c.kicked {
		return false
	}
	c.kicked, c.code, c.reason = true, code, reason
	close(c.kick)
	return true
}

// shutdown closes every connection with 1001 and waits for their handlers
// until ctx ends; then it cuts what is left without a goodbye.
func (h *hub) shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	for c := range h.clients {
		h.kickLocked(c, closeGoingAway, reasonShutdown)
	}
	h.mu.Unlock()

	done := make(chan struct{})
	go func() {
		h.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	h.mu.Lock()
	h.log.Warn("websocket clients did not close in time, cutting them", "clients", len(h.clients))
	for c := range h.clients {
		c.conn.NetConn().Close()
	}
	h.mu.Unlock()
	<-done // closed sockets end both goroutines of every connection at once
}

// serve runs one upgraded connection until it ends: the calling goroutine
// reads, a second one writes.
func (h *hub) serve(conn *websocket.Conn, state func(*helloMessage)) {
	c := &client{
		conn:  conn,
		queue: make(chan *websocket.PreparedMessage, h.cfg.SendQueue),
		kick:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	seq, ok := h.add(c)
	if !ok {
		deadline := time.Now().Add(h.cfg.WriteTimeout)
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeGoingAway, reasonShutdown), deadline)
		conn.Close()
		return
	}
	defer h.remove(c)
	// The state is read after registering, so it reflects at least every
	// change up to seq; later ones arrive as messages. An alarm event queued
	// just before may be both counted and delivered: events carry the
	// alarm's whole state, so applying one twice is harmless.
	hm := helloMessage{Type: "hello", Seq: seq}
	state(&hm)
	hello, err := json.Marshal(hm)
	if err != nil {
		h.log.Error("cannot encode hello", "err", err)
		conn.Close()
		return
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		h.write(c, hello)
	}()
	h.read(c)
	close(c.done)
	<-writerDone
	conn.Close()
}

// read handles control frames (gorilla answers pings and close frames while
// reading) and notices when the peer goes away or stops answering pings.
func (h *hub) read(c *client) {
	conn := c.conn
	conn.SetReadLimit(maxClientMessage)
	// A pong is due within WriteTimeout of each ping.
	wait := h.cfg.PingInterval + h.cfg.WriteTimeout
	alive := func(string) error {
		select {
		case <-c.kick: // keep the shorter deadline goodbye set for the close reply
			return nil
		default:
			return conn.SetReadDeadline(time.Now().Add(wait))
		}
	}
	alive("")
	conn.SetPongHandler(alive)
	for {
		// Clients have nothing to tell the hub; their messages are
		// skipped, but they do prove the client alive.
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
		alive("")
	}
}

// pingMessage is the text keepalive every client gets each PingInterval.
var pingMessage = func() *websocket.PreparedMessage {
	m, err := websocket.NewPreparedMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
	if err != nil {
		panic(err) // a constant message; cannot fail
	}
	return m
}()

// write is the connection's only writer of data: the hello, then queued
// messages and pings, until the hub kicks the client or the peer is gone.
func (h *hub) write(c *client, hello []byte) {
	conn := c.conn
	ping := time.NewTicker(h.cfg.PingInterval)
	defer ping.Stop()

	conn.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, hello); err != nil {
		conn.NetConn().Close() // ends the reader, and so the connection
		return
	}
	h.written.Inc()
	for {
		// A kicked client gets no more of its queue, however full.
		select {
		case <-c.kick:
			h.goodbye(c)
			return
		case <-c.done:
			return
		default:
		}
		select {
		case m := <-c.queue:
			conn.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
			if err := conn.WritePreparedMessage(m); err != nil {
				conn.NetConn().Close()
				return
			}
			h.written.Inc()
		case <-ping.C:
			// Browsers answer protocol pings but never show them to the
			// page; the text ping lets a console tell a quiet hub from a
			// dead connection.
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(h.cfg.WriteTimeout)); err != nil {
				conn.NetConn().Close()
				return
			}
			conn.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
			if err := conn.WritePreparedMessage(pingMessage); err != nil {
				conn.NetConn().Close()
				return
			}
		case <-c.kick:
			h.goodbye(c)
			return
		case <-c.done:
			return
		}
	}
}

// goodbye sends the close frame the hub kicked c with, then gives the peer
// WriteTimeout to answer it before the reader gives up.
func (h *hub) goodbye(c *client) {
	deadline := time.Now().Add(h.cfg.WriteTimeout)
	msg := websocket.FormatCloseMessage(c.code, c.reason)
	if err := c.conn.WriteControl(websocket.CloseMessage, msg, deadline); err != nil {
		c.conn.NetConn().Close()
		return
	}
	// The net.Conn's deadline, not the websocket's: the reader goroutine
	// owns the websocket's read side.
	c.conn.NetConn().SetReadDeadline(deadline)
}

// events returns the handler of /api/events; see docs/api.md.
func (s *Server) events(up *websocket.Upgrader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered the client
		}
		s.hub.serve(conn, s.helloState)
	}
}

// upgrader returns the websocket upgrader for the server's origin policy.
func (s *Server) upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: s.cfg.WriteTimeout,
		CheckOrigin:      s.checkOrigin,
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			writeError(w, status, reason.Error())
		},
	}
}
