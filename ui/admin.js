// Administration (#admin), for security administrators: accounts (role,
// extra permissions, the part of the city each may see; passwords, second
// factors and sessions), lockouts after failed sign-ins, API tokens and
// agent credentials. Secrets and initial passwords are shown once; what
// cannot be undone is confirmed first. The hub decides what is allowed:
// its refusals are shown as they come.

import { t, label, num, ago, dateTime, errorText } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';
import { Grid } from './grid.js';
import { formDialog, confirmDialog, secretDialog } from './dialog.js';

// ROLES and GRANTABLE are the hub's (hub/auth); ui_test.go keeps them in
// step.
export const ROLES = ['operator', 'supervisor', 'maintainer', 'analyst', 'auditor', 'security_admin', 'admin'];
export const GRANTABLE = ['status.read', 'alarm.read', 'live.view', 'live.link', 'device.probe', 'report.read', 'report.export', 'metrics.read'];
// TOKEN_TTLS: how long a new API token lasts, the first the default.
const TOKEN_TTLS = [['720h', 'admin.ttl_30d'], ['168h', 'admin.ttl_7d'], ['2160h', 'admin.ttl_90d'], ['8760h', 'admin.ttl_365d']];

// TABS: each tab, the permission it needs and the id of its "new" button.
const TABS = [
  { id: 'accounts', perm: 'account.manage', add: 'account-new' },
  { id: 'lockouts', perm: 'account.manage', add: '' },
  { id: 'tokens', perm: 'token.manage', add: 'token-new' },
  { id: 'agents', perm: 'agent.manage', add: 'agent-new' },
];

const permLabel = (p) => label('perm', p);

// scopeText says what part of the city a scope covers.
function scopeText(s) {
  if (s?.all) return t('scope.all');
  const parts = [];
  if (s?.districts?.length) parts.push(t('scope.districts', { list: s.districts.join(', ') }));
  if (s?.sites?.length) parts.push(t('scope.sites', { list: s.sites.join(', ') }));
  return parts.length ? parts.join(' · ') : t('scope.none');
}

const list = (s) => String(s || '').split(/[\s,，、;]+/).map((x) => x.trim()).filter(Boolean);
const uniq = (xs) => [...new Set(xs)];
const badge = (kind, text, title = '') => html`<span class="badge b-${kind}"${title ? html` title="${title}"` : ''}>${text}</span>`;
const when = (ms, now = Date.now()) => (ms ? html`<span title="${dateTime(ms)}">${ago(ms, now)}</span>` : '–');
const day = (ms) => (ms ? dateTime(ms).slice(0, 10) : '–');
const mono = (s) => html`<span class="mono">${s}</span>`;
const act = (name, text, danger = false) => html`<button type="button" data-act="${name}"${danger ? html` class="danger"` : ''}>${text}</button>`;

// accessFields are the role, extra permissions and scope of an account or
// a token; known: district names to pick from (empty when this account
// cannot read the fleet).
function accessFields(x, known) {
  const scope = x.scope || { all: true };
  const districts = scope.districts || [];
  return html`
    <label><span>${t('admin.f_role')}</span><select id="dlg-role" name="role">${ROLES.map((r) =>
      html`<option value="${r}"${r === x.role ? html` selected` : ''}>${label('role', r)}</option>`)}</select></label>
    <p class="hint" id="dlg-role-hint">${t(`role_hint.${x.role || ROLES[0]}`)}</p>
    <fieldset class="chks"><legend>${t('admin.f_grants')}</legend>${GRANTABLE.map((p) =>
      html`<label class="chk"><input type="checkbox" name="grant" value="${p}"${(x.grants || []).includes(p) ? html` checked` : ''}> ${permLabel(p)}</label>`)}</fieldset>
    <fieldset class="scope"><legend>${t('admin.f_scope')}</legend>
      <label class="chk"><input type="checkbox" id="dlg-scope-all" name="scope_all"${scope.all ? html` checked` : ''}> ${t('scope.all')}</label>
      <label><span>${t('admin.f_districts')}</span><input id="dlg-districts" name="districts" autocomplete="off" spellcheck="false" value="${districts.join(', ')}" placeholder="${t('admin.list_placeholder')}"></label>
      ${known.length > 0 && html`<div class="picks" role="group" aria-label="${t('admin.f_districts')}">${known.map((d) =>
        html`<button type="button" data-district="${d}" aria-pressed="${districts.includes(d)}">${d}</button>`)}</div>`}
      <label><span>${t('admin.f_sites')}</span><input id="dlg-sites" name="sites" autocomplete="off" spellcheck="false" value="${(scope.sites || []).join(', ')}" placeholder="${t('admin.list_placeholder')}"></label>
    </fieldset>`;
}

