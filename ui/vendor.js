// The vendored libraries (vendor/, see vendor/README.md), loaded on first
// use: the monitoring view never pays for a map or a chart it does not
// show. Everything comes from the hub's own origin, as its Content Security
// Policy demands: MapLibre starts its worker as a same-origin module worker
// (no blob: URL, no eval), and no font or tile is fetched from elsewhere.

const MAPLIBRE_CSS = './vendor/maplibre-gl/maplibre-gl.css';
const MAPLIBRE_WORKER = './vendor/maplibre-gl/maplibre-gl-worker.mjs';
const PMTILES_JS = './vendor/pmtiles/pmtiles.js';
const UPLOT_CSS = './vendor/uplot/uPlot.min.css';

const loading = new Map();

// once runs load the first time key is asked for and shares its promise;
// a failure is forgotten, so a later call tries again.
function once(key, load) {
  if (!loading.has(key)) loading.set(key, load().catch((err) => { loading.delete(key); throw err; }));
  return loading.get(key);
}

function resolved(rel) { return new URL(rel, import.meta.url).href; }

// attach adds a <link> or <script> element and resolves when it has loaded.
function attach(el) {
  return new Promise((resolve, reject) => {
    el.addEventListener('load', () => resolve(), { once: true });
    el.addEventListener('error', () => reject(new Error(`could not load ${el.href || el.src}`)), { once: true });
    document.head.append(el);
  });
}

function stylesheet(rel) {
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = resolved(rel);
  return attach(link);
}

// maplibre resolves to the maplibre-gl module, its stylesheet in place.
export function maplibre() {
  return once('maplibre', async () => {
    const [m] = await Promise.all([import('./vendor/maplibre-gl/maplibre-gl.mjs'), stylesheet(MAPLIBRE_CSS)]);
    m.setWorkerUrl(resolved(MAPLIBRE_WORKER));
    return m;
  });
}

// pmtiles resolves to the pmtiles library (an IIFE build that sets
// window.pmtiles), needed only when the hub serves a basemap.
export function pmtiles() {
  return once('pmtiles', async () => {
    const s = document.createElement('script');
    s.src = resolved(PMTILES_JS);
    await attach(s);
    if (!window.pmtiles) throw new Error('pmtiles did not load');
    return window.pmtiles;
  });
}

// uplot resolves to the uPlot constructor, its stylesheet in place.
export function uplot() {
  return once('uplot', async () => {
    const [m] = await Promise.all([import('./vendor/uplot/uPlot.esm.js'), stylesheet(UPLOT_CSS)]);
    return m.default;
  });
}
