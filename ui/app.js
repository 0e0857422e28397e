// citywatch console: the entry module. It signs in first (login.js), then
// owns the flow of data — REST snapshot, websocket changes, coalescing into
// animation frames — and hands each part of the screen what it needs to
// draw. What the signed-in account may do (me.permissions) decides which
// views and actions it is offered; the hub enforces the same on every
// request.

import * as i18n from './i18n.js';
import { t, label, num, clock } from './i18n.js';
import * as api from './api.js';
import { Gate, leave } from './login.js';
import { AccountMenu } from './account.js';
import { Admin } from './admin.js';
import { Audit } from './audit.js';
import { showViewers } from './viewers.js';
import { Store, STATUSES, motion } from './store.js';
import { Filters, PROBLEMS } from './filters.js';
import { Table } from './table.js';
import { Summary } from './summary.js';
import { Feed, entry, system } from './feed.js';
import { Detail } from './detail.js';
import { formDialog } from './dialog.js';
import { html } from './html.js';
import { Live } from './live.js';
import { Sound } from './sound.js';
import { DesktopAlerts } from './notify.js';
import { Player } from './video.js';
import { Wall } from './wall.js';
import { Alarms, sevLabel, sourceLabel } from './alarms.js';
import { CityMap } from './map.js';
import { Reports } from './reports.js';
import { Handover } from './handover.js';
import { WorkView } from './work.js';
import * as keys from './keys.js';

const $ = (sel) => document.querySelector(sel);

const MIN_VIEW_MS = 250;        // re-filter and re-sort at most this often during a storm of changes
const FIRST_HELLO_MS = 2500;    // load over REST anyway if the websocket is slow to greet
const REST_FALLBACK_MS = 60000; // while the websocket is down, refresh over REST this often
const RETRY_LOAD_MS = 5000;
const GAP_RESYNC_MS = 60000;    // at most one resync per minute for sequence gaps
const VIEW_KEY = 'citywatch.view';
// PHONE is style.css's upright-phone layout, where the device panel is
// below the table rather than beside it.
const PHONE = window.matchMedia('(max-width: 480px)');

// VIEWS: each view (its section and header button are named after it),
// the permission, or any of a list, it needs, and any of also, which
// decides whom it is for (work orders read with status.read, but only
// crews and dispatchers need the page).
const VIEWS = [
  { id: 'console', perm: 'status.read' },
  { id: 'map', perm: 'status.read' },
  { id: 'work', perm: 'status.read', also: keys.WORK_PERMS },
  { id: 'reports', perm: 'report.read' },
  { id: 'handover', perm: 'shift.handover' },
  { id: 'admin', perm: keys.ADMIN_PERMS },
  { id: 'audit', perm: 'audit.read' },
];

