// The websocket client for /api/events: connects, reconnects with backoff and
// jitter, and reports its state. It knows nothing about devices; the caller
// decides what a hello or a change means.

const MIN_DELAY = 1000;
const MAX_DELAY = 30000;
// The hub sends {"type":"ping"} every 30 s; silence for longer than two of
// them means the connection is dead even if the browser has not noticed.
const SILENCE = 75000;

export class Live {
  // onHello(msg), onChanges([change]), onAlarm(event), onState(state, info) where state is
  // "connecting", "live" or "offline" and info {attempt, retryAt}.
  constructor(url, { onHello, onChanges, onState, onAlarm = () => {} }) {
    this.url = url;
    this.onAlarm = onAlarm; // onAlarm(event): {kind, alarm, transition}
    this.onHello = onHello;
    this.onChanges = onChanges;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.silence = 0;
    this.state = '';
    this.retryAt = 0;
    // A network coming back is a better moment to retry than the timer.
    window.addEventListener('online', () => { if (this.state === 'offline') this.connect(); });
  }

  start() { this.connect(); }

  setState(s) {
    this.state = s;
    this.onState(s, { attempt: this.attempt, retryAt: this.retryAt });
  }

  connect() {
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.retryAt = 0;
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.warn('live: websocket:', err);
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => { this.heard(ws); this.message(ev.data); };
    ws.onclose = () => { if (this.ws === ws) { clearTimeout(this.silence); this.ws = null; this.retry(); } };
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
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'hello':
        this.attempt = 0;
        this.setState('live');
        this.onHello(msg);
        break;
      case 'change':
        if (msg.change) this.onChanges([msg.change]);
        break;
      case 'changes':
        if (Array.isArray(msg.changes)) this.onChanges(msg.changes);
        break;
      case 'alarm':
        if (msg.event) this.onAlarm(msg.event);
        break;
      default:
        // Unknown types are ignored so the hub can add messages first.
    }
  }
}
