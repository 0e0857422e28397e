// The console's copy of the fleet: devices and agents by id, and the counts
// the summary shows. Counts are kept up to date change by change, so a change
// costs O(1) and never a recount of 10,000 devices.

import * as api from './api.js';
import { named } from './i18n.js';

// STATUSES in order of severity; the quick filter keys 1–5 follow it.
export const STATUSES = ['offline', 'unreachable', 'degraded', 'unknown', 'online'];
const RANK = Object.fromEntries(STATUSES.map((s, i) => [s, i]));
export const rank = (s) => RANK[s] ?? STATUSES.length;

// Severity of a status for colours in the feed.
export function severity(status) {
  if (status === 'offline' || status === 'unreachable') return 'bad';
  if (status === 'degraded' || status === 'unknown') return 'warn';
  if (status === 'online') return 'ok';
  return 'info';
}

// motion says whether a device's triggered is motion its own detection saw
// (a camera's; wire reason motion) rather than an alarm contact (a
// sensor's): news for the operator, not an alarm that wants a tone.
export const motion = (d) => d.kind === 'camera';

function emptyCounts() { return { devices: 0, by: {} }; }

function bump(c, status, n) {
  c.devices += n;
  c.by[status] = (c.by[status] || 0) + n;
}

export class Store {
  constructor() {
    this.devices = new Map();
    this.byAgent = new Map();  // agent id -> Set of its devices' ids
    this.agents = new Map();
    this.total = 0;           // devices the hub has, which may exceed what it listed
    this.counts = emptyCounts();
    this.districts = new Map(); // district -> counts
    this.serverAgents = null; // agent counts from the summary, until /api/agents answers
    this.at = 0;              // time of the latest data
    this.loaded = false;
    // Names of districts and sites in other languages, from the devices'
    // and agents' district_names and site_names: the console shows them,
    // filters still key on the district string and the site id.
    this.districtL10n = new Map();
    this.siteNames = new Map();
  }

  // learnNames keeps the names in other languages of x's site and district
  // (x a device or an agent).
  learnNames(x) {
    if (x.district_names && x.district) this.districtL10n.set(x.district, x.district_names);
    if (x.site_names && x.site) this.siteNames.set(x.site, x.site_names);
  }

  // districtLabel is a district's name in the current language.
  districtLabel(district) { return named(this.districtL10n.get(district), district); }

  // siteLabel is a site's name in the current language; fallback is its
  // name (or id) when it has none there.
  siteLabel(site, fallback = site) { return named(this.siteNames.get(site), fallback); }

  // complete reports whether the device list is the whole fleet, so counts
  // can be computed from it rather than taken from the hub's summary.
  get complete() { return this.loaded && this.devices.size >= this.total; }

  // load replaces everything with a fresh snapshot.
  load({ devices, total }, summary, agents) {
    this.devices = new Map(devices.map((d) => [d.id, d]));
    this.byAgent = new Map();
    for (const d of this.devices.values()) this.index(d, true);
    this.total = total;
    this.loaded = true;
    if (agents) this.agents = new Map(agents.map((a) => [a.id, a]));
    for (const a of this.agents.values()) this.learnNames(a);
    if (this.complete || !summary) this.recount();
    else this.setSummary(summary);
    if (summary) {
      this.serverAgents = summary.agents || null;
      this.at = api.time(summary.at) || Date.now();
    }
  }

  // setSummary takes counts from the hub (before the device list arrives,
  // or when the list is partial).
  setSummary(s) {
    this.counts = { devices: s.devices || 0, by: { ...(s.by_status || {}) } };
    this.districts = new Map((s.districts || []).map((d) => [d.district, { devices: d.devices || 0, by: { ...(d.by_status || {}) } }]));
    this.serverAgents = s.agents || null;
    this.at = api.time(s.at) || Date.now();
  }

  recount() {
    this.counts = emptyCounts();
    this.districts = new Map();
    for (const d of this.devices.values()) this.count(d, 1);
  }

  count(d, n) {
    bump(this.counts, d.status, n);
    let c = this.districts.get(d.district);
    if (!c) this.districts.set(d.district, (c = emptyCounts()));
    bump(c, d.status, n);
  }

  // index adds d to (or, with in false, removes it from) its agent's devices.
  index(d, into) {
    let ids = this.byAgent.get(d.agent);
    if (into) {
      if (!ids) this.byAgent.set(d.agent, (ids = new Set()));
      ids.add(d.id);
      this.learnNames(d);
    } else if (ids) {
      ids.delete(d.id);
      if (!ids.size) this.byAgent.delete(d.agent);
    }
  }

  // devicesOf lists the devices of an agent this console has.
  devicesOf(agent) {
    return [...(this.byAgent.get(agent) || [])].map((id) => this.devices.get(id));
  }

  // putDevice stores a new snapshot of a device and returns the previous one.
  putDevice(raw) {
    const d = api.device({ ...raw });
    const prev = this.devices.get(d.id);
    if (prev) {
      this.count(prev, -1);
      this.index(prev, false);
    } else this.total++;
    this.count(d, 1);
    this.index(d, true);
    this.devices.set(d.id, d);
    return prev;
  }

  // removeDevice forgets a device the hub no longer lists.
  removeDevice(id) {
    const prev = this.devices.get(id);
    if (!prev) return;
    this.count(prev, -1);
    this.index(prev, false);
    this.devices.delete(id);
    this.total = Math.max(0, this.total - 1);
  }

  // putAgent keeps an agent's record; with merge (an agent change, which
  // carries only the agent's place and status), over the one it has.
  putAgent(raw, merge = false) {
    const prev = this.agents.get(raw.id);
    const a = api.agent(merge && prev ? { ...prev, ...raw } : { ...raw });
    this.agents.set(a.id, a);
    this.learnNames(a);
    return prev;
  }

  // removeAgent forgets an agent that left the fleet.
  removeAgent(id) { this.agents.delete(id); }

  agentCounts() {
    if (this.agents.size === 0) return this.serverAgents || {};
    const c = {};
    for (const a of this.agents.values()) c[a.status] = (c[a.status] || 0) + 1;
    return c;
  }

  // rates: 在线率 counts degraded devices as online, 完好率 does not — the
  // same definitions as the hub's Summary.
  static rates(c) {
    const on = c.by.online || 0;
    const deg = c.by.degraded || 0;
    return {
      online: c.devices ? (on + deg) / c.devices : NaN,
      intact: c.devices ? on / c.devices : NaN,
    };
  }

  // sites lists {id, name, district} of every site, sorted by name, named
  // in the current language.
  sites(district) {
    const m = new Map();
    for (const d of this.devices.values()) {
      if (district && d.district !== district) continue;
      if (!m.has(d.site)) m.set(d.site, { id: d.site, name: named(d.site_names, d.site_name || d.site), district: d.district });
    }
    return [...m.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  districtNames() {
    return [...this.districts.keys()].filter(Boolean).sort((a, b) => a.localeCompare(b));
  }

  sensorKinds() {
    const s = new Set();
    for (const d of this.devices.values()) if (d.sensor_kind) s.add(d.sensor_kind);
    return [...s].sort();
  }
}
