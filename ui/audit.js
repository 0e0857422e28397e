// The audit trail (#audit), for auditors: who did what to which object,
// from where, when and how it ended, newest first, filtered by the hub;
// older records page in on request; the matching trail downloads as CSV or
// JSON lines; Verify has the hub check the hash chain and says plainly
// whether it is intact. The table prints cleanly as evidence.

import { t, label, has, num, dateTime, errorText } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';

const PAGE = 200;
export const OUTCOMES = ['success', 'failure', 'denied'];
// ACTIONS the hub records that the console has words for (the filter
// offers them); others show as their code.
export const ACTIONS = [
  'auth.login', 'auth.logout', 'auth.logout_all', 'auth.lockout', 'auth.password_change', 'auth.recovery_code_used',
  'auth.recovery_codes_renew', 'auth.totp_enroll', 'auth.totp_reset', 'auth.denied',
  'account.create', 'account.update', 'account.disable', 'account.enable', 'account.password_reset', 'account.unlock',
  'token.create', 'token.revoke', 'agent.enroll', 'agent.revoke',
  'alarm.ack', 'alarm.assign', 'alarm.shelve', 'alarm.unshelve', 'alarm.clear',
  'live.start', 'live.end', 'live.link',
  'audit.export', 'audit.verify', 'audit.prune', 'config.reload',
];
// The fields of the filter form, by query parameter.
const FIELDS = { from: 'audit-from', to: 'audit-to', actor: 'audit-actor', action: 'audit-action', object: 'audit-object', outcome: 'audit-outcome', remote: 'audit-remote', q: 'audit-q' };

const actionLabel = (a) => label('action', a);

const pad = (n) => String(n).padStart(2, '0');

// fromInput reads a datetime-local input (the browser's time zone).
function fromInput(v) {
  const ms = v ? new Date(v).getTime() : NaN;
  return Number.isFinite(ms) ? api.rfc3339(ms) : '';
}

// zone is the browser's offset from UTC, for the printed page.
function zone() {
  const m = -new Date().getTimezoneOffset();
  return `UTC${m >= 0 ? '+' : '−'}${pad(Math.floor(Math.abs(m) / 60))}:${pad(Math.abs(m) % 60)}`;
}

export class Audit {
  // who() is the signed-in account's name, printed on the page.
  constructor(root, { who }) {
    this.root = root;
    this.who = who;
    this.filter = {};   // what the list shows, as sent to the hub
    this.records = [];
    this.next = 0;
    this.loading = null;
    this.loaded = false;
    this.broken = 0;    // seq of the first broken record, from Verify
    this.verify = null; // the last Verify report, or {error}
    this.shown = false;
    this.build();
  }

