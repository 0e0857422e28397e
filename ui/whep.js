// A small WHEP (draft-ietf-wish-whep) client: plays one camera from the hub into a
// <video> element over WebRTC, watches that frames keep arriving, and
// reconnects with backoff. It knows nothing about the page; the caller draws
// the states it reports.
//
// States: "connecting" (offer sent, no frame yet), "playing" (frames are
// being decoded), "nosignal" (connected, but no new frame for NO_SIGNAL_MS),
// "failed" (info.error says why; info.retryAt when the next attempt is due,
// 0 when none is planned) and "closed" (stopped by the caller).

import { request } from './api.js';

const GATHER_MS = 2000;        // the hub does not trickle: wait for ICE gathering, but not for ever
const POST_MS = 20000;         // the hub starts the upstream on demand and gives up after its own timeout (10 s by default) first
const FIRST_FRAME_MS = 10000;  // answered but no frame: give up and retry
const NO_SIGNAL_MS = 3000;     // a frozen picture is worse than none: say so after this
const DEAD_MS = 12000;         // no frame for this long: tear down and reconnect
const WATCH_MS = 1000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const NO_SIGNAL_RETRY_MS = 2000; // the hub answers but sends no picture: each attempt waits FIRST_FRAME_MS anyway
const CLOSE_WAIT_MS = 2000;    // longest wait for the hub to answer a DELETE before closing anyway

// Sessions that still hold a hub resource, ended on page unload.
const open = new Set();
addEventListener('pagehide', () => { for (const s of open) s.stop(); });

export class WhepError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

// url returns the WHEP endpoint of a camera.
export function url(cameraId) {
  return `/api/cameras/${encodeURIComponent(cameraId)}/whep`;
}

// play starts playing cameraId into video and returns {stop(), stats(),
// retry()}. onState(state, info) reports changes, info {error, status,
// retryAt, attempt}; onStats(stats) gets the stats once a second while
// connected. canRetry() returning false (the camera is known to be down)
// holds retries until the caller calls retry(), when it comes back.
export function play(cameraId, video, { onState = () => {}, onStats = () => {}, canRetry = () => true } = {}) {
  const s = new Session(cameraId, video, { onState, onStats, canRetry });
  s.connect();
  return {
    stop: () => s.stop(),
    stats: () => s.stats(),
    retry: () => s.retry(),
    get state() { return s.state; },
  };
}

class Session {
  constructor(camera, video, { onState, onStats, canRetry }) {
    this.camera = camera;
    this.video = video;
    this.onState = onState;
    this.onStats = onStats;
    this.canRetry = canRetry;
    this.gen = 0;         // bumped by every connect and stop; async work of an older one is dropped
    this.pc = null;
    this.location = '';
    this.state = '';
    this.attempt = 0;     // failures since the last frame, for backoff
    this.cause = '';      // why the last attempt failed: "nosignal" (no frames) or "error"
    this.timer = 0;
    this.watch = 0;
    this.frames = 0;
    this.lastFrameAt = 0;
    this.answeredAt = 0;
    this.prev = null;     // previous raw stats, for rates
    this.info = {};
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
  }

  set(state, info = {}) {
    this.state = state;
    this.info = { attempt: this.attempt, cause: this.cause, retryAt: 0, error: '', status: 0, ...info };
    this.onState(state, this.info);
  }