class App {
  // me is the signed-in account (api.account).
  constructor(me) {
    this.me = me;
    this.view = '';
    this.store = new Store();
    this.filters = new Filters();
    this.sound = new Sound({
      onState: () => this.renderSound(),
      onBlocked: () => this.soundBlocked(),
    });
    this.desktop = new DesktopAlerts();
    this.table = new Table($('#scroller'), $('#devices'), {
      onActivate: (id) => this.activate(id),
      onPlay: (id) => this.openLive(id),
      onSort: (key) => this.sortBy(key),
      current: (d) => this.store.devices.get(d.id) || d,
      canPlay: this.can('live.view'),
    });
    this.summary = new Summary($('#summary'), {
      onStatus: (s) => this.toggleStatus(s),
      onDistrict: (d) => this.setFilter({ district: this.filters.district === d ? '' : d, site: '' }),
    });
    this.feed = new Feed($('#feed'), {
      onDevice: (id) => this.activate(id),
      onSite: (site) => this.setFilter({ site, district: '', status: '', q: '' }),
    });
    this.detail = new Detail($('#detail'), {
      store: this.store, onClose: () => this.closeDetail(), onLive: (id) => this.openLive(id), canPlay: this.can('live.view'),
      onWorkOrder: this.can('work.manage') ? (id) => this.orderByHand(id) : null,
    });
    this.player = new Player($('#player'), { store: this.store, canLink: this.can('live.link'), onClose: () => this.focusTable() });
    this.wall = new Wall($('#wall'), {
      store: this.store, button: $('#wall-btn'), onOpen: (id) => this.openLive(id),
      canPlay: this.can('live.view'), onViewers: this.can('live.monitor') ? () => showViewers() : null,
    });
    this.live = new Live(api.eventsURL(), {
      onHello: (m) => this.hello(m),
      onChanges: (cs, range) => this.changes(cs, range),
      onState: (s, info) => this.liveState(s, info),
      onAlarm: (ev) => this.alarms.event(ev),
      onWorkOrder: (ev) => this.work?.event(ev),
      onEnded: () => leave('ended'),
      // A socket refused before it opened may mean the session is gone: a
      // request tells (a 401 leaves through api.onSession).
      onRefused: () => { api.me().catch(() => {}); },
    });
    // The alarm desk (alarms.js); window.citywatch.alarms.show() and
    // .act(id, action, note) are test hooks.
    this.alarms = new Alarms({
      root: $('#alarms'), button: $('#alarms-btn'), detailRoot: $('#alarm-detail'),
      store: this.store, sound: this.sound,
      who: () => this.me.name,
      can: (p) => this.can(p),
      active: () => this.view === 'console' && this.can('alarm.read'),
      onShow: () => { this.setView('console'); this.wall.hide(); },
      onHide: () => this.focusTable(),
      onDevice: (id) => this.activate(id),
      onLive: (id) => this.openLive(id),
      onChange: () => this.cityMap?.alarmsChanged(),
      onCritical: (a) => this.desktopAlert(a),
      onLink: (a) => this.link(a),
    });
    // The city map and the reports; window.citywatchMap (map.js hook())
    // and window.citywatch.reports are there for tests.
    this.cityMap = this.can('status.read') ? new CityMap($('#map'), {
      store: this.store,
      alarms: () => this.alarms.map.values(),
      onDevice: (id) => this.detail.show(id),
      can: (p) => this.can(p),
    }) : null;
    if (this.cityMap) window.citywatchMap = this.cityMap.hook();
    this.reports = this.can('report.read') ? new Reports($('#reports'), {
      store: this.store,
      can: (p) => this.can(p),
      who: () => this.me.name,
      onDevice: this.cityMap ? (id) => { this.setView('map'); this.cityMap.focusDevice(id); } : null,
    }) : null;
    // The shift handover (handover.js); window.citywatch.handover is
    // there for tests.
    this.handover = this.can('shift.handover') ? new Handover($('#handover'), {
      store: this.store,
      me: () => this.me,
    }) : null;
    // The crews' work orders (work.js); window.citywatch.work is there for
    // tests.
    this.work = this.allowed('work') ? new WorkView($('#work'), {
      store: this.store,
      can: (p) => this.can(p),
      me: () => this.me,
      onDevice: (id) => { this.setView('console'); this.activate(id); },
      onLive: this.can('live.view') ? (id) => this.openLive(id) : null,
    }) : null;

    this.lastSeq = null; // seq of the latest change reflected in the store
    this.syncing = null; // resync in flight
    this.again = false;  // another resync wanted when this one ends
    this.buffer = [];    // changes that arrived during a resync
    this.pending = [];   // changes waiting for the next frame
    this.frame = 0;
    this.viewTimer = 0;
    this.dirtyView = false;
    this.dirtySummary = false;
    this.lastView = 0;
    this.viewCost = 0;
    this.lastSync = 0;
    this.lastGapSync = 0;
    this.everLive = false;
    this.wasLive = false;
    this.liveInfo = { state: 'connecting', retryAt: 0 };
    this.retryTimer = 0;

    this.account = new AccountMenu({
      button: $('#account-menu'), menu: $('#account-pop'), me,
      onEnd: (reason) => leave(reason),
      onChanged: () => this.refreshMe(),
      onLogout: (going) => {
        if (!this.can('status.read')) return;
        if (going) this.live.stop(); else this.live.start();
      },
    });
    // Administration and the audit trail, for the roles that have them;
    // window.citywatch.admin and .audit are there for tests.
    this.admin = this.can(keys.ADMIN_PERMS) ? new Admin($('#admin'), {
      can: (p) => this.can(p),
      districts: () => (this.store.loaded ? this.store.districtNames() : []),
    }) : null;
    this.audit = this.can('audit.read') ? new Audit($('#audit'), { who: () => this.me.name }) : null;
  }

  // can reports whether the signed-in account holds permission p, or any
  // of a list.
  can(p) {
    return Array.isArray(p) ? p.some((x) => this.me.permissions.has(x)) : this.me.permissions.has(p);
  }

  // allowed reports whether the account may see view id.
  allowed(id) {
    const v = VIEWS.find((x) => x.id === id);
    return !!v && this.can(v.perm) && (!v.also || this.can(v.also));
  }

