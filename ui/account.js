// The signed-in account's own business: choosing a new password,
// enrolling a second factor (TOTP) and keeping recovery codes — on the
// sign-in page when the hub requires them first, and later from the
// account menu in the top bar, which also says who is signed in and logs
// out. Labels carry data-i18n so a change of language while a step is on
// screen translates it.

import { t, label, dateTime, errorText } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';
import { showError, copyButton, confirmDialog } from './dialog.js';

const WARN_EXPIRY_MS = 14 * 86400e3; // say that the password expires this long before
const QR_PREFIX = 'data:image/png;base64,';

// passwordStep shows the password change form in host and resolves once
// the hub has accepted a new password. current prefills the current
// password (just typed to sign in); required: the hub asks for a new one
// before anything else.
export function passwordStep(host, { current = '', required = false } = {}) {
  host.innerHTML = html`<form id="pw-form" class="step" novalidate>
    <h2 data-i18n="pw.heading">${t('pw.heading')}</h2>
    ${required && html`<p data-i18n="pw.required">${t('pw.required')}</p>`}
    <label><span data-i18n="pw.current">${t('pw.current')}</span><input id="pw-current" type="password" autocomplete="current-password" required></label>
    <label><span data-i18n="pw.new">${t('pw.new')}</span><input id="pw-new" type="password" autocomplete="new-password" required></label>
    <label><span data-i18n="pw.repeat">${t('pw.repeat')}</span><input id="pw-repeat" type="password" autocomplete="new-password" required></label>
    <div id="pw-problems" class="err problems" role="alert" hidden></div>
    <button type="submit" id="pw-submit" class="primary" data-i18n="pw.submit">${t('pw.submit')}</button>
  </form>`;
  const form = host.querySelector('form');
  const box = form.querySelector('#pw-problems');
  const field = (id) => form.querySelector(id);
  field('#pw-current').value = current;
  (current ? field('#pw-new') : field('#pw-current')).focus();
  return new Promise((resolve) => {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const cur = field('#pw-current').value;
      const next = field('#pw-new').value;
      if (!cur || !next) { showError(box, t('pw.empty')); return; }
      if (next !== field('#pw-repeat').value) { showError(box, t('pw.mismatch')); field('#pw-repeat').focus(); return; }
      const btn = field('#pw-submit');
      btn.disabled = true;
      try {
        await api.changePassword(cur, next);
        showError(box, null);
        resolve();
      } catch (err) {
        showError(box, err);
        field(err.code === 'wrong_password' ? '#pw-current' : '#pw-new').focus();
      } finally {
        btn.disabled = false;
      }
    });
  });
}

// totpStep enrols a second factor in host: the QR code and the key to type,
// then the first code from the app. Resolves to the recovery codes.
export async function totpStep(host) {
  const heading = html`<h2 data-i18n="totp.heading">${t('totp.heading')}</h2>`;
  host.innerHTML = html`<div class="step">${heading}<p data-i18n="app.loading">${t('app.loading')}</p></div>`;
  let setup;
  for (;;) {
    try {
      setup = await api.totpSetup();
      break;
    } catch (err) {
      host.innerHTML = html`<div class="step">${heading}<p class="err" role="alert">${errorText(err)}</p>
        <button type="button" class="primary" data-retry data-i18n="totp.retry">${t('totp.retry')}</button></div>`;
      await new Promise((r) => host.querySelector('[data-retry]').addEventListener('click', r, { once: true }));
    }
  }
  const secret = String(setup.secret || '');
  const grouped = secret.replace(/(.{4})(?=.)/g, '$1 ');
  const qr = String(setup.qr_png || '').startsWith(QR_PREFIX) ? setup.qr_png : '';
  const otpauth = String(setup.otpauth_url || '').startsWith('otpauth://') ? setup.otpauth_url : '';
  host.innerHTML = html`<form id="totp-form" class="step totp" novalidate>
    ${heading}
    <ol class="how">
      <li data-i18n="totp.step_app">${t('totp.step_app')}</li>
      <li data-i18n="totp.step_scan">${t('totp.step_scan')}</li>
      <li data-i18n="totp.step_code">${t('totp.step_code')}</li>
    </ol>
    <div class="qr-row">
      ${qr ? html`<img id="totp-qr" src="${qr}" width="180" height="180" alt="${t('totp.qr_alt')}" data-i18n-label="totp.qr_alt">` : ''}
      <div class="manual">
        <p data-i18n="totp.manual">${t('totp.manual')}</p>
        <p><code id="totp-secret" class="secret-value">${grouped}</code></p>
        <button type="button" data-copy-secret data-i18n="dialog.copy">${t('dialog.copy')}</button>
        ${otpauth ? html`<p><a id="totp-link" href="${otpauth}" data-i18n="totp.open_app">${t('totp.open_app')}</a></p>` : ''}
      </div>
    </div>
    <label><span data-i18n="totp.code">${t('totp.code')}</span><input id="totp-code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required></label>
    <div class="err" role="alert" hidden></div>
    <button type="submit" id="totp-confirm" class="primary" data-i18n="totp.confirm">${t('totp.confirm')}</button>
  </form>`;
  const form = host.querySelector('form');
  const code = form.querySelector('#totp-code');
  const box = form.querySelector('.err');
  form.querySelector('[data-copy-secret]').addEventListener('click', (e) => copyButton(e.currentTarget, secret));
  code.focus();
  return new Promise((resolve) => {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const c = code.value.replace(/\s+/g, '');
      if (!/^\d{6}$/.test(c)) { showError(box, t('totp.six_digits')); code.focus(); return; }
      const btn = form.querySelector('#totp-confirm');
      btn.disabled = true;
      try {
        resolve(await api.totpConfirm(c));
      } catch (err) {
        showError(box, err);
        code.select();
      } finally {
        btn.disabled = false;
      }
    });
  });
}