  async connect() {
    const gen = ++this.gen;
    this.teardown();
    clearTimeout(this.timer);
    open.add(this);
    this.set('connecting');
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      const tr = pc.addTransceiver('video', { direction: 'recvonly' });
      preferH264(tr);
      pc.ontrack = (e) => {
        if (gen !== this.gen) return;
        this.video.srcObject = e.streams[0] || new MediaStream([e.track]);
        this.video.play().catch(() => { /* autoplay of muted video is allowed; a refusal shows as no frames */ });
      };
      const lost = () => { if (gen === this.gen) this.fail(new WhepError('connection lost'), 'nosignal'); };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') lost();
      };
      // The hub ending the session (DTLS close) is known at once; ICE would
      // take many seconds to notice.
      const dtls = tr.receiver.transport;
      if (dtls) dtls.onstatechange = () => { if (dtls.state === 'closed' || dtls.state === 'failed') lost(); };
      this.video.onloadeddata = () => { if (gen === this.gen) this.frame(); };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, GATHER_MS);
      if (gen !== this.gen) return;
      // request() adds the CSRF token and handles a lost session; a refusal
      // throws, with the hub's status and words.
      const res = await request(url(this.camera), {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Accept: 'application/sdp' },
        body: pc.localDescription.sdp,
        signal: AbortSignal.timeout(POST_MS),
      });
      const loc = res.headers.get('Location');
      if (loc) this.location = new URL(loc, res.url || location.href).href;
      if (gen !== this.gen) { this.release(); return; } // stopped while the hub answered
      const sdp = await res.text();
      if (gen !== this.gen) { this.release(); return; }
      await pc.setRemoteDescription({ type: 'answer', sdp });
      this.answeredAt = Date.now();
      this.frames = 0;
      this.prev = null;
      clearInterval(this.watch);
      this.watch = setInterval(() => this.check(gen), WATCH_MS);
    } catch (err) {
      if (gen !== this.gen) return;
      const e = err instanceof WhepError ? err
        : new WhepError(err.name === 'TimeoutError' ? 'the hub did not answer in time' : err.message || String(err), err.status || 0);
      this.fail(e, 'error');
    }
  }

  // frame is called when a new frame has been decoded.
  frame() {
    this.lastFrameAt = Date.now();
    if (this.state !== 'playing') {
      this.attempt = 0;
      this.cause = '';
      this.set('playing');
    }
  }

  async check(gen) {
    let st;
    try {
      st = await this.read();
    } catch {
      return; // closed meanwhile
    }
    if (gen !== this.gen) return;
    if (st.framesDecoded > this.frames) {
      this.frames = st.framesDecoded;
      this.frame();
    }
    const now = Date.now();
    const down = this.pc?.connectionState === 'disconnected';
    if (this.state === 'playing' && now - this.lastFrameAt > NO_SIGNAL_MS) this.set('nosignal', { since: this.lastFrameAt });
    else if (this.state === 'nosignal' && (down || now - this.lastFrameAt > DEAD_MS)) this.fail(new WhepError(down ? 'connection lost' : 'no frames'), 'nosignal');
    else if (this.state === 'connecting' && !this.frames && now - this.answeredAt > FIRST_FRAME_MS) this.fail(new WhepError('no video received'), 'nosignal');
    if (gen === this.gen) this.onStats(st);
  }

  fail(err, cause) {
    this.gen++;
    this.teardown();
    this.attempt++;
    this.cause = cause;
    // 4xx other than 408/429: asking again will not help (unknown camera, bad offer).
    const final = err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
    let retryAt = 0;
    if (!final && this.canRetry()) {
      const ms = Math.min(BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length) - 1], cause === 'nosignal' ? NO_SIGNAL_RETRY_MS : Infinity);
      retryAt = Date.now() + ms;
      this.timer = setTimeout(() => this.connect(), ms);
    }
    this.set('failed', { error: err.message, status: err.status, cause, retryAt, since: this.lastFrameAt });
  }

  // retry reconnects now unless playing (the camera came back online).
  retry() {
    if (this.state === 'playing' || this.state === 'closed') return;
    if (this.state === 'connecting' && this.pc) return; // an attempt is under way
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.gen++;
    clearTimeout(this.timer);
    this.teardown();
    open.delete(this);
    this.set('closed');
  }

  // teardown blanks the video (never a frozen last frame), ends the hub
  // session and closes the peer connection — after the DELETE has been
  // answered, so the hub sees an orderly end rather than a vanished peer.
  teardown() {
    clearInterval(this.watch);
    this.watch = 0;
    this.video.onloadeddata = null;
    if (this.video.srcObject) {
      this.video.pause();
      this.video.srcObject = null;
    }
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      pc.ontrack = pc.onconnectionstatechange = null;
      for (const r of pc.getReceivers()) if (r.transport) r.transport.onstatechange = null;
    }
    const ended = this.release();
    if (pc) Promise.race([ended, new Promise((r) => setTimeout(r, CLOSE_WAIT_MS))]).finally(() => pc.close());
  }

  release() {
    if (!this.location) return Promise.resolve();
    const loc = this.location;
    this.location = '';
    // keepalive: the DELETE must survive the page being closed.
    return request(loc, { method: 'DELETE', keepalive: true })
      .catch((err) => { if (err.status !== 404) console.warn(`whep: end session ${loc}:`, err.message); });
  }

  // read gathers the numbers worth showing from getStats: frames, rate,
  // size, network round trip and how long frames wait in the jitter buffer.
  async read() {
    const pc = this.pc;
    if (!pc) throw new Error('closed');
    const report = await pc.getStats();
    let inb = null;
    let pairId = '';
    const pairs = [];
    report.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') inb = r;
      else if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
      else if (r.type === 'candidate-pair') pairs.push(r);
    });
    const pair = (pairId && report.get(pairId)) || pairs.find((p) => p.nominated && p.state === 'succeeded');
    const now = performance.now();
    const cur = {
      at: now,
      frames: inb?.framesDecoded ?? 0,
      bytes: inb?.bytesReceived ?? 0,
      jbDelay: inb?.jitterBufferDelay ?? 0,
      jbCount: inb?.jitterBufferEmittedCount ?? 0,
    };
    const prev = this.prev;
    this.prev = cur;
    const dt = prev ? (now - prev.at) / 1000 : 0;
    let jitterMs = null;
    if (prev && cur.jbCount > prev.jbCount) jitterMs = ((cur.jbDelay - prev.jbDelay) / (cur.jbCount - prev.jbCount)) * 1000;
    else if (cur.jbCount) jitterMs = (cur.jbDelay / cur.jbCount) * 1000;
    return {
      camera: this.camera,
      state: this.state,
      framesDecoded: cur.frames,
      fps: inb?.framesPerSecond ?? (dt ? (cur.frames - prev.frames) / dt : null),
      width: inb?.frameWidth ?? this.video.videoWidth ?? 0,
      height: inb?.frameHeight ?? this.video.videoHeight ?? 0,
      rttMs: pair?.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null,
      jitterMs,
      kbps: dt ? ((cur.bytes - prev.bytes) * 8) / dt / 1000 : null,
      codec: inb?.codecId ? report.get(inb.codecId)?.mimeType || '' : '',
    };
  }

  // stats is a fresh reading, null when not connected.
  async stats() {
    if (!this.pc) return null;
    try {
      const pc = this.pc;
      const report = await pc.getStats();
      let frames = 0;
      report.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames = r.framesDecoded ?? 0; });
      return { camera: this.camera, state: this.state, framesDecoded: frames };
    } catch {
      return null;
    }
  }
}

// preferH264 puts H.264 first (packetization-mode 1, Constrained Baseline
// before others): cameras send it, so the hub can relay without transcoding.
// Other codecs stay listed after it, in case the hub offers a fallback.
function preferH264(tr) {
  if (typeof tr.setCodecPreferences !== 'function' || !window.RTCRtpReceiver?.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs || [];
  const score = (c) => {
    if (c.mimeType.toLowerCase() !== 'video/h264') return 9;
    const f = c.sdpFmtpLine || '';
    return (f.includes('packetization-mode=1') ? 0 : 2) + (/profile-level-id=42e0/i.test(f) ? 0 : 1);
  };
  if (!codecs.some((c) => score(c) < 9)) return;
  const sorted = codecs.map((c, i) => [score(c), i, c]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
  try {
    tr.setCodecPreferences(sorted);
  } catch (err) {
    console.warn('whep: setCodecPreferences:', err.message);
  }
}

// gathered resolves when ICE gathering is complete or after ms.
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}