  // me: the account read anew (after a CSRF refresh, a password change).
  setMe(me) {
    this.me = me;
    this.account.set(me);
  }

  refreshMe() { return api.me().then((m) => this.setMe(m)).catch((err) => console.warn('me:', err)); }

  start() {
    i18n.translate(document);
    this.bindControls();
    keys.bind(this);
    i18n.onChange(() => this.retranslate());
    this.retranslate();
    const monitoring = this.can('status.read');
    // Controls of the monitoring view the account cannot use are not shown.
    $('#live').hidden = $('#sound').hidden = !monitoring;
    $('#alarms-btn').hidden = !monitoring || !this.can('alarm.read');
    $('#wall-btn').hidden = !monitoring || !this.can('live.view');
    const views = VIEWS.filter((v) => this.allowed(v.id));
    for (const v of VIEWS) $(`#view-${v.id}`).hidden = !views.includes(v);
    $('#views').hidden = views.length < 2;
    if (monitoring) {
      this.live.start();
      setTimeout(() => { if (!this.store.loaded && !this.syncing) this.resync(); }, FIRST_HELLO_MS);
    }
    let want = '';
    try { want = sessionStorage.getItem(VIEW_KEY) || ''; } catch { /* storage disabled */ }
    if (!this.setView(want)) this.setView(views[0]?.id || 'none');
    this.tick();
    setInterval(() => this.tick(), 1000);
  }

  // orderByHand opens a work order for a fault telemetry cannot see (a
  // camera knocked askew, a dirty lens) on device id, then shows it.
  async orderByHand(id) {
    const res = await formDialog({
      title: t('work.by_hand_h', { device: id }),
      body: html`<label><span>${t('work.f_title')}</span><input name="title" required maxlength="200" placeholder="${t('work.by_hand_placeholder')}"></label>
        <label><span>${t('work.priority')}</span><select name="priority">${[1, 2, 3, 4].map((p) => html`<option value="${p}"${p === 3 ? html` selected` : ''}>P${p}</option>`)}</select></label>`,
      label: t('work.by_hand'),
      onSubmit: (form) => api.openWorkOrder([id], form.elements.title.value.trim(), Number(form.elements.priority.value)),
    });
    if (!res?.order?.id) return;
    if (this.work && this.setView('work')) this.work.open(res.order.id);
  }

  // setView shows view ("console", "map", "work", "reports", "admin",
  // "audit"; "none" when the role has none of them) if the account may see
  // it; reports whether it did.
  setView(id) {
    if (id !== 'none' && !this.allowed(id)) return false;
    if (id === this.view) return true;
    this.view = id;
    document.body.dataset.view = id;
    for (const x of VIEWS) $(`#view-${x.id}`).setAttribute('aria-pressed', String(x.id === id));
    $('#noaccess').hidden = id !== 'none';
    if (id === 'admin') this.admin.show(); else this.admin?.hide();
    if (id === 'audit') this.audit.show(); else this.audit?.hide();
    if (id === 'reports') this.reports.show(); else this.reports?.hide();
    if (id === 'handover') this.handover.show(); else this.handover?.hide();
    if (id === 'work') this.work.show(); else this.work?.hide();
    this.placeDetail(id);
    if (id === 'map') this.cityMap.show(); else this.cityMap?.hide();
    try { sessionStorage.setItem(VIEW_KEY, id); } catch { /* storage disabled */ }
    // Video off screen holds sessions at the hub for nothing: the wall
    // stops while another view is shown and comes back with the console.
    if (id === 'console') {
      if (this.wallWasOpen) this.wall.show();
      this.wallWasOpen = false;
      this.focusTable();
    } else {
      this.player.close();
      this.wallWasOpen ||= this.wall.open;
      this.wall.hide();
    }
    return true;
  }

  // placeDetail puts the one device panel where the view shows it: beside
  // the table, or beside the map.
  placeDetail(view) {
    const d = $('#detail');
    if (view === 'map') this.cityMap.detailSlot.append(d);
    else if (view === 'console' && d.parentElement !== $('.side')) $('.side').insertBefore(d, $('.side .feed'));
  }

  // Data flow.

