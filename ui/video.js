// Live video: a Viewer ties one camera to one <video> (the WHEP session, the
// camera's status from the store, and the words to show when there is no
// picture), and the Player is the large live view that opens from the
// table, the detail panel or a wall tile. The wall (wall.js) reuses Viewer.

import { play } from './whep.js';
import { t, label, num, clock, errorText } from './i18n.js';
import { cameraLink } from './api.js';
import { copyButton } from './dialog.js';
import { esc } from './html.js';

const HIDDEN_MS = 30000; // a tab left in the background stops its streams after this (sites have few uplink slots)

export const isDown = (status) => status === 'offline' || status === 'unreachable';

const secs = (at) => Math.max(0, Math.ceil((at - Date.now()) / 1000));

// Viewers that should be playing, for pausing while the tab is hidden.
const viewers = new Set();
document.addEventListener('visibilitychange', () => { for (const v of viewers) v.visibility(); });

export class Viewer {
  // onRender() is called whenever what the viewer shows may have changed.
  constructor(video, { store, onRender = () => {} }) {
    this.video = video;
    this.store = store;
    this.onRender = onRender;
    this.camera = null;
    this.active = false;   // wanted on screen
    this.handle = null;    // the WHEP session, while one runs
    this.token = null;     // identifies the current session's callbacks
    this.ws = '';          // the session's state
    this.info = {};
    this.stats = null;     // latest stats while connected
    this.status = undefined; // the camera's status as last seen, to notice it coming back
    this.ticker = 0;
    this.hiddenTimer = 0;
    this.suspended = false;
  }

  get device() { return this.camera ? this.store.devices.get(this.camera) || null : null; }

  // setCamera shows id (null for none), playing it if the viewer is active.
  setCamera(id) {
    id = id || null;
    if (id === this.camera) return;
    const active = this.active;
    this.stop();
    this.camera = id;
    if (active) this.start();
    else this.render();
  }

  start() {
    if (!this.active) {
      this.active = true;
      viewers.add(this);
      this.ticker = setInterval(() => this.render(), 1000); // countdowns
      this.status = this.device?.status;
    }
    this.connect();
    this.render();
  }

  // connect starts a session unless one runs or none is wanted. A camera
  // behind an offline agent (unreachable) is not asked for: the hub would
  // answer 503. One reported offline is tried once (the probe may lag the
  // truth) but not retried until it comes back (changed).
  connect() {
    if (!this.active || !this.camera || this.handle || this.suspended || this.device?.status === 'unreachable') return;
    const token = {};
    this.token = token;
    this.handle = play(this.camera, this.video, {
      onState: (s, info) => {
        if (this.token !== token) return;
        this.ws = s;
        this.info = info;
        if (s === 'failed') this.stats = null;
        this.render();
      },
      onStats: (st) => {
        if (this.token !== token) return;
        this.stats = st;
        this.onRender();
      },
      canRetry: () => !isDown(this.device?.status),
    });
  }

  stop() {
    this.active = false;
    viewers.delete(this);
    clearInterval(this.ticker);
    clearTimeout(this.hiddenTimer);
    this.ticker = 0;
    this.suspended = false;
    this.disconnect();
    this.render();
  }

  disconnect() {
    this.token = null;
    const h = this.handle;
    this.handle = null;
    h?.stop();
    this.ws = '';
    this.info = {};
    this.stats = null;
  }

  visibility() {
    clearTimeout(this.hiddenTimer);
    if (document.visibilityState === 'hidden') {
      this.hiddenTimer = setTimeout(() => { this.suspended = true; this.disconnect(); }, HIDDEN_MS);
    } else if (this.suspended) {
      this.suspended = false;
      this.connect();
      this.render();
    }
  }

  // changed is called when the camera's record in the store may have
  // changed: a camera coming back is the moment to reconnect, not the
  // backoff timer.
  changed() {
    const now = this.device?.status;
    const was = this.status;
    this.status = now;
    if (now && !isDown(now) && (was === undefined || isDown(was))) {
      if (this.handle) this.handle.retry();
      else this.connect();
    }
    this.render();
  }

  // view is what to show: state (empty, connecting, playing, nosignal,
  // offline, failed), a title in big letters and detail in small ones.
  view() {
    const d = this.device;
    const { ws, info } = this;
    if (!this.camera) return { state: 'empty', title: '', detail: '' };
    if (ws === 'playing') return { state: 'playing', title: '', detail: '' };
    if (d && isDown(d.status)) {
      return {
        state: 'offline',
        title: t('video.offline'),
        detail: [d.status !== 'offline' && label('status', d.status), label('reason', d.reason)].filter(Boolean).join(' · '),
        hint: t('video.offline_hint'),
      };
    }
    if (ws === 'nosignal' || ((ws === 'failed' || ws === 'connecting') && info.cause === 'nosignal')) {
      // Reconnecting after a loss of picture still says "No signal": that
      // is what the operator needs to know.
      let detail = '';
      if (ws === 'connecting') detail = t('video.reconnecting');
      else if (info.retryAt) detail = t('video.retry_in', { n: secs(info.retryAt) });
      else if (info.since) detail = t('video.no_frames_for', { n: Math.floor((Date.now() - info.since) / 1000) });
      return { state: 'nosignal', title: t('video.no_signal'), detail };
    }
    if (ws === 'failed' && info.status === 415) {
      // The camera's video is in a codec the live path does not carry: not
      // a fault, and asking again will not help.
      return { state: 'failed', title: t('video.codec'), detail: t('video.codec_hint') };
    }
    if (ws === 'failed') {
      return {
        state: 'failed',
        title: info.retryAt ? t('video.retry_in', { n: secs(info.retryAt) }) : t('video.failed'),
        detail: info.error ? t('video.error', { error: info.error }) : '',
      };
    }
    return { state: 'connecting', title: t(info.attempt ? 'video.reconnecting' : 'video.connecting'), detail: '' };
  }

