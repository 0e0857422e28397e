// A small, dense, sortable table for the lists of the administration
// pages (accounts, lockouts, tokens, agents, live sessions): a header of
// sort buttons with aria-sort, rows drawn from columns, natural order for
// names (cam-9 before cam-10), and the first column kept in view when the
// table scrolls sideways on a phone.

import { t } from './i18n.js';
import { html } from './html.js';
import { natural } from './api.js';

function compare(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = natural(a);
  const y = natural(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export class Grid {
  // columns: [{key, title (i18n key), cell(row) → html`…` or text, sort(row)
  // → value (absent: not sortable), className}]; row(row) → the <tr>'s
  // attributes as html`…`; sort: the initial {key, dir}; empty: the i18n
  // key said when there are no rows.
  constructor(table, { columns, row, sort, empty = 'grid.empty' }) {
    this.table = table;
    this.columns = columns;
    this.rowAttrs = row;
    this.sort = sort || { key: columns[0].key, dir: 1 };
    this.empty = empty;
    this.rows = [];
    table.classList.add('grid');
    table.addEventListener('click', (e) => {
      const b = e.target.closest('th button[data-sort]');
      if (!b) return;
      const key = b.dataset.sort;
      this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : 1 };
      this.render();
      this.table.querySelector(`th button[data-sort="${key}"]`)?.focus();
    });
  }

  set(rows) {
    this.rows = rows;
    this.render();
  }

  sorted() {
    const col = this.columns.find((c) => c.key === this.sort.key && c.sort) || this.columns.find((c) => c.sort);
    if (!col) return this.rows;
    const first = this.columns.find((c) => c.sort);
    const dir = this.sort.dir;
    return this.rows.map((r) => ({ r, k: col.sort(r), k0: first.sort(r) }))
      .sort((a, b) => dir * compare(a.k, b.k) || compare(a.k0, b.k0))
      .map((x) => x.r);
  }

  render() {
    const cols = this.columns;
    const head = html`<thead><tr>${cols.map((c) => {
      const sorted = c.key === this.sort.key;
      const aria = c.sort ? (sorted ? (this.sort.dir > 0 ? 'ascending' : 'descending') : 'none') : false;
      return html`<th scope="col" class="c-${c.key}${c.className ? ` ${c.className}` : ''}"${aria ? html` aria-sort="${aria}"` : ''}>${
        c.sort ? html`<button type="button" data-sort="${c.key}">${t(c.title)}</button>` : t(c.title)}</th>`;
    })}</tr></thead>`;
    const rows = this.sorted();
    const body = rows.length
      ? rows.map((r) => html`<tr ${this.rowAttrs(r)}>${cols.map((c) => html`<td class="c-${c.key}${c.className ? ` ${c.className}` : ''}">${c.cell(r)}</td>`)}</tr>`)
      : html`<tr class="none"><td colspan="${cols.length}">${t(this.empty)}</td></tr>`;
    // Redrawing must not drop keyboard focus from a row's button.
    const f = this.table.contains(document.activeElement) ? document.activeElement : null;
    const tr = f?.closest('tr');
    const again = f && tr && f.dataset.act ? [tr.getAttribute('data-key'), f.dataset.act] : null;
    this.table.innerHTML = html`${head}<tbody>${body}</tbody>`;
    if (again) {
      for (const b of this.table.querySelectorAll(`tbody button[data-act="${CSS.escape(again[1])}"]`)) {
        if (b.closest('tr').getAttribute('data-key') === again[0]) { b.focus(); break; }
      }
    }
  }
}
