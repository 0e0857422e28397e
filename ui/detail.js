// The detail panel of one device: every field, latest metrics with
// sparklines over a window, and its state history. Live changes redraw it at
// once; the history is re-fetched shortly after, and every half minute.

import * as api from './api.js';
import { t, label, has, num, dateTime, ago, clock, named } from './i18n.js';
import { kindLabel } from './table.js';
import { motion } from './store.js';
import { esc } from './html.js';

const WINDOWS = { '1h': 3600e3, '6h': 6 * 3600e3, '24h': 24 * 3600e3 };
// Known metrics in display order, with unit and decimals.
const METRICS = {
  fps: ['fps', 1], bitrate_kbps: ['kbit/s', 0], tcp_ms: ['ms', 0], rtsp_ms: ['ms', 0], frame_age_s: ['s', 1],
  checkin_age_s: ['s', 0], battery_pct: ['%', 0], rssi_dbm: ['dBm', 0], probe_failures: ['', 0], clock_drift_s: ['s', 1],
  sub_fps: ['fps', 1], sub_bitrate_kbps: ['kbit/s', 0],
};
const REFRESH_MS = 30000;
const AFTER_CHANGE_MS = 1500;


// streamText says a stream as the hub's history does: "H265 Main 2560×1440".
function streamText(s) {
  return [s.codec, s.profile, s.width && s.height ? `${s.width}×${s.height}` : ''].filter(Boolean).join(' ');
}

function fmtMetric(name, v) {
  if (v == null || !Number.isFinite(v)) return '–';
  const [unit, digits] = METRICS[name] || ['', 2];
  return unit ? `${num(v, digits)} ${unit}` : num(v, digits);
}

