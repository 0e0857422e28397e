// The console's one way of building HTML from strings. Names, notes and
// details come from the hub, and through it from devices, agents and
// people; every one of them must reach the page as text. esc escapes one
// value; html`…` escapes every interpolation unless it is itself html`…`,
// so nested templates compose and nothing from outside is ever markup.

const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

// esc returns s as text safe inside an element or a quoted attribute.
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

// Safe is markup that needs no escaping: what html`…` returns.
class Safe {
  constructor(s) { this.s = s; }
  toString() { return this.s; }
}

function part(v) {
  if (v instanceof Safe) return v.s;
  if (Array.isArray(v)) return v.map(part).join('');
  if (v === null || v === undefined || v === false) return '';
  return esc(v);
}

// html is a tagged template: html`<b>${name}</b>` escapes name; arrays
// are joined (each item escaped unless Safe); null, undefined and false
// render as nothing, so ${cond && html`…`} works.
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += part(values[i]) + strings[i + 1];
  return new Safe(out);
}
