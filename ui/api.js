// The hub's HTTP API and the shapes the console works with. Every request
// goes through request(), which adds the CSRF token to state-changing
// requests and handles the answers that concern the session in one place
// (401: signed out; 403 csrf: fetch a fresh token and retry once; 403
// restricted: finish signing in first). Every response passes through one
// small adapter here, so a change of shape on the hub side is a change in
// one function.

const CSRF_HEADER = 'X-CSRF-Token';
const SAFE_METHODS = new Set(['GET', 'HEAD']);

// ApiError is a refusal or failure: status (0 when the hub could not be
// reached), the hub's stable code ("forbidden", "password_policy"…), its
// message, and problems (password_policy).
export class ApiError extends Error {
  constructor(message, status = 0, code = '', problems = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems;
  }
}

let csrf = '';
let refreshing = null;
// What the app does when the session is gone (401) or must first change
// its password or enrol a second factor (403 restricted).
const session = { lost: () => {}, restricted: () => {}, refreshed: () => {} };

// onSession sets the handlers: lost(err) on a 401, restricted(err) on a 403
// restricted, refreshed(me) when a CSRF refresh read the account anew.
export function onSession(handlers) { Object.assign(session, handlers); }

function setCSRF(value) { csrf = value || ''; }

async function refusal(res) {
  let j = null;
  try { j = await res.json(); } catch { /* not JSON */ }
  const msg = (j && typeof j.error === 'string' && j.error) || `HTTP ${res.status}`;
  return new ApiError(msg, res.status, (j && typeof j.code === 'string' && j.code) || '', Array.isArray(j?.problems) ? j.problems.map(String) : []);
}

// request is fetch for the hub's API: init as fetch's, plus json (a value
// to send as the JSON body) and auth: false for the login request, whose
// 401 is an answer, not a lost session. It resolves to the Response when
// the status is 2xx and throws an ApiError otherwise.
export async function request(path, init = {}) {
  const { json, auth = true, retried = false, ...opts } = init;
  const method = (opts.method || 'GET').toUpperCase();
  const headers = { Accept: 'application/json', ...opts.headers };
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(json);
  }
  if (!SAFE_METHODS.has(method) && csrf) headers[CSRF_HEADER] = csrf;
  let res;
  try {
    res = await fetch(path, { ...opts, method, headers, credentials: 'same-origin' });
  } catch (err) {
    if (err.name === 'AbortError' || err.name === 'TimeoutError') throw err;
    throw new ApiError(err.message || String(err), 0, 'network');
  }
  if (res.ok) return res;
  const err = await refusal(res);
  if (auth && res.status === 401) session.lost(err);
  else if (auth && res.status === 403 && err.code === 'csrf' && !retried) {
    await refreshCSRF();
    return request(path, { ...init, retried: true });
  } else if (auth && res.status === 403 && err.code === 'restricted') session.restricted(err);
  throw err;
}

// refreshCSRF reads the account anew for a fresh token; concurrent callers
// share one request.
function refreshCSRF() {
  refreshing ??= me().then((m) => { session.refreshed(m); }).finally(() => { refreshing = null; });
  return refreshing;
}

