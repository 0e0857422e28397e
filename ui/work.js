// The maintenance crews' view of work orders (#work), made for a phone
// held in the sun: one column of large, high-contrast cards, every control
// a thumb's width. "My orders" (or every open one) in the hub's "fix
// first" order, or nearest first once the crew asks for their position;
// an order's devices with why they are down, directions to the site, its
// history, and one tap for each action the state allows, with a note that
// goes along. "Re-probe now" shows within seconds whether what the crew
// just did worked. The hub ranks, keeps the deadlines and decides every
// action; a refusal is shown as the hub words it. Live work-order events
// redraw what is open, at most once a second.

import { t, has, label, num, clock, dateTime, ago, errorText, named } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';
import { formDialog } from './dialog.js';

// STATES and ACTIONS are the hub's (hub/workorder); TRAIL_ACTIONS also
// name what the hub does by itself in an order's history.
export const STATES = ['open', 'assigned', 'in_progress', 'on_hold', 'fixed', 'closed', 'cancelled'];
export const ACTIONS = ['accept', 'start', 'hold', 'resume', 'fix', 'note', 'reopen'];
export const TRAIL_ACTIONS = ['open', 'join', 'assign', 'accept', 'start', 'hold', 'resume', 'fix', 'cancel', 'reopen', 'note',
  'verify', 'repeat', 'breach', 'healthy', 'fault', 'probe', 'asset', 'photo'];
export const BREACHES = ['respond', 'fix'];

// OFFERED: the states in which a crew is offered each action, as the
// lifecycle in docs/maintenance.md has them. Only an offer: the hub
// checks every action and its refusal is shown.
const OFFERED = {
  accept: ['assigned'],
  start: ['open', 'assigned'],
  hold: ['open', 'assigned', 'in_progress'],
  resume: ['on_hold'],
  fix: ['open', 'assigned', 'in_progress'],
  note: STATES,
  reopen: ['fixed', 'closed', 'cancelled'],
};
// NEEDS_WORDS: the hub refuses these without a note (the reason for a
// hold; a note's text).
const NEEDS_WORDS = new Set(['hold', 'note']);
const REFRESH_MS = 1000;  // live events refetch at most this often
const SCOPE_KEY = 'citywatch.work_scope';
const NOTE_MAX = 2000;    // the hub's limit on a note

// canLocate reports whether this page may ask where the phone is: the
// browser has geolocation and the page's Permissions-Policy allows it.
export function canLocate() {
  if (!navigator.geolocation) return false;
  const policy = document.permissionsPolicy || document.featurePolicy;
  return policy?.allowsFeature ? policy.allowsFeature('geolocation') : true;
}

export const stateLabel = (s) => label('work.state', s);
export const actionLabel = (a) => label('work.trail', a);

// duration formats ms as "2h 40m", "3d 4h" or "12m".
function duration(ms) {
  const m = Math.max(0, Math.round(ms / 60000));
  if (m < 60) return t('work.dur_m', { m: num(m) });
  if (m < 48 * 60) return t('work.dur_hm', { h: num(Math.floor(m / 60)), m: num(m % 60) });
  return t('work.dur_dh', { d: num(Math.floor(m / 1440)), h: num(Math.floor((m % 1440) / 60)) });
}

