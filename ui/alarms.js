// The alarm desk: alarms sorted by priority then time, counts by severity,
// and the operator's actions on them (acknowledge, assign, shelve, clear,
// each with an optional note), all from the keyboard. The list follows the
// hub's websocket alarm events; a new alarm sounds its severity's tone (sound.js).

import { t, has, label, num, ago, clock, dateTime, errorText } from './i18n.js';
import * as api from './api.js';
import { esc } from './html.js';
import { AlarmDetail } from './alarmdetail.js';

export const SEVERITIES = ['critical', 'major', 'minor', 'warning'];
export const STATES = ['active_unack', 'active_ack', 'cleared_unack', 'cleared_ack'];
const SHELVE_FOR = ['15m', '1h', '8h'];

// ACTION_PERM is the permission each action needs; the console offers
// only what the signed-in role may do (the hub refuses the rest anyway).
export const ACTION_PERM = { ack: 'alarm.ack', assign: 'alarm.assign', shelve: 'alarm.shelve', unshelve: 'alarm.shelve', clear: 'alarm.clear' };

// ALARM_SHORTCUTS feeds the help dialog (keys.js appends them): key, words,
// and the permission without which the key does nothing.
export const ALARM_SHORTCUTS = [
  ['a', 'keys.alarms', 'alarm.read'],
  ['c', 'keys.alarm_ack', ACTION_PERM.ack],
  ['g', 'keys.alarm_assign', ACTION_PERM.assign],
  ['s', 'keys.alarm_shelve', ACTION_PERM.shelve],
  ['u', 'keys.alarm_unshelve', ACTION_PERM.unshelve],
  ['x', 'keys.alarm_clear', ACTION_PERM.clear],
  ['Space', 'keys.alarm_mark', 'alarm.read'],
  ['*', 'keys.alarm_mark_all', 'alarm.read'],
];
export function sevLabel(s) { return label('alarm.sev', s); }
export function stateLabel(s) { return label('alarm.state', s); }
export function sourceLabel(s) { return label('alarm.source', s); }
export function actionLabel(s) { return label('alarm.action', s); }
// TYPE_WORDS: where an alarm's type (finer than its source, see
// hub/alarm) finds its words: a sensor kind, a stream's failure reason or
// a metric for these sources, its own (alarm.type.*) for the others.
const TYPE_WORDS = { sensor_triggered: 'sensor', tamper: 'sensor', stream_failure: 'reason', threshold: 'metric' };
// typeLabel is the words for an alarm's type, '' when the type is its
// source (agent_offline, power_lost…) and says nothing more.
export function typeLabel(type, source) { return type && type !== source ? label(TYPE_WORDS[source] || 'alarm.type', type) : ''; }
// detailText is an alarm's detail for a person: an agent_offline alarm's
// is its agent's reason (will, heartbeat, shutdown), a code with words.
// A detail the hub wrote, with its figures in args, is said in the
// operator's language: alarm.detail.<type>.<op>, .<type> or .<source>,
// whichever has words; others are shown as sent.
export function detailText(a) {
  if (a.source === 'agent_offline') return label('agent_reason', a.detail);
  const x = a.args;
  const key = x && [x.op && `alarm.detail.${a.type}.${x.op}`, `alarm.detail.${a.type}`, `alarm.detail.${a.source}`].find((k) => k && has(k));
  if (!key) return a.detail || '';
  const words = { metric: label('metric', x.metric), kind: label('node_kind', x.kind), dir: x.dir && t(`alarm.dir_${x.dir}`), name: x.name ? ` (${x.name})` : '', broken: label('audit_broken', x.broken) };
  for (const k of DETAIL_COUNTS) if (x[k] != null) words[k] = num(Number(x[k]));
  for (const k of DETAIL_TIMES) if (x[k]) words[k] = dateTime(Date.parse(x[k]));
  return t(key, { ...x, ...words });
}

// DETAIL_COUNTS and DETAIL_TIMES are the args of a hub-written detail
// that are counts and instants, shown in the operator's way.
const DETAIL_COUNTS = ['devices', 'sites', 'dropped', 'queue', 'spill', 'spill_max', 'health', 'events', 'lost'];
const DETAIL_TIMES = ['at', 'due'];