  hello(m) {
    if (this.can('alarm.read')) this.alarms.hello(m);
    if (m.summary && !this.store.loaded) {
      this.store.setSummary(m.summary);
      this.dirtySummary = true;
      this.schedule();
    }
    const seq = typeof m.seq === 'number' ? m.seq : null;
    if (this.everLive) {
      let key = 'feed.reconnected';
      if (seq !== null && this.lastSeq !== null && seq < this.lastSeq) key = 'feed.reconnected_restart';
      else if (seq !== null && this.lastSeq !== null && seq > this.lastSeq) key = 'feed.reconnected_missed';
      this.feed.add([system(key, { n: num(seq - (this.lastSeq ?? 0)) }, key === 'feed.reconnected' ? 'ok' : 'warn')]);
    }
    this.everLive = true;
    if (seq === null || this.lastSeq === null || seq !== this.lastSeq || !this.store.loaded) {
      // The snapshot fetched now is at least as new as seq; changes after it
      // arrive on this socket and are buffered until the snapshot is in.
      this.lastSeq = seq;
      this.resync();
    }
  }

  // changes takes a message's changes and the span of sequence numbers it
  // covers ({after, upto}, or null).
  changes(cs, range) {
    const batch = { changes: cs, range };
    if (this.syncing) { this.buffer.push(batch); return; }
    this.pending.push(batch);
    this.schedule();
  }

  resync() {
    if (this.syncing) { this.again = true; return; }
    clearTimeout(this.retryTimer);
    this.syncing = (async () => {
      try {
        const [devs, sum, ags] = await Promise.all([
          api.devices(),
          api.summary().catch((err) => { console.warn('summary:', err); return null; }),
          api.agents().catch((err) => { console.warn('agents:', err); return null; }),
        ]);
        this.store.load(devs, sum, ags);
        this.lastSync = Date.now();
        this.notice('');
        this.populateFilters();
      } catch (err) {
        console.warn('load:', err);
        this.notice(t('app.load_error', { error: err.message }));
        this.retryTimer = setTimeout(() => this.resync(), RETRY_LOAD_MS);
      } finally {
        const buf = this.buffer;
        this.buffer = [];
        this.syncing = null;
        this.pending = buf.concat(this.pending);
        this.dirtyView = this.dirtySummary = true;
        if (this.detail.open) this.detail.changed();
        this.videoChanged(null);
        this.cityMap?.reload();
        this.schedule();
        if (this.again) { this.again = false; this.resync(); }
      }
    })();
  }

  pollSummary() {
    api.summary().then((s) => {
      if (this.store.complete) return;
      this.store.setSummary(s);
      this.dirtySummary = true;
      this.schedule();
    }).catch((err) => console.warn('summary:', err));
  }

  // schedule coalesces everything that changed into one update per frame;
  // a hidden tab gets no frames, so a timer stands in.
  schedule() {
    if (this.frame) return;
    const run = () => { cancelAnimationFrame(this.frame); clearTimeout(this.frameTimer); this.frame = 0; this.flush(); };
    this.frame = requestAnimationFrame(run);
    this.frameTimer = setTimeout(run, 500);
  }

  flush() {
    if (this.pending.length) {
      const cs = this.pending;
      this.pending = [];
      this.apply(cs);
    }
    if (this.dirtyView) {
      const wait = Math.max(MIN_VIEW_MS, this.viewCost * 10) - (performance.now() - this.lastView);
      if (wait <= 0) this.computeView();
      else if (!this.viewTimer) this.viewTimer = setTimeout(() => { this.viewTimer = 0; this.schedule(); }, wait);
    }
    if (this.dirtySummary) {
      this.dirtySummary = false;
      this.summary.render(this.store, this.filters);
      const down = (this.store.counts.by.offline || 0) + (this.store.counts.by.unreachable || 0);
      document.title = `${down ? `(${down}) ` : ''}${t('app.title')}`;
    }
  }

  // apply applies batches of changes. A batch covers every change this
  // console may see in (after, upto]: a scoped account is not sent other
  // districts' changes, so numbers skip, and only a batch starting beyond
  // what the store reflects means something was missed.
  apply(batches) {
    for (const { changes: cs, range } of batches) {
      if (range && this.lastSeq !== null && range.after > this.lastSeq) this.gap(range.after - this.lastSeq);
      this.applyChanges(cs);
      if (range) this.lastSeq = Math.max(this.lastSeq ?? range.upto, range.upto);
    }
  }

