// The city map (#map): districts shaded by online rate, areas of interest
// outlined by kind, cameras' fields of view coloured by status, every
// device as a point (clustered while zoomed out), active alarms ringed,
// coverage cells at street level, and a what-if planner that asks the hub
// what planned cameras would add. The hub computes every geometry and
// figure; this module only draws them. Live changes reach the map through
// the store, batched into one update per animation frame: a wedge changes
// colour at once, the 100,000 clustered points at most once a second.
// Without a basemap the map is a calm plain background: nothing is fetched
// from outside the hub, and no layer draws text (text needs glyphs).

import { t, label, num, pct, errorText, named } from './i18n.js';
import * as api from './api.js';
import { html } from './html.js';
import { STATUSES, Store } from './store.js';
import { PROBLEMS } from './filters.js';
import { rateClass, WARN_RATE, BAD_RATE } from './summary.js';
import { maplibre, pmtiles } from './vendor.js';

export const WEDGE_ZOOM = 14;  // fields of view are fetched and drawn from this zoom in
export const CELL_ZOOM = 15;   // coverage cells likewise
const CLUSTER_MAX_ZOOM = 14;
const POINTS_MIN_MS = 1000;    // clustered points are re-indexed at most this often
const SIDE_MIN_MS = 1000;
const FETCH_DEBOUNCE_MS = 250;
const WHATIF_DEBOUNCE_MS = 400;
const COVERAGE_REFRESH_MS = 60000;
const SEARCH_MAX = 8;
export const COVERAGE_STATES = ['covered', 'fragile', 'lost', 'gap'];
// Planned camera defaults and limits: the hub validates them again.
const PLAN = { heading: 0, fov: 90, range_m: 60 };
const LIMITS = { heading: [0, 359], fov: [1, 360], range_m: [1, 1000] };
// Outline colours for kinds of area, in order of first appearance.
const KIND_COLOURS = ['#5aa9ff', '#e87fd0', '#f0a35a', '#6fd3d0', '#b9a1ff', '#d8d36a', '#ff8f8f', '#9ad17a'];

// cssColours reads the status colours from style.css, so the map and the
// table can never disagree.
export function cssColours() {
  const s = getComputedStyle(document.documentElement);
  const v = (name, dflt) => s.getPropertyValue(`--${name}`).trim() || dflt;
  return {
    online: v('online', '#4cc38a'), degraded: v('degraded', '#e8b43c'), offline: v('offline', '#ff6161'),
    unreachable: v('unreachable', '#c792ff'), unknown: v('unknown', '#95a1ad'), bg: v('bg', '#0d1116'),
    line: v('line', '#263140'), muted: v('muted', '#8391a1'), accent: v('accent', '#5aa9ff'), text: v('text', '#cdd5de'),
  };
}

// statusMatch applies the map's status filter ('' all, PROBLEMS, or one
// status) to a status.
export function statusMatch(filter, status) {
  if (!filter) return true;
  return filter === PROBLEMS ? status !== 'online' : status === filter;
}

// deviceFeature is a device as a GeoJSON point, or null when it has no
// usable location.
export function deviceFeature(d) {
  const lat = d.location?.lat;
  const lon = d.location?.lon;
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || (lat === 0 && lon === 0)) return null;
  return { type: 'Feature', geometry: { type: 'Point', coordinates: [lon, lat] }, properties: { id: d.id, status: d.status || 'unknown', kind: d.kind || '' } };
}

// extent is the [[w, s], [e, n]] box around every coordinate of a
// GeoJSON geometry or feature collection, or null when there is none.
export function extent(geo) {
  let w = Infinity; let s = Infinity; let e = -Infinity; let n = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === 'number') {
      if (c[0] < w) w = c[0];
      if (c[0] > e) e = c[0];
      if (c[1] < s) s = c[1];
      if (c[1] > n) n = c[1];
      return;
    }
    for (const x of c) walk(x);
  };
  for (const f of geo.features || [geo]) if (f?.geometry?.coordinates) walk(f.geometry.coordinates);
  return w <= e ? [[w, s], [e, n]] : null;
}

// contains reports whether box outer holds box inner.
export function contains(outer, inner) {
  return !!outer && outer[0][0] <= inner[0][0] && outer[0][1] <= inner[0][1] && outer[1][0] >= inner[1][0] && outer[1][1] >= inner[1][1];
}

// grow widens a box by f of its size on every side.
export function grow([[w, s], [e, n]], f) {
  const dx = (e - w) * f;
  const dy = (n - s) * f;
  return [[Math.max(-180, w - dx), Math.max(-85, s - dy)], [Math.min(180, e + dx), Math.min(85, n + dy)]];
}

// searchDevices returns up to max devices with a location whose search
// text (the table's: id, name, site, district…) holds every word of q, and
// the sites whose name or id holds it, each with where to fly.
export function searchDevices(devices, q, max = SEARCH_MAX) {
  const terms = q.toLowerCase().split(/\s+/).filter(Boolean);
  if (!terms.length) return [];
  const out = [];
  const sites = new Map();
  for (const d of devices) {
    const f = deviceFeature(d);
    if (!f) continue;
    const site = d.site || '';
    const sq = [site, d.site_name, ...Object.values(d.site_names || {})].filter(Boolean).join('\n').toLowerCase();
    if (site && terms.every((w) => sq.includes(w))) {
      const s = sites.get(site) || { kind: 'site', id: site, name: named(d.site_names, d.site_name || site), district: named(d.district_names, d.district), lon: 0, lat: 0, n: 0 };
      s.lon += f.geometry.coordinates[0];
      s.lat += f.geometry.coordinates[1];
      s.n++;
      sites.set(site, s);
    }
    if (out.length < max && terms.every((w) => d._q?.includes(w))) {
      out.push({ kind: 'device', id: d.id, name: named(d.names, d.name), status: d.status, district: named(d.district_names, d.district), lon: f.geometry.coordinates[0], lat: f.geometry.coordinates[1] });
    }
  }
  const siteHits = [...sites.values()].slice(0, max).map((s) => ({ ...s, lon: s.lon / s.n, lat: s.lat / s.n }));
  return [...siteHits, ...out].slice(0, max);
}

