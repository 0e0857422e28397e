// The video wall: 1, 4, 9 or 16 tiles, each a Viewer of one camera. Cameras
// come in by dragging a row of the device table onto a tile or through a
// small searchable picker; tiles are dragged onto each other to swap. The
// wall (grid size and which camera is where) and named layouts are kept in
// localStorage. Only the tiles on screen play: the tiles beyond the grid
// size and the whole wall when it is hidden hold no session at the hub.

import { Viewer, msgHTML } from './video.js';
import { t, label, num } from './i18n.js';
import { DEVICE_TYPE } from './table.js';
import { esc } from './html.js';

export const SIZES = [1, 4, 9, 16];
const MAX = 16;
const STORE_KEY = 'citywatch.wall';
const TILE_TYPE = 'application/x-citywatch-tile';
const PICK_LIMIT = 60;

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export class Wall {
  // root is the #wall section, button the top-bar toggle; onOpen(id) opens
  // the large live view of a camera. canPlay: the account may watch video
  // (without, the wall never opens); onViewers, when given, lists who
  // watches what now (a supervisor's view).
  constructor(root, { store, button, onOpen, canPlay = true, onViewers = null }) {
    this.root = root;
    this.store = store;
    this.button = button;
    this.onOpen = onOpen;
    this.canPlay = canPlay;
    this.shown = false;
    this.size = 4;
    this.tiles = new Array(MAX).fill(null);
    this.saved = {};  // name -> {size, tiles}
    this.name = '';   // the named layout last loaded or saved
    this.pickFor = -1;
    this.pickIndex = 0;
    this.picks = [];
    this.restore();

    root.innerHTML = `
      <div class="w-bar">
        <h2 id="wall-h"></h2>
        <span class="w-sizes" role="group">${SIZES.map((n) =>
          `<button type="button" data-size="${n}" aria-pressed="false"><i class="g g${n}" aria-hidden="true"></i>${n}</button>`).join('')}</span>
        <label class="w-lay"><span class="w-lay-l"></span> <select class="w-saved"></select></label>
        <button type="button" class="w-save"></button>
        <form class="w-save-form" hidden><input name="name" required maxlength="40" autocomplete="off" spellcheck="false"><button type="submit" class="w-ok"></button><button type="button" class="w-cancel"></button></form>
        <button type="button" class="w-del"></button>
        <span class="grow"></span>
        <span class="w-count muted" role="status"></span>
        <button type="button" class="w-viewers" id="wall-viewers" hidden></button>
        <button type="button" class="w-clear"></button>
      </div>
      <div class="grid"></div>
      <div class="picker" hidden>
        <input type="search" role="combobox" aria-expanded="true" aria-controls="wall-pick-list" aria-autocomplete="list" autocomplete="off" spellcheck="false">
        <ul id="wall-pick-list" role="listbox"></ul>
        <p class="more muted"></p>
      </div>`;
    root.setAttribute('aria-labelledby', 'wall-h');
    this.grid = root.querySelector('.grid');
    this.picker = root.querySelector('.picker');
    this.cells = [];
    for (let i = 0; i < MAX; i++) this.cells.push(this.makeTile(i));
    if (onViewers) {
      const v = root.querySelector('.w-viewers');
      v.hidden = false;
      v.addEventListener('click', onViewers);
    }
    this.bind();
    this.layout();
    this.retranslate();
    if (this.wantOpen) this.show();
  }

  // Persistence.

  restore() {
    let s = null;
    try { s = JSON.parse(localStorage.getItem(STORE_KEY) || 'null'); } catch { /* storage disabled or corrupt: start empty */ }
    if (!s || typeof s !== 'object') return;
    if (SIZES.includes(s.size)) this.size = s.size;
    if (Array.isArray(s.tiles)) this.tiles = this.tiles.map((_, i) => (typeof s.tiles[i] === 'string' ? s.tiles[i] : null));
    if (s.saved && typeof s.saved === 'object') {
      for (const [name, l] of Object.entries(s.saved)) {
        if (l && SIZES.includes(l.size) && Array.isArray(l.tiles)) this.saved[name] = { size: l.size, tiles: l.tiles.slice(0, l.size).map((x) => (typeof x === 'string' ? x : null)) };
      }
    }
    if (typeof s.name === 'string' && this.saved[s.name]) this.name = s.name;
    this.wantOpen = !!s.open;
  }

  persist() {
    const s = { v: 1, open: this.shown, size: this.size, tiles: this.tiles, name: this.name, saved: this.saved };
    try { localStorage.setItem(STORE_KEY, JSON.stringify(s)); } catch { /* storage full or disabled */ }
  }

  current() { return { size: this.size, tiles: this.tiles.slice(0, this.size) }; }

  // Showing and hiding.

  get open() { return this.shown; }

  show() {
    if (this.shown || !this.canPlay) return;
    this.shown = true;
    this.root.hidden = false;
    document.body.classList.add('wall-on');
    this.button?.setAttribute('aria-pressed', 'true');
    this.layout();
    this.persist();
  }

  hide() {
    if (!this.shown) return;
    this.shown = false;
    this.closePicker();
    for (const c of this.cells) c.viewer.stop();
    this.root.hidden = true;
    document.body.classList.remove('wall-on');
    this.button?.setAttribute('aria-pressed', 'false');
    this.persist();
  }

  // Changing the wall. setLayout and assign are also the test hooks
  // (window.citywatch.wall); they show the wall.

  setLayout(n) {
    n = Number(n);
    if (!SIZES.includes(n)) return;
    this.show();
    this.size = n;
    this.layout();
    this.persist();
  }

  // assign puts cameraId (null to clear) in tile i (0-based), growing the
  // grid if the tile is beyond it.
  assign(i, cameraId) {
    i = Number(i);
    if (!(i >= 0 && i < MAX)) return;
    this.show();
    if (i >= this.size) this.size = SIZES.find((n) => n > i);
    this.tiles[i] = cameraId || null;
    this.layout();
    this.persist();
  }

  swap(a, b) {
    if (a === b) return;
    [this.tiles[a], this.tiles[b]] = [this.tiles[b], this.tiles[a]];
    this.layout();
    this.persist();
    this.cells[b].el.focus();
  }

  clearAll() {
    this.tiles.fill(null);
    this.layout();
    this.persist();
  }

  // layout puts the first size tiles on screen, playing, and stops the rest.
  layout() {
    this.root.dataset.layout = String(this.size);
    this.grid.style.setProperty('--cols', String(Math.sqrt(this.size)));
    const want = this.cells.slice(0, this.size).map((c) => c.el);
    if (this.grid.children.length !== want.length || want.some((el, i) => this.grid.children[i] !== el)) {
      if (this.pickFor >= this.size) this.closePicker();
      this.grid.replaceChildren(...want);
    }
    this.cells.forEach((c, i) => {
      c.viewer.setCamera(this.tiles[i]);
      if (this.shown && i < this.size) c.viewer.start();
      else c.viewer.stop();
      this.renderTile(i);
    });
    for (const b of this.root.querySelectorAll('[data-size]')) b.setAttribute('aria-pressed', String(Number(b.dataset.size) === this.size));
    this.renderBar();
  }

  // changed is told which devices changed (null: maybe all).
  changed(ids) {
    for (const c of this.cells) {
      if (c.viewer.camera && (!ids || ids.has(c.viewer.camera))) c.viewer.changed();
    }
    if (this.pickFor >= 0 && !ids) this.filterPicks();
  }

  // playing lists [tile index, viewer] of the tiles on screen.
  playing() { return this.cells.map((c, i) => [i, c.viewer]).filter(([, v]) => v.active); }

  // Tiles.

  makeTile(i) {
    const el = document.createElement('div');
    el.className = 'tile';
    el.dataset.tile = String(i);
    el.dataset.state = 'empty';
    el.tabIndex = 0;
    el.setAttribute('role', 'group');
    el.innerHTML = `
      <div class="t-head" draggable="true">
        <span class="dot" aria-hidden="true"></span><span class="t-id"></span><span class="t-name"></span>
        <span class="t-status"></span><span class="grow"></span><span class="t-fps"></span>
        <button type="button" class="t-live" tabindex="-1">⤢</button><button type="button" class="t-x" tabindex="-1">×</button>
      </div>
      <div class="stage">
        <video muted autoplay playsinline></video>
        <div class="v-msg"></div>
        <button type="button" class="t-add" tabindex="-1"><b>+</b><span class="t-pick"></span><small class="t-hint"></small></button>
      </div>`;
    const cell = { el, video: el.querySelector('video') };
    cell.viewer = new Viewer(cell.video, { store: this.store, onRender: () => this.renderTile(i) });
    return cell;
  }

  renderTile(i) {
    const { el, viewer } = this.cells[i];
    const v = viewer.view();
    const id = viewer.camera;
    const d = viewer.device;
    if (el.dataset.state !== v.state) el.dataset.state = v.state;
    if (id) { if (el.dataset.camera !== id) el.dataset.camera = id; } else delete el.dataset.camera;
    const head = el.firstElementChild;
    const status = d?.status || (id ? 'unknown' : 'none');
    head.className = `t-head s-${status}`;
    head.querySelector('.t-id').textContent = id || t('wall.tile', { n: i + 1 });
    head.querySelector('.t-name').textContent = d?.name || '';
    head.querySelector('.t-name').title = d ? [d.name, d.site_name || d.site, d.district].filter(Boolean).join(' · ') : '';
    head.querySelector('.t-status').textContent = id && d ? label('status', status) : '';
    const fps = v.state === 'playing' && viewer.stats?.fps != null ? `${num(viewer.stats.fps)} fps` : '';
    head.querySelector('.t-fps').textContent = fps;
    const msg = msgHTML(v);
    const box = el.querySelector('.v-msg');
    if (box._html !== msg) { box.innerHTML = msg; box._html = msg; }
    el.setAttribute('aria-label', [t('wall.tile', { n: i + 1 }), id && `${id} ${d?.name || ''}`.trim(), v.title].filter(Boolean).join(' — '));
    head.draggable = !!id;
    if (this.shown) this.renderCount();
  }

  renderCount() {
    let playing = 0;
    let used = 0;
    for (let i = 0; i < this.size; i++) {
      if (!this.tiles[i]) continue;
      used++;
      if (this.cells[i].viewer.view().state === 'playing') playing++;
    }
    const text = used ? t('wall.playing', { n: num(playing), m: num(used) }) : '';
    const el = this.root.querySelector('.w-count');
    if (el.textContent !== text) el.textContent = text;
  }

  renderBar() {
    const sel = this.root.querySelector('.w-saved');
    const names = Object.keys(this.saved).sort((a, b) => a.localeCompare(b));
    const changed = this.name && !same(this.saved[this.name], this.current());
    const opts = [new Option(t('wall.unsaved'), '')];
    for (const n of names) opts.push(new Option(n === this.name && changed ? t('wall.changed', { name: n }) : n, n));
    sel.replaceChildren(...opts);
    sel.value = this.name;
    const del = this.root.querySelector('.w-del');
    del.disabled = !this.name;
    del.title = this.name ? t('wall.delete_title', { name: this.name }) : '';
    this.root.querySelector('.w-clear').disabled = !this.tiles.slice(0, this.size).some(Boolean);
    this.renderCount();
  }

  retranslate() {
    const r = this.root;
    const txt = (sel, key) => { r.querySelector(sel).textContent = t(key); };
    txt('#wall-h', 'wall.heading');
    txt('.w-lay-l', 'wall.layout');
    txt('.w-save', 'wall.save_as');
    txt('.w-ok', 'wall.save');
    txt('.w-cancel', 'wall.cancel');
    txt('.w-del', 'wall.delete');
    txt('.w-clear', 'wall.clear');
    txt('.w-viewers', 'wall.viewers');
    r.querySelector('.w-sizes').setAttribute('aria-label', t('wall.grid'));
    for (const b of r.querySelectorAll('[data-size]')) b.title = t('wall.grid_n', { n: b.dataset.size });
    r.querySelector('.w-save-form input').placeholder = t('wall.name_placeholder');
    const search = this.picker.querySelector('input');
    search.placeholder = t('wall.search');
    search.setAttribute('aria-label', t('wall.pick'));
    for (const c of this.cells) {
      c.el.querySelector('.t-pick').textContent = t('wall.pick');
      c.el.querySelector('.t-hint').textContent = t('wall.pick_hint');
      const x = c.el.querySelector('.t-x');
      x.title = t('wall.remove');
      x.setAttribute('aria-label', t('wall.remove'));
      const live = c.el.querySelector('.t-live');
      live.title = t('wall.open');
      live.setAttribute('aria-label', t('wall.open'));
    }
    this.cells.forEach((_, i) => this.renderTile(i));
    this.renderBar();
    if (this.pickFor >= 0) this.filterPicks();
  }

  // Saved layouts.

  load(name) {
    const l = this.saved[name];
    if (!l) { this.name = ''; this.renderBar(); this.persist(); return; }
    this.name = name;
    this.size = l.size;
    this.tiles = this.tiles.map((_, i) => l.tiles[i] || null);
    this.layout();
    this.persist();
  }

  saveAs(name) {
    name = name.trim().slice(0, 40);
    if (!name) return;
    this.saved[name] = this.current();
    this.name = name;
    this.renderBar();
    this.persist();
  }

  remove(name) {
    if (!this.saved[name]) return;
    delete this.saved[name];
    if (this.name === name) this.name = '';
    this.renderBar();
    this.persist();
  }

  // Events.

  bind() {
    const r = this.root;
    const form = r.querySelector('.w-save-form');
    const input = form.querySelector('input');
    const saveBtn = r.querySelector('.w-save');
    const closeForm = () => { form.hidden = true; saveBtn.hidden = false; saveBtn.focus(); };
    r.querySelector('.w-sizes').addEventListener('click', (e) => {
      const b = e.target.closest('[data-size]');
      if (b) this.setLayout(Number(b.dataset.size));
    });
    r.querySelector('.w-saved').addEventListener('change', (e) => this.load(e.target.value));
    saveBtn.addEventListener('click', () => {
      form.hidden = false;
      saveBtn.hidden = true;
      input.value = this.name;
      input.focus();
      input.select();
    });
    form.addEventListener('submit', (e) => { e.preventDefault(); this.saveAs(input.value); closeForm(); });
    r.querySelector('.w-cancel').addEventListener('click', closeForm);
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); closeForm(); }
    });
    r.querySelector('.w-del').addEventListener('click', () => this.remove(this.name));
    r.querySelector('.w-clear').addEventListener('click', () => this.clearAll());

    const g = this.grid;
    const tileOf = (e) => e.target.closest?.('.tile');
    const index = (tile) => Number(tile.dataset.tile);
    g.addEventListener('click', (e) => {
      const tile = tileOf(e);
      if (!tile) return;
      const i = index(tile);
      if (e.target.closest('.t-x')) { this.assign(i, null); tile.focus(); return; }
      if (e.target.closest('.t-live')) { if (this.tiles[i]) this.onOpen(this.tiles[i]); return; }
      if (!this.tiles[i]) this.openPicker(i);
    });
    g.addEventListener('dblclick', (e) => {
      const tile = tileOf(e);
      if (tile && this.tiles[index(tile)] && !e.target.closest('button')) this.onOpen(this.tiles[index(tile)]);
    });
    g.addEventListener('keydown', (e) => {
      const tile = e.target;
      if (!(tile instanceof Element) || !tile.matches('.tile') || e.ctrlKey || e.metaKey || e.altKey) return;
      const i = index(tile);
      let handled = true;
      if (e.key === 'Enter' || e.key === ' ') {
        if (this.tiles[i]) this.onOpen(this.tiles[i]);
        else this.openPicker(i);
      } else if ((e.key === 'Delete' || e.key === 'Backspace') && this.tiles[i]) this.assign(i, null);
      else if (e.key === 'ArrowRight' || e.key === 'ArrowLeft' || e.key === 'ArrowUp' || e.key === 'ArrowDown') {
        const cols = Math.sqrt(this.size);
        const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[e.key];
        const j = i + step;
        if (j >= 0 && j < this.size) this.cells[j].el.focus();
      } else handled = false;
      if (handled) { e.preventDefault(); e.stopPropagation(); }
    });

    // Drag and drop: device rows (from the table) and tiles (to swap).
    g.addEventListener('dragstart', (e) => {
      const tile = tileOf(e);
      if (!tile || !this.tiles[index(tile)]) return;
      e.dataTransfer.setData(TILE_TYPE, tile.dataset.tile);
      e.dataTransfer.setData('text/plain', this.tiles[index(tile)]);
      e.dataTransfer.effectAllowed = 'move';
    });
    const accepts = (e) => {
      const types = e.dataTransfer?.types || [];
      return types.includes(DEVICE_TYPE) || types.includes(TILE_TYPE);
    };
    let over = null;
    const mark = (tile) => {
      if (over === tile) return;
      over?.classList.remove('drop');
      over = tile;
      over?.classList.add('drop');
    };
    g.addEventListener('dragover', (e) => {
      const tile = tileOf(e);
      if (!tile || !accepts(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = e.dataTransfer.types.includes(TILE_TYPE) ? 'move' : 'copy';
      mark(tile);
    });
    g.addEventListener('dragleave', (e) => { if (!g.contains(e.relatedTarget)) mark(null); });
    g.addEventListener('drop', (e) => {
      const tile = tileOf(e);
      mark(null);
      if (!tile || !accepts(e)) return;
      e.preventDefault();
      const i = index(tile);
      const from = e.dataTransfer.getData(TILE_TYPE);
      if (from !== '') { this.swap(Number(from), i); return; }
      const id = e.dataTransfer.getData(DEVICE_TYPE);
      const d = this.store.devices.get(id);
      if (id && (!d || d.kind === 'camera')) { this.assign(i, id); tile.focus(); }
    });
    document.addEventListener('dragend', () => mark(null));

    // The picker.
    const search = this.picker.querySelector('input');
    const list = this.picker.querySelector('ul');
    search.addEventListener('input', () => { this.pickIndex = 0; this.filterPicks(); });
    search.addEventListener('keydown', (e) => {
      let handled = true;
      if (e.key === 'ArrowDown') this.movePick(1);
      else if (e.key === 'ArrowUp') this.movePick(-1);
      else if (e.key === 'PageDown') this.movePick(10);
      else if (e.key === 'PageUp') this.movePick(-10);
      else if (e.key === 'Enter') { if (this.picks[this.pickIndex]) this.pick(this.picks[this.pickIndex].id); }
      else if (e.key === 'Escape') this.closePicker(true);
      else if (e.key === 'Tab') { this.closePicker(true); handled = false; }
      else handled = false;
      if (handled) e.preventDefault();
      e.stopPropagation(); // typing here is not a shortcut
    });
    list.addEventListener('mousedown', (e) => e.preventDefault()); // keep focus in the search box
    list.addEventListener('click', (e) => {
      const li = e.target.closest('li[data-id]');
      if (li) this.pick(li.dataset.id);
    });
    document.addEventListener('pointerdown', (e) => {
      if (this.pickFor >= 0 && !this.picker.contains(e.target) && !e.target.closest?.(`.tile[data-tile="${this.pickFor}"] .t-add`)) this.closePicker();
    });
  }

  openPicker(i) {
    this.pickFor = i;
    this.pickIndex = 0;
    const tile = this.cells[i].el;
    tile.append(this.picker);
    tile.classList.add('picking');
    this.picker.hidden = false;
    const search = this.picker.querySelector('input');
    search.value = '';
    this.filterPicks();
    search.focus();
  }

  closePicker(refocus = false) {
    if (this.pickFor < 0) return;
    const tile = this.cells[this.pickFor].el;
    tile.classList.remove('picking');
    this.pickFor = -1;
    this.picker.hidden = true;
    this.root.append(this.picker);
    if (refocus) tile.focus();
  }

  pick(id) {
    const i = this.pickFor;
    this.closePicker();
    this.assign(i, id);
    this.cells[i].el.focus();
  }

  // filterPicks lists the cameras matching the search, by id.
  filterPicks() {
    const q = this.picker.querySelector('input').value.trim().toLowerCase();
    const words = q.split(/\s+/).filter(Boolean);
    const found = [];
    for (const d of this.store.devices.values()) {
      if (d.kind !== 'camera') continue;
      if (words.every((w) => d._q.includes(w))) found.push(d);
    }
    found.sort((a, b) => (a._kid < b._kid ? -1 : a._kid > b._kid ? 1 : 0));
    this.picks = found.slice(0, PICK_LIMIT);
    this.pickIndex = Math.min(this.pickIndex, Math.max(0, this.picks.length - 1));
    const list = this.picker.querySelector('ul');
    list.innerHTML = this.picks.map((d, j) =>
      `<li role="option" id="wall-pick-${j}" data-id="${esc(d.id)}" aria-selected="${j === this.pickIndex}" class="s-${esc(d.status)}"><span class="dot" aria-hidden="true"></span><span class="p-id">${esc(d.id)}</span><span class="p-nm">${esc(d.name || '')}</span><span class="p-st">${esc(label('status', d.status))}</span></li>`).join('');
    const more = this.picker.querySelector('.more');
    more.textContent = !found.length ? t('wall.no_cameras') : found.length > PICK_LIMIT ? t('wall.more', { n: num(found.length - PICK_LIMIT) }) : '';
    more.hidden = !more.textContent;
    this.markPick();
  }

  movePick(delta) {
    if (!this.picks.length) return;
    this.pickIndex = Math.max(0, Math.min(this.picks.length - 1, this.pickIndex + delta));
    this.markPick();
  }

  markPick() {
    const list = this.picker.querySelector('ul');
    const search = this.picker.querySelector('input');
    for (const li of list.children) li.setAttribute('aria-selected', String(li.id === `wall-pick-${this.pickIndex}`));
    const cur = list.children[this.pickIndex];
    if (cur) { search.setAttribute('aria-activedescendant', cur.id); cur.scrollIntoView({ block: 'nearest' }); } else search.removeAttribute('aria-activedescendant');
  }
}
