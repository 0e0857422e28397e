// The reports view (#reports): availability by district, site, kind or
// vendor over a day, week, month or chosen dates (days begin at midnight
// in the report time zone the hub names); the daily 在线率 / 完好率 per
// district as a chart; and the coverage ledger — hectare-hours of
// coverage lost by cause, the districts whose online rate looks fine while
// their coverage does not, the cameras that cost the most coverage, and
// the maintenance windows with who approved them. The hub computes every
// figure; CSV downloads are links to the same addresses, for accounts
// with report.export. The page prints as A4 tables.

import { t, label, num, pct, dateTime, errorText, lang } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';
import { rateClass } from './summary.js';
import { uplot } from './vendor.js';

export const PERIODS = ['day', 'week', 'month', 'custom'];
export const GROUPS = ['district', 'site', 'kind', 'vendor', 'city'];
// REPAIR_GROUPS are what repair figures are grouped by.
export const REPAIR_GROUPS = ['crew', 'district', 'site', 'vendor', 'model', 'city'];
export const CAUSES = ['never_covered', 'outage', 'maintenance', 'unknown'];
const TOP_CAMERAS = 20;
const TZ_KEY = 'citywatch.report_tz';
// Line colours of the chart; the city's line is the accent, drawn thicker.
const DAY_STEPS = [1, 2, 7, 14, 28].map((d) => d * 86400);
const LINE_COLOURS = ['#4cc38a', '#e8b43c', '#c792ff', '#ff8f8f', '#6fd3d0', '#e87fd0', '#f0a35a', '#9ad17a', '#b9a1ff', '#d8d36a'];

// Calendar dates are 'YYYY-MM-DD' strings; instants are epoch ms.

const fmts = new Map();
function partsFormat(tz) {
  if (!fmts.has(tz)) {
    fmts.set(tz, new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    }));
  }
  return fmts.get(tz);
}

function parts(ms, tz) {
  const p = {};
  for (const x of partsFormat(tz).formatToParts(new Date(ms))) p[x.type] = Number(x.value);
  return p;
}

// validZone reports whether tz is an IANA time zone this browser knows.
export function validZone(tz) {
  try { partsFormat(tz); return true; } catch { return false; }
}

// offset is how far tz's wall clock is ahead of UTC at instant ms.
function offset(ms, tz) {
  const p = parts(ms, tz);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}

// midnight is the instant a calendar date begins in tz (DST-aware: the
// offset is read again at the first guess).
export function midnight(ymd, tz) {
  const [y, m, d] = ymd.split('-').map(Number);
  const wall = Date.UTC(y, m - 1, d);
  const first = wall - offset(wall, tz);
  return wall - offset(first, tz);
}

