// The live event feed: newest on top, capped, one line per fact. An agent
// going offline is one line however many devices it takes with it.

import { t, label, clock, dateTime, num, named } from './i18n.js';
import { severity, motion } from './store.js';

const CAP = 300;

// entry turns a hub Change into a feed entry, or null when there is nothing
// to say (e.g. a repeat).
export function entry(c) {
  const at = Date.parse(c.at) || Date.now();
  switch (c.kind) {
    case 'device': {
      if (!c.device || c.from === c.to) return null;
      return { at, seq: c.seq, kind: 'device', status: c.to, sev: severity(c.to), target: c.device.id, change: c };
    }
    case 'agent': {
      if (!c.agent) return null;
      const to = c.to || c.agent.status;
      return { at, seq: c.seq, kind: 'agent', status: to === 'offline' ? 'unreachable' : to, sev: severity(to), site: c.agent.site || '', change: c };
    }
    case 'late': {
      // History the agent kept through an outage: told where it happened
      // in time, never mistaken for the device's present state.
      if (!c.device) return null;
      return { at, seq: c.seq, kind: 'late', status: c.to, sev: 'info', target: c.device.id, change: c };
    }
    case 'trigger': {
      if (!c.device) return null;
      const sev = c.device.triggered && !motion(c.device) ? 'alarm' : 'info';
      return { at, seq: c.seq, kind: 'trigger', status: c.device.status, sev, target: c.device.id, change: c };
    }
    case 'inventory': {
      const agentID = c.agent?.id || c.affected?.[0]?.agent || '';
      // A retired agent left the fleet: worth an operator's eye.
      return { at, seq: c.seq, kind: 'inventory', status: '', sev: c.retired ? 'warn' : 'info', site: c.retired ? '' : c.agent?.site || c.affected?.[0]?.site || '', agentID, change: c };
    }
    default:
      return null;
  }
}

// system makes a feed entry about the console itself (connection, resync).
export function system(key, params, sev = 'info') {
  return { at: Date.now(), kind: 'system', status: '', sev, key, params };
}

function describe(e) {
  if (e.kind === 'system') return { who: '', msg: t(e.key, e.params) };
  const c = e.change;
  if (e.kind === 'inventory') {
    if (c.retired) return { who: '', msg: t('feed.retired', { agent: e.agentID, m: num(c.removed?.length || 0) }) };
    return { who: '', msg: t('feed.inventory', { agent: e.agentID, n: num(c.affected?.length || 0), m: num(c.removed?.length || 0) }) };
  }
  if (e.kind === 'agent') {
    const a = c.agent;
    const to = c.to || a.status;
    const p = { agent: a.id, site: named(a.site_names, a.site_name || a.site), n: num(c.affected?.length || 0), to: label('status', to) };
    const key = to === 'offline' ? 'feed.agent_offline' : to === 'online' ? 'feed.agent_online' : 'feed.agent_status';
    const why = to === 'offline' ? label('agent_reason', c.reason || a.reason) : '';
    return { who: '', msg: why ? `${t(key, p)} · ${why}` : t(key, p) };
  }
  const d = c.device;
  const where = [named(d.names, d.name), named(d.site_names, d.site_name || d.site)].filter(Boolean).join(' @ ');
  if (e.kind === 'trigger' && motion(d)) return { who: d.id, msg: t(d.triggered ? 'feed.motion' : 'feed.motion_ended', { where }) };
  if (e.kind === 'trigger') {
    return { who: d.id, msg: t(d.triggered ? 'feed.triggered' : 'feed.trigger_cleared', { where, sensor: label('sensor', d.sensor_kind) || label('kind', d.kind) }) };
  }
  const reason = c.reason || d.reason;
  if (e.kind === 'late') {
    let msg = t('feed.late', { where, from: label('status', c.from) || '–', to: label('status', c.to), when: dateTime(Date.parse(c.happened)) });
    if (c.to !== 'online' && reason) msg += ` · ${label('reason', reason)}`;
    return { who: d.id, msg };
  }
  let msg = t('feed.device', { where, from: label('status', c.from) || '–', to: label('status', c.to) });
  if (c.to !== 'online' && reason) msg += ` · ${label('reason', reason)}`;
  return { who: d.id, msg };
}

export class Feed {
  // onDevice(id) selects a device, onSite(site) filters by a site, when a
  // line is chosen.
  constructor(list, { onDevice, onSite }) {
    this.list = list;
    list.addEventListener('click', (e) => {
      const b = e.target.closest('button');
      if (b?.dataset.target) onDevice(b.dataset.target);
      else if (b?.dataset.site) onSite(b.dataset.site);
    });
  }

  // add shows entries (oldest first) on top of the feed.
  add(entries) {
    if (!entries.length) return;
    const frag = document.createDocumentFragment();
    for (let i = entries.length - 1, n = 0; i >= 0 && n < CAP; i--, n++) frag.append(this.line(entries[i]));
    this.list.prepend(frag);
    while (this.list.childElementCount > CAP) this.list.lastElementChild.remove();
  }

  line(e) {
    const li = document.createElement('li');
    li._entry = e;
    li.className = `sev-${e.sev}`;
    li.dataset.kind = e.kind;
    li.dataset.sev = e.sev;
    if (e.seq != null) li.dataset.seq = e.seq;
    const time = document.createElement('time');
    time.dateTime = new Date(e.at).toISOString();
    time.textContent = clock(e.at);
    time.title = dateTime(e.at);
    const dot = document.createElement('span');
    dot.className = `dot s-${e.status || 'none'}`;
    dot.setAttribute('aria-hidden', 'true');
    const who = document.createElement(e.target ? 'button' : 'span');
    who.className = 'who';
    if (e.target) { who.type = 'button'; who.dataset.target = e.target; }
    // An agent line filters the table to its site, where the devices are.
    const msg = document.createElement(e.site ? 'button' : 'span');
    msg.className = 'msg';
    if (e.site) { msg.type = 'button'; msg.dataset.site = e.site; }
    // Who and what share one cell and wrap as one line of text, at spaces
    // and hyphens: a long device id never squeezes the words into pieces.
    const text = document.createElement('span');
    text.className = 'text';
    text.append(who, ' ', msg);
    li.append(time, dot, text);
    this.text(li);
    return li;
  }

  text(li) {
    const { who, msg } = describe(li._entry);
    const [w, m] = li.querySelectorAll('.who, .msg');
    w.textContent = who;
    m.textContent = msg;
    m.title = msg;
  }

  // retranslate redraws every line in the current language.
  retranslate() {
    for (const li of this.list.children) this.text(li);
  }
}
