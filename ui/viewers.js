// Who is watching what now: the hub's live video sessions in progress,
// for supervisors (live.monitor) — the account or token, how it came in,
// the camera, its agent, the viewer's address, since when and how much
// video it has had — and a way to end one. Refreshed while the dialog is
// open.

import { t, label, num, ago, dateTime, errorText } from './i18n.js';
import { liveSessions, endLiveSession } from './api.js';
import { html } from './html.js';
import { Grid } from './grid.js';
import { confirmDialog } from './dialog.js';

const REFRESH_MS = 5000;

function bytes(n) {
  const v = Number(n) || 0;
  if (v < 1e6) return `${num(v / 1e3, 0)} kB`;
  if (v < 1e9) return `${num(v / 1e6, 1)} MB`;
  return `${num(v / 1e9, 2)} GB`;
}

export function showViewers() {
  document.getElementById('live-sessions')?.remove();
  const d = document.createElement('dialog');
  d.id = 'live-sessions';
  d.className = 'dlg wide';
  d.setAttribute('aria-labelledby', 'live-sessions-h');
  d.innerHTML = html`<header class="dlg-head"><h2 id="live-sessions-h">${t('viewers.heading')}</h2><span class="grow"></span>
    <span class="muted" id="live-sessions-count" role="status"></span>
    <button type="button" class="close" data-close aria-label="${t('dialog.close')}" title="${t('dialog.close')} (Esc)">×</button></header>
    <p class="err" role="alert" hidden></p>
    <div class="v-scroll"><table id="live-sessions-table"></table></div>`;
  document.body.append(d);
  const grid = new Grid(d.querySelector('table'), {
    sort: { key: 'start', dir: 1 },
    empty: 'viewers.none',
    row: (s) => html`data-key="${s.id}" data-session="${s.id}" data-camera="${s.camera}"`,
    columns: [
      { key: 'who', title: 'viewers.col_who', sort: (s) => s.who, cell: (s) => html`<span class="mono">${s.who}</span>`, className: 'first' },
      { key: 'via', title: 'viewers.col_via', sort: (s) => s.via, cell: (s) => label('via', s.via) },
      { key: 'camera', title: 'viewers.col_camera', sort: (s) => s.camera, cell: (s) => html`<span class="mono">${s.camera}</span>` },
      { key: 'agent', title: 'viewers.col_agent', sort: (s) => s.agent, cell: (s) => s.agent || '–' },
      { key: 'remote', title: 'viewers.col_remote', sort: (s) => s.remote, cell: (s) => s.remote || '–' },
      { key: 'start', title: 'viewers.col_since', sort: (s) => s._start, cell: (s) => html`<span title="${dateTime(s._start)}">${ago(s._start)}</span>` },
      { key: 'bytes', title: 'viewers.col_bytes', sort: (s) => Number(s.bytes) || 0, cell: (s) => bytes(s.bytes), className: 'num' },
      { key: 'act', title: 'admin.col_actions', cell: () => html`<button type="button" class="danger" data-act="end">${t('viewers.end')}</button>` },
    ],
  });
  let sessions = [];
  let timer = 0;
  const load = async () => {
    const err = d.querySelector('.err');
    try {
      const list = await liveSessions();
      sessions = list;
      grid.set(list);
      d.querySelector('#live-sessions-count').textContent = t('viewers.count', { n: num(list.length) });
      err.hidden = true;
    } catch (e) {
      err.textContent = errorText(e);
      err.hidden = false;
    }
    if (d.open) timer = setTimeout(load, REFRESH_MS);
  };
  d.querySelector('[data-close]').addEventListener('click', () => d.close());
  d.querySelector('table').addEventListener('click', async (e) => {
    const tr = e.target.closest('button[data-act="end"]')?.closest('tr');
    const s = tr && sessions.find((x) => x.id === tr.dataset.session);
    if (!s) return;
    if (!await confirmDialog({ title: t('viewers.end_title'), text: t('viewers.end_confirm', { who: s.who, camera: s.camera }), confirm: t('viewers.end') })) return;
    try {
      await endLiveSession(s.camera, s.id);
    } catch (err) {
      const box = d.querySelector('.err');
      box.textContent = errorText(err);
      box.hidden = false;
    }
    clearTimeout(timer);
    load();
  });
  d.addEventListener('keydown', (e) => e.stopPropagation()); // its keys are not the console's
  d.addEventListener('close', () => { clearTimeout(timer); d.remove(); });
  d.showModal();
  load();
}