async function body(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

async function getJSON(path, signal) {
  return body(await request(path, { signal }));
}

async function send(method, path, json) {
  return body(await request(path, { method, json }));
}

// time parses an RFC 3339 string to epoch milliseconds; Go's zero time and
// anything unparsable become 0 ("never").
export function time(s) {
  if (!s) return 0;
  const ms = Date.parse(s);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

// rfc3339 formats ms as the hub's time format, to the second.
export function rfc3339(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const seg = (s) => encodeURIComponent(s);

// Who is signed in.

// account adapts /api/auth/me: permissions as a Set, times in ms.
export function account(m) {
  const s = m.session || {};
  return {
    ...m,
    display_name: m.display_name || m.name,
    permissions: new Set(m.permissions || []),
    scope: m.scope || {},
    restricted: m.restricted || '',
    _passwordExpires: time(m.password_expires_at),
    session: { ...s, _created: time(s.created), _expires: time(s.expires), idle: Number(s.idle_timeout_s) || 0 },
  };
}

export async function me() {
  const m = account(await getJSON('/api/auth/me'));
  if (m.csrf) setCSRF(m.csrf);
  return m;
}

// login resolves to the account; a refusal (wrong password, code needed,
// locked) throws an ApiError with the hub's code.
export async function login({ username, password, totp, recovery }) {
  const req = { username, password };
  if (totp) req.totp = totp;
  if (recovery) req.recovery_code = recovery;
  const j = await body(await request('/api/auth/login', { method: 'POST', json: req, auth: false }));
  setCSRF(j.csrf || j.account?.csrf);
  return account({ ...j.account, csrf: j.csrf });
}

export const logout = () => send('POST', '/api/auth/logout');
export const logoutAll = () => send('POST', '/api/auth/logout-all');
export const changePassword = (current, next) => send('POST', '/api/auth/password', { current, new: next });
// totpSetup resolves to {secret, otpauth_url, qr_png}.
export const totpSetup = () => send('POST', '/api/auth/totp/setup');
const codes = (j) => (j?.recovery_codes || []).map(String);
export const totpConfirm = async (code) => codes(await send('POST', '/api/auth/totp/confirm', { code }));
export const renewRecoveryCodes = async (code) => codes(await send('POST', '/api/auth/recovery-codes', { code }));

// Administration: accounts, lockouts, API tokens, agent credentials.

function holder(a) {
  return { ...a, grants: a.grants || [], scope: a.scope || {} };
}

function adminAccount(a) {
  const x = holder(a);
  x.display_name ||= '';
  x._locked = time(a.locked_until);
  x._lastLogin = time(a.last_login_at);
  x._created = time(a.created_at);
  return x;
}

export async function accounts() {
  return ((await getJSON('/api/accounts')).accounts || []).map(adminAccount);
}

// The password the hub made for an account, shown once.
const initialPassword = (j) => j?.initial_password ?? j?.password ?? '';

// createAccount resolves to {account, password}; password is empty when
// the caller set one.
export async function createAccount(spec) {
  const j = await send('POST', '/api/accounts', spec);
  return { account: adminAccount(j.account || {}), password: initialPassword(j) };
}

export const updateAccount = (name, patch) => send('PATCH', `/api/accounts/${seg(name)}`, patch);
export const resetPassword = async (name) => initialPassword(await send('POST', `/api/accounts/${seg(name)}/password`, {}));
export const unlockAccount = (name) => send('POST', `/api/accounts/${seg(name)}/unlock`);
export const resetTOTP = (name) => send('POST', `/api/accounts/${seg(name)}/reset-totp`);
export const logoutAccount = (name) => send('POST', `/api/accounts/${seg(name)}/logout`);

// lockouts resolves to [{kind: "account"|"address", key, until, failures}]
// (times in ms) from either {accounts, addresses} or {lockouts: [{kind,
// key, …}]}.
export async function lockouts() {
  const j = await getJSON('/api/lockouts');
  const one = (kind, key, l) => ({ kind, key, failures: Number(l.failures) || 0, _until: time(l.until), _since: time(l.since) });
  return [
    ...(j.accounts || []).map((l) => one('account', l.name, l)),
    ...(j.addresses || []).map((l) => one('address', l.address, l)),
    ...(j.lockouts || []).map((l) => one(l.kind, l.key, l)),
  ];
}

export const clearAddressLockout = (addr) => send('DELETE', `/api/lockouts/addresses/${seg(addr)}`);

function token(x) {
  const k = holder(x);
  k._created = time(x.created_at);
  k._expires = time(x.expires_at);
  k._used = time(x.last_used_at);
  k._revoked = time(x.revoked_at);
  return k;
}

export async function tokens() {
  return ((await getJSON('/api/tokens')).tokens || []).map(token);
}

// createToken takes {name, role, grants, scope, ttl} (ttl a duration such
// as "720h") and resolves to {token, secret}.
export async function createToken(spec) {
  const j = await send('POST', '/api/tokens', spec);
  return { token: token(j.token || {}), secret: j.secret || '' };
}

export const revokeToken = (id) => send('DELETE', `/api/tokens/${seg(id)}`);

function agentCredential(x) {
  return { ...x, _created: time(x.created_at), _revoked: time(x.revoked_at) };
}

export async function agentCredentials() {
  return ((await getJSON('/api/agent-credentials')).agents || []).map(agentCredential);
}

// enrolAgent resolves to {agent, username, secret}; the agent's credential
// may come as its id or as the whole record.
export async function enrolAgent(agent) {
  const j = await send('POST', '/api/agent-credentials', { agent });
  const id = typeof j.agent === 'string' ? j.agent : j.agent?.agent || agent;
  return { agent: id, username: j.username || id, secret: j.secret || '' };
}

export const revokeAgent = (agent) => send('DELETE', `/api/agent-credentials/${seg(agent)}`);

// Audit trail.

// AUDIT_FILTERS are the trail's query parameters the console sets.
const AUDIT_FILTERS = ['from', 'to', 'actor', 'action', 'object', 'outcome', 'remote', 'q'];

function auditQuery(filter, extra = {}) {
  const p = new URLSearchParams();
  for (const k of AUDIT_FILTERS) if (filter[k]) p.set(k, filter[k]);
  for (const [k, v] of Object.entries(extra)) if (v) p.set(k, v);
  return p.toString();
}

// audit resolves to {records, next}: newest first, times in ms; next is
// the cursor for older records, 0 when there are none.
export async function audit(filter, before = 0, limit = 200, signal) {
  const j = await getJSON(`/api/audit?${auditQuery(filter, { before: before || '', limit })}`, signal);
  return { records: (j.records || []).map((r) => ({ ...r, _at: time(r.at) })), next: Number(j.next) || 0 };
}

// auditExportURL downloads the whole matching trail as csv or jsonl.
export function auditExportURL(filter, format) {
  return `/api/audit?${auditQuery(filter, { format })}`;
}

export const auditVerify = () => getJSON('/api/audit/verify');

// Live video.

// cameraLink resolves to {url (absolute), expires} for a WHEP player that
// is not the console.
export async function cameraLink(id, ttl) {
  const j = await send('POST', `/api/cameras/${seg(id)}/link`, { ttl });
  return { url: new URL(j.url, location.origin).href, expires: time(j.expires_at) };
}

export async function liveSessions() {
  const j = await getJSON('/api/live/sessions');
  return (j.sessions || []).map((s) => ({ ...s, _start: time(s.start) }));
}

// endLiveSession ends someone's live video session (live.monitor).
export const endLiveSession = (camera, id) => send('DELETE', `/api/cameras/${seg(camera)}/whep/${seg(id)}`);

// The fleet.

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
  // Every language's names, so a search finds a device by any of them
  // whatever the console's language.
  d._q = [d.id, d.name, d.site, d.site_name, d.district, d.agent, d.kind, d.sensor_kind, d.reason, d.detail,
    ...Object.values(d.names || {}), ...Object.values(d.site_names || {}), ...Object.values(d.district_names || {})]
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
  const j = await getJSON(`/api/devices/${seg(id)}?since=${seg(window)}`, signal);
  return adaptDetail(j);
}

// adaptDetail maps the detail response to
// {device, source, samples:[{at, status, metrics}], transitions:[{at, from, to, reason, detail}], assets:[{at, field, from, to}]}
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
  // assets: the unit's recorded replacements, upgrades and stream changes.
  const assets = (j.assets || []).map((a) => ({ at: time(a.at), field: a.field || '', from: a.from || '', to: a.to || '' }))
    .filter((a) => a.at).sort((a, b) => a.at - b.at);
  return { device: dev ? device(dev) : null, source: h.source || '', samples, transitions, assets, error, warning, hasHistory: !!(j.history || h.samples) };
}

// Alarms.

const ALARM_LIMIT = 1000;

// alarm adds the times in ms the console sorts and shows by.
export function alarm(a) {
  a._first = time(a.first_at);
  a._last = time(a.last_at);
  a._cleared = time(a.cleared_at);
  a._acked = time(a.acked_at);
  a._shelved = time(a.shelved_until);
  a.state ||= 'active_unack';
  return a;
}

export async function alarms(signal) {
  const j = await getJSON(`/api/alarms?limit=${ALARM_LIMIT}`, signal);
  return { alarms: (j.alarms || []).map(alarm), total: j.total ?? (j.alarms || []).length, counts: j.counts || null };
}

// alarmDetail resolves to {alarm, history:[…, _at], children:[Alarm]}.
export async function alarmDetail(id, signal) {
  const j = await getJSON(`/api/alarms/${seg(id)}`, signal);
  const history = (j.history || []).map((h) => ({ ...h, _at: time(h.at) }));
  return { alarm: j.alarm ? alarm(j.alarm) : null, history, children: (j.children || []).map(alarm) };
}

// alarmAct posts an action (ack, assign, shelve, unshelve, clear) with its
// body ({note, to, for}); the hub records who did it. Resolves to the
// alarm's new state, or null.
export async function alarmAct(id, action, req) {
  const j = await send('POST', `/api/alarms/${seg(id)}/${seg(action)}`, req);
  return j?.alarm ? alarm(j.alarm) : null;
}

// alarmActMany posts action on many alarms (req.ids) with one body.
// Resolves to one result per id, in order: {id, status, alarm, error}.
export async function alarmActMany(action, req) {
  const j = await send('POST', `/api/alarm-actions/${seg(action)}`, req);
  return (j?.results || []).map((r) => ({ ...r, alarm: r.alarm ? alarm(r.alarm) : null }));
}

// Work orders (docs/maintenance.md). The hub ranks them, keeps their
// deadlines and decides which actions a state allows; these adapters only
// add times in ms and give lists their defaults.

// workOrder adds _detected, _fixBy, _respondBy, _updated (ms) and
// defaults for the lists.
export function workOrder(o) {
  o.devices ||= [];
  o.breached ||= [];
  o._detected = time(o.detected_at);
  o._fixBy = time(o.fix_by);
  o._respondBy = time(o.respond_by);
  o._updated = time(o.updated);
  return o;
}

// workOrders resolves to {orders, total, at}: the hub's "fix first" order,
// each with its rank {score, why, fix_left_min, blind_cameras, …}; mine
// keeps the caller's (assigned to them, their crew, or nobody's yet in a
// district their crew covers). at is when the list was read (ms), for
// counting down rank.fix_left_min.
export async function workOrders({ mine = false } = {}, signal) {
  const j = (await getJSON(`/api/workorders${query({ mine: mine ? 'true' : '' })}`, signal)) || {};
  const orders = (j.orders || []).map((o) => ({ ...workOrder(o), rank: o.rank || {} }));
  return { orders, total: j.total ?? orders.length, at: Date.now() };
}

function workDetail(j) {
  return { order: workOrder(j?.order || {}), history: (j?.history || []).map((h) => ({ ...h, _at: time(h.at) })) };
}

// workOrderDetail resolves to {order, history} (history oldest first, as
// the hub keeps it).
export async function workOrderDetail(id, signal) {
  return workDetail(await getJSON(`/api/workorders/${seg(id)}`, signal));
}

// workAct posts a crew's action (accept, start, hold, resume, fix, note,
// reopen) with an optional note; resolves to the order afterwards. A
// refusal (409 not allowed in this state, 400 reason missing) throws.
export async function workAct(id, action, note = '') {
  return workDetail(await send('POST', `/api/workorders/${seg(id)}/${seg(action)}`, note ? { note } : {}));
}

// workProbe has the agents probe the order's devices now and resolves,
// within about 20 s, to {results: [{device, status, reason, detail,
// _probed, fresh}], order, history}.
export async function workProbe(id) {
  const j = await send('POST', `/api/workorders/${seg(id)}/probe`, {});
  const results = (j?.results || []).map((r) => ({ ...r, _probed: time(r.probed), fresh: r.fresh === true }));
  return { results, ...workDetail(j) };
}

// openWorkOrder opens an order by hand for devices of one site; resolves
// to {order, history}.
export async function openWorkOrder(devices, title, priority = 3) {
  return send('POST', '/api/workorders', { devices, title, priority });
}

// workSnapshot has the agents take the order's cameras' pictures, kept
// with it; resolves to [{device, photo, error}].
export async function workSnapshot(id) {
  const j = await send('POST', `/api/workorders/${seg(id)}/snapshot`, {});
  return j?.results || [];
}

// workPhoto adds a picture (a File or Blob, JPEG or PNG) to an order.
export async function workPhoto(id, file, note = '') {
  return body(await request(`/api/workorders/${seg(id)}/photos${query({ note })}`, {
    method: 'POST', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' },
  }));
}

// photoURL is where an order's photo is served.
export function photoURL(id, sha) {
  return `/api/workorders/${seg(id)}/photos/${seg(sha)}`;
}

// eventsURL is the websocket address on the page's own origin.
export function eventsURL() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/events`;
}

// Map, coverage and reports. The hub computes every figure and every
// geometry; these adapters only give the shapes defaults, so a field the
// hub leaves out shows as "–" rather than breaking a page.

// query builds a query string from params, leaving out empty values.
export function query(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

const finite = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

// bbox formats [[minLon, minLat], [maxLon, maxLat]] as the hub's bbox
// parameter.
export function bbox([[w, s], [e, n]]) {
  return [w, s, e, n].map((x) => x.toFixed(6)).join(',');
}

export function featureCollection(j) {
  return { type: 'FeatureCollection', features: Array.isArray(j?.features) ? j.features : [] };
}

// mapConfig resolves to {center: [lon, lat]|null, bounds: [[w, s], [e, n]]|null,
// cellSize, basemap, layers: {districts, areas, buildings}}.
export async function mapConfig(signal) {
  const j = (await getJSON('/api/map/config', signal)) || {};
  const c = j.center;
  const b = j.bounds;
  const okBounds = Array.isArray(b) && b.length === 2 && b.flat().length === 4 && b.flat().every((x) => finite(x) !== null);
  return {
    center: c && finite(c.lon) !== null && finite(c.lat) !== null ? [c.lon, c.lat] : null,
    bounds: okBounds ? b : null,
    cellSize: finite(j.cell_size_m) || 0,
    basemap: j.basemap === true,
    layers: { districts: !!j.layers?.districts, areas: !!j.layers?.areas, buildings: !!j.layers?.buildings },
  };
}

export const BASEMAP_URL = '/api/map/basemap';

// mapLayer fetches the districts, areas or buildings as GeoJSON.
export async function mapLayer(name, signal) {
  return featureCollection(await getJSON(`/api/map/${seg(name)}`, signal));
}

// wedges fetches the cameras' fields of view in box ([[w, s], [e, n]]).
export async function wedges(box, signal) {
  return featureCollection(await getJSON(`/api/map/wedges${query({ bbox: bbox(box) })}`, signal));
}

// coverage resolves to {at, cellSize, districts, areas} (percentages 0–100).
export async function coverage(signal) {
  const j = (await getJSON('/api/coverage', signal)) || {};
  return { at: time(j.at), cellSize: finite(j.cell_size_m) || 0, districts: j.districts || [], areas: j.areas || [] };
}

// coverageCells fetches the cells in box, of one state (covered, fragile,
// lost, gap) or all ('').
export async function coverageCells(box, state, signal) {
  return featureCollection(await getJSON(`/api/coverage/cells${query({ bbox: bbox(box), state })}`, signal));
}

// whatIf asks what planned cameras [{lat, lon, heading, fov, range_m}]
// would add: {addedCells, addedHa, districts: [{district, before, after}],
// areas: [{…, before, after}], cells: GeoJSON}.
export async function whatIf(cameras) {
  const j = (await send('POST', '/api/coverage/whatif', { cameras })) || {};
  const pair = (x) => ({ ...x, before: x.before || {}, after: x.after || {} });
  return {
    addedCells: finite(j.added_cells),
    addedHa: finite(j.added_ha),
    districts: (j.districts || []).map(pair),
    areas: (j.areas || []).map(pair),
    cells: featureCollection(j.cells),
  };
}

const LOSS = ['never_covered', 'outage', 'maintenance', 'unknown'];
const loss = (x) => ({ cell_hours: finite(x?.cell_hours), weighted: finite(x?.weighted), hectare_hours: finite(x?.hectare_hours) });

// nearestCameras resolves to up to n cameras [{id, name, status,
// distance_m, covers}] for a device (a sensor): those whose field of view
// covers it, nearest first, else simply the nearest. The hub answers with
// the coverage grid's own wedge test, within the caller's scope.
export async function nearestCameras(device, n = 4, signal) {
  const j = (await getJSON(`/api/coverage/nearest${query({ device, n })}`, signal)) || {};
  return (j.cameras || []).filter((c) => c && typeof c.id === 'string');
}

// ledgerPath is the coverage ledger's address for q {from, to, district,
// top}, and with table (districts, cameras, maintenance) its CSV download.
export function ledgerPath(q, table = '') {
  return `/api/coverage/ledger${query({ ...q, ...(table ? { format: 'csv', table } : {}) })}`;
}

// ledger resolves to the coverage ledger with every loss present.
export async function ledger(q, signal) {
  const j = (await getJSON(ledgerPath(q), signal)) || {};
  const losses = (x) => Object.fromEntries(LOSS.map((k) => [k, loss(x?.[k])]));
  const size = finite(j.cell_size_m);
  return {
    ...j,
    cellHa: (finite(j.cell_area_m2) ?? (size ? size * size : 0)) / 1e4,
    totals: losses(j.totals),
    districts: (j.districts || []).map((d) => ({ ...d, ...losses(d) })),
    flagged: j.flagged || [],
    cameras: j.cameras || [],
    maintenance: (j.maintenance || []).map((m) => ({ ...m, names: m.names || [], approved_by: m.approved_by || [] })),
    simulated: j.simulated === true,
  };
}

// reportPath is a report's address (availability, series) for q, and with
// csv its download.
export function reportPath(name, q, csv = false) {
  return `/api/reports/${seg(name)}${query({ ...q, ...(csv ? { format: 'csv' } : {}) })}`;
}

export async function availability(q, signal) {
  const j = (await getJSON(reportPath('availability', q), signal)) || {};
  return { ...j, rows: j.rows || [], total: j.total || null, simulated: j.simulated === true };
}

// repairs resolves to the repair figures {group, rows, total} of q {from,
// to, group}: MTTA, MTTR, MTBF, first-time fix, repeats, deadlines met,
// backlog.
export async function repairs(q, signal) {
  const j = (await getJSON(reportPath('maintenance', q), signal)) || {};
  return { ...j, rows: j.rows || [], total: j.total || null };
}

// series resolves to {timezone, days, series: [{district, online_rate,
// intact_rate}]}; the city's line has district "".
export async function series(q, signal) {
  const j = (await getJSON(reportPath('series', q), signal)) || {};
  const days = j.days || [];
  const fit = (a) => days.map((_, i) => finite(a?.[i]));
  return {
    ...j,
    days,
    series: (j.series || []).map((s) => ({ district: s.district || '', online_rate: fit(s.online_rate), intact_rate: fit(s.intact_rate) })),
  };
}

// Shift handover (hub/handover).

export const handoverReport = (q) => getJSON(`/api/handover/report${q && String(q) ? `?${q}` : ''}`);
export const handovers = async () => (await getJSON('/api/handovers')).handovers;
export const handover = (id) => getJSON(`/api/handovers/${seg(String(id))}`);
export const submitHandover = (h) => send('POST', '/api/handovers', h);
export const acceptHandover = (id, note) => send('POST', `/api/handovers/${seg(String(id))}/accept`, { note });
