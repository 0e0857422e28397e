// The websocket client for /api/events: connects, reconnects with backoff and
// jitter, and reports its state. It knows nothing about devices; the caller
// decides what a hello or a change means. A close with SESSION_ENDED means
// the login session is over: it does not reconnect.

const MIN_DELAY = 1000;
const MAX_DELAY = 30000;
// The hub sends {"type":"ping"} every 30 s; silence for longer than two of
// them means the connection is dead even if the browser has not noticed.
const SILENCE = 75000;
// The hub closes the socket with this code when the login session ends
// (logout, expiry, a disabled account).
export const SESSION_ENDED = 4001;

export class Live {
  // onHello(msg), onChanges([change], {after, upto}), onAlarm(event),
  // onWorkOrder(event), onState(state, info) where state is "connecting",
  // "live" or "offline" and info {attempt, retryAt}; onEnded() when the
  // hub ended the session, onRefused() when a connection closed before it
  // opened (the upgrade may have been refused for want of a session: the
  // caller checks).
  constructor(url, { onHello, onChanges, onState, onAlarm = () => {}, onWorkOrder = () => {}, onEnded = () => {}, onRefused = () => {} }) {
    this.url = url;
    this.onAlarm = onAlarm; // onAlarm(event): {kind, alarm, transition}
    this.onWorkOrder = onWorkOrder; // onWorkOrder(event): {kind, order, transition}
    this.onHello = onHello;
    this.onChanges = onChanges;
    this.onState = onState;
    this.onEnded = onEnded;
    this.onRefused = onRefused;
    this.stopped = false;
    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.silence = 0;
    this.state = '';
    this.retryAt = 0;
    // A network coming back is a better moment to retry than the timer.
    window.addEventListener('online', () => { if (this.state === 'offline') this.connect(); });
  }

  start() { this.stopped = false; this.connect(); }

  // stop closes the socket for good (signed out).
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.silence);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
  }

  setState(s) {
    this.state = s;
    this.onState(s, { attempt: this.attempt, retryAt: this.retryAt });
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.retryAt = 0;
    this.setState('connecting');
    let ws;
    try {
      // batch=1: a burst comes as one {"type":"batch"} message, and an
      // agent's devices as groups (expand).
      ws = new WebSocket(`${this.url}${this.url.includes('?') ? '&' : '?'}batch=1`);
    } catch (err) {
      console.warn('live: websocket:', err);
      this.retry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (ev) => { this.heard(ws); this.message(ev.data); };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      clearTimeout(this.silence);
      this.ws = null;
      if (ev.code === SESSION_ENDED) { this.stop(); this.onEnded(); return; }
      this.retry();
      if (!opened) this.onRefused();
    };
    this.heard(ws);
    ws.onerror = () => { /* onclose follows and schedules the retry */ };
  }

  heard(ws) {
    clearTimeout(this.silence);
    this.silence = setTimeout(() => {
      if (this.ws !== ws) return;
      console.warn('live: no message for', SILENCE / 1000, 's; reconnecting');
      ws.onclose = null;
      ws.close();
      this.ws = null;
      this.retry();
    }, SILENCE);
  }

  retry() {
    if (this.stopped) return;
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * base / 2; // jitter: thousands of consoles must not reconnect in step
    this.attempt++;
    this.retryAt = Date.now() + delay;
    this.setState('offline');
    this.timer = setTimeout(() => this.connect(), delay);
  }

  message(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      console.warn('live: bad message:', err);
      return;
    }
    this.handle(msg);
  }

  // handle dispatches one message; a batch is its items, in order.
  handle(msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'hello':
        this.attempt = 0;
        this.setState('live');
        this.onHello(msg);
        break;
      case 'batch':
        if (Array.isArray(msg.items)) for (const m of msg.items) if (m?.type !== 'batch' && m?.type !== 'hello') this.handle(m);
        break;
      case 'change':
        if (msg.change) this.onChanges([expand(msg.change)], range(msg, [msg.change]));
        break;
      case 'changes':
        if (Array.isArray(msg.changes)) this.onChanges(msg.changes.map(expand), range(msg, msg.changes));
        break;
      case 'alarm':
        if (msg.event) this.onAlarm(msg.event);
        break;
      case 'workorder':
        if (msg.event) this.onWorkOrder(msg.event);
        break;
      default:
        // Unknown types are ignored so the hub can add messages first.
    }
  }
}

// expand turns an agent change's affected_groups (devices that changed
// alike: their common fields and ids) back into its affected list. A group
// marked all stands for every device of the agent: it becomes
// affected_all, which the store resolves to the agent's rows.
function expand(c) {
  if (!Array.isArray(c?.affected_groups)) return c;
  const affected = [];
  let all = null;
  for (const { ids, all: every, ...alike } of c.affected_groups) {
    if (every) all = alike;
    else for (const id of ids || []) affected.push({ ...alike, id });
  }
  const { affected_groups: _, ...rest } = c;
  return all ? { ...rest, affected, affected_all: all } : { ...rest, affected };
}

// range is the span of sequence numbers a message covers: every change
// this client may see with after < seq <= upto is in it (a scoped client is
// not sent other districts' changes, so numbers skip). A message without
// them covers exactly its own changes.
function range(msg, changes) {
  if (Number.isFinite(msg.after) && Number.isFinite(msg.upto)) return { after: msg.after, upto: msg.upto };
  let lo = Infinity;
  let hi = -Infinity;
  for (const c of changes) {
    if (!Number.isFinite(c?.seq)) continue;
    if (c.seq < lo) lo = c.seq;
    if (c.seq > hi) hi = c.seq;
  }
  return hi < lo ? null : { after: lo - 1, upto: hi };
}
