// What the table shows: filters, search and sort, kept in the page URL so a
// view can be bookmarked or shared (…/?district=Xuhui&status=offline).

import { rank } from './store.js';

const KEYS = ['district', 'site', 'kind', 'status', 'q'];
export const PROBLEMS = 'problem'; // status filter: anything but online

export class Filters {
  constructor() {
    this.district = '';
    this.site = '';
    this.kind = '';   // camera | sensor | sensor:<sensor_kind>
    this.status = ''; // a status, or PROBLEMS
    this.q = '';
    this.sort = 'status';
    this.dir = 1;
    const p = new URLSearchParams(location.search);
    for (const k of KEYS) this[k] = p.get(k) || '';
    if (p.get('sort')) this.sort = p.get('sort');
    if (p.get('dir') === 'desc') this.dir = -1;
  }

  set(patch) {
    Object.assign(this, patch);
    // The alarm desk keeps its own filters in the same URL.
    const p = new URLSearchParams(location.search);
    for (const k of [...KEYS, 'sort', 'dir']) p.delete(k);
    for (const k of KEYS) if (this[k]) p.set(k, this[k]);
    if (this.sort !== 'status') p.set('sort', this.sort);
    if (this.dir < 0) p.set('dir', 'desc');
    const qs = p.toString();
    history.replaceState(null, '', qs ? `?${qs}` : location.pathname);
  }

  active() { return KEYS.some((k) => this[k]); }

  // matcher returns a predicate for the current filters; built once per
  // pass over the devices, not once per device.
  matcher() {
    const { district, site, kind, status } = this;
    const terms = this.q.toLowerCase().split(/\s+/).filter(Boolean);
    const [kindMain, sensorKind] = kind.split(':');
    return (d) => {
      if (district && d.district !== district) return false;
      if (site && d.site !== site) return false;
      if (kindMain && d.kind !== kindMain) return false;
      if (sensorKind && d.sensor_kind !== sensorKind) return false;
      if (status === PROBLEMS ? d.status === 'online' : status && d.status !== status) return false;
      for (const w of terms) if (!d._q.includes(w)) return false;
      return true;
    };
  }

  // sorted returns list in the current order. It sorts small {k, id, d}
  // records, keys computed once, rather than calling a comparator that reads
  // device fields: on 100,000 devices that is several times faster.
  sorted(list) {
    const key = this.key();
    const dir = this.dir;
    const recs = list.map((d) => ({ k: key(d), id: d._kid, d }));
    const byID = (x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
    recs.sort(typeof recs[0]?.k === 'number'
      ? (x, y) => dir * (x.k - y.k) || byID(x, y)
      : (x, y) => dir * (x.k < y.k ? -1 : x.k > y.k ? 1 : 0) || byID(x, y));
    return recs.map((r) => r.d);
  }

  key() {
    switch (this.sort) {
      case 'id': return (d) => d._kid;
      case 'name': return (d) => d._kname;
      case 'kind': return (d) => `${d.kind}\u0000${d.sensor_kind || ''}`;
      case 'site': return (d) => d._ksite;
      case 'district': return (d) => d.district || '';
      case 'reason': return (d) => d.reason || '';
      case 'since': return (d) => -d._since; // most recent first
      case 'last_seen': return (d) => -d._seen;
      // Worst status first, then the most recent change: what just broke is
      // on top. Times are ms below 4e12, so rank and time share one number.
      default: return (d) => rank(d.status) * 1e13 + (4e12 - d._since);
    }
  }
}