  applyChanges(cs) {
    const entries = [];
    const touched = new Set();
    let down = false;
    let inventory = false;
    for (let c of cs) {
      if (!c || typeof c !== 'object') continue;
      if (typeof c.seq === 'number' && this.lastSeq !== null && c.seq <= this.lastSeq) continue; // already in the snapshot, or a repeat
      // Every device of the agent changed alike: they are the agent's rows.
      if (c.affected_all && c.agent) {
        const alike = c.affected_all;
        c = { ...c, affected: [...c.affected || [], ...this.store.devicesOf(c.agent.id).map((d) => ({ ...alike, id: d.id }))] };
      }
      // A late change is history (the device as it was then), not the present.
      if (c.device && c.kind !== 'late') { this.store.putDevice(c.device); touched.add(c.device.id); }
      // An agent change lists its devices' new status only: merge it into
      // the rows we have (an inventory change sends whole devices).
      for (const d of c.affected || []) {
        const prev = c.kind === 'agent' ? this.store.devices.get(d.id) : null;
        this.store.putDevice(prev ? { ...prev, ...d } : d);
        touched.add(d.id);
      }
      for (const id of c.removed || []) { this.store.removeDevice(id); touched.add(id); }
      // A retired agent left the fleet (its credential was revoked).
      if (c.agent && c.retired) this.store.removeAgent(c.agent.id);
      else if (c.agent) this.store.putAgent(c.agent, c.kind === 'agent');
      if (c.kind === 'inventory') inventory = true;
      this.store.at = Math.max(this.store.at, api.time(c.at));
      const e = entry(c);
      if (e) entries.push(e);
      // A tone for what needs eyes: something lost (not a planned agent
      // shutdown, nor a new reason under an old status) or a sensor going
      // off (not a camera seeing motion).
      const lost = (c.kind === 'device' || c.kind === 'agent') && c.to === 'offline' && c.from !== 'offline' &&
        !(c.kind === 'agent' && c.reason === 'shutdown');
      if (lost || (c.kind === 'trigger' && c.device && c.device.triggered && !motion(c.device))) down = true;
    }
    this.feed.add(entries);
    if (down) this.sound.play();
    if (touched.size) {
      this.dirtyView = true;
      this.table.render(); // rows in view show the change now; order follows with the next view
    }
    if (inventory) this.populateFilters(); // new sites, districts or kinds
    this.dirtySummary = true;
    if (this.detail.open && touched.has(this.detail.id)) this.detail.changed();
    if (touched.size) this.videoChanged(touched);
    if (touched.size) this.cityMap?.changed(touched);
  }

  gap(n) {
    console.warn(`live: ${n} change(s) missed`);
    if (Date.now() - this.lastGapSync < GAP_RESYNC_MS) return;
    this.lastGapSync = Date.now();
    this.resync();
  }

  computeView() {
    clearTimeout(this.viewTimer);
    this.viewTimer = 0;
    this.dirtyView = false;
    const t0 = performance.now();
    const match = this.filters.matcher();
    const found = [];
    for (const d of this.store.devices.values()) if (match(d)) found.push(d);
    const list = this.filters.sorted(found);
    this.table.setList(list);
    this.lastView = performance.now();
    this.viewCost = this.lastView - t0;
    this.shown = list.length;
    this.renderShown();
  }

  renderShown() {
    const total = this.store.devices.size;
    $('#shown').textContent = this.store.loaded
      ? t(this.filters.active() ? 'table.shown_filtered' : 'table.shown', { shown: num(this.shown ?? 0), total: num(total) })
      : '';
    const empty = $('#empty');
    empty.hidden = this.store.loaded && this.shown > 0;
    empty.textContent = this.store.loaded ? t(total ? 'table.no_match' : 'table.no_devices') : t('app.loading');
    $('#f-clear').disabled = !this.filters.active();
  }

  // Filters and selection.

  bindControls() {
    $('#wall-btn').addEventListener('click', () => this.toggleWall());
    $('#views').addEventListener('click', (e) => {
      const b = e.target.closest('[data-view]');
      if (b) this.setView(b.dataset.view);
    });
    const form = $('#filters');
    form.addEventListener('submit', (e) => e.preventDefault());
    for (const [id, key] of [['#f-district', 'district'], ['#f-site', 'site'], ['#f-kind', 'kind'], ['#f-status', 'status']]) {
      $(id).addEventListener('change', (e) => {
        const patch = { [key]: e.target.value };
        if (key === 'district') patch.site = '';
        this.setFilter(patch);
      });
    }
    let debounce = 0;
    $('#q').value = this.filters.q;
    $('#q').addEventListener('input', (e) => {
      clearTimeout(debounce);
      debounce = setTimeout(() => this.setFilter({ q: e.target.value }), 120);
    });
    $('#f-clear').addEventListener('click', () => {
      $('#q').value = '';
      this.setFilter({ district: '', site: '', kind: '', status: '', q: '' });
    });
    $('#lang').addEventListener('click', () => i18n.setLang(i18n.lang() === 'en' ? 'zh-CN' : 'en'));
    $('#sound').addEventListener('click', () => this.toggleSound());
    $('#sound-enable').addEventListener('click', () => this.sound.unlock());
    $('#notify-allow').addEventListener('click', () => this.desktop.request().then(() => this.renderSound()));
    $('#notify-dismiss').addEventListener('click', () => { this.desktop.dismiss(); this.renderSound(); });
    $('#help-btn').addEventListener('click', () => this.help());
    $('#help').addEventListener('click', (e) => { if (e.target.closest('[data-close]') || e.target === $('#help')) $('#help').close(); });
  }