// bindAccess makes the access fields of the open form dialog live: the
// role's description, the district picks, whole city disabling the lists.
function bindAccess() {
  const form = document.querySelector('#form-dialog form');
  const all = form.querySelector('#dlg-scope-all');
  const districts = form.querySelector('#dlg-districts');
  const sites = form.querySelector('#dlg-sites');
  const sync = () => {
    districts.disabled = sites.disabled = all.checked;
    const chosen = new Set(list(districts.value));
    for (const b of form.querySelectorAll('[data-district]')) {
      b.disabled = all.checked;
      b.setAttribute('aria-pressed', String(chosen.has(b.dataset.district)));
    }
  };
  form.querySelector('#dlg-role').addEventListener('change', (e) => {
    form.querySelector('#dlg-role-hint').textContent = t(`role_hint.${e.target.value}`);
  });
  all.addEventListener('change', sync);
  districts.addEventListener('input', sync);
  form.addEventListener('click', (e) => {
    const b = e.target.closest('[data-district]');
    if (!b) return;
    const chosen = list(districts.value);
    const d = b.dataset.district;
    districts.value = (chosen.includes(d) ? chosen.filter((x) => x !== d) : [...chosen, d]).join(', ');
    sync();
  });
  sync();
}

function readAccess(form) {
  const all = form.querySelector('#dlg-scope-all').checked;
  return {
    role: form.querySelector('#dlg-role').value,
    grants: [...form.querySelectorAll('input[name="grant"]:checked')].map((c) => c.value),
    scope: all ? { all: true } : { districts: uniq(list(form.querySelector('#dlg-districts').value)), sites: uniq(list(form.querySelector('#dlg-sites').value)) },
  };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const sortedScope = (s) => (s?.all ? { all: true } : { districts: [...(s?.districts || [])].sort(), sites: [...(s?.sites || [])].sort() });

// Status of an account: what needs attention first.
function accountStatus(a, now) {
  const out = [];
  if (a.disabled) out.push(badge('bad', t('admin.st_disabled')));
  if (a._locked > now) out.push(badge('warn', t('admin.st_locked'), t('admin.until', { time: dateTime(a._locked) })));
  if (a.must_change_password) out.push(badge('info', t('admin.st_must_change')));
  out.push(a.totp_enabled ? badge('ok', t('admin.st_totp')) : badge('muted', t('admin.st_no_totp')));
  return out;
}

function accountRank(a, now) {
  if (a.disabled) return 0;
  if (a._locked > now) return 1;
  if (a.must_change_password) return 2;
  return a.totp_enabled ? 4 : 3;
}

function tokenState(k, now) {
  if (k._revoked) return 'revoked';
  if (k._expires && k._expires <= now) return 'expired';
  return 'active';
}

export class Admin {
  // can(permission) picks the tabs; districts() lists district names to
  // offer in scopes (empty when unknown).
  constructor(root, { can, districts }) {
    this.root = root;
    this.districts = districts;
    this.tabs = TABS.filter((x) => can(x.perm));
    this.tab = this.tabs[0]?.id || '';
    this.data = { accounts: [], lockouts: [], tokens: [], agents: [] };
    this.loaded = {};
    this.q = '';
    this.old = false; // show revoked and expired tokens and agents
    this.shown = false;
    this.build();
  }

  build() {
    this.root.innerHTML = html`
      <header class="v-top">
        <h2 id="admin-h">${t('view.admin')}</h2>
        <div class="tabs" role="tablist" aria-labelledby="admin-h">${this.tabs.map((x) =>
          html`<button type="button" role="tab" id="admin-tab-${x.id}" data-tab="${x.id}" aria-controls="admin-${x.id}" aria-selected="false" tabindex="-1"><span class="lbl"></span> <span class="n"></span></button>`)}</div>
        <span class="grow"></span>
        <label class="search"><span class="vh" data-i18n="admin.filter">${t('admin.filter')}</span><input type="search" id="admin-q" autocomplete="off" spellcheck="false" aria-keyshortcuts="/"></label>
        <label class="chk old"><input type="checkbox" id="admin-old"> <span></span></label>
        <button type="button" id="admin-refresh"></button>
      </header>
      <p id="admin-notice" role="status" hidden></p>
      ${this.tabs.map((x) => html`<div role="tabpanel" id="admin-${x.id}" class="v-panel" aria-labelledby="admin-tab-${x.id}" hidden>
        <div class="v-bar">${x.add && html`<button type="button" class="primary" id="${x.add}"></button>`}<span class="muted v-count"></span></div>
        <div class="v-scroll"><table id="${x.id}-table"></table></div>
      </div>`)}`;
    const $ = (s) => this.root.querySelector(s);
    this.grids = {};
    const now = () => Date.now();
    if ($('#accounts-table')) {
      this.grids.accounts = new Grid($('#accounts-table'), {
        sort: { key: 'name', dir: 1 },
        row: (a) => html`data-key="${a.name}" data-account="${a.name}"${a.disabled ? html` class="off"` : ''}`,
        columns: [
          { key: 'name', title: 'admin.col_name', sort: (a) => a.name, cell: (a) => mono(a.name), className: 'first' },
          { key: 'display', title: 'admin.col_display', sort: (a) => a.display_name, cell: (a) => a.display_name || '–' },
          { key: 'role', title: 'admin.col_role', sort: (a) => label('role', a.role), cell: (a) => label('role', a.role) },
          { key: 'grants', title: 'admin.col_grants', cell: (a) => a.grants.map(permLabel).join(', ') || '–' },
          { key: 'scope', title: 'admin.col_scope', sort: (a) => scopeText(a.scope), cell: (a) => scopeText(a.scope) },
          { key: 'status', title: 'admin.col_status', sort: (a) => accountRank(a, now()), cell: (a) => accountStatus(a, now()) },
          { key: 'login', title: 'admin.col_last_login', sort: (a) => -a._lastLogin, cell: (a) => html`${when(a._lastLogin)}${a.last_login_from ? html` <span class="muted">${a.last_login_from}</span>` : ''}` },
          { key: 'created', title: 'admin.col_created', sort: (a) => -a._created, cell: (a) => html`${day(a._created)}${a.created_by ? html` <span class="muted">${a.created_by}</span>` : ''}` },
          { key: 'act', title: 'admin.col_actions', cell: () => act('edit', t('admin.edit')) },
        ],
      });
    }
    if ($('#lockouts-table')) {
      this.grids.lockouts = new Grid($('#lockouts-table'), {
        sort: { key: 'until', dir: -1 },
        empty: 'admin.no_lockouts',
        row: (l) => html`data-key="${l.kind}/${l.key}" data-lockout="${l.kind}/${l.key}"`,
        columns: [
          { key: 'key', title: 'admin.col_locked', sort: (l) => l.key, cell: (l) => mono(l.key), className: 'first' },
          { key: 'kind', title: 'admin.col_kind', sort: (l) => l.kind, cell: (l) => label('lockout', l.kind) },
          { key: 'failures', title: 'admin.col_failures', sort: (l) => l.failures, cell: (l) => num(l.failures), className: 'num' },
          { key: 'since', title: 'admin.col_since', sort: (l) => l._since, cell: (l) => (l._since ? dateTime(l._since) : '–') },
          { key: 'until', title: 'admin.col_until', sort: (l) => l._until, cell: (l) => (l._until ? dateTime(l._until) : '–') },
          { key: 'act', title: 'admin.col_actions', cell: (l) => act(l.kind === 'address' ? 'clear' : 'unlock', t(l.kind === 'address' ? 'admin.clear_address' : 'admin.unlock')) },
        ],
      });
    }
    if ($('#tokens-table')) {
      this.grids.tokens = new Grid($('#tokens-table'), {
        sort: { key: 'name', dir: 1 },
        row: (k) => html`data-key="${k.id}" data-token="${k.id}" data-state="${tokenState(k, now())}"`,
        columns: [
          { key: 'name', title: 'admin.col_name', sort: (k) => k.name, cell: (k) => html`${mono(k.name)} <span class="muted mono small">${k.id}</span>`, className: 'first' },
          { key: 'role', title: 'admin.col_role', sort: (k) => label('role', k.role), cell: (k) => label('role', k.role) },
          { key: 'grants', title: 'admin.col_grants', cell: (k) => k.grants.map(permLabel).join(', ') || '–' },
          { key: 'scope', title: 'admin.col_scope', sort: (k) => scopeText(k.scope), cell: (k) => scopeText(k.scope) },
          { key: 'state', title: 'admin.col_status', sort: (k) => tokenState(k, now()), cell: (k) => {
            const s = tokenState(k, now());
            return badge(s === 'active' ? 'ok' : s === 'expired' ? 'warn' : 'bad', t(`admin.tk_${s}`), k._revoked ? `${dateTime(k._revoked)} ${k.revoked_by || ''}` : '');
          } },
          { key: 'expires', title: 'admin.col_expires', sort: (k) => k._expires, cell: (k) => day(k._expires) },
          { key: 'used', title: 'admin.col_last_used', sort: (k) => -k._used, cell: (k) => when(k._used) },
          { key: 'created', title: 'admin.col_created', sort: (k) => -k._created, cell: (k) => html`${day(k._created)}${k.created_by ? html` <span class="muted">${k.created_by}</span>` : ''}` },
          { key: 'act', title: 'admin.col_actions', cell: (k) => (tokenState(k, now()) === 'active' ? act('revoke', t('admin.revoke'), true) : '') },
        ],
      });
    }
    if ($('#agents-table')) {
      this.grids.agents = new Grid($('#agents-table'), {
        sort: { key: 'agent', dir: 1 },
        row: (a) => html`data-key="${a.agent}" data-agent="${a.agent}" data-state="${a._revoked ? 'revoked' : 'active'}"`,
        columns: [
          { key: 'agent', title: 'admin.col_agent', sort: (a) => a.agent, cell: (a) => mono(a.agent), className: 'first' },
          { key: 'state', title: 'admin.col_status', sort: (a) => (a._revoked ? 1 : 0), cell: (a) => (a._revoked ? badge('bad', t('admin.tk_revoked')) : badge('ok', t('admin.tk_active'))) },
          { key: 'created', title: 'admin.col_enrolled', sort: (a) => -a._created, cell: (a) => html`${dateTime(a._created)}${a.created_by ? html` <span class="muted">${a.created_by}</span>` : ''}` },
          { key: 'revoked', title: 'admin.col_revoked', sort: (a) => -a._revoked, cell: (a) => (a._revoked ? html`${dateTime(a._revoked)}${a.revoked_by ? html` <span class="muted">${a.revoked_by}</span>` : ''}` : '–') },
          { key: 'act', title: 'admin.col_actions', cell: (a) => (a._revoked ? act('enrol', t('admin.enrol_again')) : act('revoke', t('admin.revoke'), true)) },
        ],
      });
    }
    this.bind();
    this.retranslate();
  }

  bind() {
    const r = this.root;
    r.querySelector('.tabs').addEventListener('click', (e) => {
      const b = e.target.closest('[data-tab]');
      if (b) this.select(b.dataset.tab, true);
    });
    r.querySelector('.tabs').addEventListener('keydown', (e) => {
      const i = this.tabs.findIndex((x) => x.id === this.tab);
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      this.select(this.tabs[(i + step + this.tabs.length) % this.tabs.length].id, true);
    });
    let debounce = 0;
    r.querySelector('#admin-q').addEventListener('input', (e) => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { this.q = e.target.value.trim().toLowerCase(); this.draw(); }, 120);
    });
    r.querySelector('#admin-old').addEventListener('change', (e) => { this.old = e.target.checked; this.draw(); });
    r.querySelector('#admin-refresh').addEventListener('click', () => this.load(this.tab));
    r.querySelector('#account-new')?.addEventListener('click', () => this.editAccount(null));
    r.querySelector('#token-new')?.addEventListener('click', () => this.newToken());
    r.querySelector('#agent-new')?.addEventListener('click', () => this.enrol(''));
    r.addEventListener('click', (e) => {
      const tr = e.target.closest('tbody tr[data-key]');
      if (!tr) return;
      const b = e.target.closest('button[data-act]');
      if (tr.dataset.account) { if (!e.target.closest('a')) this.editAccount(tr.dataset.account); return; }
      if (!b) return;
      if (tr.dataset.lockout) this.clearLockout(tr.dataset.lockout, b.dataset.act);
      else if (tr.dataset.token) this.revokeToken(tr.dataset.token);
      else if (tr.dataset.agent) { if (b.dataset.act === 'enrol') this.enrol(tr.dataset.agent); else this.revokeAgent(tr.dataset.agent); }
    });
  }

  // The view.

  show() {
    this.shown = true;
    this.root.hidden = false;
    this.select(this.tab, false);
  }

  hide() {
    this.shown = false;
    this.root.hidden = true;
  }

  select(tab, focus) {
    if (!this.tabs.some((x) => x.id === tab)) return;
    this.tab = tab;
    for (const b of this.root.querySelectorAll('[data-tab]')) {
      const on = b.dataset.tab === tab;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      if (on && focus) b.focus();
    }
    for (const x of this.tabs) this.root.querySelector(`#admin-${x.id}`).hidden = x.id !== tab;
    this.root.querySelector('.old').hidden = tab !== 'tokens' && tab !== 'agents';
    this.notice('');
    this.load(tab);
  }

  focusSearch() {
    const q = this.root.querySelector('#admin-q');
    q.focus();
    q.select();
  }

  notice(text, kind = 'ok') {
    const el = this.root.querySelector('#admin-notice');
    el.textContent = text;
    el.className = kind;
    el.hidden = !text;
  }

  // Data.

  async load(tab) {
    const fetchers = { accounts: api.accounts, lockouts: api.lockouts, tokens: api.tokens, agents: api.agentCredentials };
    try {
      this.data[tab] = await fetchers[tab]();
      this.loaded[tab] = true;
    } catch (err) {
      this.notice(t('admin.load_error', { error: errorText(err) }), 'err');
    }
    this.draw();
  }

  matches(row) {
    if (!this.q) return true;
    return JSON.stringify(row).toLowerCase().includes(this.q);
  }

  draw() {
    const now = Date.now();
    for (const x of this.tabs) {
      const all = this.data[x.id];
      let rows = all.filter((r) => this.matches(r));
      if (!this.old && x.id === 'tokens') rows = rows.filter((k) => tokenState(k, now) === 'active');
      if (!this.old && x.id === 'agents') rows = rows.filter((a) => !a._revoked);
      const grid = this.grids[x.id];
      if (x.id === this.tab) grid.set(rows); else grid.rows = rows;
      const n = this.loaded[x.id] ? (x.id === 'lockouts' ? all.filter((l) => l._until > now).length : all.length) : '';
      this.root.querySelector(`#admin-tab-${x.id} .n`).textContent = n === '' ? '' : num(n);
      const panel = this.root.querySelector(`#admin-${x.id}`);
      panel.querySelector('.v-count').textContent = this.loaded[x.id] ? t('admin.shown', { shown: num(rows.length), total: num(all.length) }) : t('app.loading');
    }
  }

  // Accounts.

  async editAccount(name) {
    const a = name ? this.data.accounts.find((x) => x.name === name) : null;
    if (name && !a) return;
    const x = a || { name: '', display_name: '', role: 'operator', grants: [], scope: { all: true } };
    const now = Date.now();
    const actions = a ? [
      { id: 'password', label: t('admin.reset_password') },
      ...(a._locked > now ? [{ id: 'unlock', label: t('admin.unlock') }] : []),
      ...(a.totp_enabled ? [{ id: 'totp', label: t('admin.reset_totp') }] : []),
      { id: 'logout', label: t('admin.end_sessions') },
      a.disabled ? { id: 'enable', label: t('admin.enable') } : { id: 'disable', label: t('admin.disable'), danger: true },
    ] : [];
    const pending = formDialog({
      title: a ? t('admin.edit_title', { name: a.name }) : t('admin.new_account'),
      wide: true,
      label: a ? t('admin.save') : t('admin.create'),
      actions,
      body: html`
        ${a ? html`<p class="muted">${accountStatus(a, now)}</p>` : html`
        <label><span>${t('admin.f_name')}</span><input id="dlg-name" name="name" required autocomplete="off" autocapitalize="none" spellcheck="false" maxlength="64"></label>`}
        <label><span>${t('admin.f_display')}</span><input id="dlg-display" name="display_name" autocomplete="off" maxlength="100" value="${x.display_name}"></label>
        ${accessFields(x, this.districts())}
        ${!a && html`<label><span>${t('admin.f_password')}</span><input id="dlg-password" name="password" type="password" autocomplete="new-password"></label>
        <p class="hint">${t('admin.password_hint')}</p>`}`,
      onSubmit: async (form) => {
        const access = readAccess(form);
        const display = form.querySelector('#dlg-display').value.trim();
        if (!a) {
          const spec = { name: form.querySelector('#dlg-name').value.trim(), display_name: display, ...access };
          const pw = form.querySelector('#dlg-password').value;
          if (pw) spec.password = pw;
          return { created: await api.createAccount(spec) };
        }
        const patch = {};
        if (display !== (a.display_name || '')) patch.display_name = display;
        if (access.role !== a.role) patch.role = access.role;
        if (!same([...access.grants].sort(), [...a.grants].sort())) patch.grants = access.grants;
        if (!same(sortedScope(access.scope), sortedScope(a.scope))) patch.scope = access.scope;
        if (Object.keys(patch).length) await api.updateAccount(a.name, patch);
        return { saved: Object.keys(patch).length > 0 };
      },
    });
    bindAccess();
    const r = await pending;
    if (!r) return;
    if (r.created) {
      const c = r.created;
      await this.load('accounts');
      this.notice(t('admin.created', { name: c.account.name }));
      if (c.password) {
        await secretDialog({
          title: t('admin.initial_password_title'),
          items: [{ label: t('admin.f_name'), value: c.account.name }, { label: t('admin.initial_password'), value: c.password }],
          note: t('admin.initial_password_note'),
        });
      }
    } else if (r.saved) {
      this.notice(t('admin.saved', { name: a.name }));
      this.load('accounts');
    } else if (r.action) {
      await this.accountAction(a, r.action);
    }
  }

  async accountAction(a, action) {
    const n = { name: a.name };
    const ask = (title, text, confirm, danger = true) => confirmDialog({ title, text, confirm, danger });
    try {
      switch (action) {
        case 'password': {
          if (!await ask(t('admin.reset_password'), t('admin.reset_password_confirm', n), t('admin.reset_password'))) return;
          const pw = await api.resetPassword(a.name);
          await this.load('accounts');
          await secretDialog({
            title: t('admin.initial_password_title'),
            items: [{ label: t('admin.f_name'), value: a.name }, { label: t('admin.initial_password'), value: pw }],
            note: t('admin.initial_password_note'),
          });
          return;
        }
        case 'unlock':
          await api.unlockAccount(a.name);
          this.notice(t('admin.unlocked', n));
          break;
        case 'totp':
          if (!await ask(t('admin.reset_totp'), t('admin.reset_totp_confirm', n), t('admin.reset_totp'))) return;
          await api.resetTOTP(a.name);
          this.notice(t('admin.totp_reset', n));
          break;
        case 'logout':
          if (!await ask(t('admin.end_sessions'), t('admin.end_sessions_confirm', n), t('admin.end_sessions'))) return;
          await api.logoutAccount(a.name);
          this.notice(t('admin.sessions_ended', n));
          break;
        case 'disable':
          if (!await ask(t('admin.disable'), t('admin.disable_confirm', n), t('admin.disable'))) return;
          await api.updateAccount(a.name, { disabled: true });
          this.notice(t('admin.disabled', n));
          break;
        case 'enable':
          await api.updateAccount(a.name, { disabled: false });
          this.notice(t('admin.enabled', n));
          break;
        default:
          return;
      }
    } catch (err) {
      this.notice(errorText(err), 'err');
    }
    this.load('accounts');
  }

  async clearLockout(id, what) {
    const [kind, ...rest] = id.split('/');
    const key = rest.join('/');
    try {
      if (kind === 'address' && what === 'clear') await api.clearAddressLockout(key);
      else await api.unlockAccount(key);
      this.notice(t('admin.unlocked', { name: key }));
    } catch (err) {
      this.notice(errorText(err), 'err');
    }
    this.load('lockouts');
  }

  // API tokens.

  async newToken() {
    const pending = formDialog({
      title: t('admin.new_token'),
      wide: true,
      label: t('admin.create'),
      body: html`
        <label><span>${t('admin.f_token_name')}</span><input id="dlg-name" name="name" required autocomplete="off" autocapitalize="none" spellcheck="false" maxlength="64"></label>
        ${accessFields({ role: 'analyst', grants: [], scope: { all: true } }, this.districts())}
        <label><span>${t('admin.f_ttl')}</span><select id="dlg-ttl" name="ttl">${TOKEN_TTLS.map(([v, k]) => html`<option value="${v}">${t(k)}</option>`)}</select></label>`,
      onSubmit: async (form) => api.createToken({
        name: form.querySelector('#dlg-name').value.trim(),
        ...readAccess(form),
        ttl: form.querySelector('#dlg-ttl').value,
      }),
    });
    bindAccess();
    const r = await pending;
    if (!r) return;
    await this.load('tokens');
    this.notice(t('admin.token_created', { name: r.token.name }));
    await secretDialog({
      title: t('admin.token_secret_title', { name: r.token.name }),
      items: [{ label: t('admin.token_secret'), value: r.secret }],
      note: t('admin.token_secret_note'),
    });
  }

  async revokeToken(id) {
    const k = this.data.tokens.find((x) => x.id === id);
    if (!k) return;
    if (!await confirmDialog({ title: t('admin.revoke_token'), text: t('admin.revoke_token_confirm', { name: k.name }), confirm: t('admin.revoke') })) return;
    try {
      await api.revokeToken(id);
      this.notice(t('admin.token_revoked', { name: k.name }));
    } catch (err) {
      this.notice(errorText(err), 'err');
    }
    this.load('tokens');
  }

  // Agent credentials.

  async enrol(agent) {
    const r = await formDialog({
      title: t('admin.enrol_agent'),
      label: t('admin.enrol'),
      body: html`
        <label><span>${t('admin.f_agent')}</span><input id="dlg-agent" name="agent" required autocomplete="off" autocapitalize="none" spellcheck="false" maxlength="64" value="${agent}"></label>
        <p class="hint">${t('admin.agent_hint')}</p>`,
      onSubmit: (form) => api.enrolAgent(form.querySelector('#dlg-agent').value.trim()),
    });
    if (!r) return;
    await this.load('agents');
    this.notice(t('admin.enrolled', { agent: r.agent }));
    await secretDialog({
      title: t('admin.agent_secret_title', { agent: r.agent }),
      items: [{ label: t('admin.agent_username'), value: r.username }, { label: t('admin.agent_secret'), value: r.secret }],
      note: t('admin.agent_secret_note'),
    });
  }

  async revokeAgent(agent) {
    const ok = await confirmDialog({
      title: t('admin.revoke_agent'),
      text: t('admin.revoke_agent_confirm', { agent }),
      confirm: t('admin.revoke'),
      typed: agent,
    });
    if (!ok) return;
    try {
      await api.revokeAgent(agent);
      this.notice(t('admin.agent_revoked', { agent }));
    } catch (err) {
      this.notice(errorText(err), 'err');
    }
    this.load('agents');
  }

  retranslate() {
    const r = this.root;
    r.querySelector('#admin-h').textContent = t('view.admin');
    for (const b of r.querySelectorAll('[data-tab]')) b.querySelector('.lbl').textContent = t(`admin.tab_${b.dataset.tab}`);
    r.querySelector('#admin-q').placeholder = t('admin.filter');
    r.querySelector('.old span').textContent = t('admin.show_old');
    r.querySelector('#admin-refresh').textContent = t('admin.refresh');
    const set = (sel, key) => { const b = r.querySelector(sel); if (b) b.textContent = t(key); };
    set('#account-new', 'admin.new_account');
    set('#token-new', 'admin.new_token');
    set('#agent-new', 'admin.enrol_agent');
    this.draw();
  }
}