// DESK_STATES are the desk's state filters besides '' (open).
const DESK_STATES = ['unack', 'ack', 'shelved', 'cleared'];
const FILTER_PARAMS = { sev: 'asev', fState: 'astate', fSource: 'asrc', fDistrict: 'adist', q: 'aq' };

const byPriority = (a, b) => (b.priority || 0) - (a.priority || 0) || b._last - a._last || (a.id < b.id ? -1 : 1);

export class Alarms {
  // store: the device store; sound: the Sound; onShow/onHide when the view
  // opens or closes; onDevice(id), onLive(id). who() is the signed-in
  // account's name (the default assignee), can(permission) what it may do,
  // active() whether the desk's view is on screen to take keys.
  // onChange() follows every change of the list (the map rings alarms).
  constructor({ root, button, detailRoot, store, sound, who, can, active = () => true, onShow = () => {}, onHide = () => {}, onDevice, onLive, onChange = () => {}, onCritical = () => {}, onLink = () => {} }) {
    this.root = root;
    this.who = who;
    this.can = can;
    this.active = active;
    this.button = button;
    this.store = store;
    this.sound = sound;
    this.onShow = onShow;
    this.onHide = onHide;
    this.onLive = onLive;
    this.onChange = onChange;
    this.onCritical = onCritical;
    this.onLink = onLink;
    this.map = new Map();
    this.list = [];
    this.counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
    this.total = 0;
    this.partial = false;   // the hub has more alarms than it listed
    this.loaded = false;
    this.loading = null;
    this.error = '';
    // The desk's filters, kept in the page URL beside the device table's
    // (…/?adist=Xuhui&astate=unack): severity, state (DESK_STATES; '' is
    // every open alarm but the cleared unacknowledged ones, which collapse
    // into a counter), source, district, and words to find.
    const p = new URLSearchParams(location.search);
    this.sev = SEVERITIES.includes(p.get('asev')) ? p.get('asev') : '';
    this.fState = DESK_STATES.includes(p.get('astate')) ? p.get('astate') : '';
    this.fSource = p.get('asrc') || '';
    this.fDistrict = p.get('adist') || '';
    this.q = p.get('aq') || '';
    this.selected = null;
    this.marked = new Set(); // alarms ticked for a bulk action
    this.shown = false;
    this.detail = new AlarmDetail(detailRoot, {
      store,
      can,
      current: (id) => this.map.get(id),
      onDevice: (id) => { this.hide(); onDevice(id); },
      onLive: (id) => onLive(id),
      onAct: (act) => this.ask(act, this.detail.id),
      onClose: () => this.closeDetail(),
    });
    this.build();
    this.bind();
  }

  build() {
    this.root.innerHTML = `
      <header class="a-top">
        <h2 id="alarms-h"></h2>
        <div class="a-counts" role="group">${SEVERITIES.map((s) =>
          `<button type="button" class="a-count sev-${s}" data-alarm-count="${s}" aria-pressed="false"><span class="lbl"></span><span class="n">0</span></button>`).join('')}</div>
        <span class="a-marked" role="group" hidden><span class="n"></span>${['ack', 'assign', 'shelve', 'clear'].map((a) =>
          `<button type="button" data-bulk="${a}"></button>`).join('')}<button type="button" data-unmark></button></span>
        <span class="a-total muted" role="status"></span>
        <span class="err a-notice" role="alert" hidden></span>
      </header>
      <div class="a-filters">
        <input type="search" data-af="q" autocomplete="off" spellcheck="false">
        <select data-af="fState"></select>
        <select data-af="fSource"></select>
        <select data-af="fDistrict"></select>
        <button type="button" data-af-clear></button>
        <button type="button" class="a-cleared" data-af-cleared hidden></button>
      </div>
      <div id="alarm-scroller" class="a-scroll" role="region" tabindex="0" aria-labelledby="alarms-h">
        <table class="a-table"><thead><tr><th scope="col" class="c-mark"><input type="checkbox" data-mark-all></th>${['sev', 'state', 'count', 'source', 'device', 'site', 'district', 'age', 'assignee'].map((c) =>
          `<th scope="col" class="c-${c}" data-col="${c}"></th>`).join('')}</tr></thead><tbody id="alarm-list"></tbody></table>
        <p class="a-empty muted"></p>
      </div>`;
    this.tbody = this.root.querySelector('#alarm-list');
    this.scroller = this.root.querySelector('#alarm-scroller');
    this.dialog = document.createElement('dialog');
    this.dialog.id = 'alarm-act';
    this.dialog.className = 'a-dialog';
    document.body.append(this.dialog);
  }