// clamp reads a planned camera's field as a number within its limits.
export function clamp(key, v) {
  const [lo, hi] = LIMITS[key];
  const x = Number(v);
  return Number.isFinite(x) ? Math.min(hi, Math.max(lo, x)) : PLAN[key];
}

const EMPTY = () => ({ type: 'FeatureCollection', features: [] });
const statusColour = (c, value) => ['match', value, ...STATUSES.flatMap((s) => [s, c[s]]), c.unknown];
const pctText = (x) => (typeof x === 'number' && Number.isFinite(x) ? `${num(x, 1)}%` : '–');

export class CityMap {
  // store: the device store; alarms() the active alarms (iterable of the
  // alarm desk's alarms); onDevice(id) opens the device panel; can(p)
  // what the account may do; detailSlot receives the device panel while
  // the map is shown (app.js moves it).
  constructor(root, { store, alarms = () => [], onDevice, can }) {
    this.root = root;
    this.store = store;
    this.alarms = alarms;
    this.onDevice = onDevice;
    this.can = can;
    this.shown = false;
    this.map = null;
    this.ml = null;          // the maplibre-gl module
    this.ready = null;       // promise of the first full draw
    this.config = null;
    this.colours = null;
    this.status = '';        // status filter
    this.coverageState = ''; // '' off, 'all', or one of COVERAGE_STATES
    this.planning = false;
    this.planned = [];       // [{n, lon, lat, heading, fov, range_m, marker}]
    this.planSeq = 0;
    this.whatif = null;      // last what-if answer, or {error}
    this.whatifSeq = 0;
    this.notes = {};         // by source: what the status line says
    this.coverage = null;    // /api/coverage, for the district list
    this.districtBoxes = new Map();
    this.districtCls = new Map();
    this.kinds = [];
    this.shownIds = new Set(); // devices in the points source
    this.wedgeIds = new Set(); // cameras in the wedges source
    this.wedgeBox = null;
    this.cellBox = null;
    this.pending = new Set();
    this.dirtyPoints = true;
    this.dirtyAlarms = true;
    this.dirtySide = true;
    this.frame = 0;
    this.lastPoints = 0;
    this.lastSide = 0;
    this.selected = null;
    this.aborts = {};
    this.build();
  }