  setFilter(patch) {
    const districtChanged = 'district' in patch && patch.district !== this.filters.district;
    this.filters.set(patch);
    if ('q' in patch && $('#q').value !== patch.q) $('#q').value = patch.q;
    if (districtChanged) this.populateSites();
    this.syncControls();
    this.computeView();
    this.dirtySummary = true;
    this.schedule();
    if (this.table.selected && this.table.index.has(this.table.selected)) this.table.select(this.table.selected);
    else $('#scroller').scrollTop = 0;
  }

  toggleStatus(s) { this.setFilter({ status: this.filters.status === s ? '' : s }); }

  sortBy(key) {
    if (this.filters.sort === key) this.setFilter({ dir: -this.filters.dir });
    else this.setFilter({ sort: key, dir: 1 });
    this.table.setSort(this.filters.sort, this.filters.dir);
  }

  syncControls() {
    const f = this.filters;
    const setSel = (id, v) => {
      const el = $(id);
      if (v && ![...el.options].some((o) => o.value === v)) el.add(new Option(v, v)); // from the URL, not (yet) in the data
      el.value = v;
    };
    setSel('#f-district', f.district);
    setSel('#f-site', f.site);
    setSel('#f-kind', f.kind);
    setSel('#f-status', f.status);
    for (const id of ['#f-district', '#f-site', '#f-kind', '#f-status']) $(id).classList.toggle('on', !!$(id).value);
    $('#q').classList.toggle('on', !!f.q);
  }

  populateFilters() {
    const opt = (value, text) => new Option(text, value);
    const s = this.store;
    $('#f-district').replaceChildren(opt('', t('filter.all_districts')), ...s.districtNames().map((d) => opt(d, s.districtLabel(d))));
    $('#f-kind').replaceChildren(opt('', t('filter.all_kinds')), opt('camera', label('kind', 'camera')), opt('sensor', label('kind', 'sensor')),
      ...s.sensorKinds().map((k) => opt(`sensor:${k}`, `· ${label('sensor', k)}`)));
    $('#f-status').replaceChildren(opt('', t('filter.all_statuses')), opt(PROBLEMS, t('filter.problems')),
      ...STATUSES.map((st, i) => opt(st, `${i + 1} · ${label('status', st)}`)));
    this.populateSites();
    this.syncControls();
  }

  populateSites() {
    const frag = document.createDocumentFragment();
    frag.append(new Option(t('filter.all_sites'), ''));
    for (const x of this.store.sites(this.filters.district)) frag.append(new Option(x.name === x.id ? x.id : `${x.name} (${x.id})`, x.id));
    $('#f-site').replaceChildren(frag);
  }

  activate(id) {
    this.table.select(id);
    this.detail.show(id);
    if (PHONE.matches && this.view === 'console') $('#detail').scrollIntoView({ block: 'start' });
  }

  openSelected() {
    if (this.table.selected) this.detail.show(this.table.selected);
    else { const id = this.table.move(1); if (id) this.detail.show(id); }
  }

  move(delta) {
    const id = this.table.move(delta);
    if (id && this.detail.open) this.detail.show(id);
    this.focusTable();
  }

  moveTo(i) {
    const n = this.table.list.length;
    if (!n) return;
    const j = i < 0 ? n - 1 : i;
    this.table.select(this.table.list[j].id);
    if (this.detail.open) this.detail.show(this.table.list[j].id);
  }

  escape() {
    if (this.view === 'work') this.work.escape();
    else if (this.detail.open) this.closeDetail();
    else if (this.view === 'map') this.cityMap.escape();
    else if (this.table.selected) this.table.select(null, false);
  }

  closeDetail() {
    this.detail.close();
    this.cityMap?.select(null);
    if (this.view === 'console') this.focusTable();
  }

