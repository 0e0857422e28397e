// The sign-in page (#login): user name and password, then the code from
// an authenticator app (or a recovery code) when the hub asks for one, and
// the steps the hub requires before anything else — a new password, a
// second factor. Nothing of the city is fetched or shown before it is done.

import * as i18n from './i18n.js';
import { t, errorText } from './i18n.js';
import * as api from './api.js';
import { passwordStep, totpStep, codesStep } from './account.js';

const NOTE_KEY = 'citywatch.signin_note';
// Why the last session ended, said on the sign-in page after the reload.
const NOTES = {
  expired: 'login.note_expired',
  ended: 'login.note_ended',
  signed_out: 'login.note_signed_out',
  signed_out_all: 'login.note_signed_out_all',
};

let leaving = false;

// leave ends the console after its session ended: the page reloads (no
// data, socket or video survives) and the sign-in page says why. The first
// reason counts: requests failing as the page goes add nothing.
export function leave(reason) {
  if (leaving) return;
  leaving = true;
  try { sessionStorage.setItem(NOTE_KEY, reason); } catch { /* the page still reloads */ }
  location.reload();
}

function takeNote() {
  let r = null;
  try {
    r = sessionStorage.getItem(NOTE_KEY);
    sessionStorage.removeItem(NOTE_KEY);
  } catch { /* storage disabled */ }
  return NOTES[r] || '';
}

const $ = (root, sel) => root.querySelector(sel);

export class Gate {
  constructor(root) {
    this.root = root;
    this.form = $(root, '#login-form');
    this.setup = $(root, '#setup');
    this.second = false;   // the hub asked for a second factor
    this.recovery = false; // … and the person chose a recovery code
    $(root, '#login-lang').addEventListener('click', () => i18n.setLang(i18n.lang() === 'en' ? 'zh-CN' : 'en'));
    $(root, '#login-use-recovery').addEventListener('click', () => this.useRecovery(!this.recovery));
    i18n.onChange(() => this.retranslate());
    this.retranslate();
  }

  // start resolves to the signed-in account, free of restrictions: the
  // session's if the browser has one, else once the person has signed in.
  // onSession() is called as soon as there is a session (before the steps
  // the hub may require).
  async start(onSession) {
    const note = takeNote();
    let me = null;
    let error = null;
    try {
      me = await api.me();
    } catch (err) {
      if (err.status !== 401) error = err; // 401: not signed in, the usual case
    }
    if (!me) me = await this.signIn(note, error);
    onSession();
    return this.finish(me, this.password || '');
  }

  show(view) {
    document.body.dataset.view = view;
    this.root.hidden = false;
    this.form.hidden = view !== 'login';
    this.setup.hidden = view !== 'setup';
  }

  signIn(note, error) {
    this.show('login');
    const msg = $(this.root, '#login-note');
    msg.dataset.i18n = note;
    msg.textContent = note ? t(note) : '';
    msg.hidden = !note;
    this.error(error && errorText(error));
    const user = $(this.root, '#login-user');
    user.focus();
    return new Promise((resolve) => {
      this.form.onsubmit = async (e) => {
        e.preventDefault();
        const me = await this.submit();
        if (me) { this.form.onsubmit = null; resolve(me); }
      };
    });
  }

  // submit posts the form; resolves to the account, or null after saying
  // what went wrong.
  async submit() {
    const f = this.form;
    const username = $(f, '#login-user').value.trim();
    const password = $(f, '#login-pass').value;
    if (!username || !password) { this.error(t('login.need_both')); ($(f, username ? '#login-pass' : '#login-user')).focus(); return null; }
    const totp = this.second && !this.recovery ? $(f, '#login-totp').value.replace(/\s+/g, '') : '';
    const recovery = this.second && this.recovery ? $(f, '#login-recovery').value.trim() : '';
    if (this.second && !totp && !recovery) { this.error(t(this.recovery ? 'login.need_recovery' : 'login.need_code')); this.focusSecond(); return null; }
    const btn = $(f, '#login-submit');
    btn.disabled = true;
    this.error('');
    try {
      const me = await api.login({ username, password, totp, recovery });
      this.password = password; // to prefill a required password change, then forgotten
      $(f, '#login-pass').value = '';
      return me;
    } catch (err) {
      switch (err.code) {
        case 'totp_required':
          this.askSecond();
          this.error(t('login.code_needed'), 'info');
          break;
        case 'totp_invalid':
          this.askSecond();
          this.error(errorText(err));
          $(f, this.recovery ? '#login-recovery' : '#login-totp').select();
          break;
        case 'invalid_credentials':
          this.error(errorText(err));
          $(f, '#login-pass').select();
          break;
        default:
          this.error(errorText(err));
      }
      return null;
    } finally {
      btn.disabled = false;
    }
  }

  askSecond() {
    this.second = true;
    $(this.form, '#login-second').hidden = false;
    this.useRecovery(this.recovery);
  }

  useRecovery(on) {
    this.recovery = on;
    $(this.form, '#login-totp-row').hidden = on;
    $(this.form, '#login-recovery-row').hidden = !on;
    this.retranslate();
    this.focusSecond();
  }

  focusSecond() { $(this.form, this.recovery ? '#login-recovery' : '#login-totp').focus(); }

  // error shows text under the form (kind "info": a question, not a fault).
  error(text, kind = 'err') {
    const el = $(this.root, '#login-error');
    el.textContent = text || '';
    el.className = kind;
    el.hidden = !text;
  }

  // finish walks through what the hub requires before the console opens.
  async finish(me, password) {
    this.password = '';
    while (me.restricted) {
      this.show('setup');
      if (me.restricted === 'password_change') {
        await passwordStep(this.setup, { current: password, required: true });
        password = '';
      } else if (me.restricted === 'totp_enrollment') {
        await codesStep(this.setup, await totpStep(this.setup));
      } else {
        await this.unknownStep(me.restricted);
      }
      me = await api.me();
    }
    this.root.hidden = true;
    this.setup.replaceChildren();
    return me;
  }

  // unknownStep: the hub requires a step this console does not know (a
  // newer hub); say so, and offer to sign out rather than loop.
  unknownStep(step) {
    const p = document.createElement('p');
    p.className = 'err';
    p.textContent = t('login.unknown_step', { step });
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = t('acct.logout');
    b.addEventListener('click', () => api.logout().finally(() => leave('signed_out')));
    this.setup.replaceChildren(p, b);
    return new Promise(() => {}); // ends with the reload
  }

  retranslate() {
    const other = i18n.lang() === 'en' ? 'zh-CN' : 'en';
    const b = $(this.root, '#login-lang');
    b.textContent = t(`lang.${other}`);
    b.lang = other;
    $(this.root, '#login-use-recovery').textContent = t(this.recovery ? 'login.use_code' : 'login.use_recovery');
  }
}