  build() {
    const layer = (key) => html`<label class="chk"><input type="checkbox" data-layer="${key}" checked><span data-layer-label="${key}"></span></label>`;
    this.root.innerHTML = html`
      <header class="v-top m-top">
        <h2 id="map-h" data-i18n="view.map">${t('view.map')}</h2>
        <div class="m-search" role="search">
          <input type="search" id="map-search" autocomplete="off" spellcheck="false" aria-keyshortcuts="/" aria-controls="map-results"
            data-i18n-placeholder="map.search_placeholder" data-i18n-label="map.search" placeholder="${t('map.search_placeholder')}" aria-label="${t('map.search')}">
          <ul id="map-results" role="listbox" hidden></ul>
        </div>
        <label class="chk"><span data-i18n="filter.status">${t('filter.status')}</span> <select id="map-status"></select></label>
        <span class="m-layers" role="group" data-i18n-label="map.layers" aria-label="${t('map.layers')}">
          ${layer('districts')}${layer('areas')}${layer('buildings')}${layer('wedges')}${layer('devices')}${layer('alarms')}
        </span>
        <label class="chk"><span data-i18n="map.coverage">${t('map.coverage')}</span> <select id="map-coverage"></select></label>
        <button type="button" id="map-plan" aria-pressed="false" data-i18n="map.plan" data-i18n-title="map.plan_title" title="${t('map.plan_title')}">${t('map.plan')}</button>
        <span id="map-note" class="muted" role="status"></span>
      </header>
      <div class="m-body">
        <div id="map-canvas" class="m-canvas" data-testid="city-map" data-state="loading" tabindex="-1" data-i18n-label="view.map" aria-label="${t('view.map')}"></div>
        <aside class="m-side" id="map-side">
          <div id="map-detail-slot"></div>
          <section id="map-whatif" class="m-sec" hidden aria-labelledby="map-whatif-h"></section>
          <section class="m-sec" aria-labelledby="map-districts-h">
            <h3 id="map-districts-h" data-i18n="map.districts">${t('map.districts')}</h3>
            <ol id="map-districts"></ol>
          </section>
          <section class="m-sec" aria-labelledby="map-legend-h">
            <h3 id="map-legend-h" data-i18n="map.legend">${t('map.legend')}</h3>
            <div id="map-legend"></div>
          </section>
        </aside>
      </div>`;
    const r = this.root;
    this.canvas = r.querySelector('#map-canvas');
    this.detailSlot = r.querySelector('#map-detail-slot');
    r.querySelector('#map-status').addEventListener('change', (e) => this.setStatus(e.target.value));
    r.querySelector('#map-coverage').addEventListener('change', (e) => this.setCoverage(e.target.value));
    r.querySelector('#map-plan').addEventListener('click', () => this.setPlanning(!this.planning));
    r.querySelector('.m-layers').addEventListener('change', (e) => {
      const key = e.target.dataset.layer;
      if (key) this.setLayer(key, e.target.checked);
    });
    const search = r.querySelector('#map-search');
    let debounce = 0;
    search.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(() => this.search(search.value), 120); });
    search.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); this.fly(this.results?.[0]); }
      if (e.key === 'ArrowDown') { e.preventDefault(); r.querySelector('#map-results button')?.focus(); }
    });
    r.querySelector('#map-results').addEventListener('click', (e) => {
      const b = e.target.closest('[data-hit]');
      if (b) this.fly(this.results[Number(b.dataset.hit)]);
    });
    r.querySelector('#map-results').addEventListener('keydown', (e) => {
      const b = e.target.closest('[data-hit]');
      if (!b) return;
      const li = b.parentElement;
      if (e.key === 'ArrowDown') { e.preventDefault(); li.nextElementSibling?.querySelector('button')?.focus(); }
      if (e.key === 'ArrowUp') { e.preventDefault(); (li.previousElementSibling?.querySelector('button') || search).focus(); }
    });
    r.querySelector('#map-districts').addEventListener('click', (e) => {
      const b = e.target.closest('[data-district]');
      const box = b && this.districtBoxes.get(b.dataset.district);
      if (box) this.map?.fitBounds(box, { padding: 30, duration: 400 });
    });
    const wi = r.querySelector('#map-whatif');
    wi.addEventListener('input', (e) => this.editPlanned(e.target));
    wi.addEventListener('click', (e) => {
      const b = e.target.closest('[data-plan-action]');
      if (!b) return;
      const a = b.dataset.planAction;
      if (a === 'centre' && this.map) this.addPlanned(this.map.getCenter());
      else if (a === 'clear') this.clearPlanned();
      else if (a === 'remove') this.removePlanned(Number(b.dataset.n));
      else if (a === 'done') this.setPlanning(false);
    });
    this.fillSelects();
  }

  // fillSelects (re)writes the words of the controls.
  fillSelects() {
    for (const el of this.root.querySelectorAll('[data-layer-label]')) el.textContent = t(`map.layer_${el.dataset.layerLabel}`);
    const st = this.root.querySelector('#map-status');
    st.replaceChildren(new Option(t('filter.all_statuses'), ''), new Option(t('filter.problems'), PROBLEMS), ...STATUSES.map((s) => new Option(label('status', s), s)));
    st.value = this.status;
    const cv = this.root.querySelector('#map-coverage');
    cv.replaceChildren(new Option(t('map.coverage_off'), ''), new Option(t('map.coverage_all'), 'all'), ...COVERAGE_STATES.map((s) => new Option(t(`map.cell_${s}`), s)));
    cv.value = this.coverageState;
  }

  // The view.

  show() {
    this.shown = true;
    this.root.hidden = false;
    if (!this.ready) this.ready = this.init();
    else if (this.map) {
      this.map.resize();
      this.dirtyPoints = this.dirtyAlarms = this.dirtySide = true;
      this.schedule();
      this.viewChanged();
      this.refreshCoverage();
    }
    return this.ready;
  }

  hide() {
    this.shown = false;
    this.root.hidden = true;
    clearTimeout(this.coverageTimer);
  }

  focusSearch() {
    const q = this.root.querySelector('#map-search');
    q.focus();
    q.select();
  }

  // escape closes what is open, innermost first; reports whether it did.
  escape() {
    if (!this.root.querySelector('#map-results').hidden) { this.root.querySelector('#map-results').hidden = true; return true; }
    if (this.planning) { this.setPlanning(false); return true; }
    return false;
  }

  async init() {
    this.canvas.dataset.state = 'loading';
    try {
      const [ml, config] = await Promise.all([maplibre(), api.mapConfig()]);
      this.ml = ml;
      this.config = config;
      this.colours = cssColours();
      const style = { version: 8, sources: {}, layers: [{ id: 'background', type: 'background', paint: { 'background-color': this.colours.bg } }] };
      const opts = { container: this.canvas, style, attributionControl: false, dragRotate: false, pitchWithRotate: false, maxPitch: 0 };
      if (config.bounds) opts.bounds = config.bounds;
      else if (config.center) { opts.center = config.center; opts.zoom = 12; } else { opts.center = [0, 0]; opts.zoom = 1; }
      this.map = new ml.Map(opts);
      this.map.touchZoomRotate.disableRotation();
      this.map.addControl(new ml.NavigationControl({ showCompass: false }), 'top-right');
      this.map.addControl(new ml.ScaleControl({ unit: 'metric' }), 'bottom-left');
      await this.map.once('load');
      if (config.basemap) await this.addBasemap().catch((err) => this.note(t('map.basemap_error', { error: errorText(err) })));
      this.addSources();
      this.addLayers();
      this.bindMap();
      await this.loadLayers();
      if (!config.bounds && !config.center) this.fitAll();
      this.canvas.dataset.state = 'ready';
      this.dirtyPoints = this.dirtyAlarms = this.dirtySide = true;
      this.flush();
      this.viewChanged();
      this.refreshCoverage();
      this.renderLegend();
    } catch (err) {
      console.warn('map:', err);
      this.canvas.dataset.state = 'error';
      const p = document.createElement('p');
      p.className = 'm-error err';
      p.id = 'map-error';
      p.textContent = t('map.error', { error: errorText(err) });
      this.canvas.replaceChildren(p);
      this.ready = null; // a later show tries again
    }
  }

  // addBasemap draws the hub's PMTiles archive under everything: a raster
  // archive dimmed, a vector one as quiet fills and lines (no labels).
  async addBasemap() {
    const lib = await pmtiles();
    const protocol = new lib.Protocol();
    this.ml.addProtocol('pmtiles', protocol.tile);
    const archive = new lib.PMTiles(api.BASEMAP_URL);
    protocol.add(archive);
    const header = await archive.getHeader();
    const url = `pmtiles://${api.BASEMAP_URL}`;
    if (header.tileType !== lib.TileType.Mvt) {
      this.map.addSource('basemap', { type: 'raster', url, tileSize: 256 });
      this.map.addLayer({ id: 'basemap', type: 'raster', source: 'basemap', paint: { 'raster-saturation': -0.8, 'raster-brightness-max': 0.45, 'raster-opacity': 0.8 } });
      return;
    }
    const meta = await archive.getMetadata();
    this.map.addSource('basemap', { type: 'vector', url });
    for (const vl of meta?.vector_layers || []) {
      this.map.addLayer({ id: `basemap-fill-${vl.id}`, type: 'fill', source: 'basemap', 'source-layer': vl.id, filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': '#161d26', 'fill-opacity': 0.7 } });
      this.map.addLayer({ id: `basemap-line-${vl.id}`, type: 'line', source: 'basemap', 'source-layer': vl.id, filter: ['==', ['geometry-type'], 'LineString'], paint: { 'line-color': '#222c38', 'line-width': 0.8 } });
    }
  }

  addSources() {
    const m = this.map;
    const geo = (id, extra = {}) => m.addSource(id, { type: 'geojson', data: EMPTY(), ...extra });
    geo('districts', { promoteId: 'name' });
    geo('areas');
    geo('buildings');
    geo('cells');
    geo('whatif');
    geo('wedges', { promoteId: 'id' });
    // up counts the online and degraded devices of a cluster, so its
    // colour is its online rate, judged as the summary judges one.
    geo('devices', {
      promoteId: 'id', cluster: true, clusterMaxZoom: CLUSTER_MAX_ZOOM, clusterRadius: 40,
      clusterProperties: { up: ['+', ['case', ['in', ['get', 'status'], ['literal', ['online', 'degraded']]], 1, 0]] },
    });
    geo('alarms');
    geo('selected');
  }

  addLayers() {
    const m = this.map;
    const c = this.colours;
    const cls = ['coalesce', ['feature-state', 'cls'], ''];
    m.addLayer({ id: 'districts-fill', type: 'fill', source: 'districts', paint: {
      'fill-color': ['match', cls, 'r-bad', c.offline, 'r-warn', c.degraded, 'r-ok', c.online, c.muted],
      // Quieter at street level, where the district fills the screen.
      'fill-opacity': ['interpolate', ['linear'], ['zoom'],
        11, ['match', cls, 'r-bad', 0.2, 'r-warn', 0.14, 'r-ok', 0.06, 0.02],
        15, ['match', cls, 'r-bad', 0.08, 'r-warn', 0.06, 'r-ok', 0.03, 0.01]],
    } });
    m.addLayer({ id: 'districts-line', type: 'line', source: 'districts', paint: { 'line-color': '#3a4a5e', 'line-width': 1.2 } });
    m.addLayer({ id: 'buildings', type: 'fill', source: 'buildings', minzoom: 13, paint: { 'fill-color': '#1f2833', 'fill-outline-color': '#2a3542', 'fill-opacity': 0.8 } });
    m.addLayer({ id: 'areas-fill', type: 'fill', source: 'areas', paint: { 'fill-color': c.accent, 'fill-opacity': 0.05 } });
    m.addLayer({ id: 'areas-line', type: 'line', source: 'areas', paint: { 'line-color': c.accent, 'line-width': 1.5, 'line-dasharray': [3, 2] } });
    m.addLayer({ id: 'cells', type: 'fill', source: 'cells', minzoom: CELL_ZOOM, paint: {
      'fill-color': ['match', ['get', 'state'], 'covered', c.online, 'fragile', c.degraded, 'lost', c.offline, c.muted],
      'fill-opacity': ['match', ['get', 'state'], 'covered', 0.22, 'fragile', 0.4, 'lost', 0.45, 0.12],
    } });
    m.addLayer({ id: 'whatif', type: 'fill', source: 'whatif', paint: { 'fill-color': c.accent, 'fill-opacity': 0.45, 'fill-outline-color': c.accent } });
    m.addLayer({ id: 'wedges-fill', type: 'fill', source: 'wedges', minzoom: WEDGE_ZOOM, paint: { 'fill-color': statusColour(c, ['get', 'status']), 'fill-opacity': 0.2 } });
    m.addLayer({ id: 'wedges-line', type: 'line', source: 'wedges', minzoom: WEDGE_ZOOM, paint: { 'line-color': statusColour(c, ['get', 'status']), 'line-width': 1, 'line-opacity': 0.8 } });
    m.addLayer({ id: 'clusters', type: 'circle', source: 'devices', filter: ['has', 'point_count'], paint: {
      'circle-color': ['step', ['/', ['get', 'up'], ['get', 'point_count']], c.offline, BAD_RATE, c.degraded, WARN_RATE, c.online],
      'circle-radius': ['step', ['get', 'point_count'], 9, 100, 13, 1000, 17, 10000, 22],
      'circle-opacity': 0.55, 'circle-stroke-color': c.bg, 'circle-stroke-width': 1.5,
    } });
    m.addLayer({ id: 'points', type: 'circle', source: 'devices', filter: ['!', ['has', 'point_count']], paint: {
      'circle-color': statusColour(c, ['get', 'status']),
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 10, 2.5, 16, 5],
      'circle-stroke-color': c.bg, 'circle-stroke-width': 1,
    } });
    m.addLayer({ id: 'alarms', type: 'circle', source: 'alarms', paint: {
      'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': c.offline,
      'circle-stroke-width': ['match', ['get', 'severity'], 'critical', 3, 2],
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 8, 6, 16, 11],
    } });
    m.addLayer({ id: 'selected', type: 'circle', source: 'selected', paint: {
      'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': c.accent, 'circle-stroke-width': 2.5, 'circle-radius': 13,
    } });
  }

  bindMap() {
    const m = this.map;
    const clickable = ['alarms', 'points', 'clusters', 'wedges-fill'];
    for (const id of clickable) {
      m.on('mouseenter', id, () => { if (!this.planning) m.getCanvas().style.cursor = 'pointer'; });
      m.on('mouseleave', id, () => { m.getCanvas().style.cursor = ''; });
    }
    m.on('click', (e) => this.click(e, clickable));
    m.on('moveend', () => this.viewChanged());
  }

  async click(e, layers) {
    if (this.planning) { this.addPlanned(e.lngLat); return; }
    const shown = layers.filter((id) => this.map.getLayoutProperty(id, 'visibility') !== 'none');
    const f = this.map.queryRenderedFeatures(e.point, { layers: shown })[0];
    if (!f) return;
    if (f.layer.id === 'clusters') {
      const z = await this.map.getSource('devices').getClusterExpansionZoom(f.properties.cluster_id);
      this.map.easeTo({ center: f.geometry.coordinates, zoom: z });
      return;
    }
    const id = f.properties.device || f.properties.id;
    if (id) this.openDevice(String(id));
  }

  // openDevice opens the device panel for id and marks it on the map.
  openDevice(id) {
    this.select(id);
    this.onDevice(id);
  }

  select(id) {
    this.selected = id;
    const d = id && this.store.devices.get(id);
    const f = d && deviceFeature(d);
    this.map?.getSource('selected')?.setData(f ? { type: 'FeatureCollection', features: [f] } : EMPTY());
  }

  // focusDevice flies to a device and opens its panel (reports link here).
  async focusDevice(id) {
    await this.show();
    const d = this.store.devices.get(id);
    const f = d && deviceFeature(d);
    if (f && this.map) this.map.flyTo({ center: f.geometry.coordinates, zoom: Math.max(this.map.getZoom(), 17), duration: 600 });
    this.openDevice(id);
  }

  // Data from the hub.

  async loadLayers() {
    const on = this.config.layers;
    const jobs = ['districts', 'areas', 'buildings'].map(async (name) => {
      const box = this.root.querySelector(`[data-layer="${name}"]`).closest('label');
      box.hidden = !on[name];
      if (!on[name]) return;
      try {
        const fc = await api.mapLayer(name);
        this.map.getSource(name).setData(fc);
        if (name === 'districts') this.indexDistricts(fc);
        if (name === 'areas') this.styleAreas(fc);
      } catch (err) {
        this.note(t('map.layer_error', { layer: t(`map.layer_${name}`), error: errorText(err) }));
      }
    });
    await Promise.all(jobs);
  }

  indexDistricts(fc) {
    this.districtBoxes = new Map();
    this.districtCls = new Map();
    for (const f of fc.features) {
      const name = f.properties?.name;
      const box = name && extent(f);
      if (!box) continue;
      const prev = this.districtBoxes.get(name);
      this.districtBoxes.set(name, prev ? [[Math.min(prev[0][0], box[0][0]), Math.min(prev[0][1], box[0][1])], [Math.max(prev[1][0], box[1][0]), Math.max(prev[1][1], box[1][1])]] : box);
    }
    this.allBox = extent(fc);
  }

  // styleAreas gives each kind of area an outline colour, in the order
  // kinds first appear.
  styleAreas(fc) {
    const kinds = [];
    for (const f of fc.features) {
      const k = f.properties?.kind;
      if (k && typeof k === 'string' && !kinds.includes(k)) kinds.push(k);
    }
    this.kinds = kinds.slice(0, KIND_COLOURS.length);
    if (!this.kinds.length) return;
    const colour = ['match', ['get', 'kind'], ...this.kinds.flatMap((k, i) => [k, KIND_COLOURS[i]]), this.colours.accent];
    this.map.setPaintProperty('areas-line', 'line-color', colour);
    this.map.setPaintProperty('areas-fill', 'fill-color', colour);
    this.renderLegend();
  }

  fitAll() {
    let box = this.allBox;
    if (!box) box = extent({ features: [...this.store.devices.values()].map(deviceFeature).filter(Boolean) });
    if (box) this.map.fitBounds(box, { padding: 30, duration: 0 });
  }

  // viewChanged fetches what depends on the view (fields of view, cells)
  // once the map rests.
  viewChanged() {
    clearTimeout(this.fetchTimer);
    this.fetchTimer = setTimeout(() => { this.fetchWedges(); this.fetchCells(); this.renderNote(); }, FETCH_DEBOUNCE_MS);
  }

  viewBox() {
    const b = this.map.getBounds();
    return [[b.getWest(), b.getSouth()], [b.getEast(), b.getNorth()]];
  }

  // fetchView asks load(box, signal) for what lies around the view when
  // the view has left the box asked for last, and hands it to apply.
  async fetchView(key, wanted, box, load, apply) {
    this.aborts[key]?.abort();
    if (!wanted) return;
    const view = this.viewBox();
    if (contains(this[box], view)) return;
    const ask = grow(view, 0.5);
    const ctl = new AbortController();
    this.aborts[key] = ctl;
    try {
      const fc = await load(ask, ctl.signal);
      if (ctl.signal.aborted) return;
      this[box] = ask;
      apply(fc);
      this.setNote(key, '');
    } catch (err) {
      if (ctl.signal.aborted || err.name === 'AbortError') return;
      this[box] = null;
      this.setNote(key, err.status === 400 ? err.message : t('map.fetch_error', { error: errorText(err) }));
    }
  }

  fetchWedges() {
    const wanted = this.shown && this.map.getZoom() >= WEDGE_ZOOM && this.layerOn('wedges');
    return this.fetchView('wedges', wanted, 'wedgeBox', api.wedges, (fc) => {
      // The store is newer than the hub's answer was when it left.
      const ids = new Set();
      for (const f of fc.features) {
        const id = f.properties?.id;
        if (id == null) continue;
        ids.add(id);
        const d = this.store.devices.get(id);
        if (d) f.properties.status = d.status;
      }
      this.wedgeIds = ids;
      this.map.getSource('wedges').setData(fc);
    });
  }

  fetchCells() {
    const wanted = this.shown && !!this.coverageState && this.map.getZoom() >= CELL_ZOOM;
    const state = this.coverageState === 'all' ? '' : this.coverageState;
    return this.fetchView('cells', wanted, 'cellBox', (box, signal) => api.coverageCells(box, state, signal),
      (fc) => this.map.getSource('cells').setData(fc));
  }

  refreshCoverage() {
    clearTimeout(this.coverageTimer);
    if (!this.shown) return;
    api.coverage().then((c) => { this.coverage = c; this.dirtySide = true; this.schedule(); })
      .catch((err) => console.warn('coverage:', err))
      .finally(() => { if (this.shown) this.coverageTimer = setTimeout(() => this.refreshCoverage(), COVERAGE_REFRESH_MS); });
  }

  // Changes from the store.

  // changed takes the ids of devices that changed live.
  changed(ids) {
    for (const id of ids) this.pending.add(id);
    this.dirtySide = true;
    this.schedule();
  }

  // reload: the store was replaced by a fresh snapshot.
  reload() {
    this.pending.clear();
    this.dirtyPoints = this.dirtySide = this.dirtyAlarms = true;
    this.wedgeBox = null;
    this.schedule();
    if (this.map && this.shown) this.viewChanged();
  }

  alarmsChanged() {
    this.dirtyAlarms = true;
    this.schedule();
  }

  // schedule coalesces changes into one update per frame; while the view
  // is hidden nothing is drawn, and show() draws everything anew.
  schedule() {
    if (this.frame || !this.shown || !this.map) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.flush(); });
  }

  flush() {
    if (!this.map || !this.shown || this.canvas.dataset.state !== 'ready') return;
    const now = performance.now();
    this.flushWedges();
    if (this.dirtyPoints || this.pending.size) {
      if (now - this.lastPoints >= POINTS_MIN_MS) { this.flushPoints(); this.lastPoints = now; } else this.later();
    }
    if (this.dirtyAlarms) { this.dirtyAlarms = false; this.drawAlarms(); }
    this.shadeDistricts();
    if (this.dirtySide) {
      if (now - this.lastSide >= SIDE_MIN_MS) { this.dirtySide = false; this.lastSide = now; this.renderDistricts(); } else this.later();
    }
  }

  later() {
    if (this.laterTimer) return;
    this.laterTimer = setTimeout(() => { this.laterTimer = 0; this.schedule(); }, POINTS_MIN_MS / 2);
  }

  // flushWedges recolours the fields of view of cameras that changed; the
  // pending ids stay for the points.
  flushWedges() {
    const update = [];
    const remove = [];
    for (const id of this.pending) {
      if (!this.wedgeIds.has(id)) continue;
      const d = this.store.devices.get(id);
      if (d) update.push({ id, addOrUpdateProperties: [{ key: 'status', value: d.status }] });
      else { remove.push(id); this.wedgeIds.delete(id); }
    }
    if (update.length || remove.length) this.map.getSource('wedges').updateData({ update, remove });
  }

  flushPoints() {
    const src = this.map.getSource('devices');
    if (this.dirtyPoints) {
      this.dirtyPoints = false;
      this.pending.clear();
      const features = [];
      this.shownIds = new Set();
      for (const d of this.store.devices.values()) {
        if (!statusMatch(this.status, d.status)) continue;
        const f = deviceFeature(d);
        if (f) { features.push(f); this.shownIds.add(d.id); }
      }
      src.setData({ type: 'FeatureCollection', features });
      return;
    }
    const add = [];
    const remove = [];
    for (const id of this.pending) {
      const d = this.store.devices.get(id);
      const f = d && statusMatch(this.status, d.status) ? deviceFeature(d) : null;
      if (f) { add.push(f); this.shownIds.add(id); } else if (this.shownIds.delete(id)) remove.push(id);
    }
    this.pending.clear();
    if (add.length || remove.length) src.updateData({ add, remove });
    if (this.selected && add.some((f) => f.properties.id === this.selected)) this.select(this.selected);
  }

  // drawAlarms rings every device (or, for an agent's alarm, its site)
  // with an active alarm.
  drawAlarms() {
    const features = [];
    let sites = null;
    for (const a of this.alarms()) {
      if (!a.state?.startsWith('active')) continue;
      const d = a.device && this.store.devices.get(a.device);
      let at = d && deviceFeature(d)?.geometry.coordinates;
      if (!at && a.site) {
        sites ??= this.siteCentres();
        at = sites.get(a.site);
      }
      if (at) features.push({ type: 'Feature', geometry: { type: 'Point', coordinates: at }, properties: { alarm: a.id, device: a.device || '', severity: a.severity || '' } });
    }
    this.map.getSource('alarms').setData({ type: 'FeatureCollection', features });
  }

  siteCentres() {
    const acc = new Map();
    for (const d of this.store.devices.values()) {
      const f = deviceFeature(d);
      if (!f || !d.site) continue;
      const s = acc.get(d.site) || [0, 0, 0];
      s[0] += f.geometry.coordinates[0]; s[1] += f.geometry.coordinates[1]; s[2]++;
      acc.set(d.site, s);
    }
    return new Map([...acc].map(([k, [x, y, n]]) => [k, [x / n, y / n]]));
  }

  // shadeDistricts colours each district by its online rate, from the
  // store's live counts; only a changed class touches the map.
  shadeDistricts() {
    for (const name of this.districtBoxes.keys()) {
      const c = this.store.districts.get(name);
      const cls = c && c.devices ? rateClass(Store.rates(c).online) : '';
      if (this.districtCls.get(name) === cls) continue;
      this.districtCls.set(name, cls);
      this.map.setFeatureState({ source: 'districts', id: name }, { cls });
    }
  }

  // Controls.

  layerOn(key) { return this.root.querySelector(`[data-layer="${key}"]`)?.checked !== false; }

  setLayer(key, on) {
    const ids = { districts: ['districts-fill', 'districts-line'], areas: ['areas-fill', 'areas-line'], buildings: ['buildings'],
      wedges: ['wedges-fill', 'wedges-line'], devices: ['clusters', 'points'], alarms: ['alarms'] }[key] || [];
    for (const id of ids) this.map?.setLayoutProperty(id, 'visibility', on ? 'visible' : 'none');
    if (key === 'wedges' && on) this.viewChanged();
  }

  setStatus(s) {
    this.status = s;
    this.dirtyPoints = true;
    this.lastPoints = 0;
    const f = !s ? null : s === PROBLEMS ? ['!=', ['get', 'status'], 'online'] : ['==', ['get', 'status'], s];
    for (const id of ['wedges-fill', 'wedges-line']) this.map?.setFilter(id, f);
    this.schedule();
  }

  setCoverage(state) {
    this.coverageState = state;
    this.cellBox = null;
    if (!state) this.map?.getSource('cells').setData(EMPTY());
    this.viewChanged();
  }

  // notes by source (wedges, cells, layers), shown together.
  setNote(key, text) {
    this.notes[key] = text;
    this.renderNote();
  }

  note(text) { this.setNote('misc', text); }

  renderNote() {
    const parts = Object.values(this.notes).filter(Boolean);
    if (this.map && this.coverageState && this.map.getZoom() < CELL_ZOOM) parts.push(t('map.zoom_for_cells'));
    if (this.map && this.layerOn('wedges') && this.map.getZoom() < WEDGE_ZOOM) parts.push(t('map.zoom_for_wedges'));
    this.root.querySelector('#map-note').textContent = parts.join(' · ');
  }

  // Search.

  search(q) {
    this.results = searchDevices(this.store.devices.values(), q);
    const ul = this.root.querySelector('#map-results');
    ul.hidden = !q.trim();
    ul.innerHTML = this.results.length ? html`${this.results.map((r, i) => html`<li><button type="button" role="option" data-hit="${i}">${
      r.kind === 'site'
        ? html`<span class="badge b-info">${t('map.site')}</span> ${r.name} <span class="muted">${r.id} · ${r.district}</span>`
        : html`<span class="dot s-${r.status}" aria-hidden="true"></span><span class="mono">${r.id}</span> ${r.name} <span class="muted">${r.district}</span>`
    }</button></li>`)}` : html`<li class="muted">${t('map.no_hits')}</li>`;
  }

  fly(hit) {
    if (!hit || !this.map) return;
    this.root.querySelector('#map-results').hidden = true;
    this.map.flyTo({ center: [hit.lon, hit.lat], zoom: Math.max(this.map.getZoom(), hit.kind === 'site' ? 16 : 17), duration: 600 });
    if (hit.kind === 'device') this.openDevice(hit.id);
  }

  // What-if planning.

  setPlanning(on) {
    this.planning = on;
    this.root.querySelector('#map-plan').setAttribute('aria-pressed', String(on));
    this.root.querySelector('#map-whatif').hidden = !on;
    this.canvas.classList.toggle('planning', on);
    if (this.map) this.map.getCanvas().style.cursor = on ? 'crosshair' : '';
    if (!on) this.clearPlanned();
    this.renderPlan();
  }

  addPlanned(lngLat) {
    const p = { n: ++this.planSeq, lon: lngLat.lng, lat: lngLat.lat, ...PLAN };
    const el = document.createElement('button');
    el.type = 'button';
    el.className = 'm-planned';
    el.dataset.planned = String(p.n);
    el.setAttribute('aria-label', t('map.planned_n', { n: p.n }));
    const arrow = document.createElement('span');
    arrow.className = 'arrow';
    el.append(arrow);
    p.marker = new this.ml.Marker({ element: el, draggable: true }).setLngLat([p.lon, p.lat]).addTo(this.map);
    p.marker.on('dragend', () => {
      const ll = p.marker.getLngLat();
      p.lon = ll.lng;
      p.lat = ll.lat;
      this.renderPlan();
      this.askWhatIf();
    });
    this.planned.push(p);
    this.orient(p);
    this.renderPlan();
    this.askWhatIf();
  }

  orient(p) { p.marker.getElement().querySelector('.arrow').style.transform = `rotate(${p.heading}deg)`; }

  removePlanned(n) {
    const i = this.planned.findIndex((p) => p.n === n);
    if (i < 0) return;
    this.planned[i].marker.remove();
    this.planned.splice(i, 1);
    this.renderPlan();
    this.askWhatIf();
  }

  clearPlanned() {
    for (const p of this.planned) p.marker.remove();
    this.planned = [];
    this.whatif = null;
    clearTimeout(this.whatifTimer);
    this.map?.getSource('whatif')?.setData(EMPTY());
    this.renderPlan();
  }

  // editPlanned takes an edited field of a planned camera; the list is
  // not redrawn, so focus stays in the field being typed in.
  editPlanned(input) {
    const p = this.planned.find((x) => x.n === Number(input.dataset.n));
    const key = input.dataset.field;
    if (!p || !(key in LIMITS)) return;
    p[key] = clamp(key, input.value);
    this.orient(p);
    this.askWhatIf();
  }

  askWhatIf() {
    clearTimeout(this.whatifTimer);
    this.whatifTimer = setTimeout(() => this.runWhatIf(), WHATIF_DEBOUNCE_MS);
  }

  async runWhatIf() {
    const cams = this.planned.map((p) => ({ lat: p.lat, lon: p.lon, heading: p.heading, fov: p.fov, range_m: p.range_m }));
    const seq = ++this.whatifSeq;
    if (!cams.length) { this.whatif = null; this.map.getSource('whatif').setData(EMPTY()); this.renderResult(); return; }
    this.whatif = { running: true };
    this.renderResult();
    let r;
    try {
      r = await api.whatIf(cams);
    } catch (err) {
      r = { error: errorText(err) };
    }
    if (seq !== this.whatifSeq || !this.planning) return;
    this.whatif = r;
    this.map.getSource('whatif').setData(r.cells || EMPTY());
    this.renderResult();
  }

  // Drawing.

  renderPlan() {
    const root = this.root.querySelector('#map-whatif');
    if (!this.planning) { root.replaceChildren(); return; }
    const field = (p, key) => html`<label><span>${t(`map.f_${key}`)}</span><input type="number" inputmode="numeric" data-n="${p.n}" data-field="${key}" value="${p[key]}" min="${LIMITS[key][0]}" max="${LIMITS[key][1]}" step="1"></label>`;
    root.innerHTML = html`
      <h3 id="map-whatif-h">${t('map.whatif')}</h3>
      <p class="hint">${t('map.whatif_hint')}</p>
      <ol id="map-planned">${this.planned.map((p) => html`<li data-planned-row="${p.n}">
        <span class="m-pn">${t('map.planned_n', { n: p.n })} <span class="muted">${num(p.lat, 5)}, ${num(p.lon, 5)}</span></span>
        ${field(p, 'heading')}${field(p, 'fov')}${field(p, 'range_m')}
        <button type="button" data-plan-action="remove" data-n="${p.n}" aria-label="${t('map.remove_planned', { n: p.n })}" title="${t('map.remove_planned', { n: p.n })}">×</button>
      </li>`)}</ol>
      <div class="m-btns">
        <button type="button" data-plan-action="centre" id="map-plan-centre">${t('map.add_centre')}</button>
        <button type="button" data-plan-action="clear" id="map-plan-clear"${this.planned.length ? '' : html` disabled`}>${t('map.clear_planned')}</button>
        <button type="button" data-plan-action="done" id="map-plan-done">${t('map.done')}</button>
      </div>
      <div id="map-whatif-result" role="status" aria-live="polite"></div>`;
    this.renderResult();
  }

  renderResult() {
    const el = this.root.querySelector('#map-whatif-result');
    if (!el) return;
    const r = this.whatif;
    el.dataset.state = !r ? 'none' : r.running ? 'running' : r.error ? 'error' : 'done';
    if (!r) { el.replaceChildren(); return; }
    if (r.running) { el.innerHTML = html`<p class="muted">${t('map.whatif_running')}</p>`; return; }
    if (r.error) { el.innerHTML = html`<p class="err">${t('map.whatif_error', { error: r.error })}</p>`; return; }
    const row = (name, x) => html`<tr><th scope="row">${name}</th>
      <td class="num">${pctText(x.before.current_pct)} → <b>${pctText(x.after.current_pct)}</b></td>
      <td class="num">${pctText(x.before.weighted_current_pct)} → <b>${pctText(x.after.weighted_current_pct)}</b></td></tr>`;
    const areas = r.areas.filter((a) => (a.after.current_cells ?? 0) > (a.before.current_cells ?? 0));
    el.innerHTML = html`
      <p id="map-whatif-added"><b>${t('map.added', { cells: num(r.addedCells), ha: num(r.addedHa, 2) })}</b></p>
      <table class="grid m-whatif" id="map-whatif-districts">
        <thead><tr><th scope="col">${t('col.district')}</th><th scope="col" class="num">${t('map.col_current')}</th><th scope="col" class="num">${t('map.col_weighted')}</th></tr></thead>
        <tbody>${r.districts.map((d) => row(d.district, d))}${areas.map((a) => row(html`${a.name} <span class="muted">${label('area_kind', a.kind)}</span>`, a))}</tbody>
      </table>`;
  }

  renderDistricts() {
    const cov = new Map((this.coverage?.districts || []).map((d) => [d.district, d]));
    const names = new Set([...this.districtBoxes.keys(), ...this.store.districtNames()]);
    const rows = [...names].map((name) => {
      const c = this.store.districts.get(name);
      return { name, r: c && c.devices ? Store.rates(c).online : NaN, cov: cov.get(name) };
    }).sort((a, b) => (Number.isNaN(a.r) ? 2 : a.r) - (Number.isNaN(b.r) ? 2 : b.r) || a.name.localeCompare(b.name));
    const list = this.root.querySelector('#map-districts');
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.district : null;
    list.innerHTML = html`${rows.map((x) => html`<li><button type="button" data-district="${x.name}" class="${rateClass(x.r)}"${this.districtBoxes.has(x.name) ? '' : html` disabled`}
      title="${t('map.district_title', { district: this.store.districtLabel(x.name), online: pct(x.r), coverage: pctText(x.cov?.current_pct), weighted: pctText(x.cov?.weighted_current_pct) })}">
      <span class="dn">${this.store.districtLabel(x.name)}</span><span class="dr" data-rate="online">${pct(x.r)}</span><span class="dc" data-rate="coverage">${pctText(x.cov?.current_pct)}</span></button></li>`)}`;
    if (focused != null) list.querySelector(`[data-district="${CSS.escape(focused)}"]`)?.focus();
  }

  renderLegend() {
    const c = this.colours || cssColours();
    const sw = (colour, cls = '') => html`<span class="sw${cls}" style="--sw:${colour}" aria-hidden="true"></span>`;
    this.root.querySelector('#map-legend').innerHTML = html`
      <ul class="m-legend">
        ${STATUSES.map((s) => html`<li>${sw(c[s])}${label('status', s)}</li>`)}
        <li>${sw(c.offline, ' ring')}${t('map.legend_alarm')}</li>
        <li>${sw(c.online, ' round')}${t('map.legend_cluster')}</li>
      </ul>
      ${this.kinds.length ? html`<h4>${t('map.legend_areas')}</h4><ul class="m-legend">${this.kinds.map((k, i) => html`<li>${sw(KIND_COLOURS[i], ' dash')}${label('area_kind', k)}</li>`)}</ul>` : ''}
      <h4>${t('map.legend_cells')}</h4>
      <ul class="m-legend">${[['covered', c.online], ['fragile', c.degraded], ['lost', c.offline], ['gap', c.muted]].map(([s, col]) => html`<li>${sw(col)}${t(`map.cell_${s}`)}</li>`)}
        <li>${sw(c.accent)}${t('map.legend_whatif')}</li></ul>
      <p class="hint">${t('map.legend_shading')}</p>`;
  }

  retranslate() {
    this.fillSelects();
    this.renderLegend();
    this.renderPlan();
    this.renderNote();
    if (this.results && !this.root.querySelector('#map-results').hidden) this.search(this.root.querySelector('#map-search').value);
    this.dirtySide = true;
    this.lastSide = 0;
    this.schedule();
  }

  // Test hooks (window.citywatchMap).

  // wedgeColour is the colour the map draws camera id's field of view in,
  // read back from the map's own source, or null while it is not loaded.
  wedgeColour(id) {
    if (!this.map?.getSource('wedges')) return null;
    const f = this.map.querySourceFeatures('wedges', { filter: ['==', ['get', 'id'], id] })[0];
    if (!f) return null;
    return this.colours[f.properties.status] || this.colours.unknown;
  }

  hook() {
    const self = this;
    return Object.freeze({
      get map() { return self.map; },
      get ready() { return self.ready; },
      get whatif() { return self.whatif; },
      wedgeColour: (id) => self.wedgeColour(id),
    });
  }
}