  focusTable() {
    const s = $('#scroller');
    if (document.activeElement !== s) s.focus({ preventScroll: true });
  }

  // Live video. openLive, closeLive, videoStats and wall (setLayout, assign)
  // are also the hooks browser tests use through window.citywatch.

  openLive(id) { if (this.can('live.view')) this.player.show(id); }

  closeLive() { this.player.close(); }

  openLiveSelected() {
    const d = this.store.devices.get(this.table.selected);
    if (d?.kind === 'camera') this.openLive(d.id);
  }

  toggleWall() {
    if (!this.can('live.view')) return;
    const open = this.view === 'console' && this.wall.open;
    this.setView('console');
    this.alarms.hide();
    if (open) this.wall.hide(); else this.wall.show();
  }

  // videoStats resolves to [{camera, framesDecoded, state, where, tile}]
  // for every video element with a session: the live view (where "player")
  // and the wall's tiles (where "wall", tile its index).
  async videoStats() {
    const vs = [['player', -1, this.player.viewer], ...this.wall.playing().map(([i, v]) => ['wall', i, v])];
    const out = await Promise.all(vs.map(async ([where, tile, v]) => {
      const s = await v.sample();
      return s && (where === 'wall' ? { ...s, where, tile } : { ...s, where });
    }));
    return out.filter(Boolean);
  }

  videoChanged(ids) {
    this.player.changed(ids);
    this.wall.changed(ids);
  }

  focusSearch() {
    if (this.view === 'admin') this.admin.focusSearch();
    else if (this.view === 'audit') this.audit.focusSearch();
    else if (this.view === 'map') this.cityMap.focusSearch();
    else if (this.view === 'console') { $('#q').focus(); $('#q').select(); }
  }

  toggleSound() {
    this.sound.toggle();
    this.renderSound();
  }

  // renderSound shows the sound toggle, and while the account watches the
  // city: a banner when the browser blocks sound (one click anywhere
  // enables it; a new alarm is never silent without a visible reason),
  // and the offer of desktop alerts.
  renderSound() {
    const b = $('#sound');
    b.setAttribute('aria-pressed', String(this.sound.enabled));
    b.textContent = t(this.sound.enabled ? 'top.sound_on' : 'top.sound_off');
    const watching = this.can('alarm.read');
    const banner = $('#sound-blocked');
    banner.hidden = !(watching && this.sound.blocked);
    if (banner.hidden) banner.classList.remove('urgent');
    // Desktop alerts are for a monitoring centre's desks, not a crew's
    // phone.
    $('#notify-offer').hidden = !(watching && this.desktop.offer && matchMedia('(min-width: 900px) and (pointer: fine)').matches);
  }

  // soundBlocked: an alarm tone was due and the browser kept it silent.
  soundBlocked() {
    this.renderSound();
    const banner = $('#sound-blocked');
    banner.classList.remove('urgent');
    void banner.offsetWidth; // restart the animation
    banner.classList.add('urgent');
  }

  // link carries out a new alarm's linkage (报警联动, from its rule): the
  // video of its camera, or of the cameras nearest its device that cover
  // it, on the wall from the rule's tile on, or in the player.
  async link(a) {
    const l = a.linkage;
    if (!this.can('live.view') || !a.device) return;
    const d = this.store.devices.get(a.device);
    let cams = [];
    if (d?.kind === 'camera') cams = [d.id];
    else {
      try {
        cams = (await api.nearestCameras(a.device, l.cameras || 1)).map((c) => c.id);
      } catch (err) {
        console.warn('linkage:', err);
        return;
      }
    }
    if (!cams.length) return;
    if (l.video === 'popup') { this.openLive(cams[0]); return; }
    if (this.view !== 'console') this.setView('console');
    const first = Math.max(0, (l.tile || 1) - 1);
    cams.forEach((id, k) => this.wall.assign(first + k, id));
  }

  // desktopAlert notifies a new critical alarm while the tab is hidden.
  // It names the device, site and district as the console does, in the
  // operator's language.
  desktopAlert(a) {
    const d = a.device ? this.store.devices.get(a.device) : null;
    const what = d ? `${i18n.named(d.names, d.name) || d.id} (${d.id})` : a.device || a.agent;
    const where = [what, a.site && this.store.siteLabel(a.site, d?.site_name || a.site), a.district && this.store.districtLabel(a.district)]
      .filter(Boolean).join(' · ');
    this.desktop.show(a.id, `${sevLabel(a.severity)}: ${sourceLabel(a.source)}`, where, () => this.alarms.show());
  }