// renewStep asks for a code from the app and resolves to new recovery
// codes (the old ones stop working).
function renewStep(host) {
  host.innerHTML = html`<form id="renew-form" class="step" novalidate>
    <h2 data-i18n="totp.renew_heading">${t('totp.renew_heading')}</h2>
    <p data-i18n="totp.renew_intro">${t('totp.renew_intro')}</p>
    <label><span data-i18n="totp.code">${t('totp.code')}</span><input id="renew-code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required></label>
    <div class="err" role="alert" hidden></div>
    <button type="submit" id="renew-submit" class="primary" data-i18n="totp.renew">${t('totp.renew')}</button>
  </form>`;
  const form = host.querySelector('form');
  const code = form.querySelector('#renew-code');
  code.focus();
  return new Promise((resolve) => {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        resolve(await api.renewRecoveryCodes(code.value.replace(/\s+/g, '')));
      } catch (err) {
        showError(form.querySelector('.err'), err);
        code.select();
      }
    });
  });
}

// codesStep shows recovery codes once, with copy and print, and resolves
// when the person says they have kept them.
export function codesStep(host, codes) {
  host.innerHTML = html`<div class="step codes-box" id="codes-step">
    <h2 data-i18n="codes.heading">${t('codes.heading')}</h2>
    <p data-i18n="codes.intro">${t('codes.intro')}</p>
    <ol id="recovery-codes" class="codes">${codes.map((c) => html`<li><code>${c}</code></li>`)}</ol>
    <p class="warn"><b data-i18n="codes.once">${t('codes.once')}</b></p>
    <div class="step-btns">
      <button type="button" id="recovery-copy" data-i18n="dialog.copy">${t('dialog.copy')}</button>
      <button type="button" id="recovery-print" data-i18n="codes.print">${t('codes.print')}</button>
      <span class="grow"></span>
      <button type="button" id="recovery-done" class="primary" data-i18n="codes.done">${t('codes.done')}</button>
    </div>
  </div>`;
  host.querySelector('#recovery-copy').addEventListener('click', (e) => copyButton(e.currentTarget, codes.join('\n')));
  host.querySelector('#recovery-print').addEventListener('click', () => {
    // Only the codes are printed (style.css, print media).
    document.body.classList.add('print-codes');
    window.addEventListener('afterprint', () => document.body.classList.remove('print-codes'), { once: true });
    window.print();
  });
  host.querySelector('#recovery-done').focus();
  return new Promise((resolve) => host.querySelector('#recovery-done').addEventListener('click', () => resolve(), { once: true }));
}

// selfDialog is a modal for the account's own steps, opened from the
// menu; resolves {host, close} and calls onClose when it closes.
function selfDialog(onClose) {
  document.getElementById('self-dialog')?.remove();
  const d = document.createElement('dialog');
  d.id = 'self-dialog';
  d.className = 'dlg self';
  d.innerHTML = html`<button type="button" class="close" data-close aria-label="${t('dialog.close')}" title="${t('dialog.close')} (Esc)">×</button><div class="self-host"></div>`;
  document.body.append(d);
  d.querySelector('[data-close]').addEventListener('click', () => d.close());
  d.addEventListener('close', () => { d.remove(); onClose(); });
  d.showModal();
  return { host: d.querySelector('.self-host'), close: () => d.close(), done: (text) => {
    d.querySelector('.self-host').innerHTML = html`<div class="step"><p class="ok" role="status">${text}</p><div class="step-btns"><span class="grow"></span><button type="button" class="primary" data-close-done>${t('dialog.close')}</button></div></div>`;
    const b = d.querySelector('[data-close-done]');
    b.addEventListener('click', () => d.close());
    b.focus();
  } };
}

