// The alarm detail panel: every field of one alarm, its device and place,
// the trail of transitions, the alarms it explains (root cause), and for a
// sensor alarm the nearest cameras that can see it, live video one click
// away: alarm → verify by video → act.

import { t, label, num, dateTime, ago, clock, errorText, named } from './i18n.js';
import { alarmDetail, nearestCameras } from './api.js';
import { esc } from './html.js';
import { ACTION_PERM, sevLabel, stateLabel, sourceLabel, actionLabel, typeLabel, detailText } from './alarms.js';

const REFRESH_MS = 30000;
export class AlarmDetail {
  // onDevice(id) opens a device's detail, onLive(id) a camera's live video,
  // onAct(action) starts an action on the shown alarm, onClose();
  // can(permission) hides what the signed-in role may not do.
  constructor(root, { store, can, current, onDevice, onLive, onAct, onClose }) {
    this.root = root;
    this.store = store;
    this.can = can;
    this.current = current; // id -> the list's latest copy of the alarm, if any
    this.id = null;
    this.data = null; // {alarm, history, children}
    this.cams = null; // the hub's nearest cameras to a sensor alarm's device, or null
    this.error = '';
    this.abort = null;
    this.timer = 0;
    root.addEventListener('click', (e) => {
      const b = e.target.closest('button, a');
      if (!b) return;
      if (b.hasAttribute('data-close')) onClose();
      else if (b.dataset.live) onLive(b.dataset.live);
      else if (b.dataset.device) { e.preventDefault(); onDevice(b.dataset.device); }
      else if (b.dataset.act) onAct(b.dataset.act);
      else if (b.dataset.child) this.show(b.dataset.child);
    });
  }

  get open() { return this.id !== null; }

  show(id) {
    if (id === this.id) { this.load(); return; }
    this.id = id;
    this.data = null;
    this.cams = null;
    this.error = '';
    this.root.hidden = false;
    this.root.dataset.alarm = id;
    this.render();
    this.load();
  }

  close() {
    this.id = null;
    this.abort?.abort();
    clearTimeout(this.timer);
    this.root.hidden = true;
    delete this.root.dataset.alarm;
    this.root.replaceChildren();
  }

  // changed: the shown alarm changed live; redraw now, re-read the trail.
  changed() {
    if (!this.open) return;
    this.render();
    clearTimeout(this.timer);
    if (this.current(this.id)) this.timer = setTimeout(() => this.load(), 500); // a closed one may be gone from the hub
  }

  async load() {
    const id = this.id;
    if (id === null) return;
    clearTimeout(this.timer);
    this.abort?.abort();
    const ctl = new AbortController();
    this.abort = ctl;
    try {
      const [d, cams] = await Promise.all([alarmDetail(id, ctl.signal), this.loadCameras(id, ctl.signal)]);
      if (this.id !== id) return;
      this.data = d;
      this.cams = cams;
      this.error = '';
    } catch (err) {
      if (ctl.signal.aborted) return;
      this.error = errorText(err);
    }
    this.render();
    this.timer = setTimeout(() => this.load(), REFRESH_MS);
  }

  // sensorDevice is the alarm's device when it is a sensor (whose alarm
  // wants a camera to verify it), else null.
  sensorDevice(a) {
    const dev = a?.device ? this.store.devices.get(a.device) : null;
    return dev && (a.source === 'sensor_triggered' || dev.kind === 'sensor') ? dev : null;
  }

  // loadCameras asks the hub which cameras see the alarm's sensor.
  async loadCameras(id, signal) {
    const dev = this.sensorDevice(this.current(id) || this.data?.alarm);
    return dev ? nearestCameras(dev.id, 4, signal) : null;
  }