  help() {
    const d = $('#help');
    const dl = d.querySelector('dl');
    dl.replaceChildren(...keys.SHORTCUTS.filter(([, , perm]) => !perm || this.can(perm)).flatMap(([k, key]) => {
      const dt = document.createElement('dt');
      for (const part of k.split(' ')) { const kbd = document.createElement('kbd'); kbd.textContent = part; dt.append(kbd, ' '); }
      const dd = document.createElement('dd');
      dd.textContent = t(key);
      return [dt, dd];
    }));
    d.showModal();
  }

  // Status of the connection and the clock.

  liveState(state, info) {
    if (state === 'offline' && this.wasLive) {
      this.feed.add([system('feed.disconnected', {}, 'warn')]);
    }
    this.wasLive = state === 'live';
    this.liveInfo = { state, retryAt: info.retryAt };
    this.renderLive();
  }

  renderLive() {
    const { state, retryAt } = this.liveInfo;
    const el = $('#live');
    el.dataset.state = state;
    let text;
    if (state === 'live') text = t('live.live');
    else if (state === 'connecting') text = t(this.everLive ? 'live.reconnecting' : 'live.connecting');
    else text = t('live.offline');
    // Only the state is announced; the countdown changes every second and
    // is for the eye (aria-hidden).
    const txt = el.querySelector('.txt');
    if (txt.textContent !== text) txt.textContent = text;
    el.querySelector('.retry').textContent = state === 'offline'
      ? t('live.retry', { n: Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) }) : '';
    el.title = t(`live.title_${state}`);
    $('#stale').hidden = state === 'live' || !this.everLive;
  }

  tick() {
    const now = Date.now();
    $('#clock').textContent = `${new Date(now).toLocaleDateString(i18n.lang(), { month: 'short', day: 'numeric', weekday: 'short' })} ${clock(now)}`;
    $('#clock').dateTime = new Date(now).toISOString();
    if (this.liveInfo.state === 'offline') this.renderLive();
    this.table.refresh(Math.floor(now / 1000));
    this.alarms.tick(Math.floor(now / 1000));
    this.work?.tick(now);
    if (this.detail.open && Math.floor(now / 1000) % 15 === 0) this.detail.render();
    if (this.liveInfo.state !== 'live' && this.store.loaded && !this.syncing && now - this.lastSync > REST_FALLBACK_MS) this.resync();
    if (this.liveInfo.state === 'live' && this.store.loaded && !this.store.complete && Math.floor(now / 1000) % 60 === 0) this.pollSummary();
  }

  notice(text) {
    const el = $('#notice');
    el.textContent = text;
    el.hidden = !text;
  }

  retranslate() {
    const other = i18n.lang() === 'en' ? 'zh-CN' : 'en';
    $('#lang').textContent = t(`lang.${other}`);
    $('#lang').lang = other;
    $('#feed').dataset.empty = t('feed.empty');
    this.summary.render(this.store, this.filters);
    this.feed.retranslate();
    this.table.invalidate();
    this.table.setSort(this.filters.sort, this.filters.dir);
    this.detail.render();
    this.player.retranslate();
    this.wall.retranslate();
    this.alarms.retranslate();
    this.admin?.retranslate();
    this.audit?.retranslate();
    this.cityMap?.retranslate();
    this.reports?.retranslate();
    this.handover?.retranslate();
    this.work?.retranslate();
    this.account.render();
    if (this.store.loaded) this.populateFilters();
    this.renderShown();
    this.renderLive();
    this.renderSound();
    this.tick();
    document.title = t('app.title');
    this.dirtySummary = true;
    this.schedule();
  }
}

async function main() {
  try {
    await i18n.load();
  } catch (err) {
    console.error(err); // the console still works, showing keys instead of words
  }
  i18n.translate(document);
  let app = null;
  let signedIn = false;
  api.onSession({
    // A 401 once signed in: the session expired or was ended elsewhere.
    lost: () => { if (signedIn) leave('expired'); },
    // The hub asks for a new password or a second factor first: the
    // sign-in page walks through it after the reload.
    restricted: () => { if (app) leave(''); },
    refreshed: (me) => app?.setMe(me),
  });
  const gate = new Gate($('#login'));
  const me = await gate.start(() => { signedIn = true; });
  signedIn = true;
  app = new App(me);
  window.citywatch = app; // for debugging from the browser console, and tests
  app.start();
}

main();