// metres between two {lat, lon} (haversine; a city is small enough).
export function metres(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function distanceText(m) {
  return m < 1000 ? t('work.dist_m', { n: num(Math.round(m / 10) * 10) }) : t('work.dist_km', { n: num(m / 1000, 1) });
}

const located = (loc) => loc && Number.isFinite(loc.lat) && Number.isFinite(loc.lon) && !(loc.lat === 0 && loc.lon === 0);

// geoURI is a link a phone's maps app opens with directions to a place.
export function geoURI(loc, name) {
  const at = `${loc.lat.toFixed(6)},${loc.lon.toFixed(6)}`;
  // The label ends at the first ')': brackets in a name are encoded too.
  const tag = encodeURIComponent(name || '').replace(/[()]/g, (c) => (c === '(' ? '%28' : '%29'));
  return `geo:${at}?q=${at}(${tag})`;
}

// dur says a number of minutes as hours and minutes.
function dur(min) {
  const m = Math.round(Math.abs(min));
  return m >= 60 ? t('work.dur_hm', { h: num(Math.floor(m / 60)), m: num(m % 60) }) : t('work.dur_m', { m: num(m) });
}

// whyText says the hub's rank of an order in the console's language, from
// its parts (rank.why is the hub's English).
export function whyText(r) {
  if (!r || typeof r.score !== 'number') return '';
  const parts = [t('work.why_blind', { cams: num(r.blind_cameras || 0), sensors: num(r.blind_sensors || 0) })];
  if (r.coverage_lost_ha > 0) parts.push(t('work.why_cov', { ha: num(r.coverage_lost_ha, 2), w: num(r.weighted_ha || 0, 2) }));
  parts.push(t('work.why_crit', { n: num(r.criticality || 1) }), t('work.why_age', { d: dur((r.age_h || 0) * 60) }));
  parts.push(r.fix_left_min < 0 ? t('work.why_late', { d: dur(r.fix_left_min) }) : t('work.why_left', { d: dur(r.fix_left_min || 0) }));
  return parts.join('; ');
}

export class WorkView {
  // store: the device store (locations, for "nearest first" and
  // directions); can(p): what the account may do; me(): the signed-in
  // account; onDevice(id) shows a device in the monitoring view, onLive(id)
  // a camera's live video (null when the account cannot).
  constructor(root, { store, can, me, onDevice = null, onLive = null }) {
    this.root = root;
    this.store = store;
    this.can = can;
    this.me = me;
    this.onDevice = onDevice;
    this.onLive = onLive;
    this.shown = false;
    this.mine = this.savedScope();
    this.near = false;     // nearest first (needs here)
    this.here = null;      // {lat, lon}: where the phone was when asked
    this.locating = false;
    this.list = null;      // {orders, total, at}
    this.listError = '';
    this.listSeq = 0;
    this.id = '';          // the order open in the detail
    this.order = null;     // {order, history}
    this.detailError = '';
    this.detailSeq = 0;
    this.busy = '';        // the action in flight
    this.probing = false;
    this.probe = null;     // {id, at, results}
    this.stale = true;     // something changed while hidden
    this.timer = 0;
    this.last = 0;
    this.build();
  }

  // savedScope is the list last chosen on this browser; at first a crew
  // sees their own orders, a dispatcher every open one.
  savedScope() {
    let saved = '';
    try { saved = localStorage.getItem(SCOPE_KEY) || ''; } catch { /* storage disabled */ }
    return saved ? saved === 'mine' : this.can('work.manage');
  }

  build() {
    this.root.classList.add('wk');
    this.root.innerHTML = html`
      <header class="v-top wk-top">
        <h2 id="work-h" data-i18n="view.work">${t('view.work')}</h2>
        <span class="grow"></span>
        <button type="button" id="work-refresh" data-i18n="work.refresh">${t('work.refresh')}</button>
      </header>
      <div class="wk-bar">
        <div class="wk-seg" role="group" data-i18n-label="work.which" aria-label="${t('work.which')}">
          <button type="button" id="work-mine" data-scope="mine" aria-pressed="false" data-i18n="work.mine">${t('work.mine')}</button>
          <button type="button" id="work-all" data-scope="all" aria-pressed="false" data-i18n="work.all">${t('work.all')}</button>
        </div>
        <button type="button" id="work-near" aria-pressed="false" data-i18n-title="work.near_title" title="${t('work.near_title')}">${t('work.near')}</button>
      </div>
      <p id="work-notice" class="wk-msg err" role="alert" hidden></p>
      <div class="wk-body">
        <div class="wk-list" id="work-scroller" role="region" aria-labelledby="work-h">
          <p id="work-count" class="wk-count" role="status"></p>
          <p id="work-empty" class="wk-empty" hidden></p>
          <ol id="work-list"></ol>
        </div>
        <section id="work-detail" class="wk-detail" hidden aria-labelledby="work-detail-h" tabindex="-1">
          <div id="work-dhead" class="wk-dhead"></div>
          <p id="work-msg" class="wk-msg" role="alert" hidden></p>
          <div class="wk-acts">
            <label class="wk-note"><span data-i18n="work.note_label">${t('work.note_label')}</span>
              <textarea id="work-note" rows="2" maxlength="${NOTE_MAX}" data-i18n-placeholder="work.note_placeholder" placeholder="${t('work.note_placeholder')}"></textarea></label>
            <div id="work-btns" class="wk-btns" role="group" data-i18n-label="work.actions" aria-label="${t('work.actions')}"></div>
            <button type="button" id="work-probe" class="wk-probe" hidden data-i18n="work.probe">${t('work.probe')}</button>
            <div id="work-probe-results" class="wk-probed" role="status" hidden></div>
          </div>
          <div id="work-dbody" class="wk-dbody"></div>
        </section>
      </div>`;
    this.$ = (sel) => this.root.querySelector(sel);
    this.$('#work-probe').hidden = !this.can('device.probe');
    // Without a way to locate the phone the hub's order is the only one.
    this.$('#work-near').hidden = !canLocate();
    this.root.addEventListener('click', (e) => this.click(e));
    this.root.addEventListener('change', (e) => {
      if (e.target.id === 'work-photo' && e.target.files?.[0]) this.upload(e.target.files[0]);
    });
  }

  click(e) {
    const at = (sel) => e.target.closest(sel);
    let b;
    if ((b = at('[data-scope]'))) this.setScope(b.dataset.scope === 'mine');
    else if (at('#work-near')) this.toggleNear();
    else if (at('#work-refresh')) this.refresh();
    else if ((b = at('[data-order]'))) this.open(b.dataset.order);
    else if (at('#work-back')) this.close();
    else if ((b = at('[data-act]'))) this.act(b.dataset.act);
    else if (at('#work-probe')) this.probeNow();
    else if (at('[data-snapshot]')) this.snapshot();
    else if ((b = at('[data-device]'))) this.onDevice?.(b.dataset.device);
    else if ((b = at('[data-live]'))) this.onLive?.(b.dataset.live);
  }

  // The view.

  show() {
    this.shown = true;
    this.root.hidden = false;
    this.renderBar();
    if (this.stale || !this.list) this.refresh();
    else { this.renderList(); this.renderDetail(); }
  }

  hide() {
    this.shown = false;
    this.root.hidden = true;
    clearTimeout(this.timer);
    this.timer = 0;
  }

  // event takes a work-order event from the websocket ({kind, order,
  // transition}): what is on screen is fetched anew, at most once a
  // second; a hidden view does it when shown.
  event(ev) {
    if (!ev || typeof ev !== 'object') return;
    this.stale = true;
    if (this.shown) this.soon();
  }

  soon() {
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = 0; this.refresh(); }, Math.max(0, this.last + REFRESH_MS - Date.now()));
  }

  // refresh fetches the list and the open order; resolves when drawn.
  refresh() {
    this.last = Date.now();
    this.stale = false;
    return Promise.all([this.loadList(), this.id ? this.loadDetail() : null]);
  }

  // tick redraws the deadlines' countdown now and then (app.js calls it
  // every second).
  tick(now) {
    if (this.shown && this.list && Math.floor(now / 1000) % 30 === 0) this.renderList();
  }

  // escape closes the open order; reports whether it did.
  escape() {
    if (!this.id) return false;
    this.close();
    return true;
  }

  retranslate() {
    this.renderBar();
    this.renderList();
    this.renderDetail();
  }

  // The list.

  setScope(mine) {
    if (mine === this.mine) return;
    this.mine = mine;
    try { localStorage.setItem(SCOPE_KEY, mine ? 'mine' : 'all'); } catch { /* storage disabled */ }
    this.list = null;
    this.renderBar();
    this.renderList();
    this.loadList();
  }

  async loadList() {
    const seq = ++this.listSeq;
    try {
      const l = await api.workOrders({ mine: this.mine });
      if (seq !== this.listSeq) return;
      this.list = l;
      this.listError = '';
    } catch (err) {
      if (seq !== this.listSeq) return;
      this.listError = t('work.load_error', { error: errorText(err) });
    }
    this.renderList();
  }

  // toggleNear sorts nearest first, asking the browser where the phone is
  // only now that the crew asked (a second press goes back to the hub's
  // order).
  toggleNear() {
    if (this.near || this.locating) { this.near = false; this.locating = false; this.renderBar(); this.renderList(); return; }
    if (!canLocate()) { this.notice(t('work.geo_none')); return; }
    this.locating = true;
    this.renderBar();
    navigator.geolocation.getCurrentPosition((p) => {
      if (!this.locating) return; // given up meanwhile
      this.locating = false;
      this.here = { lat: p.coords.latitude, lon: p.coords.longitude };
      this.near = true;
      this.notice('');
      this.renderBar();
      this.renderList();
    }, (err) => {
      if (!this.locating) return;
      this.locating = false;
      this.near = false;
      this.notice(t('work.geo_failed', { error: err.message || String(err.code) }));
      this.renderBar();
      this.renderList();
    }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 });
  }

  // place is where an order's work is: its first device with a location.
  place(o) {
    for (const d of o.devices) {
      const loc = this.store.devices.get(d.id)?.location;
      if (located(loc)) return loc;
    }
    return null;
  }

  // rows are the orders to show with their distance (m, or null): the
  // hub's rank, or nearest first (orders without a place last, in rank
  // order).
  rows() {
    const rows = (this.list?.orders || []).map((o, i) => {
      const loc = this.here ? this.place(o) : null;
      return { o, i, m: loc ? metres(this.here, loc) : null };
    });
    if (this.near) rows.sort((a, b) => (a.m ?? Infinity) - (b.m ?? Infinity) || a.i - b.i);
    return rows;
  }

  notice(text) {
    const el = this.$('#work-notice');
    el.textContent = text;
    el.hidden = !text;
  }

  renderBar() {
    this.$('#work-mine').setAttribute('aria-pressed', String(this.mine));
    this.$('#work-all').setAttribute('aria-pressed', String(!this.mine));
    const near = this.$('#work-near');
    near.setAttribute('aria-pressed', String(this.near));
    near.textContent = t(this.locating ? 'work.locating' : 'work.near');
    this.root.dataset.detail = this.id ? 'open' : '';
  }

  // fixLeft is the time to an order's fix deadline in ms (negative once
  // passed): the hub's rank counted down since the list was read, the
  // clock stopped while on hold.
  fixLeft(o, now = Date.now()) {
    const m = o.rank?.fix_left_min;
    if (Number.isFinite(m)) return m * 60000 - (o.state === 'on_hold' ? 0 : now - (this.list?.at || now));
    if (!o._fixBy) return null;
    return o._fixBy - (o.state === 'on_hold' ? (api.time(o.hold_since) || now) : now);
  }

  // due says how long is left to fix an order, red once a deadline is
  // breached.
  due(o) {
    const left = this.fixLeft(o);
    let text = '';
    if (left !== null && left < 0) text = t('work.fix_overdue', { d: duration(-left) });
    else if (left !== null) text = t(o.state === 'on_hold' ? 'work.fix_paused' : 'work.fix_left', { d: duration(left) });
    // A passed fix deadline says so already.
    const missed = o.breached.filter((b) => !(b === 'fix' && left !== null && left < 0)).map((b) => label('work.breached', b));
    return html`<span class="wk-due${o.breached.length ? ' late' : ''}" data-breached="${o.breached.join(',')}">${[...missed, text].filter(Boolean).join(' · ')}</span>`;
  }

  renderList() {
    const ol = this.$('#work-list');
    const empty = this.$('#work-empty');
    const count = this.$('#work-count');
    empty.classList.toggle('err', !!this.listError);
    if (!this.list || this.listError) {
      if (!this.list) ol.replaceChildren();
      empty.hidden = false;
      empty.textContent = this.listError || t('app.loading');
      if (!this.list) { count.textContent = ''; return; }
    }
    const focused = document.activeElement?.closest?.('#work-list [data-order]')?.dataset.order;
    const rows = this.rows();
    const me = this.me()?.name;
    ol.innerHTML = html`${rows.map(({ o, m }) => {
      const blind = (o.rank.blind_cameras || 0) + (o.rank.blind_sensors || 0);
      return html`<li class="wk-item">
        <button type="button" class="wk-card p${o.priority}${o.breached.length ? ' late' : ''}" data-order="${o.id}" data-state="${o.state}"
          aria-current="${o.id === this.id ? 'true' : 'false'}">
          <span class="wk-l1"><span class="wk-pri p${o.priority}">P${o.priority}</span><span class="wk-id">${o.id}</span>${o.assignee && o.assignee === me ? html`<span class="wk-yours">${t('work.yours')}</span>` : ''}<span class="wk-state st-${o.state}">${stateLabel(o.state)}</span></span>
          <span class="wk-site">${this.store.siteLabel(o.site, o.site_name || o.site)}</span>
          <span class="wk-l3"><span>${this.store.districtLabel(o.district)}</span><span class="wk-blind">${t('work.blind', { n: num(blind), total: num(o.devices.length) })}</span>${m !== null ? html`<span class="wk-dist">${distanceText(m)}</span>` : ''}</span>
          ${this.due(o)}
          ${whyText(o.rank) ? html`<span class="wk-why">${whyText(o.rank)}</span>` : ''}
        </button></li>`;
    })}`;
    if (focused) ol.querySelector(`[data-order="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
    if (!this.listError) {
      empty.hidden = rows.length > 0;
      empty.textContent = t(this.mine ? 'work.none_mine' : 'work.none');
    }
    const shown = this.list.orders.length;
    count.textContent = t(this.near ? 'work.count_near' : 'work.count', { n: num(shown), total: num(this.list.total) });
  }

  // The detail.

  open(id) {
    if (id !== this.id) {
      this.id = id;
      this.order = null;
      this.detailError = '';
      this.probe = null;
      this.$('#work-note').value = '';
      this.message('');
    }
    this.renderBar();
    this.renderList();
    this.renderDetail();
    this.$('#work-detail').focus({ preventScroll: true });
    this.$('#work-detail').scrollIntoView?.({ block: 'start' });
    return this.loadDetail();
  }

  close() {
    const was = this.id;
    this.id = '';
    this.order = null;
    this.probe = null;
    this.detailSeq++;
    this.renderBar();
    this.renderDetail();
    this.renderList();
    if (was) this.$(`#work-list [data-order="${CSS.escape(was)}"]`)?.focus();
  }

  async loadDetail() {
    const id = this.id;
    const seq = ++this.detailSeq;
    try {
      const d = await api.workOrderDetail(id);
      if (seq !== this.detailSeq || id !== this.id) return;
      this.order = d;
      this.detailError = '';
    } catch (err) {
      if (seq !== this.detailSeq || id !== this.id) return;
      this.detailError = errorText(err);
    }
    this.renderDetail();
  }

  // message says how an action went, in the detail: kind 'ok' or 'err'.
  message(text, kind = 'err') {
    const el = this.$('#work-msg');
    el.textContent = text;
    el.className = `wk-msg ${kind}`;
    el.dataset.kind = kind;
    el.hidden = !text;
  }

  // act does action on the open order with the note typed, asking for the
  // words first when the hub needs them; resolves when the answer is
  // shown. A test hook too (window.citywatch.work.act).
  async act(action, note = this.$('#work-note').value.trim()) {
    const id = this.id;
    if (!id || this.busy) return;
    if (NEEDS_WORDS.has(action) && !note) {
      note = await this.askWords(action);
      if (!note) return;
    }
    this.busy = action;
    this.message('');
    this.renderDetail();
    try {
      const d = await api.workAct(id, action, note);
      if (id !== this.id) return;
      this.detailSeq++; // an older read in flight must not undo this
      this.order = d;
      this.$('#work-note').value = '';
      this.message(t('work.done', { action: label('work.act', action), state: stateLabel(d.order.state) }), 'ok');
      this.stale = true;
      this.soon();
    } catch (err) {
      if (id === this.id) this.message(errorText(err), 'err');
    } finally {
      this.busy = '';
      this.renderDetail();
    }
  }

  // askWords asks for a hold's reason or a note's text; resolves to it, or
  // '' when cancelled.
  async askWords(action) {
    let words = '';
    const ok = await formDialog({
      title: t(`work.ask_${action}`),
      body: html`<label><span>${t(`work.ask_${action}_label`)}</span><textarea id="work-words" rows="3" required maxlength="${NOTE_MAX}"></textarea></label>`,
      label: t(`work.ask_${action}_submit`),
      onSubmit: (form) => { words = form.querySelector('#work-words').value.trim(); if (!words) throw new Error(t('work.words_needed')); return true; },
    });
    return ok ? words : '';
  }

  // probeNow has the agents probe the order's devices and shows their
  // fresh answers.
  async probeNow() {
    const id = this.id;
    if (!id || this.probing || !this.can('device.probe')) return;
    this.probing = true;
    this.message('');
    this.renderDetail();
    try {
      const r = await api.workProbe(id);
      if (id !== this.id) return;
      this.detailSeq++;
      this.probe = { id, at: Date.now(), results: r.results };
      this.order = { order: r.order, history: r.history };
    } catch (err) {
      if (id === this.id) this.message(errorText(err), 'err');
    } finally {
      this.probing = false;
      this.renderDetail();
    }
  }

  renderDetail() {
    const box = this.$('#work-detail');
    box.hidden = !this.id;
    if (!this.id) return;
    const d = this.order?.order;
    const back = html`<button type="button" id="work-back" class="wk-back" data-i18n-label="work.back" aria-label="${t('work.back')}">‹ ${t('work.orders')}</button>`;
    if (!d) {
      this.$('#work-dhead').innerHTML = html`${back}<h3 id="work-detail-h" class="wk-dtitle"><span class="wk-id">${this.id}</span></h3>`;
      this.$('#work-dbody').innerHTML = html`<p class="${this.detailError ? 'err' : 'muted'}">${this.detailError || t('app.loading')}</p>`;
      this.$('#work-btns').replaceChildren();
      this.$('#work-probe').disabled = true;
      this.$('#work-probe-results').hidden = true;
      return;
    }
    this.$('#work-dhead').innerHTML = html`${back}
      <h3 id="work-detail-h" class="wk-dtitle" data-order-id="${d.id}" data-state="${d.state}">
        <span class="wk-pri p${d.priority}">P${d.priority}</span><span class="wk-id">${d.id}</span><span class="wk-state st-${d.state}">${stateLabel(d.state)}</span></h3>
      <p class="wk-site">${this.store.siteLabel(d.site, d.site_name || d.site)}<span class="wk-district">${this.store.districtLabel(d.district)}</span></p>
      ${this.due(d)}
      ${this.detailError ? html`<p class="err">${this.detailError}</p>` : ''}`;

    const manage = this.can('work.manage');
    const offered = manage ? ACTIONS.filter((a) => OFFERED[a].includes(d.state)) : [];
    this.$('#work-btns').innerHTML = html`${offered.map((a) => html`<button type="button" class="wk-act act-${a}" id="work-act-${a}" data-act="${a}"${this.busy ? html` disabled` : ''}>${this.busy === a ? t('work.working') : label('work.act', a)}</button>`)}`;
    this.$('.wk-note').hidden = !manage;
    const probe = this.$('#work-probe');
    probe.disabled = this.probing;
    probe.textContent = t(this.probing ? 'work.probing' : 'work.probe');
    this.renderProbe();

    const loc = this.place(d);
    const name = this.store.siteLabel(d.site, d.site_name || d.site);
    const devices = html`<ul class="wk-devs">${d.devices.map((x) => html`<li class="wk-dev s-${x.status}" data-dev="${x.id}" data-healthy="${String(!!x.healthy)}">
        <span class="wk-dev-l1"><span class="dot" aria-hidden="true"></span><b class="wk-id">${x.id}</b>${x.name ? html`<span class="wk-dev-name">${named(this.store.devices.get(x.id)?.names, x.name)}</span>` : ''}</span>
        <span class="wk-dev-l2"><b class="wk-status">${label('status', x.status)}</b>${x.reason ? html` · <span class="wk-reason">${label('reason', x.reason)}</span>` : ''}${api.time(x.since) ? html` · <span class="muted">${t('work.since', { ago: ago(api.time(x.since)) })}</span>` : ''}</span>
        ${!x.healthy && x.reason && has(`work.check.${x.reason}`) ? html`<span class="wk-check" data-check="${x.reason}">${t(`work.check.${x.reason}`)}</span>` : ''}
        ${this.onDevice || (this.onLive && x.kind === 'camera') ? html`<span class="wk-dev-btns">
          ${this.onDevice ? html`<button type="button" data-device="${x.id}">${t('work.show_device')}</button>` : ''}
          ${this.onLive && x.kind === 'camera' ? html`<button type="button" data-live="${x.id}">${t('work.live')}</button>` : ''}</span>` : ''}
      </li>`)}</ul>`;
    const when = (s) => (api.time(s) ? dateTime(api.time(s)) : '–');
    const facts = [
      ['work.f_title', d.title],
      ['work.f_crew', d.crew || '–'],
      ['work.f_assignee', d.assignee || '–'],
      ['work.f_detected', when(d.detected_at)],
      ['work.f_respond_by', when(d.respond_by)],
      ['work.f_fix_by', when(d.fix_by)],
      d.hold_reason && ['work.f_hold_reason', d.hold_reason],
      (d.repeats || d.reopens) && ['work.f_repeats', t('work.repeats', { repeats: num(d.repeats || 0), reopens: num(d.reopens || 0) })],
      ['work.f_opened_by', d.opened_by || '–'],
    ].filter(Boolean);
    const trail = [...(this.order.history || [])].sort((a, b) => b._at - a._at);
    this.$('#work-dbody').innerHTML = html`
      <section class="wk-sec" aria-labelledby="work-devs-h">
        <h4 id="work-devs-h">${t('work.devices')}</h4>
        ${devices}
        ${loc ? html`<a class="btn wk-geo" id="work-geo" href="${geoURI(loc, name)}">${t('work.directions', { site: name })}</a>` : html`<p class="muted">${t('work.no_place')}</p>`}
      </section>
      <section class="wk-sec" aria-labelledby="work-photos-h">
        <h4 id="work-photos-h">${t('work.photos')}</h4>
        ${(d.photos || []).length ? html`<ul class="wk-photos" id="work-photos">${d.photos.map((p) => html`<li data-photo="${p.sha256}">
          <a href="${api.photoURL(d.id, p.sha256)}" target="_blank" rel="noopener"><img src="${api.photoURL(d.id, p.sha256)}" alt="${p.note || t('work.photos')}" loading="lazy"></a>
          <span class="muted">${p.note ? html`${p.note} · ` : ''}${t('work.photo_by', { who: p.who, time: dateTime(api.time(p.at)) })}</span></li>`)}</ul>`
          : html`<p class="muted">${t('work.no_photos')}</p>`}
        ${manage ? html`<div class="wk-btns"><button type="button" id="work-snapshot" data-snapshot${this.snapping ? html` disabled` : ''}>${t(this.snapping ? 'work.snapshotting' : 'work.snapshot')}</button>
          <label class="btn wk-upload">${t('work.add_photo')}<input type="file" id="work-photo" accept="image/jpeg,image/png" capture="environment" hidden></label></div>` : ''}
        ${this.shotMsg ? html`<p class="muted" id="work-shot-msg" role="status">${this.shotMsg}</p>` : ''}
      </section>
      <section class="wk-sec" aria-labelledby="work-facts-h">
        <h4 id="work-facts-h">${t('work.facts')}</h4>
        <dl class="kv wk-kv">${facts.map(([k, v]) => html`<dt>${t(k)}</dt><dd>${v}</dd>`)}</dl>
      </section>
      <section class="wk-sec" aria-labelledby="work-trail-h">
        <h4 id="work-trail-h">${t('work.history')}</h4>
        <ol class="wk-trail" id="work-trail">${trail.map((h) => html`<li data-action="${h.action}">
          <span class="wk-when"><time datetime="${h._at ? new Date(h._at).toISOString() : ''}">${h._at ? dateTime(h._at) : '–'}</time> · ${h.who}</span>
          <span class="wk-what"><b>${actionLabel(h.action)}</b>${h.from && h.from !== h.to ? html` ${stateLabel(h.from)} → ${stateLabel(h.to)}` : ''}</span>
          ${h.note ? html`<q>${h.note}</q>` : ''}</li>`)}</ol>
      </section>`;
  }

  // snapshot has the agents photograph the order's cameras; the pictures
  // join the order's photos.
  async snapshot() {
    const id = this.id;
    if (!id || this.snapping) return;
    this.snapping = true;
    this.shotMsg = '';
    this.renderDetail();
    try {
      const res = await api.workSnapshot(id);
      this.shotMsg = res.filter((r) => r.error).map((r) => t('work.snapshot_none', { device: r.device, error: r.error })).join('; ');
      await this.loadDetail();
    } catch (err) {
      this.shotMsg = errorText(err);
    } finally {
      this.snapping = false;
      if (id === this.id) this.renderDetail();
    }
  }

  // upload adds a photo the crew took to the open order.
  async upload(file) {
    const id = this.id;
    if (!id) return;
    this.shotMsg = '';
    try {
      await api.workPhoto(id, file);
      this.shotMsg = t('work.photo_added');
      await this.loadDetail();
    } catch (err) {
      this.shotMsg = errorText(err);
    }
    if (id === this.id) this.renderDetail();
  }

  renderProbe() {
    const box = this.$('#work-probe-results');
    const p = this.probe;
    box.hidden = !p || p.id !== this.id;
    if (box.hidden) { box.replaceChildren(); return; }
    box.innerHTML = html`<h4>${t('work.probed_at', { time: clock(p.at) })}</h4>
      <ul>${p.results.map((r) => html`<li class="s-${r.status}" data-probe-device="${r.device}" data-fresh="${String(r.fresh)}" data-status="${r.status}">
        <span class="dot" aria-hidden="true"></span><b class="wk-id">${r.device}</b>
        <b class="wk-status">${label('status', r.status)}</b>${r.reason ? html` · ${label('reason', r.reason)}` : ''}
        <span class="${r.fresh ? 'ok' : 'warn'}">${r.fresh ? t('work.fresh', { time: r._probed ? clock(r._probed) : '–' }) : t('work.not_fresh')}</span>
        ${r.detail ? html`<span class="muted wk-pdetail">${r.detail}</span>` : ''}</li>`)}</ul>`;
  }
}