  build() {
    const field = (key, input) => html`<label class="f-${key}"><span data-field="${key}"></span>${input}</label>`;
    const text = (key) => html`<input id="${FIELDS[key]}" name="${key}" autocomplete="off" spellcheck="false" autocapitalize="none">`;
    this.root.innerHTML = html`
      <header class="v-top">
        <h2 id="audit-h" data-i18n="view.audit">${t('view.audit')}</h2>
        <span class="grow"></span>
        <button type="button" id="audit-verify" data-i18n="audit.verify">${t('audit.verify')}</button>
        <a id="audit-csv" class="btn" download data-i18n="audit.csv">${t('audit.csv')}</a>
        <a id="audit-jsonl" class="btn" download data-i18n="audit.jsonl">${t('audit.jsonl')}</a>
        <button type="button" id="audit-print" data-i18n="audit.print">${t('audit.print')}</button>
      </header>
      <div id="audit-verify-result" role="status" hidden></div>
      <details id="audit-filter-box" open><summary data-i18n="audit.filters">${t('audit.filters')}</summary>
      <form id="audit-filters" role="search" class="v-filters" data-i18n-label="audit.filters" aria-label="${t('audit.filters')}">
        ${field('from', html`<input type="datetime-local" id="audit-from" name="from">`)}
        ${field('to', html`<input type="datetime-local" id="audit-to" name="to">`)}
        ${field('actor', text('actor'))}
        ${field('action', html`<input id="audit-action" name="action" list="audit-actions" autocomplete="off" spellcheck="false" autocapitalize="none"><datalist id="audit-actions"></datalist>`)}
        ${field('object', text('object'))}
        ${field('outcome', html`<select id="audit-outcome" name="outcome"></select>`)}
        ${field('remote', text('remote'))}
        ${field('q', html`<input type="search" id="audit-q" name="q" autocomplete="off" spellcheck="false" aria-keyshortcuts="/">`)}
        <span class="v-btns"><button type="submit" id="audit-search" class="primary" data-i18n="audit.search">${t('audit.search')}</button>
        <button type="button" id="audit-clear" data-i18n="audit.clear">${t('audit.clear')}</button></span>
      </form></details>
      <p id="audit-notice" class="err" role="alert" hidden></p>
      <p class="print-only" id="audit-print-head"></p>
      <div class="v-scroll" id="audit-scroller" tabindex="0" role="region" aria-labelledby="audit-h">
        <table id="audit-table" class="grid audit">
          <thead><tr>${['seq', 'time', 'actor', 'role', 'remote', 'action', 'object', 'outcome', 'detail'].map((c) =>
            html`<th scope="col" class="c-${c}" data-col="${c}"></th>`)}</tr></thead>
          <tbody id="audit-rows"></tbody>
        </table>
        <div class="v-foot"><span id="audit-count" class="muted" role="status"></span><button type="button" id="audit-older" hidden data-i18n="audit.older">${t('audit.older')}</button></div>
      </div>`;
    const r = this.root;
    // On a phone the filters fold away under their heading; on a wider
    // screen they are always open (the heading is not shown).
    const narrow = window.matchMedia('(max-width: 760px)');
    const fold = () => { r.querySelector('#audit-filter-box').open = !narrow.matches; };
    narrow.addEventListener('change', fold);
    fold();
    r.querySelector('#audit-filters').addEventListener('submit', (e) => { e.preventDefault(); this.search(); });
    r.querySelector('#audit-clear').addEventListener('click', () => {
      r.querySelector('#audit-filters').reset();
      this.search();
    });
    r.querySelector('#audit-older').addEventListener('click', () => this.load(this.next));
    r.querySelector('#audit-verify').addEventListener('click', () => this.runVerify());
    r.querySelector('#audit-print').addEventListener('click', () => window.print());
    r.querySelector('#audit-verify-result').addEventListener('click', (e) => {
      if (e.target.closest('#audit-show-broken')) this.showBroken();
    });
    // A click on an actor, action, object or address filters by it.
    r.querySelector('#audit-rows').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-pivot]');
      if (!b) return;
      r.querySelector(`#${FIELDS[b.dataset.pivot]}`).value = b.dataset.value;
      this.search();
    });
    this.retranslate();
  }

  // The view.

  show() {
    this.shown = true;
    this.root.hidden = false;
    if (!this.loaded && !this.loading) this.search();
  }

  hide() {
    this.shown = false;
    this.root.hidden = true;
  }

  focusSearch() {
    this.root.querySelector('#audit-filter-box').open = true;
    const q = this.root.querySelector('#audit-q');
    q.focus();
    q.select();
  }

  // Data.

  readForm() {
    const f = {};
    for (const [key, id] of Object.entries(FIELDS)) {
      const v = this.root.querySelector(`#${id}`).value.trim();
      if (!v) continue;
      f[key] = key === 'from' || key === 'to' ? fromInput(v) : v;
    }
    return f;
  }

  search() {
    this.filter = this.readForm();
    this.broken = 0;
    this.records = [];
    this.next = 0;
    this.links();
    return this.load(0);
  }

  // load fetches the page before seq before (0: the newest) and appends it.
  load(before) {
    const filter = this.filter;
    const p = (async () => {
      this.notice('');
      this.setBusy(true);
      try {
        const page = await api.audit(filter, before, PAGE);
        if (filter !== this.filter) return; // a newer search took over
        this.records = before ? this.records.concat(page.records) : page.records;
        this.next = page.next;
        this.loaded = true;
      } catch (err) {
        if (filter === this.filter) this.notice(t('audit.load_error', { error: errorText(err) }));
      } finally {
        if (this.loading === p) this.loading = null;
        this.setBusy(false);
        this.render();
      }
    })();
    this.loading = p;
    return p;
  }

  setBusy(on) {
    this.root.querySelector('#audit-search').disabled = on;
    this.root.querySelector('#audit-older').disabled = on;
    this.root.setAttribute('aria-busy', String(on));
  }

  notice(text) {
    const el = this.root.querySelector('#audit-notice');
    el.textContent = text;
    el.hidden = !text;
  }

  // links points the downloads at the trail the list shows.
  links() {
    this.root.querySelector('#audit-csv').href = api.auditExportURL(this.filter, 'csv');
    this.root.querySelector('#audit-jsonl').href = api.auditExportURL(this.filter, 'jsonl');
  }

  async runVerify() {
    const b = this.root.querySelector('#audit-verify');
    b.disabled = true;
    this.verify = { running: true };
    this.renderVerify();
    try {
      this.verify = await api.auditVerify();
    } catch (err) {
      this.verify = { error: errorText(err) };
    } finally {
      b.disabled = false;
    }
    this.renderVerify();
  }

  // showBroken lists the trail from the first broken record back.
  showBroken() {
    const seq = this.verify?.first_broken?.seq;
    if (!seq) return;
    this.root.querySelector('#audit-filters').reset();
    this.filter = {};
    this.links();
    this.records = [];
    this.load(seq + 1).then(() => {
      this.broken = seq;
      this.render();
      this.root.querySelector(`#audit-rows tr[data-seq="${seq}"]`)?.scrollIntoView({ block: 'center' });
    });
  }

  // Drawing.

  render() {
    const pivot = (key, v, text = v) => (v ? html`<button type="button" class="pivot" data-pivot="${key}" data-value="${v}" title="${t('audit.filter_by', { value: v })}">${text}</button>` : '–');
    this.root.querySelector('#audit-rows').innerHTML = html`${this.records.map((r) => html`<tr data-seq="${r.seq}" data-outcome="${r.outcome}"${r.seq === this.broken ? html` class="broken"` : ''}>
      <td class="c-seq num">${r.seq}</td>
      <td class="c-time"><time datetime="${r.at}" title="${r.at}">${dateTime(r._at)}</time></td>
      <td class="c-actor">${pivot('actor', r.actor)}</td>
      <td class="c-role">${r.role ? label('role', r.role) : '–'}</td>
      <td class="c-remote">${pivot('remote', r.remote)}</td>
      <td class="c-action">${pivot('action', r.action, actionLabel(r.action))}${has(`action.${r.action}`) ? html`<span class="code">${r.action}</span>` : ''}</td>
      <td class="c-object">${pivot('object', r.object)}</td>
      <td class="c-outcome"><span class="oc oc-${r.outcome}">${label('outcome', r.outcome)}</span></td>
      <td class="c-detail" title="${r.detail || ''}">${r.detail || ''}</td>
    </tr>`)}`;
    const older = this.root.querySelector('#audit-older');
    older.hidden = !this.next;
    const n = this.records.length;
    this.root.querySelector('#audit-count').textContent = !this.loaded ? t('app.loading')
      : n ? t(this.next ? 'audit.shown_more' : 'audit.shown', { n: num(n) }) : t('audit.none');
    this.renderPrintHead();
  }

  renderPrintHead() {
    const parts = Object.entries(this.filter).map(([k, v]) => `${t(`audit.f_${k}`)}: ${k === 'outcome' ? label('outcome', v) : v}`);
    this.root.querySelector('#audit-print-head').textContent = t('audit.print_head', {
      time: dateTime(Date.now()), who: this.who(), zone: zone(), n: num(this.records.length),
      filters: parts.length ? parts.join(' · ') : t('audit.no_filters'),
    });
  }

  renderVerify() {
    const el = this.root.querySelector('#audit-verify-result');
    const v = this.verify;
    el.hidden = !v;
    if (!v) return;
    delete el.dataset.ok;
    if (v.running) {
      el.className = 'muted';
      el.textContent = t('audit.verifying');
    } else if (v.error) {
      el.className = 'err';
      el.textContent = t('audit.verify_error', { error: v.error });
    } else if (v.ok) {
      el.dataset.ok = 'true';
      el.className = 'v-ok';
      el.innerHTML = html`<b>✓ ${t('audit.verify_ok')}</b> ${t('audit.verify_ok_detail', { n: num(v.records), anchor: v.anchor_seq, head: v.head_seq })}
        <span class="hash">${t('audit.head_hash')} <code id="audit-head-hash">${v.head_hash}</code></span>${v.key_fingerprint ? html` <span class="hash">${t('audit.key')} <code>${v.key_fingerprint}</code></span>` : ''}`;
    } else {
      const b = v.first_broken || {};
      el.dataset.ok = 'false';
      el.className = 'v-bad';
      el.innerHTML = html`<b>✗ ${t('audit.verify_broken')}</b> ${t('audit.verify_broken_detail', { seq: b.seq ?? '?', reason: b.reason || '' })}
        ${b.seq ? html`<button type="button" id="audit-show-broken">${t('audit.show_broken')}</button>` : ''}`;
    }
  }

  retranslate() {
    const r = this.root;
    for (const th of r.querySelectorAll('th[data-col]')) th.textContent = t(`audit.col_${th.dataset.col}`);
    for (const el of r.querySelectorAll('[data-field]')) el.textContent = t(`audit.f_${el.dataset.field}`);
    r.querySelector('#audit-outcome').replaceChildren(new Option(t('audit.any_outcome'), ''), ...OUTCOMES.map((o) => new Option(label('outcome', o), o)));
    r.querySelector('#audit-outcome').value = this.filter.outcome || '';
    r.querySelector('#audit-actions').replaceChildren(...ACTIONS.map((a) => { const o = document.createElement('option'); o.value = a; o.label = actionLabel(a); return o; }));
    r.querySelector('#audit-q').placeholder = t('audit.q_placeholder');
    this.render();
    this.renderVerify();
  }
}