// today is the calendar date in tz at instant now.
export function today(tz, now = Date.now()) {
  const p = parts(now, tz);
  return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`;
}

export function addDays(ymd, n) {
  const [y, m, d] = ymd.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

function addMonths(ymd, n) {
  const [y, m] = ymd.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1 + n, 1)).toISOString().slice(0, 10);
}

const validDate = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s || '') && !Number.isNaN(Date.parse(`${s}T00:00:00Z`));

// period is the span a report covers: {start, end} calendar dates (end
// exclusive) and {from, to} instants in tz. kind is day, week (Monday to
// Monday), month, or custom (first to last, both included); anchor is a
// date inside the day, week or month.
export function period(kind, anchor, tz, first = '', last = '') {
  let start;
  let end;
  if (kind === 'custom') {
    if (!validDate(first) || !validDate(last)) return null;
    [start, end] = first <= last ? [first, addDays(last, 1)] : [last, addDays(first, 1)];
  } else {
    if (!validDate(anchor)) return null;
    if (kind === 'week') {
      const dow = new Date(`${anchor}T00:00:00Z`).getUTCDay(); // 0 Sunday
      start = addDays(anchor, -((dow + 6) % 7));
      end = addDays(start, 7);
    } else if (kind === 'month') {
      start = `${anchor.slice(0, 8)}01`;
      end = addMonths(start, 1);
    } else {
      start = anchor;
      end = addDays(anchor, 1);
    }
  }
  return { start, end, from: midnight(start, tz), to: midnight(end, tz) };
}

// duration formats seconds as hours and minutes, for MTTR.
export function duration(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '–';
  const m = Math.round(s / 60);
  return m < 60 ? t('rep.dur_m', { m: num(m) }) : t('rep.dur_hm', { h: num(Math.floor(m / 60)), m: num(m % 60) });
}

const hours = (s) => (typeof s === 'number' && Number.isFinite(s) ? num(s / 3600, 1) : '–');
const ha = (x, digits = 1) => (typeof x === 'number' && Number.isFinite(x) ? num(x, digits) : '–');
const rate = (r) => (typeof r === 'number' ? pct(r) : '–');
const sum = (...xs) => (xs.some((x) => typeof x === 'number') ? xs.reduce((a, x) => a + (Number(x) || 0), 0) : null);

export class Reports {
  // store: the device store (district names); can(p) what the account
  // may do; who() the signed-in account's name (printed); onDevice(id)
  // opens a device on the map, or null when the account cannot.
  constructor(root, { store, can, who, onDevice = null }) {
    this.root = root;
    this.store = store;
    this.can = can;
    this.who = who;
    this.onDevice = onDevice;
    this.shown = false;
    this.loaded = false;
    this.loading = null;
    this.seq = 0;
    this.tz = this.savedZone();
    this.data = { avail: null, series: null, ledger: null };
    this.errors = {};
    this.chart = null;
    this.build();
  }

  savedZone() {
    let tz = '';
    try { tz = localStorage.getItem(TZ_KEY) || ''; } catch { /* storage disabled */ }
    if (!validZone(tz)) tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    return validZone(tz) ? tz : 'UTC';
  }

  build() {
    const csv = (id) => html`<a id="${id}" class="btn r-csv" download hidden data-i18n="rep.csv">${t('rep.csv')}</a>`;
    const th = (key, right = false) => html`<th scope="col"${right ? html` class="num"` : ''} data-col="${key}"></th>`;
    this.root.innerHTML = html`
      <header class="v-top">
        <h2 id="reports-h" data-i18n="view.reports">${t('view.reports')}</h2>
        <span id="rep-range" class="muted"></span>
        <span class="grow"></span>
        <button type="button" id="rep-print" data-i18n="rep.print">${t('rep.print')}</button>
      </header>
      <form id="rep-form" class="v-filters" data-i18n-label="rep.filters" aria-label="${t('rep.filters')}">
        <label><span data-i18n="rep.period">${t('rep.period')}</span><select id="rep-period" name="period"></select></label>
        <label class="r-anchor"><span data-i18n="rep.date">${t('rep.date')}</span><input type="date" id="rep-date" name="date" required></label>
        <label class="r-custom"><span data-i18n="rep.from">${t('rep.from')}</span><input type="date" id="rep-from" name="from"></label>
        <label class="r-custom"><span data-i18n="rep.to">${t('rep.to')}</span><input type="date" id="rep-to" name="to"></label>
        <label><span data-i18n="rep.group">${t('rep.group')}</span><select id="rep-group" name="group"></select></label>
        <label><span data-i18n="filter.district">${t('filter.district')}</span><select id="rep-district" name="district"></select></label>
        <span class="v-btns"><button type="submit" id="rep-load" class="primary" data-i18n="rep.show">${t('rep.show')}</button></span>
      </form>
      <p id="rep-simulated" class="r-sim" role="status" hidden data-i18n="rep.simulated">${t('rep.simulated')}</p>
      <p id="rep-notice" class="err" role="alert" hidden></p>
      <p class="print-only" id="rep-print-head"></p>
      <div class="v-scroll r-body" id="rep-scroller" tabindex="0" role="region" aria-labelledby="reports-h">
        <section class="r-sec" aria-labelledby="rep-avail-h">
          <div class="r-head"><h3 id="rep-avail-h" data-i18n="rep.availability">${t('rep.availability')}</h3>${csv('rep-avail-csv')}</div>
          <p class="err r-err" id="rep-avail-error" hidden></p>
          <table class="grid r-table" id="rep-avail">
            <thead><tr>${th('key')}${th('devices', true)}${th('online_rate', true)}${th('intact_rate', true)}${th('expected_h', true)}${th('down_h', true)}${th('maintenance_h', true)}${th('outages', true)}${th('mttr', true)}</tr></thead>
            <tbody></tbody><tfoot></tfoot>
          </table>
        </section>
        <section class="r-sec r-series" aria-labelledby="rep-series-h">
          <div class="r-head"><h3 id="rep-series-h" data-i18n="rep.series">${t('rep.series')}</h3>
            <label class="chk"><span data-i18n="rep.metric">${t('rep.metric')}</span><select id="rep-metric"></select></label></div>
          <p class="err r-err" id="rep-series-error" hidden></p>
          <div id="rep-chart" class="r-chart" role="img" data-i18n-label="rep.series" aria-label="${t('rep.series')}"></div>
        </section>
        <section class="r-sec" aria-labelledby="rep-ledger-h">
          <div class="r-head"><h3 id="rep-ledger-h" data-i18n="rep.ledger">${t('rep.ledger')}</h3></div>
          <p class="hint" data-i18n="rep.ledger_hint">${t('rep.ledger_hint')}</p>
          <p class="err r-err" id="rep-ledger-error" hidden></p>
          <dl id="rep-ledger-totals" class="r-totals"></dl>
          <div class="r-head"><h4 data-i18n="rep.ledger_districts">${t('rep.ledger_districts')}</h4>${csv('rep-districts-csv')}</div>
          <table class="grid r-table" id="rep-ledger-districts">
            <thead><tr>${th('district')}${th('camera_online', true)}${th('outage_hah', true)}${th('maintenance_hah', true)}${th('never_hah', true)}${th('unknown_hah', true)}${th('weighted_lost', true)}</tr></thead>
            <tbody></tbody>
          </table>
          <div class="r-head"><h4 data-i18n="rep.ledger_cameras">${t('rep.ledger_cameras')}</h4>${csv('rep-cameras-csv')}</div>
          <table class="grid r-table" id="rep-ledger-cameras">
            <thead><tr>${th('camera')}${th('district')}${th('site')}${th('down_h', true)}${th('lost_hah', true)}${th('weighted', true)}</tr></thead>
            <tbody></tbody>
          </table>
          <div class="r-head"><h4 data-i18n="rep.ledger_maintenance">${t('rep.ledger_maintenance')}</h4>${csv('rep-maintenance-csv')}</div>
          <table class="grid r-table" id="rep-ledger-maintenance">
            <thead><tr>${th('windows')}${th('approved_by')}${th('lost_hah', true)}${th('weighted', true)}</tr></thead>
            <tbody></tbody>
          </table>
        </section>
        <section class="r-sec" aria-labelledby="rep-repairs-h">
          <div class="r-head"><h3 id="rep-repairs-h" data-i18n="rep.repairs">${t('rep.repairs')}</h3>
            <label class="chk"><span data-i18n="rep.group">${t('rep.group')}</span><select id="rep-repairs-group"></select></label>${csv('rep-repairs-csv')}</div>
          <p class="hint" data-i18n="rep.repairs_hint">${t('rep.repairs_hint')}</p>
          <p class="err r-err" id="rep-repairs-error" hidden></p>
          <table class="grid r-table" id="rep-repairs">
            <thead><tr>${th('key')}${th('opened', true)}${th('closed', true)}${th('mtta', true)}${th('mttr', true)}${th('mtbf', true)}${th('first_fix', true)}${th('repeat', true)}${th('fix_met', true)}${th('backlog', true)}</tr></thead>
            <tbody></tbody><tfoot></tfoot>
          </table>
        </section>
      </div>`;
    const r = this.root;
    this.form = r.querySelector('#rep-form');
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.load(); });
    this.form.addEventListener('change', (e) => {
      if (e.target.id === 'rep-period') this.fitForm();
      if (this.form.checkValidity()) this.load();
    });
    r.querySelector('#rep-metric').addEventListener('change', () => this.renderChart());
    r.querySelector('#rep-repairs-group').addEventListener('change', () => this.load());
    r.querySelector('#rep-print').addEventListener('click', () => window.print());
    r.querySelector('#rep-ledger-cameras').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-device]');
      if (b && this.onDevice) this.onDevice(b.dataset.device);
    });
    r.querySelector('#rep-date').value = today(this.tz);
    this.retranslate();
    this.fitForm();
    new ResizeObserver(() => this.resizeChart()).observe(r.querySelector('#rep-chart'));
  }

  // fillSelects (re)writes the words of the controls and headings.
  fillSelects() {
    const r = this.root;
    for (const th of r.querySelectorAll('th[data-col]')) th.textContent = t(`rep.col_${th.dataset.col}`);
    const keep = (sel, opts, dflt) => {
      const el = r.querySelector(sel);
      const v = el.value || dflt;
      el.replaceChildren(...opts);
      el.value = v;
    };
    keep('#rep-period', PERIODS.map((p) => new Option(t(`rep.period_${p}`), p)), 'week');
    keep('#rep-group', GROUPS.map((g) => new Option(t(`rep.group_${g}`), g)), 'district');
    keep('#rep-repairs-group', REPAIR_GROUPS.map((g) => new Option(t(`rep.group_${g}`), g)), 'crew');
    keep('#rep-metric', [new Option(t('summary.online_rate'), 'online_rate'), new Option(t('summary.intact_rate'), 'intact_rate')], 'online_rate');
    this.fillDistricts();
  }

  // fillDistricts offers every district the console knows of: the
  // store's, and those the last answers named.
  fillDistricts() {
    const names = new Set(this.store?.loaded ? this.store.districtNames() : []);
    for (const d of this.data.ledger?.districts || []) if (d.district) names.add(d.district);
    for (const s of this.data.series?.series || []) if (s.district) names.add(s.district);
    const el = this.root.querySelector('#rep-district');
    const v = el.value;
    el.replaceChildren(new Option(t('filter.all_districts'), ''), ...[...names].sort((a, b) => a.localeCompare(b)).map((n) => new Option(n, n)));
    if (v && !names.has(v)) el.add(new Option(v, v));
    el.value = v;
  }

  // fitForm shows the date fields the chosen period needs.
  fitForm() {
    const custom = this.root.querySelector('#rep-period').value === 'custom';
    for (const el of this.root.querySelectorAll('.r-custom')) { el.hidden = !custom; el.querySelector('input').required = custom; }
    const anchor = this.root.querySelector('.r-anchor');
    anchor.hidden = custom;
    anchor.querySelector('input').required = !custom;
    if (custom) {
      const from = this.root.querySelector('#rep-from');
      const to = this.root.querySelector('#rep-to');
      const p = this.span();
      if (!from.value && p) from.value = p.start;
      if (!to.value && p) to.value = addDays(p.end, -1);
    }
  }

  // span reads the form as a period in the report time zone.
  span() {
    const f = (id) => this.root.querySelector(id).value;
    const kind = f('#rep-period');
    return kind === 'custom' ? period('custom', '', this.tz, f('#rep-from'), f('#rep-to')) : period(kind || 'week', f('#rep-date'), this.tz);
  }

  // query is what every report is asked for: the span and the district.
  query() {
    const p = this.span();
    if (!p) return null;
    return { from: api.rfc3339(p.from), to: api.rfc3339(p.to), district: this.root.querySelector('#rep-district').value };
  }

  show() {
    this.shown = true;
    this.root.hidden = false;
    if (!this.loaded && !this.loading) this.load();
  }

  hide() {
    this.shown = false;
    this.root.hidden = true;
  }

  // load fetches the three reports for the form; resolves when drawn. A
  // newer load supersedes an older one.
  load() {
    const q = this.query();
    if (!q) { this.notice(t('rep.bad_period')); return Promise.resolve(); }
    const seq = ++this.seq;
    const group = this.root.querySelector('#rep-group').value || 'district';
    this.notice('');
    this.root.setAttribute('aria-busy', 'true');
    const jobs = {
      avail: api.availability({ ...q, group }),
      series: api.series(q),
      ledger: api.ledger({ ...q, top: TOP_CAMERAS }),
      repairs: api.repairs({ from: q.from, to: q.to, group: this.repairGroup() }),
    };
    this.loading = (async () => {
      const keys = Object.keys(jobs);
      const settled = await Promise.allSettled(Object.values(jobs));
      if (seq !== this.seq) return;
      this.errors = {};
      keys.forEach((k, i) => {
        const s = settled[i];
        this.data[k] = s.status === 'fulfilled' ? s.value : null;
        if (s.status === 'rejected') this.errors[k] = errorText(s.reason);
      });
      this.loaded = true;
      this.loading = null;
      this.root.setAttribute('aria-busy', 'false');
      // The hub says which zone its days begin in; ask again in it when
      // the guess was wrong.
      const tz = this.data.avail?.timezone || this.data.series?.timezone;
      if (tz && tz !== this.tz && validZone(tz)) {
        this.tz = tz;
        try { localStorage.setItem(TZ_KEY, tz); } catch { /* storage disabled */ }
        await this.load();
        return;
      }
      this.links(q, group);
      this.render();
    })();
    return this.loading;
  }

  notice(text) {
    const el = this.root.querySelector('#rep-notice');
    el.textContent = text;
    el.hidden = !text;
  }

  // links points the CSV downloads at the reports shown.
  links(q, group) {
    const may = this.can('report.export');
    const set = (id, href) => { const a = this.root.querySelector(id); a.hidden = !may; a.href = href; };
    set('#rep-avail-csv', api.reportPath('availability', { ...q, group }, true));
    const lq = { ...q, top: TOP_CAMERAS };
    set('#rep-districts-csv', api.ledgerPath(lq, 'districts'));
    set('#rep-cameras-csv', api.ledgerPath(lq, 'cameras'));
    set('#rep-maintenance-csv', api.ledgerPath(lq, 'maintenance'));
    set('#rep-repairs-csv', api.reportPath('maintenance', { from: q.from, to: q.to, group: this.repairGroup() }, true));
  }

  repairGroup() { return this.root.querySelector('#rep-repairs-group').value || 'crew'; }

  // Drawing.

  render() {
    const { avail, ledger } = this.data;
    const p = this.span();
    const range = p ? t('rep.range', { from: p.start, to: addDays(p.end, -1), zone: this.tz }) : '';
    this.root.querySelector('#rep-range').textContent = range;
    this.root.querySelector('#rep-simulated').hidden = !(avail?.simulated || ledger?.simulated || this.data.series?.simulated === true);
    for (const k of ['avail', 'series', 'ledger', 'repairs']) {
      const el = this.root.querySelector(`#rep-${k}-error`);
      el.textContent = this.errors[k] ? t('rep.load_error', { error: this.errors[k] }) : '';
      el.hidden = !this.errors[k];
    }
    this.renderAvailability();
    this.renderChart();
    this.renderLedger();
    this.renderRepairs();
    this.fillDistricts();
    this.root.querySelector('#rep-print-head').textContent = t('rep.print_head', {
      range, time: dateTime(Date.now()), who: this.who?.() || '', group: t(`rep.group_${this.root.querySelector('#rep-group').value || 'district'}`),
      district: this.root.querySelector('#rep-district').value || t('filter.all_districts'),
    });
  }

  renderAvailability() {
    const a = this.data.avail;
    const group = a?.group || this.root.querySelector('#rep-group').value;
    const keyText = (k) => (group === 'kind' ? label('kind', k) : group === 'city' && !k ? t('rep.city') : k || '–');
    const row = (x, key, cls = '') => html`<tr class="${cls}" data-key="${key}">
      <th scope="row">${keyText(key)}</th>
      <td class="num">${num(x.devices)}</td>
      <td class="num ${rateClass(x.online_rate ?? NaN)}" data-rate="online">${rate(x.online_rate)}</td>
      <td class="num ${rateClass(x.intact_rate ?? NaN)}" data-rate="intact">${rate(x.intact_rate)}</td>
      <td class="num">${hours(x.expected_s)}</td>
      <td class="num">${hours(sum(x.offline_s, x.unreachable_s))}</td>
      <td class="num">${hours(x.maintenance_s)}</td>
      <td class="num">${num(x.outages)}</td>
      <td class="num">${duration(x.mttr_s)}</td></tr>`;
    const table = this.root.querySelector('#rep-avail');
    const rows = a?.rows || [];
    table.tBodies[0].innerHTML = rows.length ? html`${rows.map((x) => row(x, x.key ?? ''))}`
      : html`<tr class="none"><td colspan="9">${a ? t('rep.no_rows') : '–'}</td></tr>`;
    table.tFoot.innerHTML = a?.total ? html`${row({ ...a.total }, t('rep.total'), 'total')}` : '';
  }

  async renderChart() {
    const el = this.root.querySelector('#rep-chart');
    const s = this.data.series;
    this.chart?.destroy();
    this.chart = null;
    el.replaceChildren();
    if (!s || !s.days.length) {
      if (s) el.textContent = t('rep.no_rows');
      return;
    }
    let U;
    try {
      U = await uplot();
    } catch (err) {
      el.textContent = t('rep.chart_error', { error: errorText(err) });
      return;
    }
    if (this.data.series !== s) return; // a newer answer is being drawn
    const metric = this.root.querySelector('#rep-metric').value || 'online_rate';
    // The city first and thicker; then districts by name.
    const lines = [...s.series].sort((a, b) => (a.district === '' ? -1 : b.district === '' ? 1 : a.district.localeCompare(b.district)));
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue('--muted').trim() || '#8391a1';
    const grid = css.getPropertyValue('--line').trim() || '#263140';
    const accent = css.getPropertyValue('--accent').trim() || '#5aa9ff';
    const day = new Intl.DateTimeFormat(lang(), { month: 'short', day: 'numeric', timeZone: 'UTC' });
    const xs = s.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
    const opts = {
      width: Math.max(300, el.clientWidth || 600),
      height: 240,
      tzDate: (ts) => U.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      scales: { x: { time: true }, y: { range: (u, min) => [Math.max(0, Math.min(Number.isFinite(min) ? Math.floor(min) : 90, 90)), 100] } },
      axes: [
        // Ticks fall on whole days only.
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, space: 50, incrs: DAY_STEPS,
          values: (u, vals) => vals.map((v) => day.format(new Date(v * 1e3))) },
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, values: (u, vals) => vals.map((v) => `${num(v)}%`) },
      ],
      series: [
        { value: (u, v) => (v == null ? '–' : day.format(new Date(v * 1e3))) },
        ...lines.map((x, i) => ({
          label: x.district || t('rep.city'),
          stroke: x.district ? LINE_COLOURS[i % LINE_COLOURS.length] : accent,
          width: x.district ? 1.5 : 3,
          value: (u, v) => (v == null ? '–' : `${num(v, 1)}%`),
        })),
      ],
    };
    const data = [xs, ...lines.map((x) => x[metric].map((v) => (v == null ? null : v * 100)))];
    this.chart = new U(opts, data, el);
  }

  resizeChart() {
    const el = this.root.querySelector('#rep-chart');
    if (this.chart && el.clientWidth) this.chart.setSize({ width: el.clientWidth, height: 240 });
  }

  // renderRepairs draws the repair figures, MTTR as a bar against the
  // slowest group so the slow crew stands out on paper too.
  renderRepairs() {
    const f = this.data.repairs;
    const rows = f?.rows || [];
    const slowest = Math.max(1, ...rows.map((x) => x.mttr_s || 0));
    const keyText = (k) => (f?.group === 'city' || !k ? t('rep.city') : k);
    const row = (x, key, cls = '') => html`<tr class="${cls}" data-key="${key}">
      <th scope="row">${cls === 'total' ? t('rep.total') : keyText(key)}</th>
      <td class="num">${num(x.opened)}</td>
      <td class="num">${num(x.closed)}</td>
      <td class="num">${duration(x.mtta_s)}</td>
      <td class="num r-barcell">${typeof x.mttr_s === 'number' && cls !== 'total' ? html`<span class="r-bar" style="width:${Math.round((x.mttr_s / slowest) * 100)}%"></span>` : ''}<span>${duration(x.mttr_s)}</span></td>
      <td class="num">${typeof x.mtbf_h === 'number' ? num(x.mtbf_h, 1) : '–'}</td>
      <td class="num">${rate(x.first_time_fix)}</td>
      <td class="num">${rate(x.repeat_rate)}</td>
      <td class="num ${rateClass(x.fix_met ?? NaN)}">${rate(x.fix_met)}</td>
      <td class="num">${num(x.backlog)}${typeof x.backlog_max_age_h === 'number' ? html` <span class="muted">(${num(x.backlog_max_age_h, 1)} h)</span>` : ''}</td></tr>`;
    const table = this.root.querySelector('#rep-repairs');
    table.tBodies[0].innerHTML = rows.length ? html`${rows.map((x) => row(x, x.key ?? ''))}`
      : html`<tr class="none"><td colspan="10">${f ? t('rep.no_rows') : '–'}</td></tr>`;
    table.tFoot.innerHTML = f?.total ? html`${row(f.total, '', 'total')}` : '';
  }

  renderLedger() {
    const l = this.data.ledger;
    const r = this.root;
    r.querySelector('#rep-ledger-totals').innerHTML = l ? html`${CAUSES.map((c) => html`<div class="r-total" data-cause="${c}">
      <dt>${t(`rep.cause_${c}`)}</dt><dd><b>${ha(l.totals[c].hectare_hours)}</b> ${t('rep.hah')}
      <span class="muted">${t('rep.weighted_short', { n: num(l.totals[c].weighted, 1) })}</span></dd></div>`)}` : '';
    const none = (cols) => html`<tr class="none"><td colspan="${cols}">${l ? t('rep.no_rows') : '–'}</td></tr>`;
    const flagged = new Set(l?.flagged || []);
    const ds = l?.districts || [];
    r.querySelector('#rep-ledger-districts tbody').innerHTML = ds.length ? html`${ds.map((d) => {
      const flag = d.flagged || flagged.has(d.district);
      return html`<tr data-district="${d.district}"${flag ? html` class="flagged" data-flagged="true"` : ''}>
        <th scope="row">${d.district}${flag ? html` <span class="badge b-warn">${t('rep.flagged')}</span>` : ''}</th>
        <td class="num">${rate(d.camera_online_rate)}</td>
        <td class="num">${ha(d.outage.hectare_hours)}</td>
        <td class="num">${ha(d.maintenance.hectare_hours)}</td>
        <td class="num">${ha(d.never_covered.hectare_hours)}</td>
        <td class="num">${ha(d.unknown.hectare_hours)}</td>
        <td class="num">${typeof d.weighted_lost_pct === 'number' ? `${num(d.weighted_lost_pct, 1)}%` : '–'}</td></tr>`;
    })}` : none(7);
    const cams = l?.cameras || [];
    const camName = (c) => html`<span class="mono">${c.id}</span> ${c.name || ''}`;
    r.querySelector('#rep-ledger-cameras tbody').innerHTML = cams.length ? html`${cams.map((c) => html`<tr data-camera="${c.id}">
      <th scope="row">${this.onDevice ? html`<button type="button" class="link" data-device="${c.id}" title="${t('rep.open_device')}">${camName(c)}</button>` : camName(c)}</th>
      <td>${c.district}</td><td>${c.site}</td>
      <td class="num">${typeof c.down_hours === 'number' ? num(c.down_hours, 1) : '–'}</td>
      <td class="num">${typeof c.cell_hours === 'number' ? ha(c.cell_hours * l.cellHa, 2) : '–'}</td>
      <td class="num">${typeof c.weighted_cell_hours === 'number' ? num(c.weighted_cell_hours, 1) : '–'}</td></tr>`)}` : none(6);
    const ms = l?.maintenance || [];
    r.querySelector('#rep-ledger-maintenance tbody').innerHTML = ms.length ? html`${ms.map((m) => html`<tr>
      <td class="r-wrap">${m.names.join(', ') || '–'}</td>
      <td class="r-wrap">${m.approved_by.join(', ') || html`<span class="err">${t('rep.not_approved')}</span>`}</td>
      <td class="num">${typeof m.cell_hours === 'number' ? ha(m.cell_hours * l.cellHa, 2) : '–'}</td>
      <td class="num">${typeof m.weighted === 'number' ? num(m.weighted, 1) : '–'}</td></tr>`)}` : none(4);
  }

  retranslate() {
    this.fillSelects();
    if (this.loaded) this.render();
  }
}
