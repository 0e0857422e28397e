// Modal dialogs the administration and account pages share: a form that
// stays open with the hub's refusal shown in it, a confirmation (typed, for
// what cannot be undone), and a secret shown once with a copy button.
// Each dialog is made when asked for and removed when closed.

import { t, errorText } from './i18n.js';
import { html } from './html.js';

function make(id, className, content) {
  document.getElementById(id)?.remove(); // at most one of each kind
  const d = document.createElement('dialog');
  d.id = id;
  d.className = `dlg ${className}`;
  d.innerHTML = content;
  document.body.append(d);
  return d;
}

// showError shows err (an ApiError or text) in box, with the hub's list of
// problems (a password policy) one per line.
export function showError(box, err) {
  if (!err) { box.hidden = true; box.replaceChildren(); return; }
  const p = document.createElement('p');
  p.textContent = typeof err === 'string' ? err : errorText(err);
  const items = (err.problems || []).map((x) => { const li = document.createElement('li'); li.textContent = x; return li; });
  const ul = document.createElement('ul');
  ul.append(...items);
  box.replaceChildren(...(items.length ? [p, ul] : [p]));
  box.hidden = false;
}

// formDialog shows a form: title, body (html`…` of labelled fields), and a
// submit button labelled label (danger: red). onSubmit(form) runs on
// submit; what it returns resolves the promise and closes the dialog; what
// it throws is shown in the dialog, which stays open. Cancel resolves to
// null. actions [{id, label, danger}] are further buttons that close the
// dialog and resolve to {action: id}.
export function formDialog({ title, body, label, danger = false, wide = false, actions = [], onSubmit }) {
  const d = make('form-dialog', wide ? 'wide' : '', html`<form novalidate>
    <h2 id="form-dialog-h">${title}</h2>
    <div class="dlg-body">${body}</div>
    ${actions.length > 0 && html`<div class="dlg-actions" role="group">${actions.map((a) =>
      html`<button type="button" data-dlg-action="${a.id}"${a.danger ? html` class="danger"` : ''}>${a.label}</button>`)}</div>`}
    <div class="err dlg-err" role="alert" hidden></div>
    <div class="dlg-btns"><button type="button" data-cancel>${t('dialog.cancel')}</button><button type="submit" id="dialog-submit" class="${danger ? 'danger' : 'primary'}">${label}</button></div>
  </form>`);
  d.setAttribute('aria-labelledby', 'form-dialog-h');
  const form = d.querySelector('form');
  return new Promise((resolve) => {
    let result = null;
    d.addEventListener('close', () => { d.remove(); resolve(result); });
    form.querySelector('[data-cancel]').addEventListener('click', () => d.close());
    form.addEventListener('click', (e) => {
      const b = e.target.closest('[data-dlg-action]');
      if (b) { result = { action: b.dataset.dlgAction }; d.close(); }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!form.reportValidity()) return;
      const btn = form.querySelector('[type=submit]');
      btn.disabled = true;
      try {
        result = (await onSubmit(form)) ?? true;
        d.close();
      } catch (err) {
        showError(form.querySelector('.dlg-err'), err);
      } finally {
        btn.disabled = false;
      }
    });
    d.showModal();
    form.querySelector('input:not([type=hidden]):not(:disabled), select, textarea')?.focus();
  });
}

// confirmDialog asks before something is done; typed: a word the person
// must type (the name of what is removed) before the button works.
// Resolves to true when confirmed.
export function confirmDialog({ title, text, confirm, danger = true, typed = '' }) {
  const d = make('confirm-dialog', '', html`<form method="dialog">
    <h2 id="confirm-dialog-h">${title}</h2>
    <p class="dlg-text">${text}</p>
    ${typed ? html`<label class="typed">${t('dialog.type_to_confirm', { word: typed })} <input id="confirm-typed" autocomplete="off" spellcheck="false" autocapitalize="none"></label>` : ''}
    <div class="dlg-btns"><button value="" data-cancel>${t('dialog.cancel')}</button><button value="yes" id="confirm-ok" class="${danger ? 'danger' : 'primary'}">${confirm}</button></div>
  </form>`);
  d.setAttribute('aria-labelledby', 'confirm-dialog-h');
  const ok = d.querySelector('#confirm-ok');
  const input = d.querySelector('#confirm-typed');
  if (input) {
    ok.disabled = true;
    input.addEventListener('input', () => { ok.disabled = input.value.trim() !== typed; });
  }
  return new Promise((resolve) => {
    d.addEventListener('close', () => { const yes = d.returnValue === 'yes'; d.remove(); resolve(yes); });
    d.showModal();
    (input || d.querySelector('[data-cancel]')).focus(); // the safe choice has focus
  });
}

// secretDialog shows secrets once: items [{label, value}] each with a copy
// button, an intro and a note (where to put it). Resolves when closed.
export function secretDialog({ title, intro = '', items, note = '' }) {
  const d = make('secret-dialog', 'secret', html`<form method="dialog">
    <h2 id="secret-dialog-h">${title}</h2>
    ${intro ? html`<p class="dlg-text">${intro}</p>` : ''}
    <dl class="secrets">${items.map((it, i) => html`<dt>${it.label}</dt><dd><output class="secret-value" id="${i === items.length - 1 ? 'secret-value' : `secret-value-${i}`}">${it.value}</output><button type="button" class="copy" data-copy="${i}">${t('dialog.copy')}</button></dd>`)}</dl>
    ${note ? html`<p class="dlg-text">${note}</p>` : ''}
    <p class="warn once">${t('dialog.shown_once')}</p>
    <div class="dlg-btns"><button value="done" id="secret-done" class="primary">${t('dialog.saved_it')}</button></div>
  </form>`);
  d.setAttribute('aria-labelledby', 'secret-dialog-h');
  d.addEventListener('click', async (e) => {
    const b = e.target.closest('[data-copy]');
    if (b) await copyButton(b, items[Number(b.dataset.copy)].value);
  });
  // Escape would lose the secret without a word: only the button closes.
  d.addEventListener('cancel', (e) => e.preventDefault());
  return new Promise((resolve) => {
    d.addEventListener('close', () => { d.remove(); resolve(); });
    d.showModal();
    d.querySelector('[data-copy]')?.focus();
  });
}

// copyText puts text on the clipboard: the Clipboard API where the page is
// a secure context, else a selected hidden field and the copy command (a
// hub on a plain-HTTP address). Resolves to whether it worked.
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch { /* fall back */ }
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.style.position = 'fixed';
  ta.style.opacity = '0';
  (document.querySelector('dialog[open]') || document.body).append(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { /* not allowed */ }
  ta.remove();
  return ok;
}

// copyButton copies text and says so on the button for a moment.
export async function copyButton(button, text) {
  const ok = await copyText(text);
  const was = button.dataset.label || button.textContent;
  button.dataset.label = was;
  button.textContent = t(ok ? 'dialog.copied' : 'dialog.copy_failed');
  button.classList.toggle('done', ok);
  clearTimeout(button._timer);
  button._timer = setTimeout(() => { button.textContent = was; button.classList.remove('done'); }, 2000);
  return ok;
}
