// The hub's JSON API and the shapes the console works with. Every response
// passes through one small adapter here, so a change of shape on the hub side
// is a change in one function.

async function getJSON(path, signal) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, signal });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

// time parses an RFC 3339 string to epoch milliseconds; Go's zero time and
// anything unparsable become 0 ("never").
export function time(s) {
  if (!s) return 0;
  const ms = Date.parse(s);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

// natural is a sort key that orders digit runs by value (CAM-9 before
// CAM-10) under plain string comparison, which is several times faster than
// a collator when sorting 100,000 rows.
export function natural(s) {
  return String(s || '').toLowerCase().replace(/\d+/g, (n) => n.padStart(12, '0'));
}

// device returns d with derived fields the console sorts and searches by
// (prefixed with _ so they never clash with the hub's).
export function device(d) {
  d._since = time(d.since);
  d._seen = time(d.last_seen);
  d._probed = time(d.probed);
  d._kid = natural(d.id);
  d._kname = natural(d.name);
  d._ksite = natural(d.site_name || d.site);
  d._q = [d.id, d.name, d.site, d.site_name, d.district, d.agent, d.kind, d.sensor_kind, d.reason, d.detail]
    .filter(Boolean).join('\n').toLowerCase();
  return d;
}

export function agent(a) {
  a._since = time(a.since);
  a._seen = time(a.last_seen);
  return a;
}

export async function summary(signal) {
  return getJSON('/api/summary', signal);
}

// devices accepts {"devices":[...],"total":N} or a bare array.
export async function devices(signal) {
  const j = await getJSON('/api/devices', signal);
  const list = Array.isArray(j) ? j : (j.devices || []);
  const total = Array.isArray(j) ? list.length : (j.total ?? list.length);
  return { devices: list.map(device), total };
}

// agents accepts {"agents":[...]} or a bare array.
export async function agents(signal) {
  const j = await getJSON('/api/agents', signal);
  return (Array.isArray(j) ? j : (j.agents || [])).map(agent);
}

// detail fetches one device with its recent history over window (e.g. "1h").
export async function detail(id, window, signal) {
  const j = await getJSON(`/api/devices/${encodeURIComponent(id)}?since=${encodeURIComponent(window)}`, signal);
  return adaptDetail(j);
}

// adaptDetail maps the detail response to
// {device, source, samples:[{at, status, metrics}], transitions:[{at, from, to, reason, detail}]}
// with times in ms, oldest first. It accepts the history nested under
// "history" or at the top level, and a bare device without history.
export function adaptDetail(j) {
  const dev = j.device || (j.id ? j : null);
  const h = j.history || j;
  const samples = (h.samples || []).map((s) => ({
    at: time(s.at), status: s.status || '', metrics: s.metrics || {},
  })).filter((s) => s.at).sort((a, b) => a.at - b.at);
  const transitions = (h.transitions || []).map((x) => ({
    at: time(x.at), from: x.from || '', to: x.to || x.status || '', reason: x.reason || '', detail: x.detail || '',
  })).filter((x) => x.at).sort((a, b) => a.at - b.at);
  // history_error: the hub has the device but could not read its history;
  // warning: the history is incomplete.
  const error = j.history_error || '';
  const warning = h.warning || '';
  return { device: dev ? device(dev) : null, source: h.source || '', samples, transitions, error, warning, hasHistory: !!(j.history || h.samples) };
}

// eventsURL is the websocket address on the page's own origin.
export function eventsURL() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/events`;
}
