// The shift handover view (#handover, 交接班): what the shift window saw —
// alarms raised, acknowledged, cleared and still open by severity and
// district, MTTA, who acted, the devices that went down and came back or
// are still down, the open work orders — the outgoing operator's notes,
// and the handover the incoming operator accepts. The window starts where
// the last handover of the operator's scope ended (the hub decides). A
// handover's report is frozen when it is handed over; the list shows the
// latest, each opens as it was handed over, and any of them prints on A4
// with both names and times for signatures.

import { t, label, num, dateTime, errorText } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';
import { duration } from './reports.js';
import { sevLabel, stateLabel, sourceLabel, typeLabel } from './alarms.js';
import { stateLabel as workStateLabel } from './work.js';

const TALLY = ['raised', 'acked', 'cleared', 'open', 'unacked'];

// local and fromLocal convert between epoch ms and a datetime-local
// input's value, in the browser's time zone.
function local(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
const fromLocal = (s) => (s ? new Date(s).getTime() : NaN);

export class Handover {
  // store: the device store (localised district and site names); me():
  // the signed-in account.
  constructor(root, { store, me }) {
    this.root = root;
    this.store = store;
    this.me = me;
    this.shown = false;
    this.report = null;  // the window's report on screen, or a record's
    this.record = null;  // the handover record on screen, null for the live window
    this.list = [];
    this.seq = 0;
    this.build();
  }

  build() {
    this.root.innerHTML = html`
      <header class="v-top">
        <h2 id="handover-h" data-i18n="view.handover">${t('view.handover')}</h2>
        <span id="ho-range" class="muted"></span>
        <span class="grow"></span>
        <button type="button" id="ho-current" hidden data-i18n="ho.current">${t('ho.current')}</button>
        <button type="button" id="ho-print" data-i18n="rep.print">${t('rep.print')}</button>
      </header>
      <form id="ho-form" class="v-filters" aria-label="${t('ho.window')}" data-i18n-label="ho.window">
        <label><span data-i18n="ho.from">${t('ho.from')}</span><input type="datetime-local" id="ho-from" required></label>
        <label><span data-i18n="ho.to">${t('ho.to')}</span><input type="datetime-local" id="ho-to" required></label>
        <span class="v-btns"><button type="submit" class="primary" data-i18n="rep.show">${t('rep.show')}</button></span>
      </form>
      <p id="ho-notice" class="err" role="alert" hidden></p>
      <p id="ho-ok" class="ok" role="status" hidden></p>
      <div class="v-scroll r-body" tabindex="0" role="region" aria-labelledby="handover-h">
        <section class="r-sec ho-pending" id="ho-pending" hidden aria-labelledby="ho-pending-h"></section>
        <p class="print-only" id="ho-print-head"></p>
        <section class="r-sec" aria-labelledby="ho-alarms-h">
          <div class="r-head"><h3 id="ho-alarms-h" data-i18n="ho.alarms">${t('ho.alarms')}</h3></div>
          <dl id="ho-alarm-totals" class="r-totals"></dl>
          <table class="grid r-table" id="ho-sev"><thead></thead><tbody></tbody></table>
          <table class="grid r-table" id="ho-dist"><thead></thead><tbody></tbody></table>
          <h4 data-i18n="ho.open_alarms">${t('ho.open_alarms')}</h4>
          <table class="grid r-table" id="ho-open"><thead></thead><tbody></tbody></table>
          <h4 data-i18n="ho.operators">${t('ho.operators')}</h4>
          <table class="grid r-table" id="ho-ops"><thead></thead><tbody></tbody></table>
        </section>
        <section class="r-sec" aria-labelledby="ho-devices-h">
          <div class="r-head"><h3 id="ho-devices-h" data-i18n="ho.devices">${t('ho.devices')}</h3></div>
          <dl id="ho-out-totals" class="r-totals"></dl>
          <table class="grid r-table" id="ho-outages"><thead></thead><tbody></tbody></table>
          <h4 data-i18n="ho.work">${t('ho.work')}</h4>
          <dl id="ho-work" class="r-totals"></dl>
        </section>
        <section class="r-sec" aria-labelledby="ho-notes-h">
          <div class="r-head"><h3 id="ho-notes-h" data-i18n="ho.notes">${t('ho.notes')}</h3></div>
          <form id="ho-submit">
            <textarea id="ho-notes" class="ho-notes" rows="6" maxlength="8000" aria-labelledby="ho-notes-h" placeholder="${t('ho.notes_hint')}" data-i18n-placeholder="ho.notes_hint"></textarea>
            <p><button type="submit" class="primary" id="ho-hand" data-i18n="ho.hand_over">${t('ho.hand_over')}</button></p>
          </form>
          <div id="ho-record" hidden></div>
        </section>
        <section class="r-sec no-print" aria-labelledby="ho-list-h">
          <div class="r-head"><h3 id="ho-list-h" data-i18n="ho.history">${t('ho.history')}</h3></div>
          <table class="grid r-table" id="ho-list"><thead></thead><tbody></tbody></table>
        </section>
      </div>`;
    const r = this.root;
    r.querySelector('#ho-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const from = fromLocal(r.querySelector('#ho-from').value);
      const to = fromLocal(r.querySelector('#ho-to').value);
      if (Number.isFinite(from) && Number.isFinite(to)) this.load(from, to);
    });
    r.querySelector('#ho-submit').addEventListener('submit', (e) => { e.preventDefault(); this.submit(); });
    r.querySelector('#ho-print').addEventListener('click', () => window.print());
    r.querySelector('#ho-current').addEventListener('click', () => this.load());
    r.querySelector('#ho-list').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-id]');
      if (b) this.open(Number(b.dataset.id));
    });
    r.querySelector('#ho-pending').addEventListener('submit', (e) => {
      e.preventDefault();
      this.accept(Number(e.target.dataset.id), e.target.querySelector('textarea').value);
    });
  }

  $(sel) { return this.root.querySelector(sel); }

  show() {
    this.shown = true;
    this.root.hidden = false;
    if (!this.report) this.load();
  }

  hide() {
    this.shown = false;
    this.root.hidden = true;
  }

  message(el, text) {
    this.$('#ho-notice').hidden = true;
    this.$('#ho-ok').hidden = true;
    if (!text) return;
    const p = this.$(el);
    p.textContent = text;
    p.hidden = false;
  }

  // load shows the live report of a window (the hub's default: since the
  // last handover) and the latest handovers.
  async load(from, to) {
    const seq = ++this.seq;
    const q = new URLSearchParams();
    if (from) q.set('from', api.rfc3339(from));
    if (to) q.set('to', api.rfc3339(to));
    try {
      const [rep, list] = await Promise.all([api.handoverReport(q), api.handovers()]);
      if (seq !== this.seq) return;
      this.record = null;
      this.report = rep;
      this.list = list;
      this.message();
      this.render();
    } catch (err) {
      if (seq === this.seq) this.message('#ho-notice', errorText(err));
    }
  }

  // open shows a handover as it was handed over.
  async open(id) {
    const seq = ++this.seq;
    try {
      const h = await api.handover(id);
      if (seq !== this.seq) return;
      this.record = h;
      this.report = h.report;
      this.message();
      this.render();
    } catch (err) {
      if (seq === this.seq) this.message('#ho-notice', errorText(err));
    }
  }

  async submit() {
    const notes = this.$('#ho-notes').value.trim();
    const rep = this.report;
    if (!rep || this.record) return;
    this.$('#ho-hand').disabled = true;
    try {
      const h = await api.submitHandover({ from: rep.from, to: rep.to, notes });
      this.$('#ho-notes').value = '';
      await this.refreshList();
      await this.open(h.id);
      this.message('#ho-ok', t('ho.handed', { at: dateTime(api.time(h.written_at)) }));
    } catch (err) {
      this.message('#ho-notice', errorText(err));
    } finally {
      this.$('#ho-hand').disabled = false;
    }
  }

  async accept(id, note) {
    try {
      const h = await api.acceptHandover(id, note.trim());
      await this.refreshList();
      await this.open(h.id);
      this.message('#ho-ok', t('ho.accepted_ok', { who: h.outgoing }));
    } catch (err) {
      this.message('#ho-notice', errorText(err));
    }
  }

  async refreshList() {
    this.list = await api.handovers();
  }

  district(d) { return d ? this.store.districtLabel(d) : t('ho.hub'); }

  render() {
    const rep = this.report;
    if (!rep) return;
    const from = api.time(rep.from);
    const to = api.time(rep.to);
    const range = t('ho.range', { from: dateTime(from), to: dateTime(to) });
    this.$('#ho-range').textContent = range;
    this.$('#ho-from').value = local(from);
    this.$('#ho-to').value = local(to);
    this.$('#ho-current').hidden = !this.record;
    this.$('#ho-form').hidden = !!this.record;
    const h = this.record;
    this.$('#ho-print-head').textContent = `${t('view.handover')} · ${range}`;
    this.renderAlarms(rep.alarms);
    this.renderOutages(rep.outages);
    this.$('#ho-work').innerHTML = html`${(rep.work || []).map((w) => html`<div class="r-total"><dt>${workStateLabel(w.state)}</dt><dd><b>${num(w.count)}</b></dd></div>`)}`;
    this.$('#ho-submit').hidden = !!h;
    const rec = this.$('#ho-record');
    rec.hidden = !h;
    if (h) {
      rec.innerHTML = html`
        <p class="ho-notes-text" id="ho-record-notes">${h.notes || t('ho.no_notes')}</p>
        <dl class="ho-sign">
          <div><dt>${t('ho.outgoing')}</dt><dd id="ho-out-who">${h.outgoing} · ${dateTime(api.time(h.written_at))}</dd></div>
          <div><dt>${t('ho.incoming')}</dt><dd id="ho-in-who">${h.incoming ? html`${h.incoming} · ${dateTime(api.time(h.accepted_at))}` : t('ho.waiting')}</dd></div>
          ${h.accept_note && html`<div><dt>${t('ho.accept_note')}</dt><dd>${h.accept_note}</dd></div>`}
        </dl>`;
    }
    this.renderPending();
    this.renderList();
  }

  renderAlarms(a) {
    const tot = a.total || {};
    this.$('#ho-alarm-totals').innerHTML = html`${TALLY.map((k) => html`<div class="r-total" data-k="${k}"><dt>${t(`ho.${k}`)}</dt><dd><b>${num(tot[k] || 0)}</b></dd></div>`)}
      <div class="r-total" data-k="mtta"><dt>${t('ho.mtta')}</dt><dd><b>${a.mtta_s == null ? '–' : duration(a.mtta_s)}</b></dd></div>`;
    const head = (first) => html`<tr><th scope="col">${first}</th>${TALLY.map((k) => html`<th scope="col" class="num">${t(`ho.${k}`)}</th>`)}</tr>`;
    const row = (name, x) => html`<tr><th scope="row">${name}</th>${TALLY.map((k) => html`<td class="num">${num(x[k] || 0)}</td>`)}</tr>`;
    this.$('#ho-sev thead').innerHTML = head(t('ho.severity'));
    this.$('#ho-sev tbody').innerHTML = html`${(a.severities || []).map((s) => row(sevLabel(s.severity), s))}`;
    this.$('#ho-dist thead').innerHTML = head(t('filter.district'));
    this.$('#ho-dist tbody').innerHTML = html`${(a.districts || []).map((d) => row(this.district(d.district), d))}`;
    this.$('#ho-open thead').innerHTML = html`<tr>${['ho.severity', 'ho.alarm', 'ho.device', 'filter.district', 'ho.state', 'ho.since', 'ho.who'].map((k) => html`<th scope="col">${t(k)}</th>`)}</tr>`;
    const open = a.open || [];
    this.$('#ho-open tbody').innerHTML = open.length ? html`${open.map((x) => html`<tr class="sev-${x.severity}">
        <td>${sevLabel(x.severity)}</td>
        <td class="r-wrap">${[sourceLabel(x.source), typeLabel(x.type, x.source)].filter(Boolean).join(' · ')}</td>
        <td>${x.device || x.agent || ''}${x.site ? html` <span class="muted">${this.store.siteLabel(x.site)}</span>` : ''}</td>
        <td>${this.district(x.district)}</td>
        <td>${stateLabel(x.state)}</td>
        <td>${dateTime(api.time(x.since))}</td>
        <td>${x.assigned_to || x.acked_by || ''}</td></tr>`)}${a.open_more ? html`<tr><td colspan="7" class="muted">${t('ho.more', { n: num(a.open_more) })}</td></tr>` : ''}`
      : html`<tr><td colspan="7" class="muted">${t('ho.none_open')}</td></tr>`;
    this.$('#ho-ops thead').innerHTML = html`<tr><th scope="col">${t('ho.who')}</th><th scope="col" class="num">${t('ho.acked')}</th><th scope="col" class="num">${t('ho.cleared')}</th></tr>`;
    this.$('#ho-ops tbody').innerHTML = html`${(a.operators || []).map((o) => html`<tr><th scope="row">${o.who === 'system' ? t('ho.system') : o.who}</th><td class="num">${num(o.acked)}</td><td class="num">${num(o.cleared)}</td></tr>`)}`;
  }

  renderOutages(o) {
    const tot = o.total || {};
    this.$('#ho-out-totals').innerHTML = html`${['began', 'recovered', 'ongoing'].map((k) => html`<div class="r-total" data-k="${k}"><dt>${t(`ho.out_${k}`)}</dt><dd><b>${num(tot[k] || 0)}</b></dd></div>`)}
      <div class="r-total" data-k="mttr"><dt>${t('rep.col_mttr')}</dt><dd><b>${tot.mttr_s == null ? '–' : duration(tot.mttr_s)}</b></dd></div>`;
    this.$('#ho-outages thead').innerHTML = html`<tr>${['ho.device', 'filter.district', 'ho.status', 'ho.down_from', 'ho.back_at', 'ho.down_for'].map((k) => html`<th scope="col">${t(k)}</th>`)}</tr>`;
    const to = api.time(o.to);
    const list = o.list || [];
    this.$('#ho-outages tbody').innerHTML = list.length ? html`${list.map((x) => {
      const a = api.time(x.from);
      const b = api.time(x.to);
      const back = x.ongoing ? t('ho.still_down') : x.removed ? t('ho.removed') : dateTime(b);
      return html`<tr class="${x.ongoing ? 'ho-down' : ''}"><td>${x.device} <span class="muted">${this.store.siteLabel(x.site)}</span></td>
        <td>${this.district(x.district)}</td><td>${label('status', x.status)}${x.planned ? html` <span class="muted">${t('ho.planned')}</span>` : ''}</td>
        <td>${dateTime(a)}</td><td>${back}</td><td class="num">${duration(((b || to) - a) / 1000)}</td></tr>`;
    })}${o.more ? html`<tr><td colspan="6" class="muted">${t('ho.more', { n: num(o.more) })}</td></tr>` : ''}`
      : html`<tr><td colspan="6" class="muted">${t('ho.no_outages')}</td></tr>`;
  }

  // renderPending offers the incoming operator the handovers waiting for
  // someone other than their author.
  renderPending() {
    const me = this.me()?.name;
    const waiting = this.list.filter((h) => !h.accepted_at && h.outgoing !== me);
    const box = this.$('#ho-pending');
    box.hidden = waiting.length === 0;
    box.innerHTML = html`<h3 id="ho-pending-h">${t('ho.pending')}</h3>${waiting.map((h) => html`
      <form class="ho-accept" data-id="${h.id}">
        <p>${t('ho.pending_one', { who: h.outgoing, from: dateTime(api.time(h.from)), to: dateTime(api.time(h.to)) })}</p>
        <p class="ho-notes-text">${h.notes || t('ho.no_notes')}</p>
        <textarea rows="2" maxlength="8000" aria-label="${t('ho.accept_note')}" placeholder="${t('ho.accept_note')}"></textarea>
        <p><button type="button" data-id="${h.id}" class="link">${t('ho.view')}</button>
          <button type="submit" class="primary" id="ho-accept-${h.id}">${t('ho.accept')}</button></p>
      </form>`)}`;
    for (const b of box.querySelectorAll('button[data-id]')) b.addEventListener('click', () => this.open(Number(b.dataset.id)));
  }

  renderList() {
    this.$('#ho-list thead').innerHTML = html`<tr>${['ho.window', 'ho.outgoing', 'ho.incoming', ''].map((k) => html`<th scope="col">${k ? t(k) : ''}</th>`)}</tr>`;
    this.$('#ho-list tbody').innerHTML = this.list.length ? html`${this.list.map((h) => html`<tr${this.record?.id === h.id ? html` aria-current="true"` : ''}>
      <td>${t('ho.range', { from: dateTime(api.time(h.from)), to: dateTime(api.time(h.to)) })}</td>
      <td>${h.outgoing}</td><td>${h.incoming || t('ho.waiting')}</td>
      <td><button type="button" class="link" data-id="${h.id}">${t('ho.view')}</button></td></tr>`)}`
      : html`<tr><td colspan="4" class="muted">${t('ho.none_yet')}</td></tr>`;
  }

  retranslate() {
    if (this.report) this.render();
  }
}
