// The device table, virtualised: only the rows in view (plus a margin) are in
// the DOM, kept by device id, so a live change touches one row and scrolling
// through 100,000 devices stays smooth. Spacer rows keep the scrollbar true.

import { t, label, ago, dateTime, named } from './i18n.js';
import { motion } from './store.js';

const OVERSCAN = 12;
// DEVICE_TYPE carries a device id when a row is dragged (onto the video wall).
export const DEVICE_TYPE = 'application/x-citywatch-device';
export const COLUMNS = ['status', 'id', 'name', 'kind', 'site', 'district', 'reason', 'since', 'last_seen'];

function set(td, text, title) {
  if (td._text !== text) { td.textContent = text; td._text = text; }
  if (title !== undefined && td._title !== title) { td.title = title; td._title = title; }
}

export function kindLabel(d) {
  return d.kind === 'sensor' && d.sensor_kind ? label('sensor', d.sensor_kind) : label('kind', d.kind);
}

const calm = window.matchMedia('(prefers-reduced-motion: reduce)');

export class Table {
  // onActivate(id) is called when a row is clicked, onPlay(id) when a
  // camera's play button is, onSort(column) when a header is; current(d)
  // returns the latest snapshot of a listed device, so a row shows a live
  // change at once, before the list is re-sorted. canPlay: the account may
  // watch video (else no play buttons, no dragging to the wall).
  constructor(scroller, table, { onActivate, onPlay = () => {}, onSort, current = (d) => d, canPlay = true }) {
    this.current = current;
    this.canPlay = canPlay;
    this.scroller = scroller;
    this.table = table;
    this.tbody = table.tBodies[0];
    this.thead = table.tHead;
    this.list = [];
    this.index = new Map();
    this.rows = new Map();
    this.selected = null;
    this.tick = 0;
    this.labels = 0;
    this.rowH = parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--row-h')) || 22;
    this.measured = false;
    this.pending = 0;
    this.top = this.spacer();
    this.bottom = this.spacer();
    this.tbody.append(this.top, this.bottom);

    scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(scroller);
    this.tbody.addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-device]');
      if (!tr) return;
      onActivate(tr.dataset.device);
      if (e.target.closest('button.play')) onPlay(tr.dataset.device);
    });
    // Camera rows are draggable; the video wall takes them.
    this.tbody.addEventListener('dragstart', (e) => {
      const tr = e.target.closest?.('tr[data-device]');
      if (!tr) return;
      e.dataTransfer.setData(DEVICE_TYPE, tr.dataset.device);
      e.dataTransfer.setData('text/plain', tr.dataset.device);
      e.dataTransfer.effectAllowed = 'copy';
    });
    this.thead.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-sort]');
      if (b) onSort(b.dataset.sort);
    });
  }

  spacer() {
    const tr = document.createElement('tr');
    tr.className = 'spacer';
    tr.setAttribute('aria-hidden', 'true');
    const td = document.createElement('td');
    td.colSpan = COLUMNS.length;
    tr.append(td);
    tr.hidden = true;
    return tr;
  }

  makeRow() {
    const tr = document.createElement('tr');
    for (const c of COLUMNS) {
      const td = document.createElement('td');
      td.className = `c-${c}`;
      tr.append(td);
    }
    const st = tr.cells[0];
    st.innerHTML = '<span class="dot" aria-hidden="true"></span><span class="lbl"></span>';
    tr.cells[2].innerHTML = '<button type="button" class="play" tabindex="-1" hidden></button><span class="nm"></span>';
    return tr;
  }

  // setList shows list (already filtered and sorted).
  setList(list) {
    this.list = list;
    this.index = new Map(list.map((d, i) => [d.id, i]));
    this.table.setAttribute('aria-rowcount', String(list.length + 1));
    this.render();
  }

  setSort(key, dir) {
    for (const th of this.thead.rows[0].cells) {
      const b = th.querySelector('button[data-sort]');
      th.setAttribute('aria-sort', b && b.dataset.sort === key ? (dir > 0 ? 'ascending' : 'descending') : 'none');
    }
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => { this.pending = 0; this.render(); });
  }

  // refresh redraws the rows in view (relative times, language).
  refresh(tick = this.tick) {
    this.tick = tick;
    this.render();
  }

  invalidate() {
    this.labels++; // the language changed: refresh the play buttons' labels too
    for (const tr of this.rows.values()) tr._dev = null;
    this.render();
  }

  render() {
    const n = this.list.length;
    const h = this.rowH;
    const headH = this.thead.offsetHeight;
    const top = this.scroller.scrollTop; // rows start below the sticky header
    const view = this.scroller.clientHeight - headH;
    const start = Math.max(0, Math.min(n, Math.floor(top / h) - OVERSCAN));
    const end = Math.min(n, Math.ceil((top + view) / h) + OVERSCAN);

    const want = new Set();
    for (let i = start; i < end; i++) want.add(this.list[i].id);
    const spare = [];
    for (const [id, tr] of this.rows) if (!want.has(id)) { spare.push(tr); this.rows.delete(id); }

    let cursor = this.top;
    for (let i = start; i < end; i++) {
      const d = this.current(this.list[i]);
      let tr = this.rows.get(d.id);
      if (!tr) {
        tr = spare.pop() || this.makeRow();
        tr._dev = null;
        this.rows.set(d.id, tr);
      }
      this.fill(tr, d, i);
      if (cursor.nextSibling !== tr) this.tbody.insertBefore(tr, cursor.nextSibling);
      cursor = tr;
    }
    for (const tr of spare) tr.remove();

    this.top.hidden = start === 0;
    this.top.firstChild.style.height = `${start * h}px`;
    this.bottom.hidden = end === n;
    this.bottom.firstChild.style.height = `${(n - end) * h}px`;

    if (!this.measured && this.rows.size) {
      // The CSS row height is the intent; the rendered one is the truth.
      const real = this.rows.values().next().value.getBoundingClientRect().height;
      this.measured = true;
      if (real && Math.abs(real - h) > 0.5) { this.rowH = real; this.render(); }
    }
  }

  fill(tr, d, pos) {
    const sel = d.id === this.selected;
    if (tr._dev === d && tr._tick === this.tick && tr._pos === pos && tr._sel === sel) return;
    const prev = tr._dev;
    if (prev && prev.id === d.id && prev.status !== d.status && !calm.matches) {
      this.flash ??= getComputedStyle(document.documentElement).getPropertyValue('--flash').trim() || '#444';
      tr.animate([{ backgroundColor: this.flash }, { backgroundColor: 'transparent' }], { duration: 2000, easing: 'ease-out' });
    }
    tr._dev = d; tr._tick = this.tick; tr._pos = pos; tr._sel = sel;
    if (tr.dataset.device !== d.id) tr.dataset.device = d.id;
    if (tr.dataset.status !== d.status) tr.dataset.status = d.status;
    tr.setAttribute('aria-rowindex', String(pos + 2));
    tr.classList.toggle('sel', sel);
    tr.classList.toggle('odd', pos % 2 === 1);
    if (sel) tr.setAttribute('aria-current', 'true'); else tr.removeAttribute('aria-current');
    tr.classList.toggle('trig', !!d.triggered && !motion(d)); // motion is news, not an alarm contact

    const c = tr.cells;
    const st = c[0];
    if (st._status !== d.status) {
      st.className = `c-status s-${d.status}`;
      st._status = d.status;
    }
    set(st.lastChild, label('status', d.status));
    set(c[1], d.id);
    const cam = d.kind === 'camera' && this.canPlay;
    const play = c[2].firstChild;
    if (play.hidden === cam) { play.hidden = !cam; tr.draggable = cam; }
    if (cam && play._id !== `${d.id}/${this.labels}`) {
      play._id = `${d.id}/${this.labels}`;
      play.title = `${t('video.play', { id: d.id })} (v)`;
      play.setAttribute('aria-label', t('video.play', { id: d.id }));
    }
    const name = named(d.names, d.name);
    set(c[2].lastChild, name, name);
    set(c[3], kindLabel(d));
    const site = named(d.site_names, d.site_name || d.site);
    set(c[4], site, site !== d.site ? `${site} (${d.site})` : d.site);
    set(c[5], named(d.district_names, d.district));
    const reason = label('reason', d.reason);
    const trig = d.triggered ? t(motion(d) ? 'table.motion' : 'table.triggered') : '';
    set(c[6], [trig, reason].filter(Boolean).join(' · '),
      d.detail ? `${reason}: ${d.detail}` : reason);
    set(c[7], ago(d._since), dateTime(d._since));
    set(c[8], ago(d._seen), dateTime(d._seen));
  }

  // select marks id as the selected row and scrolls it into view.
  select(id, scroll = true) {
    this.selected = id;
    for (const tr of this.rows.values()) {
      const sel = tr.dataset.device === id;
      if (tr._sel !== sel) { tr._sel = sel; tr.classList.toggle('sel', sel); sel ? tr.setAttribute('aria-current', 'true') : tr.removeAttribute('aria-current'); }
    }
    if (scroll && this.index.has(id)) this.reveal(this.index.get(id));
  }

  // move moves the selection by delta rows and returns the new id.
  move(delta) {
    const n = this.list.length;
    if (!n) return null;
    const i = this.index.get(this.selected);
    let j;
    if (i === undefined) j = delta > 0 ? 0 : n - 1;
    else j = Math.max(0, Math.min(n - 1, i + delta));
    this.select(this.list[j].id);
    return this.list[j].id;
  }

  pageSize() {
    return Math.max(1, Math.floor((this.scroller.clientHeight - this.thead.offsetHeight) / this.rowH) - 1);
  }

  reveal(i) {
    const h = this.rowH;
    const headH = this.thead.offsetHeight;
    const s = this.scroller;
    const y = i * h; // row top, relative to the first row
    if (y < s.scrollTop) s.scrollTop = y;
    else if (y + h > s.scrollTop + s.clientHeight - headH) s.scrollTop = y + h - (s.clientHeight - headH);
    this.render();
  }
}