  bind() {
    this.button?.addEventListener('click', () => this.toggle());
    this.root.addEventListener('click', (e) => {
      const c = e.target.closest('[data-alarm-count]');
      if (c) { this.setFilter({ sev: this.sev === c.dataset.alarmCount ? '' : c.dataset.alarmCount }); return; }
      if (e.target.closest('[data-af-clear]')) { this.setFilter({ sev: '', fState: '', fSource: '', fDistrict: '', q: '' }); return; }
      if (e.target.closest('[data-af-cleared]')) { this.setFilter({ fState: this.fState === 'cleared' ? '' : 'cleared' }); return; }
      if (e.target.matches('[data-mark-all]')) { this.markAll(e.target.checked); return; }
      const m = e.target.closest('[data-mark]');
      if (m) { this.mark(m.dataset.mark, m.checked); return; }
      const b = e.target.closest('[data-bulk]');
      if (b) { this.ask(b.dataset.bulk); return; }
      if (e.target.closest('[data-unmark]')) { this.markAll(false); return; }
      const tr = e.target.closest('tr[data-alarm]');
      if (tr) { this.select(tr.dataset.alarm); this.openDetail(); }
    });
    this.dialog.addEventListener('close', () => { if (this.shown) this.focusList(); });
    this.root.addEventListener('change', (e) => {
      const f = e.target.closest('select[data-af]');
      if (f) this.setFilter({ [f.dataset.af]: f.value });
    });
    let typing;
    this.root.addEventListener('input', (e) => {
      if (!e.target.matches('input[data-af="q"]')) return;
      clearTimeout(typing);
      typing = setTimeout(() => this.setFilter({ q: e.target.value }), 120);
    });
    // Capture: while the desk is open its keys take precedence over the
    // device table's (j/k/Enter/Esc); other keys fall through to keys.js.
    window.addEventListener('keydown', (e) => this.key(e), true);
    // A key that opened the note dialog must not type itself there
    // (synthetic input sends the keypress separately; see keys.js).
    window.addEventListener('keypress', (e) => {
      if (this.swallow && e.key === this.swallow) e.preventDefault();
      this.swallow = '';
    }, true);
    window.addEventListener('keyup', () => { this.swallow = ''; }, true);
  }

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (!this.active() || document.querySelector('dialog[open]')) return;
    const el = e.target;
    if (el instanceof Element && el.matches('input, select, textarea, [contenteditable]')) return;
    const onButton = el instanceof Element && el.matches('button, a[href]');
    if (e.key === 'a') this.toggle();
    else if (!this.shown) return;
    else {
      switch (e.key) {
        case 'j': case 'ArrowDown': this.move(1); break;
        case 'k': case 'ArrowUp': this.move(-1); break;
        case 'Home': this.moveTo(0); break;
        case 'End': this.moveTo(this.list.length - 1); break;
        case 'Enter': if (onButton) return; this.openDetail(); break;
        case ' ': if (onButton) return; if (this.selected) this.mark(this.selected, !this.marked.has(this.selected)); break;
        case '*': this.markAll(this.marked.size < this.list.length); break;
        case 'c': this.ask('ack'); break;
        case 'g': this.ask('assign'); break;
        case 's': this.ask('shelve'); break;
        case 'u': this.ask('unshelve'); break;
        case 'x': this.ask('clear'); break;
        case 'v': this.liveSelected(); break;
        case 'Escape': if (this.detail.open) this.closeDetail(); else this.hide(); break;
        default: return;
      }
    }
    this.swallow = e.key;
    e.preventDefault();
    e.stopImmediatePropagation();
  }

  // The view.

  show() {
    if (!this.shown) {
      this.shown = true;
      this.root.hidden = false;
      document.body.classList.add('alarms-on');
      this.button?.setAttribute('aria-pressed', 'true');
      this.onShow();
    }
    this.load();
    this.render();
    this.focusList();
  }

  hide() {
    if (!this.shown) return;
    this.shown = false;
    this.root.hidden = true;
    document.body.classList.remove('alarms-on');
    this.button?.setAttribute('aria-pressed', 'false');
    this.closeDetail(false);
    this.onHide();
  }

  toggle() { if (this.shown) this.hide(); else this.show(); }

  focusList() {
    if (this.shown && document.activeElement !== this.scroller) this.scroller.focus({ preventScroll: true });
  }

  // Data.

  // hello takes the counts a websocket hello may carry, then reloads: on a
  // reconnect, events may have been missed.
  hello(m) {
    if (m?.alarms && !this.loaded) { this.setCounts(m.alarms); this.renderCounts(); }
    this.load();
  }

  load() {
    if (this.loading) return this.loading;
    this.loading = (async () => {
      try {
        const r = await api.alarms();
        this.map = new Map(r.alarms.map((a) => [a.id, a]));
        this.total = r.total;
        this.partial = r.total > r.alarms.length;
        if (this.partial && r.counts) this.setCounts(r.counts); else this.recount();
        this.loaded = true;
        this.error = '';
      } catch (err) {
        console.warn('alarms:', err);
        this.error = t('alarm.load_error', { error: errorText(err) });
      } finally {
        this.loading = null;
        this.render();
        if (this.detail.open) this.detail.render();
        this.onChange();
      }
    })();
    return this.loading;
  }

  setCounts(c) { for (const s of SEVERITIES) this.counts[s] = Number(c[s]) || 0; }

  recount() {
    this.setCounts({});
    for (const a of this.map.values()) if (a.severity in this.counts) this.counts[a.severity]++;
  }

  // event applies a websocket alarm event {kind, alarm, transition}.
  event(ev) {
    if (!ev?.alarm?.id) return;
    const prev = this.map.get(ev.alarm.id);
    const a = this.put(ev.alarm, ev.kind === 'raise');
    // A new alarm, or one escalated to a higher severity, sounds its
    // severity's tone; a critical one also notifies the desktop.
    const louder = ev.kind === 'raise' || (ev.kind === 'escalate' && prev?.severity !== a.severity);
    if (louder && a.state !== 'cleared_ack' && !(a._shelved > Date.now())) {
      this.sound?.alarm(a.severity);
      if (a.severity === 'critical') this.onCritical(a);
    }
    if (ev.kind === 'raise' && a.linkage?.video && !(a._shelved > Date.now())) this.onLink(a);
    this.redraw();
  }

  // redraw renders once per frame however many events a websocket batch
  // brings; a hidden tab gets no frames, so a timer stands in.
  redraw() {
    if (this.frame) return;
    const run = () => {
      cancelAnimationFrame(this.frame);
      clearTimeout(this.frameTimer);
      this.frame = 0;
      this.render();
      this.onChange();
    };
    this.frame = requestAnimationFrame(run);
    this.frameTimer = setTimeout(run, 250);
  }

  // put stores a new snapshot of an alarm (removing it once closed) and
  // keeps the counts; isNew: the hub counted it nowhere yet.
  put(raw, isNew = false) {
    const a = api.alarm(raw);
    const prev = this.map.get(a.id);
    if (a.state === 'cleared_ack') this.map.delete(a.id);
    else this.map.set(a.id, a);
    if (!this.partial) this.recount();
    else {
      if (prev && prev.severity in this.counts) this.counts[prev.severity]--;
      if ((prev || isNew) && a.state !== 'cleared_ack' && a.severity in this.counts) this.counts[a.severity]++;
      else if (!prev && !isNew && a.state === 'cleared_ack' && a.severity in this.counts) this.counts[a.severity]--;
    }
    if (this.detail.id === a.id) {
      if (this.detail.data) this.detail.data.alarm = a; // a closed alarm leaves the list but stays in view
      this.detail.changed();
    }
    return a;
  }

  // Actions.

  // act posts action (ack, assign, shelve, unshelve, clear) on alarm id with
  // an optional note; opts.to (assign, default the signed-in account),
  // opts.for (shelve, default 1h). The hub records who acted. Resolves to
  // {ok, alarm} or {ok: false, error}.
  async act(id, action, note = '', opts = {}) {
    const body = { note: note || '' };
    if (action === 'assign') body.to = opts.to || this.who();
    if (action === 'shelve') body.for = opts.for || '1h';
    let a;
    try {
      a = await api.alarmAct(id, action, body);
    } catch (err) {
      const error = errorText(err);
      this.notice(t('alarm.act_error', { action: t(`alarm.act_${action}`), error }));
      return { ok: false, error };
    }
    this.notice('');
    if (a) this.put(a);
    this.render();
    this.onChange();
    if (this.detail.id === id && a?.state !== 'cleared_ack') this.detail.load();
    return { ok: true, alarm: a };
  }

  // actMany posts action on the alarms ids with one note and opts (as
  // act's); each alarm's result comes back on its own. Resolves to {ok,
  // failed: [{id, error}]}; ok when every alarm took the action.
  async actMany(ids, action, note = '', opts = {}) {
    const body = { ids, note: note || '' };
    if (action === 'assign') body.to = opts.to || this.who();
    if (action === 'shelve') body.for = opts.for || '1h';
    let results;
    try {
      results = await api.alarmActMany(action, body);
    } catch (err) {
      const error = errorText(err);
      this.notice(t('alarm.act_error', { action: t(`alarm.act_${action}`), error }));
      return { ok: false, failed: ids.map((id) => ({ id, error })), error };
    }
    const failed = [];
    for (const r of results) {
      if (r.alarm) this.put(r.alarm);
      else failed.push({ id: r.id, error: r.error || String(r.status) });
    }
    for (const r of results) if (r.alarm || r.status === 404) this.marked.delete(r.id);
    const error = failed.length ? t('alarm.bulk_failed', { n: failed.length, of: ids.length, error: failed[0].error }) : '';
    this.notice(error);
    this.render();
    this.onChange();
    return { ok: !failed.length, failed, error };
  }

  // mark ticks or unticks alarm id for a bulk action.
  mark(id, on) {
    if (on && this.map.has(id)) this.marked.add(id); else this.marked.delete(id);
    this.render();
  }

  // markAll ticks every alarm the list shows, or none.
  markAll(on) {
    this.marked = new Set(on ? this.list.map((a) => a.id) : []);
    this.render();
  }

  // ask opens the small dialog for action on alarm id, or without one on
  // the ticked alarms if any, else on the selected one.
  ask(action, id) {
    const many = id === undefined && this.marked.size > 0;
    id ??= this.selected;
    const a = many ? this.map.get([...this.marked][0]) : id && this.map.get(id);
    if (!a) return;
    if (!this.can(ACTION_PERM[action])) {
      this.notice(t('alarm.not_allowed', { action: t(`alarm.act_${action}`) }));
      return;
    }
    const now = Date.now();
    const name = t(`alarm.act_${action}`);
    let extra = '';
    if (action === 'assign') {
      extra = `<label>${esc(t('alarm.assignee'))} <input name="to" required autocomplete="off" spellcheck="false" value="${esc(a.assigned_to || this.who())}"></label>`;
    } else if (action === 'shelve') {
      extra = `<label>${esc(t('alarm.shelve_for'))} <select name="for">${SHELVE_FOR.map((d) =>
        `<option value="${d}"${d === '1h' ? ' selected' : ''}>${esc(t(`alarm.for_${d}`))}</option>`).join('')}</select></label>`;
    }
    const ids = many ? [...this.marked] : [a.id];
    // Alarms whose rule wants a note with the acknowledgement.
    const needNote = action === 'ack' && ids.some((x) => this.map.get(x)?.linkage?.ack_note);
    this.dialog.dataset.action = action;
    this.dialog.dataset.alarm = many ? '' : a.id;
    this.dialog.innerHTML = `<form>
      <h2>${esc(name)} · <span class="d-id">${esc(many ? t('alarm.n_alarms', { n: num(ids.length) }) : a.id)}</span></h2>
      ${many ? '' : `<p class="muted">${esc(sevLabel(a.severity))} · ${esc(sourceLabel(a.source))} · ${esc(a.device || a.agent || '')}${a._shelved > now ? ` · ${esc(t('alarm.until', { time: clock(a._shelved) }))}` : ''}</p>`}
      ${extra}
      <label>${esc(t('alarm.note'))} <input name="note" autocomplete="off"${needNote ? ' required' : ''} placeholder="${esc(t(needNote ? 'alarm.note_required' : 'alarm.note_placeholder'))}"></label>
      <p class="err" role="alert" hidden></p>
      <div class="a-btns"><button type="submit" class="primary">${esc(name)} <kbd>Enter</kbd></button><button type="button" data-cancel>${esc(t('alarm.cancel'))} <kbd>Esc</kbd></button></div>
    </form>`;
    const form = this.dialog.querySelector('form');
    form.querySelector('[data-cancel]').addEventListener('click', () => this.dialog.close());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const btn = form.querySelector('[type=submit]');
      btn.disabled = true;
      const note = String(f.get('note') || '');
      const opts = { to: String(f.get('to') || ''), for: String(f.get('for') || '') };
      const r = many ? await this.actMany(ids, action, note, opts) : await this.act(a.id, action, note, opts);
      btn.disabled = false;
      if (r.ok) { this.notice(''); this.dialog.close(); return; }
      const err = form.querySelector('.err');
      err.textContent = r.error;
      err.hidden = false;
    });
    this.dialog.showModal();
    form.querySelector(action === 'assign' ? '[name=to]' : action === 'shelve' ? '[name=for]' : '[name=note]').focus();
  }

  notice(text) {
    const el = this.root.querySelector('.a-notice');
    el.textContent = text;
    el.hidden = !text;
  }

  // setFilter changes the desk's filters and keeps them in the URL.
  setFilter(patch) {
    Object.assign(this, patch);
    const p = new URLSearchParams(location.search);
    for (const [k, param] of Object.entries(FILTER_PARAMS)) {
      if (this[k]) p.set(param, this[k]); else p.delete(param);
    }
    const qs = p.toString();
    history.replaceState(null, '', qs ? `?${qs}` : location.pathname);
    this.render();
  }

  // matches returns the predicate of the desk's filters, with fState for
  // the state filter.
  matches(now, fState = this.fState) {
    const { sev, fSource, fDistrict } = this;
    const terms = this.q.toLowerCase().split(/\s+/).filter(Boolean);
    return (a) => {
      const shelved = a._shelved > now;
      switch (fState) {
        case '': if (a.state === 'cleared_unack') return false; break;
        case 'unack': if (a.state !== 'active_unack') return false; break;
        case 'ack': if (a.state !== 'active_ack') return false; break;
        case 'shelved': if (!shelved) return false; break;
        case 'cleared': if (a.state !== 'cleared_unack') return false; break;
      }
      if (sev && a.severity !== sev) return false;
      if (fSource && a.source !== fSource) return false;
      if (fDistrict && a.district !== fDistrict) return false;
      if (terms.length) {
        const hay = [a.id, a.device, a.agent, a.site, a.district, a.assigned_to, a.source, a.type, sourceLabel(a.source), typeLabel(a.type, a.source)]
          .filter(Boolean).join(' ').toLowerCase();
        for (const w of terms) if (!hay.includes(w)) return false;
      }
      return true;
    };
  }

  // renderFilters fills the filters' choices from the alarms at hand.
  renderFilters(all, now) {
    const opts = (sel, values, anyLabel, label = (v) => v) => {
      const cur = this[sel.dataset.af];
      const vs = [...new Set([...values, cur].filter(Boolean))].sort((x, y) => label(x).localeCompare(label(y)));
      const html = `<option value="">${esc(anyLabel)}</option>${vs.map((v) => `<option value="${esc(v)}"${v === cur ? ' selected' : ''}>${esc(label(v))}</option>`).join('')}`;
      if (sel.dataset.html !== html) { sel.innerHTML = html; sel.dataset.html = html; }
    };
    const q = (k) => this.root.querySelector(`[data-af="${k}"]`);
    const st = q('fState');
    const stHTML = ['', ...DESK_STATES].map((s) => `<option value="${s}"${s === this.fState ? ' selected' : ''}>${esc(t(`alarm.fs_${s || 'open'}`))}</option>`).join('');
    if (st.dataset.html !== stHTML) { st.innerHTML = stHTML; st.dataset.html = stHTML; }
    opts(q('fSource'), all.map((a) => a.source), t('alarm.f_any_source'), sourceLabel);
    opts(q('fDistrict'), all.map((a) => a.district), t('alarm.f_any_district'));
    const search = q('q');
    if (document.activeElement !== search) search.value = this.q;
    search.placeholder = t('alarm.f_search');
    const cleared = all.filter(this.matches(now, 'cleared')).length;
    const btn = this.root.querySelector('[data-af-cleared]');
    btn.hidden = !cleared && this.fState !== 'cleared';
    btn.textContent = t('alarm.cleared_n', { n: num(cleared) });
    btn.setAttribute('aria-pressed', String(this.fState === 'cleared'));
    const clear = this.root.querySelector('[data-af-clear]');
    clear.textContent = t('alarm.f_clear');
    clear.hidden = !(this.sev || this.fState || this.fSource || this.fDistrict || this.q);
  }

  // Selection and detail.

  select(id) {
    this.selected = id;
    for (const tr of this.tbody.querySelectorAll('tr.sel')) { tr.classList.remove('sel'); tr.removeAttribute('aria-selected'); }
    const tr = id && this.tbody.querySelector(`tr[data-alarm="${CSS.escape(id)}"]`);
    if (tr) { tr.classList.add('sel'); tr.setAttribute('aria-selected', 'true'); tr.scrollIntoView({ block: 'nearest' }); }
  }

  move(d) {
    if (!this.list.length) return;
    const i = this.list.findIndex((a) => a.id === this.selected);
    this.moveTo(i < 0 ? (d > 0 ? 0 : this.list.length - 1) : Math.max(0, Math.min(this.list.length - 1, i + d)));
  }

  moveTo(i) {
    const a = this.list[i];
    if (!a) return;
    this.select(a.id);
    if (this.detail.open) this.detail.show(a.id);
    this.focusList();
  }

  openDetail(id = this.selected) {
    if (!id && this.list.length) { id = this.list[0].id; this.select(id); }
    if (id) this.detail.show(id);
  }

  closeDetail(refocus = true) {
    this.detail.close();
    if (refocus) this.focusList();
  }

  // liveSelected opens the live video for the selected alarm: its camera,
  // or the nearest camera that sees its sensor, as the hub answers.
  async liveSelected() {
    const a = this.map.get(this.selected);
    const d = a?.device && this.store.devices.get(a.device);
    if (!d) return;
    if (d.kind === 'camera') { this.onLive(d.id); return; }
    try {
      const [cam] = await api.nearestCameras(d.id, 1);
      if (cam) this.onLive(cam.id);
      else this.notice(t('alarm.no_cameras'));
    } catch (err) {
      this.notice(t('alarm.load_error', { error: errorText(err) }));
    }
  }

  // Drawing.

  render() {
    this.renderCounts();
    // A hidden desk keeps its counts and badge current but builds no rows:
    // in a storm that is up to a thousand rows per frame nobody sees.
    // show() renders it whole.
    if (!this.shown) return;
    const now = Date.now();
    const all = [...this.map.values()];
    const match = this.matches(now);
    this.list = all.filter(match).sort(byPriority);
    this.renderFilters(all, now);
    this.tbody.innerHTML = this.list.map((a) => {
      const shelved = a._shelved > now;
      const unack = a.state === 'active_unack' || a.state === 'cleared_unack';
      const type = typeLabel(a.type, a.source);
      return `<tr data-alarm="${esc(a.id)}" data-state="${esc(a.state)}" data-severity="${esc(a.severity)}" class="${unack ? 'unack' : ''}${shelved ? ' shelved' : ''}${a.id === this.selected ? ' sel' : ''}"${a.id === this.selected ? ' aria-selected="true"' : ''}>
        <td class="c-mark"><input type="checkbox" data-mark="${esc(a.id)}"${this.marked.has(a.id) ? ' checked' : ''} aria-label="${esc(t('alarm.mark', { id: a.id }))}"></td>
        <td class="c-sev"><span class="sev sev-${esc(a.severity)}">${esc(sevLabel(a.severity))}</span></td>
        <td class="c-state"><span class="st st-${esc(a.state)}">${esc(stateLabel(a.state))}</span>${shelved ? ` <span class="shelf" title="${esc(t('alarm.until', { time: clock(a._shelved) }))}">${esc(t('alarm.shelved'))}</span>` : ''}${a.flapping ? ` <span class="flap">${esc(t('alarm.flapping'))}</span>` : ''}</td>
        <td class="c-count num">${a.count > 1 ? `×${num(a.count)}` : ''}</td>
        <td class="c-source">${esc(sourceLabel(a.source))}${type ? ` <span class="muted">${esc(type)}</span>` : ''}</td>
        <td class="c-device">${esc(a.device || a.agent || '')}</td>
        <td class="c-site">${esc(a.site || '')}</td>
        <td class="c-district">${esc(a.district || '')}</td>
        <td class="c-age num" title="${esc(t('alarm.f_last'))} ${esc(clock(a._last))}">${esc(ago(a._first, now))}</td>
        <td class="c-assignee">${esc(a.assigned_to || '')}</td>
      </tr>`;
    }).join('');
    if (this.selected && !this.map.has(this.selected)) this.selected = null;
    for (const id of this.marked) if (!this.map.has(id)) this.marked.delete(id);
    const every = this.root.querySelector('[data-mark-all]');
    every.checked = this.list.length > 0 && this.list.every((a) => this.marked.has(a.id));
    every.indeterminate = !every.checked && this.marked.size > 0;
    const bar = this.root.querySelector('.a-marked');
    bar.hidden = !this.marked.size;
    bar.querySelector('.n').textContent = t('alarm.marked', { n: num(this.marked.size) });
    for (const b of bar.querySelectorAll('[data-bulk]')) b.hidden = !this.can(ACTION_PERM[b.dataset.bulk]);
    const empty = this.root.querySelector('.a-empty');
    empty.textContent = this.error || (!this.loaded ? t('app.loading') : this.list.length ? '' : all.length ? t('alarm.no_match') : t('alarm.none'));
    empty.classList.toggle('err', !!this.error);
    empty.hidden = !empty.textContent;
    this.root.querySelector('.a-total').textContent = this.loaded ? t('alarm.total', { n: num(this.total > this.map.size ? this.total : this.map.size) }) : '';
  }

  renderCounts() {
    for (const b of this.root.querySelectorAll('[data-alarm-count]')) {
      const s = b.dataset.alarmCount;
      b.querySelector('.n').textContent = num(this.counts[s]);
      b.classList.toggle('zero', !this.counts[s]);
      b.setAttribute('aria-pressed', String(this.sev === s));
    }
    if (this.button) {
      let unack = 0;
      let crit = false;
      for (const a of this.map.values()) if (a.state.endsWith('_unack')) { unack++; if (a.severity === 'critical') crit = true; }
      const n = this.loaded ? unack : SEVERITIES.reduce((x, s) => x + this.counts[s], 0);
      this.button.innerHTML = `${esc(t('alarm.heading'))}${n ? ` <span class="badge${crit || (!this.loaded && this.counts.critical) ? ' crit' : ''}">${num(n)}</span>` : ''}`;
      this.button.title = `${t('alarm.button_title')} (a)`;
    }
  }

  retranslate() {
    this.root.querySelector('#alarms-h').textContent = t('alarm.heading');
    this.root.querySelector('.a-counts').setAttribute('aria-label', t('alarm.by_severity'));
    for (const b of this.root.querySelectorAll('[data-alarm-count]')) b.querySelector('.lbl').textContent = sevLabel(b.dataset.alarmCount);
    for (const th of this.root.querySelectorAll('th[data-col]')) th.textContent = t(`alarm.col_${th.dataset.col}`);
    this.root.querySelector('[data-mark-all]').setAttribute('aria-label', t('alarm.mark_all'));
    for (const b of this.root.querySelectorAll('[data-bulk]')) b.textContent = t(`alarm.act_${b.dataset.bulk}`);
    this.root.querySelector('[data-unmark]').textContent = t('alarm.unmark');
    this.render();
    this.detail.render();
  }

  // tick keeps ages and shelving current.
  tick(now) {
    if (this.shown && now % 10 === 0) this.render();
  }
}
