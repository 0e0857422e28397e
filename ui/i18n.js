// Translations and formatting. The dictionaries live in i18n.json so that a
// Go test can check that every English key has a Chinese one.

const STORE_KEY = 'citywatch.lang';
export const LANGS = ['en', 'zh-CN'];

let dicts = { en: {} };
let current = 'en';
const listeners = [];

// load fetches the dictionaries; call once before anything renders.
export async function load(url = 'i18n.json') {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`i18n: ${url}: HTTP ${res.status}`);
  dicts = await res.json();
  current = initial();
  document.documentElement.lang = current;
}

function initial() {
  let saved = null;
  try { saved = localStorage.getItem(STORE_KEY); } catch { /* storage may be disabled */ }
  if (LANGS.includes(saved)) return saved;
  return (navigator.language || '').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

export function lang() { return current; }

export function setLang(l) {
  if (!LANGS.includes(l) || l === current) return;
  current = l;
  document.documentElement.lang = l;
  try { localStorage.setItem(STORE_KEY, l); } catch { /* ignore */ }
  translate(document);
  for (const f of listeners) f(l);
}

export function onChange(f) { listeners.push(f); }

// t returns the text for key in the current language, with {name}
// placeholders replaced from params; unknown keys fall back to English, then
// to the key itself so a gap is visible rather than blank.
export function t(key, params) {
  let s = dicts[current]?.[key] ?? dicts.en?.[key] ?? key;
  if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
  return s;
}

// has reports whether key is translated (used for open-ended values such as
// metric names and reasons the console does not know yet).
export function has(key) { return key in (dicts.en || {}); }

// label translates a value of an open set (status, reason, kind...), showing
// the raw value when there is no translation.
export function label(prefix, value) {
  if (!value) return '';
  const key = `${prefix}.${value}`;
  return has(key) ? t(key) : value;
}

// translate fills elements marked with data-i18n (text), data-i18n-title,
// data-i18n-placeholder and data-i18n-label (aria-label).
export function translate(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
}

// named is the name of a device, site or district in the current language:
// names maps language tags to names (the inventory's names, site_names,
// district_names), fallback is the canonical name shown when it has none.
export function named(names, fallback) {
  return names?.[current] || fallback || '';
}

// Formatting.

const numFmt = {};
export function num(n, digits = 0) {
  if (n == null || Number.isNaN(n)) return '–';
  const k = `${current}/${digits}`;
  numFmt[k] ??= new Intl.NumberFormat(current, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return numFmt[k].format(n);
}

export function pct(rate) {
  if (rate == null || Number.isNaN(rate)) return '–';
  // One decimal: the difference between 97.9 % and 98 % is the target.
  return `${(Math.floor(rate * 1000) / 10).toFixed(1)}%`;
}

const pad = (n) => String(n).padStart(2, '0');

export function clock(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function dateTime(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}

// ago is a compact duration from ms to now: 12s, 3m, 5h, 2d.
export function ago(ms, now = Date.now()) {
  if (!ms) return '–';
  const s = Math.max(0, Math.floor((now - ms) / 1000));
  if (s < 60) return t('rel.s', { n: s });
  if (s < 3600) return t('rel.m', { n: Math.floor(s / 60) });
  if (s < 48 * 3600) return t('rel.h', { n: Math.floor(s / 3600) });
  return t('rel.d', { n: Math.floor(s / 86400) });
}

// Codes whose words say everything; for the others the hub's message
// carries what matters (until when, which field, which rule).
const GENERIC = new Set(['unauthenticated', 'invalid_credentials', 'totp_required', 'totp_invalid', 'disabled', 'forbidden',
  'csrf', 'restricted', 'rate_limited', 'origin', 'network', 'internal', 'wrong_password', 'password_policy']);

// errorText is what to tell a person about a failed request (an ApiError
// or any Error): the words for its code, with the hub's message when that
// adds something.
export function errorText(err) {
  const code = err?.code || '';
  const key = `err.${code}`;
  if (code && has(key)) return GENERIC.has(code) ? t(key) : `${t(key)}: ${err.message}`;
  return err?.message || String(err);
}
