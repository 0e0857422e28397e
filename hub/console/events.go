package console

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// Websocket close codes and reasons the console sends.
const (
	closeGoingAway = websocket.CloseGoingAway     // 1001: the hub shuts down
	closeTooSlow   = websocket.CloseTryAgainLater // 1013: the client fell SendQueue messages behind
	// closeSessionEnded (4001): the login session the stream was opened
	// with has ended (logout, expiry, account disabled): sign in again.
	closeSessionEnded = 4001
	reasonTooSlow     = "too slow"
	reasonShutdown    = "hub shutting down"
	reasonSession     = "session ended"
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
	seq  uint64 // 0 for an alarm event: alarms have no fleet sequence
	json []byte
	// grouped is what batch clients get instead of json, when it differs:
	// an agent change with its affected devices grouped (groupedChange).
	grouped []byte
	alarm   bool // json is a complete message, sent on its own to clients that read alarms
	whole   bool // json is a complete message, sent on its own to every client
	// Where it happened, for scoped clients: an alarm or change is sent to
	// a client whose scope allows one of its places. An agent change
	// names the agent's district and site.
	places []place
}

// place is a district and site something happened in.
type place struct{ district, site string }

// visibleIn reports whether a scope sees p.
func (p *pendingChange) visibleIn(scope auth.Scope) bool {
	if scope.All {
		return true
	}
	for _, pl := range p.places {
		if scope.Allows(pl.district, pl.site) {
			return true
		}
	}
	return false
}

// places lists where a change happened.
func placesOf(c *fleet.Change) []place {
	var out []place
	if c.Device != nil {
		out = append(out, place{c.Device.District, c.Device.Site})
	}
	if c.Agent != nil {
		out = append(out, place{c.Agent.District, c.Agent.Site})
	}
	// An inventory change may move devices to a district their agent's
	// site is not in.
	for i := range c.Affected {
		d := &c.Affected[i]
		if len(out) == 0 || d.District != out[len(out)-1].district {
			out = append(out, place{d.District, d.Site})
		}
	}
	return out
}

// client is one websocket connection. Its writer goroutine is the only one
// that writes data to conn; the broadcast loop only offers messages to queue.
type client struct {
	p     *auth.Principal // who opened it: its scope filters what it gets
	view  string          // clients with equal views get the same messages
	conn  *websocket.Conn
	batch bool // asked for ?batch=1: each flush in one {"type":"batch"} message
	queue chan *frame
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
	cfg    Config
	log    *slog.Logger
	wake   chan struct{}     // capacity 1: "pending is not empty"
	active func(string) bool // does a login session still stand; nil: not checked
	limit  *auth.Limiter     // streams per account

	mu      sync.Mutex
	pending []pendingChange
	clients map[*client]struct{}
	sent    uint64 // Seq of the last change handed to clients: a new client's hello carries it
	closed  bool

	// viewUpto is, per view, the upto of the last change message its
	// clients were sent (or the hello seq of its first client): the next
	// message's after. Guarded by mu; a view's entry outlives its clients,
	// and there are as many as distinct scopes.
	viewUpto map[string]uint64

	conns sync.WaitGroup // one per registered connection handler
	snap  []*client      // reused by the broadcast loop only
	views map[string][]*client

	dropped *metrics.Counter
	written *metrics.Counter
}