// spark draws values over [t0, t1] as an SVG path, lifting the pen where a
// sample lacks the metric (device down) so gaps show as gaps.
export function spark(samples, name, t0, t1, w = 132, h = 22) {
  const pts = samples.filter((s) => s.at >= t0);
  const vals = pts.map((s) => s.metrics[name]).filter((v) => Number.isFinite(v));
  if (vals.length < 2) return `<span class="muted">${esc(t('detail.no_samples'))}</span>`;
  let min = Infinity;
  let max = -Infinity;
  for (const v of vals) { if (v < min) min = v; if (v > max) max = v; }
  const span = max - min || 1;
  const x = (at) => ((at - t0) / (t1 - t0 || 1)) * w;
  const y = (v) => h - 2 - ((v - min) / span) * (h - 4);
  let d = '';
  let pen = false;
  let last = null;
  for (const s of pts) {
    const v = s.metrics[name];
    if (!Number.isFinite(v)) { pen = false; continue; }
    d += `${pen ? 'L' : 'M'}${x(s.at).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
    last = [x(s.at), y(v)];
  }
  const range = `${fmtMetric(name, min)} – ${fmtMetric(name, max)}`;
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${esc(range)}"><title>${esc(range)}</title><path d="${d}"/>${
    last ? `<circle cx="${last[0].toFixed(1)}" cy="${last[1].toFixed(1)}" r="1.8"/>` : ''}</svg>`;
}

// strip draws the status over [t0, t1] from transitions, as coloured bands.
export function strip(transitions, current, t0, t1, w = 100, h = 8) {
  const inWin = transitions.filter((x) => x.at > t0 && x.at <= t1);
  let cur = inWin.length ? inWin[0].from || current : current;
  let x0 = t0;
  const x = (at) => ((at - t0) / (t1 - t0)) * w;
  let out = '';
  const band = (a, b, s) => {
    if (b > a) out += `<rect class="s-${esc(s)}" x="${x(a).toFixed(2)}" width="${(x(b) - x(a)).toFixed(2)}" y="0" height="${h}"><title>${esc(label('status', s))} ${clock(a)}–${clock(b)}</title></rect>`;
  };
  for (const tr of inWin) { band(x0, tr.at, cur); cur = tr.to; x0 = tr.at; }
  band(x0, t1, cur);
  return `<svg class="strip" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" aria-label="${esc(t('detail.strip'))}">${out}</svg>`;
}

export class Detail {
  // onLive(id) opens the live video of a camera; canPlay: the account may
  // watch video; onWorkOrder(id), when the account may, opens a work order
  // by hand for the device.
  constructor(root, { store, onClose, onLive = () => {}, canPlay = true, onWorkOrder = null }) {
    this.root = root;
    this.onWorkOrder = onWorkOrder;
    this.canPlay = canPlay;
    this.store = store;
    this.onClose = onClose;
    this.id = null;
    this.window = '1h';
    this.history = null;
    this.error = '';
    this.abort = null;
    this.timer = 0;
    root.addEventListener('click', (e) => {
      if (e.target.closest('[data-close]')) this.onClose();
      if (e.target.closest('[data-live]')) onLive(this.id);
      if (e.target.closest('[data-new-order]')) this.onWorkOrder?.(this.id);
      const w = e.target.closest('[data-window]');
      if (w) { this.window = w.dataset.window; this.load(); this.render(); }
    });
  }

  get open() { return this.id !== null; }

  show(id) {
    if (id === this.id) return;
    this.id = id;
    this.history = null;
    this.error = '';
    this.root.hidden = false;
    this.root.dataset.id = id;
    this.render();
    // Holding j/k walks through devices; fetch only where the user stops.
    this.schedule(150);
  }

  close() {
    this.id = null;
    this.abort?.abort();
    clearTimeout(this.timer);
    this.root.hidden = true;
    delete this.root.dataset.id;
    this.root.replaceChildren();
  }

  // changed is called when the shown device changed live.
  changed() {
    if (!this.open) return;
    this.render();
    this.schedule(AFTER_CHANGE_MS);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), ms);
  }

  async load() {
    const id = this.id;
    if (id === null) return;
    this.abort?.abort();
    const ctl = new AbortController();
    this.abort = ctl;
    try {
      const h = await api.detail(id, this.window, ctl.signal);
      if (this.id !== id) return;
      this.history = h;
      this.error = h.error;
      // Fresher than the store when the socket is down.
      if (h.device && !this.store.devices.has(id)) this.store.putDevice(h.device);
    } catch (err) {
      if (ctl.signal.aborted) return;
      this.error = err.message;
    }
    this.render();
    this.schedule(REFRESH_MS);
  }

  render() {
    if (!this.open) return;
    const d = this.store.devices.get(this.id) || this.history?.device;
    if (!d) {
      this.root.innerHTML = `<header class="d-head"><h2>${esc(this.id)}</h2>${this.closeButton()}</header><p class="muted">${esc(t('detail.unknown'))}</p>`;
      return;
    }
    const now = Date.now();
    const t1 = now;
    const t0 = now - WINDOWS[this.window];
    const agent = this.store.agents.get(d.agent);
    const rows = [
      ['detail.status', `<span class="dot s-${esc(d.status)}" aria-hidden="true"></span>${esc(label('status', d.status))}`],
      ['detail.reason', esc(label('reason', d.reason)) || '–'],
      ['detail.detail', esc(d.detail) || '–'],
      ['detail.since', `${esc(dateTime(d._since))} <span class="muted">(${esc(ago(d._since, now))})</span>`],
      ['detail.last_seen', `${esc(dateTime(d._seen))} <span class="muted">(${esc(ago(d._seen, now))})</span>`],
      ['detail.probed', esc(dateTime(d._probed))],
    ];
    if (d.reported && d.reported !== d.status) rows.push(['detail.reported', esc(label('status', d.reported))]);
    if (d.kind === 'sensor') rows.push(['detail.triggered', esc(t(d.triggered ? 'detail.yes' : 'detail.no'))]);
    // Only a camera with ONVIF reports motion: say it while it lasts.
    if (motion(d) && d.triggered) rows.push(['detail.motion', esc(t('detail.motion_now'))]);
    rows.push(
      ['detail.kind', esc(kindLabel(d))],
      ['detail.agent', `${esc(d.agent)}${agent ? ` <span class="s-${esc(agent.status)}"><span class="dot" aria-hidden="true"></span>${esc(label('status', agent.status))}</span>${agent.status !== 'online' && agent.reason ? ` <span class="muted">${esc(label('agent_reason', agent.reason))}</span>` : ''}` : ''}`],
      ['detail.site', `${esc(named(d.site_names, d.site_name || d.site))}${d.site_name || d.site_names ? ` <span class="muted">${esc(d.site)}</span>` : ''}`],
      ['detail.district', esc(named(d.district_names, d.district))],
      ['detail.location', d.location ? `${num(d.location.lat, 5)}, ${num(d.location.lon, 5)}` : '–'],
      ['detail.criticality', esc(d.criticality ?? '–')],
    );
    if (d.camera) {
      rows.push(['detail.camera', esc(t('detail.camera_value', {
        heading: num(d.camera.heading), fov: num(d.camera.fov), range: num(d.camera.range_m),
      }))]);
    }
    if (d.streams?.length) {
      rows.push(['detail.streams', d.streams.map((s) => `<span class="stream">${esc(t(`detail.stream_${s.role}`))} ${esc(streamText(s))}</span>`).join('<br>')]);
    }
    // The unit: what a crew needs to bring the right spare.
    if (d.vendor || d.model) rows.push(['detail.unit', esc([d.vendor, d.model].filter(Boolean).join(' '))]);
    for (const k of ['firmware', 'serial', 'installed']) if (d[k]) rows.push([`detail.${k}`, esc(d[k])]);
    const assets = (this.history?.assets || []).slice().reverse();

    // h: the history, when the hub has one for this device.
    const loading = !this.history && !this.error;
    const h = this.history?.hasHistory ? this.history : null;
    const samples = h?.samples || [];
    const names = new Set(Object.keys(d.metrics || {}));
    for (const s of samples) for (const k of Object.keys(s.metrics)) names.add(k);
    const order = Object.keys(METRICS);
    const metrics = [...names].sort((a, b) => {
      const ia = order.indexOf(a); const ib = order.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });

    const transitions = h?.transitions || [];
    const hist = transitions.filter((x) => x.at >= t0).slice().reverse();

    // Redrawing must not drop keyboard focus from the panel's buttons.
    const focus = this.root.contains(document.activeElement) ? document.activeElement : null;
    const refocus = focus?.dataset.window ? `[data-window="${focus.dataset.window}"]` : focus?.hasAttribute('data-close') ? '[data-close]'
      : focus?.hasAttribute('data-live') ? '[data-live]' : '';
    this.root.innerHTML = `
      <header class="d-head s-${esc(d.status)}">
        <span class="dot" aria-hidden="true"></span>
        <h2 id="detail-title"><span class="d-id">${esc(d.id)}</span> <span class="d-name">${esc(named(d.names, d.name))}</span></h2>
        ${d.kind === 'camera' && this.canPlay ? `<button type="button" class="live" data-live title="${esc(t('video.live_title'))} (v)">${esc(t('video.live'))}</button>` : ''}
        ${this.onWorkOrder ? `<button type="button" data-new-order title="${esc(t('work.by_hand_title'))}">${esc(t('work.by_hand'))}</button>` : ''}
        ${this.closeButton()}
      </header>
      <div class="d-body">
        <dl class="kv">${rows.map(([k, v]) => `<dt>${esc(t(k))}</dt><dd>${v}</dd>`).join('')}</dl>
        <div class="d-sec">
          <h3>${esc(t('detail.metrics'))}</h3>
          <span class="win" role="group" aria-label="${esc(t('detail.window'))}">${Object.keys(WINDOWS).map((w) =>
            `<button type="button" data-window="${w}" aria-pressed="${w === this.window}">${esc(t(`detail.window_${w}`))}</button>`).join('')}</span>
        </div>
        ${metrics.length ? `<table class="metrics"><thead><tr><th scope="col">${esc(t('detail.metric'))}</th><th scope="col">${esc(t('detail.latest'))}</th><th scope="col">${esc(t('detail.trend'))}</th></tr></thead><tbody>${
          metrics.map((m) => `<tr data-metric="${esc(m)}"><th scope="row">${esc(has(`metric.${m}`) ? t(`metric.${m}`) : m)}</th><td class="num">${esc(fmtMetric(m, d.metrics?.[m]))}</td><td>${h ? spark(samples, m, t0, t1) : ''}</td></tr>`).join('')
        }</tbody></table>` : `<p class="muted">${esc(t('detail.no_metrics'))}</p>`}
        <div class="d-sec"><h3>${esc(t('detail.history'))}</h3>${h?.source ? `<span class="muted src">${esc(t('detail.source', { source: label('history_source', h.source) }))}</span>` : ''}</div>
        ${h ? strip(transitions, d.status, t0, t1) : ''}
        ${h?.warning ? `<p class="warn">${esc(h.source === 'memory' ? t('detail.influx_fallback') : h.warning)}</p>` : ''}
        ${this.error ? `<p class="err" role="status">${esc(t('detail.history_error', { error: this.error }))}</p>` : ''}
        ${loading ? `<p class="muted">${esc(t('app.loading'))}</p>` : ''}
        ${!loading && !h && !this.error ? `<p class="muted">${esc(t('detail.no_history'))}</p>` : ''}
        ${h && !hist.length ? `<p class="muted">${esc(t('detail.no_transitions'))}</p>` : ''}
        <ol class="history">${hist.map((x) => `<li><time datetime="${new Date(x.at).toISOString()}" title="${esc(dateTime(x.at))}">${esc(clock(x.at))}</time><span class="dot s-${esc(x.to)}" aria-hidden="true"></span><span>${esc(label('status', x.from) || '–')} → ${esc(label('status', x.to))}${x.reason ? ` · ${esc(label('reason', x.reason))}` : ''}${x.detail ? ` <span class="muted">${esc(x.detail)}</span>` : ''}</span></li>`).join('')}</ol>
        ${assets.length ? `<div class="d-sec"><h3>${esc(t('detail.assets'))}</h3></div>
        <ol class="history assets">${assets.map((a) => `<li><time datetime="${new Date(a.at).toISOString()}" title="${esc(dateTime(a.at))}">${esc(dateTime(a.at))}</time><span>${esc(t('asset.line', { what: has(`asset.${a.field}`) ? t(`asset.${a.field}`) : a.field, from: a.from, to: a.to }))}</span></li>`).join('')}</ol>` : ''}
      </div>`;
    if (refocus) this.root.querySelector(refocus)?.focus();
  }

  closeButton() {
    return `<button type="button" class="close" data-close aria-label="${esc(t('detail.close'))}" title="${esc(t('detail.close'))} (Esc)">×</button>`;
  }
}