// AccountMenu is the top bar's "who is signed in" button and its menu:
// change password, two-step verification, log out, log out everywhere.
export class AccountMenu {
  // onEnd(reason) is called after logging out ("signed_out",
  // "signed_out_all"); onChanged() after the account changed (the
  // caller reads it anew); onLogout(going) before logging out (true) and
  // when that failed (false): the hub ends the event stream of a session
  // it ends, which must not read as the session ending elsewhere.
  constructor({ button, menu, me, onEnd, onChanged, onLogout = () => {} }) {
    this.button = button;
    this.menu = menu;
    this.me = me;
    this.onEnd = onEnd;
    this.onChanged = onChanged;
    this.onLogout = onLogout;
    button.addEventListener('click', () => (menu.hidden ? this.open() : this.close()));
    menu.addEventListener('click', (e) => {
      const b = e.target.closest('[role="menuitem"]');
      if (!b) return;
      this.close(false);
      this.run(b.id);
    });
    menu.addEventListener('keydown', (e) => this.key(e));
    document.addEventListener('pointerdown', (e) => {
      if (!menu.hidden && !menu.contains(e.target) && !button.contains(e.target)) this.close(false);
    });
    menu.addEventListener('focusout', (e) => {
      if (!menu.hidden && e.relatedTarget && !menu.contains(e.relatedTarget) && e.relatedTarget !== button) this.close(false);
    });
    this.render();
  }

  set(me) { this.me = me; this.render(); }

  items() { return [...this.menu.querySelectorAll('[role="menuitem"]:not([hidden])')]; }

  open() {
    this.render();
    this.menu.hidden = false;
    this.button.setAttribute('aria-expanded', 'true');
    this.items()[0]?.focus();
  }

  close(refocus = true) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.button.setAttribute('aria-expanded', 'false');
    if (refocus) this.button.focus();
  }

  key(e) {
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    let handled = true;
    switch (e.key) {
      case 'ArrowDown': items[(at + 1) % items.length]?.focus(); break;
      case 'ArrowUp': items[(at - 1 + items.length) % items.length]?.focus(); break;
      case 'Home': items[0]?.focus(); break;
      case 'End': items[items.length - 1]?.focus(); break;
      case 'Escape': this.close(); break;
      case 'Tab': this.close(false); handled = false; break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
    e.stopPropagation(); // the menu's keys are not the console's shortcuts
  }

  expiresSoon() {
    const at = this.me._passwordExpires;
    return at > 0 && at - Date.now() < WARN_EXPIRY_MS;
  }

  render() {
    const m = this.me;
    const who = this.button.querySelector('#whoami');
    who.replaceChildren();
    const name = document.createElement('b');
    name.className = 'who-name';
    name.textContent = m.display_name;
    const role = document.createElement('span');
    role.className = 'who-role';
    role.textContent = label('role', m.role);
    who.append(name, role);
    this.button.title = t('acct.title', { name: m.name, role: label('role', m.role) });
    this.button.classList.toggle('warn', this.expiresSoon());
    const info = this.menu.querySelector('#account-info');
    const lines = [t('acct.signed_in_as', { name: m.name })];
    if (m.session._expires) lines.push(t('acct.session_until', { time: `${dateTime(m.session._expires)}` }));
    if (m._passwordExpires) lines.push(t(this.expiresSoon() ? 'acct.password_expires_soon' : 'acct.password_expires', { time: dateTime(m._passwordExpires) }));
    info.replaceChildren(...lines.map((l, n) => {
      const p = document.createElement('span');
      p.textContent = l;
      if (n === lines.length - 1 && this.expiresSoon()) p.className = 'warn';
      return p;
    }));
    const totp = this.menu.querySelector('#acct-totp');
    totp.textContent = t(m.totp_enabled ? 'acct.recovery_codes' : 'acct.totp_enrol');
  }

  async run(id) {
    switch (id) {
      case 'acct-password': {
        const dlg = selfDialog(() => this.button.focus());
        await passwordStep(dlg.host);
        dlg.done(t('pw.changed'));
        this.onChanged();
        break;
      }
      case 'acct-totp': {
        const dlg = selfDialog(() => this.button.focus());
        const codes = this.me.totp_enabled ? await renewStep(dlg.host) : await totpStep(dlg.host);
        await codesStep(dlg.host, codes);
        dlg.close();
        this.onChanged();
        break;
      }
      case 'logout':
        await this.logout(false);
        break;
      case 'logout-all':
        if (await confirmDialog({ title: t('acct.logout_all'), text: t('acct.logout_all_confirm'), confirm: t('acct.logout_all') })) await this.logout(true);
        else this.button.focus();
        break;
      default:
    }
  }

  async logout(all) {
    this.onLogout(true);
    try {
      await (all ? api.logoutAll() : api.logout());
    } catch (err) {
      if (err.status !== 401) { // 401: already signed out
        this.onLogout(false);
        this.open();
        const p = document.createElement('span');
        p.className = 'err';
        p.setAttribute('role', 'alert');
        p.textContent = t('acct.logout_failed', { error: errorText(err) });
        this.menu.querySelector('#account-info').append(p);
        return;
      }
    }
    this.onEnd(all ? 'signed_out_all' : 'signed_out');
  }
}