  render() {
    if (!this.open) return;
    const a = this.current(this.id) || this.data?.alarm;
    const close = `<button type="button" class="close" data-close aria-label="${esc(t('alarm.close'))}" title="${esc(t('alarm.close'))} (Esc)">×</button>`;
    if (!a) {
      this.root.innerHTML = `<header class="d-head"><h2 id="alarm-detail-title">${esc(this.id)}</h2>${close}</header><div class="d-body">${
        this.error ? `<p class="err">${esc(this.error)}</p>` : `<p class="muted">${esc(t('app.loading'))}</p>`}</div>`;
      return;
    }
    const now = Date.now();
    const dev = a.device ? this.store.devices.get(a.device) : null;
    const type = typeLabel(a.type, a.source);
    const when = (ms) => (ms ? `${esc(dateTime(ms))} <span class="muted">(${esc(ago(ms, now))})</span>` : '–');
    const rows = [
      ['alarm.f_severity', `<span class="sev sev-${esc(a.severity)}">${esc(sevLabel(a.severity))}</span>`],
      ['alarm.f_state', `<span class="st st-${esc(a.state)}">${esc(stateLabel(a.state))}</span>`],
      ['alarm.f_source', `${esc(sourceLabel(a.source))}${type ? ` · ${esc(type)}` : ''}`],
      ['alarm.f_detail', esc(detailText(a)) || '–'],
      ['alarm.f_device', a.device ? `<a href="#" data-device="${esc(a.device)}">${esc(a.device)}</a>${dev?.name ? ` <span class="muted">${esc(named(dev.names, dev.name))}</span>` : ''}${
        dev ? ` <span class="s-${esc(dev.status)}"><span class="dot" aria-hidden="true"></span>${esc(label('status', dev.status))}</span>` : ''}` : '–'],
      ['alarm.f_agent', esc(a.agent) || '–'],
      ['alarm.f_site', `${esc(dev ? named(dev.site_names, dev.site_name || a.site) : a.site || '–')}${dev?.site_name || dev?.site_names ? ` <span class="muted">${esc(a.site)}</span>` : ''}`],
      ['alarm.f_district', a.district ? esc(this.store.districtLabel(a.district)) : '–'],
      ['alarm.f_location', dev?.location ? `${num(dev.location.lat, 5)}, ${num(dev.location.lon, 5)}` : '–'],
      ['alarm.f_priority', `${num(a.priority)} <span class="muted">${esc(t('alarm.f_criticality'))} ${num(a.criticality)}</span>`],
      ['alarm.f_count', `${num(a.count)}${a.flapping ? ` <span class="flap">${esc(t('alarm.flapping'))}</span>` : ''}`],
      ['alarm.f_first', when(a._first)],
      ['alarm.f_last', when(a._last)],
    ];
    if (a._cleared) rows.push(['alarm.f_cleared', when(a._cleared)]);
    if (a.acked_by) rows.push(['alarm.f_acked', `${esc(a.acked_by)} · ${when(a._acked)}`]);
    rows.push(['alarm.f_assigned', esc(a.assigned_to) || '–']);
    if (a._shelved > now) rows.push(['alarm.f_shelved', `${esc(t('alarm.until', { time: clock(a._shelved) }))}`]);
    if (a.escalations) rows.push(['alarm.f_escalations', num(a.escalations)]);

    // The hub's answer, with each camera's status as it is now.
    const cams = this.sensorDevice(a) && this.cams ? this.cams.map((c) => ({ ...c, status: this.store.devices.get(c.id)?.status || c.status })) : null;
    const children = this.data?.children || [];
    const history = (this.data?.history || []).slice().sort((x, y) => y._at - x._at);
    const closed = a.state === 'cleared_ack';
    const actions = [['ack', 'c'], ['assign', 'g'], [a._shelved > now ? 'unshelve' : 'shelve', a._shelved > now ? 'u' : 's'], ['clear', 'x']]
      .filter(([act]) => this.can(ACTION_PERM[act]));
    const live = this.can('live.view');

    const focus = this.root.contains(document.activeElement) ? document.activeElement : null;
    const refocus = focus?.dataset.act ? `[data-act="${focus.dataset.act}"]` : focus?.dataset.live ? `[data-live="${CSS.escape(focus.dataset.live)}"]` : focus?.hasAttribute('data-close') ? '[data-close]' : '';
    this.root.innerHTML = `
      <header class="d-head sev-${esc(a.severity)}">
        <span class="dot" aria-hidden="true"></span>
        <h2 id="alarm-detail-title"><span class="d-id">${esc(a.id)}</span> <span class="d-name">${esc(sourceLabel(a.source))}</span></h2>
        ${close}
      </header>
      <div class="d-body">
        ${actions.length ? `<div class="a-acts" role="group" aria-label="${esc(t('alarm.actions'))}">${actions.map(([act, k]) =>
          `<button type="button" data-act="${act}" ${closed || (act === 'ack' && a.state.endsWith('_ack')) || (act === 'clear' && a.state.startsWith('cleared')) ? 'disabled' : ''}>${esc(t(`alarm.act_${act}`))} <kbd>${k}</kbd></button>`).join('')}</div>` : ''}
        ${this.error ? `<p class="err" role="status">${esc(this.error)}</p>` : ''}
        ${cams ? `<div class="d-sec"><h3>${esc(t('alarm.cameras'))}</h3>${cams.length && !cams[0].covers ? `<span class="muted src">${esc(t('alarm.cameras_fallback'))}</span>` : ''}</div>
        ${cams.length ? `<ol class="a-cams">${cams.map((c) => `<li data-camera="${esc(c.id)}" class="s-${esc(c.status)}">${live ? `<button type="button" class="live" data-live="${esc(c.id)}" title="${esc(t('video.live_title'))}" aria-label="${esc(t('video.live_title'))} ${esc(c.id)}">▶</button>` : '<span></span>'}<span class="dot" aria-hidden="true"></span><span class="d-id">${esc(c.id)}</span><span class="muted">${esc(c.name || '')}</span><span class="num">${esc(t('alarm.metres', { n: num(c.distance_m) }))}</span></li>`).join('')}</ol>`
          : `<p class="muted">${esc(t('alarm.no_cameras'))}</p>`}` : ''}
        <dl class="kv">${rows.map(([k, v]) => `<dt>${esc(t(k))}</dt><dd>${v}</dd>`).join('')}</dl>
        ${children.length ? `<div class="d-sec"><h3>${esc(t('alarm.children', { n: num(children.length) }))}</h3></div>
          <ul class="a-children">${children.map((c) => `<li><button type="button" data-child="${esc(c.id)}"><span class="sev sev-${esc(c.severity)}">${esc(sevLabel(c.severity))}</span> ${esc(c.device || c.agent || c.id)} · ${esc(sourceLabel(c.source))}</button></li>`).join('')}</ul>` : ''}
        <div class="d-sec"><h3>${esc(t('alarm.history'))}</h3></div>
        ${!this.data && !this.error ? `<p class="muted">${esc(t('app.loading'))}</p>` : ''}
        <ol class="history a-hist">${history.map((h) => `<li><time datetime="${h._at ? new Date(h._at).toISOString() : ''}" title="${esc(dateTime(h._at))}">${esc(clock(h._at))}</time><span class="dot st-${esc(h.to)}" aria-hidden="true"></span><span><b>${esc(actionLabel(h.action))}</b> ${esc(h.who || '')}${
          h.from ? ` · ${esc(stateLabel(h.from))} → ${esc(stateLabel(h.to))}` : ` · ${esc(stateLabel(h.to))}`}${h.note ? ` <q>${esc(h.note)}</q>` : ''}</span></li>`).join('')}</ol>
      </div>`;
    if (refocus) this.root.querySelector(refocus)?.focus();
  }
}