func newHub(cfg Config, log *slog.Logger, reg *metrics.Registry, active func(string) bool) *hub {
	h := &hub{
		cfg:      cfg,
		log:      log,
		wake:     make(chan struct{}, 1),
		active:   active,
		limit:    auth.NewLimiter(cfg.MaxWebsockets),
		views:    map[string][]*client{},
		viewUpto: map[string]uint64{},
		clients:  make(map[*client]struct{}),
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
	var grouped []byte
	if g, ok := groupedChange(c); ok && err == nil {
		grouped, err = json.Marshal(g)
	}
	if err != nil {
		h.log.Error("cannot encode change", "seq", c.Seq, "err", err)
		return
	}
	places := placesOf(&c)
	h.mu.Lock()
	if !h.idleLocked(c.Seq) {
		h.pending = append(h.pending, pendingChange{seq: c.Seq, json: b, grouped: grouped, places: places})
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
	Agent    *agentState      `json:"agent,omitempty"`    // shadows Change.Agent
	Affected []affectedDevice `json:"affected,omitempty"` // shadows Change.Affected
}

// agentState is what an agent change says of the agent: where it is, in
// every language the feed may need, and its status. Its topology, sequence
// counters, version and the rest do not change with its status and stay
// out: a console merges this into the agent it has. In BenchmarkAlarmStorm
// (100 agents cut) each console read 116 KiB instead of 130. Reason is
// sent when empty: an agent back online has none.
type agentState struct {
	ID            string      `json:"id"`
	Site          string      `json:"site"`
	SiteName      string      `json:"site_name,omitempty"`
	District      string      `json:"district"`
	SiteNames     wire.Names  `json:"site_names,omitempty"`
	DistrictNames wire.Names  `json:"district_names,omitempty"`
	Status        wire.Status `json:"status"`
	Reason        string      `json:"reason"`
	Since         time.Time   `json:"since"`
	LastSeen      time.Time   `json:"last_seen,omitzero"`
	Devices       int         `json:"devices"`
}

func stateOf(a *fleet.Agent) *agentState {
	if a == nil {
		return nil
	}
	return &agentState{ID: a.ID, Site: a.Site, SiteName: a.SiteName, District: a.District, SiteNames: a.SiteNames, DistrictNames: a.DistrictNames,
		Status: a.Status, Reason: a.Reason, Since: a.Since, LastSeen: a.LastSeen, Devices: a.Devices}
}

// wireChange returns what the websocket sends for c: agent changes with
// the agent's state and their affected devices compacted, everything else
// as it is (an inventory change's devices and agent are new to the console
// and go whole).
func wireChange(c fleet.Change) any {
	if c.Kind != fleet.ChangeAgent {
		return c
	}
	cc := compactChange{Change: c, Agent: stateOf(c.Agent), Affected: make([]affectedDevice, len(c.Affected))}
	for i, d := range c.Affected {
		cc.Affected[i] = affectedDevice{ID: d.ID, Status: d.Status, Reason: d.Reason, Detail: d.Detail, Since: d.Since, Reported: d.Reported}
	}
	return cc
}

// affectedGroup is devices of an agent change that changed alike: what
// every one of them has in common, and their ids. An agent that goes down
// takes all its devices to the same status, reason and time, so a storm's
// changes shrink to little more than the devices' ids; and when the group
// is every device of the agent, All says so instead of the ids: a district
// power cut then costs each console a few hundred bytes per agent, not a
// few kilobytes (at 1,000 consoles, the difference between 300 MB and
// 60 MB written in the worst second of the night).
type affectedGroup struct {
	alike
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// alike is what the devices of an affectedGroup have in common.
type alike struct {
	Status   wire.Status `json:"status"`
	Reason   wire.Reason `json:"reason,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Since    time.Time   `json:"since"`
	Reported wire.Status `json:"reported,omitempty"`
}

// groupedAgentChange is an agent change as batch clients get it: its
// Change.Affected left empty (and so out), the groups instead.
type groupedAgentChange struct {
	fleet.Change
	Agent  *agentState     `json:"agent,omitempty"` // shadows Change.Agent
	Groups []affectedGroup `json:"affected_groups"`
}

// groupedChange returns c with its affected devices grouped, and whether
// that differs from wireChange: only agent changes of several devices.
func groupedChange(c fleet.Change) (any, bool) {
	if c.Kind != fleet.ChangeAgent || len(c.Affected) < 2 {
		return nil, false
	}
	gc := groupedAgentChange{Change: c, Agent: stateOf(c.Agent)}
	gc.Change.Affected = nil
	at := map[alike]int{} // → index in gc.Groups
	for _, d := range c.Affected {
		// Equal instants from one clock reading compare equal; any that
		// do not merely make another group.
		key := alike{Status: d.Status, Reason: d.Reason, Detail: d.Detail, Since: d.Since, Reported: d.Reported}
		i, ok := at[key]
		if !ok {
			i = len(gc.Groups)
			at[key] = i
			gc.Groups = append(gc.Groups, affectedGroup{alike: key})
		}
		gc.Groups[i].IDs = append(gc.Groups[i].IDs, d.ID)
	}
	if len(gc.Groups) == 1 && c.Agent != nil && len(c.Affected) == c.Agent.Devices {
		gc.Groups[0].IDs, gc.Groups[0].All = nil, true
	}
	return gc, true
}

// publishAlarm encodes ev once, as a whole message, and queues it behind
// the changes already pending. With no client connected it is dropped: a
// client that connects later reads the alarms' state from the API.
// where names the places of an alarm that names no district or site of its
// own (a power feed): its agent's.
func (h *hub) publishAlarm(ev alarm.Event, where func(agent string) (district, site string)) {
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
	a := &ev.Alarm
	pl := place{a.District, a.Site}
	if pl == (place{}) && a.Agent != "" {
		pl.district, pl.site = where(a.Agent)
	}
	h.mu.Lock()
	if len(h.clients) > 0 {
		h.pending = append(h.pending, pendingChange{json: b, alarm: true, places: []place{pl}})
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// publishMessage queues a complete message for every client whose scope
// allows district and site (work-order events).
func (h *hub) publishMessage(v any, district, site string) {
	h.mu.Lock()
	idle := len(h.clients) == 0
	h.mu.Unlock()
	if idle {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Error("cannot encode event", "err", err)
		return
	}
	h.mu.Lock()
	if len(h.clients) > 0 {
		h.pending = append(h.pending, pendingChange{json: b, whole: true, places: []place{{district, site}}})
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

// flush hands every pending change to every client that is not being cut,
// each group of clients that sees the same part of the city getting the
// same messages, built once for the group.
func (h *hub) flush() {
	h.mu.Lock()
	batch := h.pending
	h.pending = nil
	h.snap = h.snap[:0]
	clear(h.views)
	for c := range h.clients {
		if !c.kicked {
			h.snap = append(h.snap, c)
			h.views[c.view] = append(h.views[c.view], c)
		}
	}
	// Alarm events carry no seq, so the last entry need not have the highest.
	for _, p := range batch {
		h.sent = max(h.sent, p.seq)
	}
	afters := make(map[string]uint64, len(h.views))
	for v := range h.views {
		afters[v] = h.viewUpto[v]
	}
	h.mu.Unlock()
	if len(batch) == 0 || len(h.snap) == 0 {
		return
	}
	for view, group := range h.views {
		p := group[0].p
		after, alarms := afters[view], p.Can(auth.AlarmRead)
		// Each form is built and framed once for every client of the view
		// that reads it, and only if one does; both account for the same
		// sequence numbers.
		var plain, batched []*frame
		var built [2]bool
		for _, c := range group {
			frames := &plain
			if c.batch {
				frames = &batched
			}
			if k := btoi(c.batch); !built[k] {
				built[k] = true
				items, upto := h.prepare(batch, after, p.Scope, alarms, c.batch)
				h.mu.Lock()
				h.viewUpto[view] = max(h.viewUpto[view], upto)
				h.mu.Unlock()
				*frames = h.frames(items, c.batch)
			}
			for _, f := range *frames {
				select {
				case c.queue <- f:
					continue
				default:
				}
				h.kick(c, closeTooSlow, reasonTooSlow)
				break
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// frame is one websocket message as it goes on the wire (RFC 6455 §5.2:
// a final, unmasked text frame, as a server sends it), made once for any
// number of clients: a client's writer sends the frames waiting for it in
// one writev, without copying them, however many there are.
type frame struct {
	wire []byte
}

// newFrame frames payload. The hub negotiates no extension (the upgrader
// does not enable compression), so a frame is its header and the payload.
func newFrame(payload []byte) *frame {
	n := len(payload)
	b := make([]byte, 0, n+10)
	b = append(b, 0x80|websocket.TextMessage) // FIN, text
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return &frame{wire: append(b, payload...)}
}

// frames frames the messages of one flush: one websocket message each, or
// with batch, as few {"type":"batch","items":[...]} messages as maxMessage
// allows (a lone message goes as it is).
func (h *hub) frames(items [][]byte, batch bool) []*frame {
	var out []*frame
	if !batch {
		for _, it := range items {
			out = append(out, newFrame(it))
		}
		return out
	}
	for len(items) > 0 {
		n, size := 0, 0
		for n < len(items) && (n == 0 || size+len(items[n])+1 <= maxMessage) {
			size += len(items[n]) + 1
			n++
		}
		out = append(out, newFrame(appendBatch(nil, items[:n], size)))
		items = items[n:]
	}
	return out
}

// batchPrefix opens a batch message; appendBatch closes it.
const batchPrefix = `{"type":"batch","items":[`

// appendBatch appends to buf the batch message of items, whose lengths
// with a separator each add up to size; a lone item is its own message.
func appendBatch(buf []byte, items [][]byte, size int) []byte {
	if len(items) == 1 {
		return append(buf, items[0]...)
	}
	buf = slices.Grow(buf, len(batchPrefix)+size+2)
	buf = append(buf, batchPrefix...)
	for i, it := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, it...)
	}
	return append(buf, "]}"...)
}

// viewOf is the key of what p sees on the stream: its scope and whether
// it may see alarms.
func viewOf(p *auth.Principal) string {
	return p.Scope.Key() + "|" + strconv.FormatBool(p.Can(auth.AlarmRead))
}

// prepare builds the websocket messages of a batch for one view: the
// changes and alarm events scope sees (alarm events only with alarms),
// {"type":"change"} for a single change, {"type":"changes"} for several,
// split at maxMessage and at alarm events, which go out as their own
// messages in their place. Each change message says which sequence
// numbers it accounts for: every change the view may see with after < seq
// <= upto is in it, so a client scoped to part of the city tells changes
// it was not meant to see from changes it missed. after is the upto of the
// view's last message; prepare returns the upto of its own last one (after
// when it sends none). The messages are built once for all the clients of
// the view; alarm and work-order messages are the bytes their publisher
// encoded once for every view.
// grouped: for batch clients, with agent changes' devices grouped.
func (h *hub) prepare(batch []pendingChange, after uint64, scope auth.Scope, alarms, grouped bool) ([][]byte, uint64) {
	var msgs [][]byte
	frame := func(buf []byte) { msgs = append(msgs, buf) }
	var chunk [][]byte // visible changes waiting to be framed
	size := 0
	upto := after
	flushChunk := func() {
		if len(chunk) == 0 {
			return
		}
		var buf []byte
		if len(chunk) == 1 {
			buf = make([]byte, 0, size+80)
			buf = append(buf, `{"type":"change","after":`...)
		} else {
			buf = make([]byte, 0, size+len(chunk)+80)
			buf = append(buf, `{"type":"changes","after":`...)
		}
		buf = strconv.AppendUint(buf, after, 10)
		buf = append(buf, `,"upto":`...)
		buf = strconv.AppendUint(buf, upto, 10)
		if len(chunk) == 1 {
			buf = append(buf, `,"change":`...)
			buf = append(buf, chunk[0]...)
			buf = append(buf, '}')
		} else {
			buf = append(buf, `,"changes":[`...)
			for i, j := range chunk {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, j...)
			}
			buf = append(buf, "]}"...)
		}
		frame(buf)
		chunk, size, after = chunk[:0], 0, upto
	}
	for i := range batch {
		p := &batch[i]
		if !p.visibleIn(scope) {
			upto = max(upto, p.seq)
			continue
		}
		if p.alarm || p.whole {
			if alarms || p.whole {
				flushChunk()
				frame(p.json)
			}
			continue
		}
		j := p.json
		if grouped && p.grouped != nil {
			j = p.grouped
		}
		if len(chunk) > 0 && size+len(j)+1 > maxMessage {
			flushChunk()
		}
		chunk = append(chunk, j)
		size += len(j) + 1
		upto = max(upto, p.seq)
	}
	flushChunk()
	return msgs, after
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
	if _, ok := h.viewUpto[c.view]; !ok {
		h.viewUpto[c.view] = h.sent
	}
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

// endSessions ends the streams opened with any of the given sessions.
func (h *hub) endSessions(ids []string) {
	if len(ids) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if slices.Contains(ids, c.p.Session) {
			h.kickLocked(c, closeSessionEnded, reasonSession)
		}
	}
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
func (h *hub) serve(conn *websocket.Conn, p *auth.Principal, batch bool, state func(*auth.Principal, *helloMessage)) {
	c := &client{
		p:     p,
		view:  viewOf(p),
		conn:  conn,
		batch: batch,
		queue: make(chan *frame, h.cfg.SendQueue),
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
	state(p, &hm)
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
	var pending [][]byte // the frames of one write, reused
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
		case f := <-c.queue:
			// What is queued now goes with f, not what keeps coming: the
			// writer must get back to checking for a kick.
			pending = append(pending[:0], f.wire)
			for range len(c.queue) {
				pending = append(pending, (<-c.queue).wire) // only this goroutine receives
			}
			n := len(pending)
			// The frames go straight to the socket: gorilla's writer is
			// idle (this goroutine is its only user), and a frame is all
			// it would write.
			conn.NetConn().SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
			bufs := net.Buffers(pending)
			if _, err := bufs.WriteTo(conn.NetConn()); err != nil {
				conn.NetConn().Close()
				return
			}
			h.written.Add(uint64(n))
		case <-ping.C:
			if c.p.Via == auth.ViaSession && h.active != nil && !h.active(c.p.Session) {
				h.kick(c, closeSessionEnded, reasonSession)
				continue
			}
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
		p := auth.From(r.Context())
		release, ok := s.hub.limit.Acquire(p.Name)
		if !ok {
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%s already has %d event streams open", p.Name, s.hub.limit.Max()))
			return
		}
		defer release()
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered the client
		}
		// ?batch=1: the client reads {"type":"batch"} messages.
		batch, _ := strconv.ParseBool(r.URL.Query().Get("batch"))
		s.hub.serve(conn, p, batch, s.helloState)
	}
}

// upgrader returns the websocket upgrader. The gate has checked the
// origin of a session's upgrade already; a token's holder may connect from
// anywhere, as with any other request it makes.
func (s *Server) upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		// EnableCompression stays off: the writers send frames made once
		// for every client (newFrame), which no extension may alter.
		HandshakeTimeout: s.cfg.WriteTimeout,
		CheckOrigin:      func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			writeError(w, status, reason.Error())
		},
	}
}