  render() { this.onRender(); }

  // sample is a fresh frame count, for tests and diagnostics.
  async sample() {
    const s = this.handle ? await this.handle.stats() : null;
    return s && { ...s, state: this.view().state };
  }
}

// statsRows formats a viewer's stats as [label, value] pairs.
export function statsRows(st) {
  if (!st) return [];
  const ms = (v) => (v == null || !Number.isFinite(v) ? '–' : `${num(v, v < 10 ? 1 : 0)} ms`);
  const rows = [
    [t('video.fps'), st.fps == null ? '–' : num(st.fps, 1)],
    [t('video.resolution'), st.width && st.height ? `${st.width}×${st.height}` : '–'],
    [t('video.rtt'), ms(st.rttMs)],
    [t('video.jitter_buffer'), ms(st.jitterMs)],
  ];
  if (st.rttMs != null || st.jitterMs != null) rows.push([t('video.latency'), ms((st.rttMs || 0) + (st.jitterMs || 0))]);
  rows.push([t('video.bitrate'), st.kbps == null ? '–' : `${num(st.kbps)} kbit/s`]);
  if (st.codec) rows.push([t('video.codec'), st.codec.replace(/^video\//, '')]);
  return rows;
}

// msgHTML is the overlay shown instead of the picture.
export function msgHTML(v) {
  if (v.state === 'playing' || v.state === 'empty') return '';
  return `<b>${esc(v.title)}</b>${v.detail ? `<span>${esc(v.detail)}</span>` : ''}${v.hint ? `<small>${esc(v.hint)}</small>` : ''}`;
}

// LINK_TTLS: how long a viewing link for another player lasts, the first
// the default.
const LINK_TTLS = ['10m', '1h', '8h'];

// Player is the large live view of one camera, a modal dialog. Esc closes it
// and ends the session. canLink: the account may make viewing links for
// other WHEP players.
export class Player {
  constructor(dialog, { store, canLink = false, onClose = () => {} }) {
    this.dialog = dialog;
    this.store = store;
    this.onClose = onClose;
    this.canLink = canLink;
    this.link = null; // {camera, url, expires} or {camera, error}
    dialog.dataset.state = 'closed';
    dialog.tabIndex = -1;
    dialog.setAttribute('aria-labelledby', 'player-title');
    dialog.innerHTML = `
      <header class="p-head">
        <span class="dot" aria-hidden="true"></span>
        <h2 id="player-title"><span class="p-id"></span> <span class="p-name"></span></h2>
        <span class="p-status"></span>
        <button type="button" id="player-link" class="p-linkbtn" hidden></button>
        <button type="button" class="close" data-close>×</button>
      </header>
      <div class="p-link" id="player-link-box" hidden>
        <span class="p-link-l"></span>
        <input id="player-link-url" readonly spellcheck="false">
        <button type="button" id="player-link-copy"></button>
        <span id="player-link-expiry" class="muted"></span>
        <span class="grow"></span>
        <label class="muted"><span class="p-link-for"></span> <select id="player-link-ttl">${LINK_TTLS.map((d) => `<option value="${d}">${d}</option>`).join('')}</select></label>
        <button type="button" id="player-link-new"></button>
      </div>
      <div class="stage">
        <video id="player-video" muted autoplay playsinline></video>
        <div class="v-msg" role="status" aria-live="polite"></div>
        <dl class="p-stats"></dl>
      </div>
      <footer class="p-foot"><span class="p-where"></span><span class="grow"></span><span class="muted p-hint"></span></footer>`;
    this.video = dialog.querySelector('video');
    this.viewer = new Viewer(this.video, { store, onRender: () => this.render() });
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); this.close(); });
    // Closed by the browser (Escape): close the player too. The event comes
    // a moment after close(), by which time show() may have opened the
    // dialog again for another camera: then it is not the dialog's close.
    dialog.addEventListener('close', () => { if (!dialog.open) this.close(); });
    dialog.addEventListener('click', (e) => {
      if (e.target === dialog || e.target.closest('[data-close]')) this.close();
      else if (e.target.closest('#player-link')) this.toggleLink();
      else if (e.target.closest('#player-link-new')) this.makeLink();
      else if (e.target.closest('#player-link-copy') && this.link?.url) copyButton(e.target.closest('button'), this.link.url);
    });
    dialog.querySelector('#player-link').hidden = !canLink;
    // Keys pressed in the live view are its own: the table behind must not move.
    dialog.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); this.close(); }
      e.stopPropagation();
    });
    this.retranslate();
  }

  get open() { return this.dialog.open; }
  get camera() { return this.viewer.camera; }

  show(id) {
    if (!id) return;
    this.viewer.setCamera(id);
    this.dialog.dataset.camera = id;
    this.renderLink();
    if (!this.dialog.open) this.dialog.showModal();
    this.viewer.start();
    // The dialog itself takes focus, not its close button: the Enter that
    // opened the view (on a wall tile) must not also press "close".
    this.dialog.focus();
  }

  // Viewing links: another WHEP player (a video wall controller, VLC) may
  // watch this camera without signing in, until the link expires.

  toggleLink() {
    if (this.link?.camera === this.camera) { this.link = null; this.renderLink(); return; }
    this.makeLink();
  }

  async makeLink() {
    const camera = this.camera;
    if (!camera || !this.canLink) return;
    const ttl = this.dialog.querySelector('#player-link-ttl').value;
    try {
      const l = await cameraLink(camera, ttl);
      this.link = { camera, ...l };
    } catch (err) {
      this.link = { camera, error: errorText(err) };
    }
    if (this.camera === camera) this.renderLink();
  }

  renderLink() {
    const l = this.link?.camera === this.camera ? this.link : null;
    const box = this.dialog.querySelector('#player-link-box');
    box.hidden = !l;
    this.dialog.querySelector('#player-link').setAttribute('aria-expanded', String(!!l));
    if (!l) return;
    const url = this.dialog.querySelector('#player-link-url');
    url.value = l.url || '';
    url.hidden = !l.url;
    this.dialog.querySelector('#player-link-copy').hidden = !l.url;
    const exp = this.dialog.querySelector('#player-link-expiry');
    exp.textContent = l.error || (l.expires ? t('video.link_until', { time: clock(l.expires) }) : '');
    exp.className = l.error ? 'err' : 'muted';
    if (l.url) { url.focus(); url.select(); }
  }

  close() {
    if (!this.viewer.camera && !this.dialog.open) return;
    this.link = null;
    this.renderLink();
    this.viewer.stop();
    this.viewer.setCamera(null);
    delete this.dialog.dataset.camera;
    this.dialog.dataset.state = 'closed';
    if (this.dialog.open) this.dialog.close();
    this.onClose();
  }

  // changed is told which devices changed (null: maybe all).
  changed(ids) {
    if (this.viewer.camera && (!ids || ids.has(this.viewer.camera))) this.viewer.changed();
  }

  retranslate() {
    const c = this.dialog.querySelector('[data-close]');
    c.title = `${t('video.close')} (Esc)`;
    c.setAttribute('aria-label', t('video.close'));
    this.dialog.querySelector('.p-stats').setAttribute('aria-label', t('video.stats'));
    this.dialog.querySelector('.p-hint').textContent = t('video.player_hint');
    const link = this.dialog.querySelector('#player-link');
    link.textContent = t('video.link');
    link.title = t('video.link_title');
    this.dialog.querySelector('.p-link-l').textContent = t('video.link_label');
    this.dialog.querySelector('#player-link-copy').textContent = t('dialog.copy');
    this.dialog.querySelector('.p-link-for').textContent = t('video.link_for');
    this.dialog.querySelector('#player-link-new').textContent = t('video.link_new');
    for (const o of this.dialog.querySelectorAll('#player-link-ttl option')) o.textContent = t(`video.ttl_${o.value}`);
    this.render();
  }

  render() {
    const id = this.viewer.camera;
    if (!id) return;
    const dlg = this.dialog;
    const d = this.viewer.device;
    const v = this.viewer.view();
    if (dlg.dataset.state !== v.state) dlg.dataset.state = v.state;
    const status = d?.status || 'unknown';
    dlg.querySelector('.p-head').className = `p-head s-${status}`;
    dlg.querySelector('.p-id').textContent = id;
    dlg.querySelector('.p-name').textContent = d?.name || '';
    dlg.querySelector('.p-status').textContent = d ? label('status', status) : '';
    const msg = msgHTML(v);
    const box = dlg.querySelector('.v-msg');
    if (box._html !== msg) { box.innerHTML = msg; box._html = msg; }
    const st = v.state === 'playing' || v.state === 'nosignal' ? this.viewer.stats : null;
    const stats = statsRows(st).map(([k, val]) => `<dt>${esc(k)}</dt><dd>${esc(val)}</dd>`).join('');
    const dl = dlg.querySelector('.p-stats');
    if (dl._html !== stats) { dl.innerHTML = stats; dl._html = stats; }
    dl.hidden = !stats;
    dlg.querySelector('.p-where').textContent = d
      ? [d.site_name || d.site, d.district, d.agent && t('video.via_agent', { agent: d.agent })].filter(Boolean).join(' · ')
      : '';
  }
}
