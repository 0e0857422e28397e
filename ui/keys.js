// Keyboard shortcuts. Operators keep their hands on the keyboard for a
// 12-hour shift; every action in the table has a key. The help dialog lists
// them (SHORTCUTS feeds it, so the two cannot drift apart), showing only
// what the signed-in role may do.

import { STATUSES } from './store.js';
import { ALARM_SHORTCUTS } from './alarms.js';

// ADMIN_PERMS: any of them opens the administration view.
export const ADMIN_PERMS = ['account.manage', 'token.manage', 'agent.manage'];
// WORK_PERMS: any of them (with status.read) opens the work orders.
export const WORK_PERMS = ['work.manage', 'work.dispatch'];

// SHORTCUTS: keys, their words, and the permission (or any of a list)
// without which they do nothing.
export const SHORTCUTS = [
  ['d', 'keys.view_console', 'status.read'],
  ['p', 'keys.view_map', 'status.read'],
  ['o', 'keys.view_work', WORK_PERMS],
  ['r', 'keys.view_reports', 'report.read'],
  ['h', 'keys.view_handover', 'shift.handover'],
  ['i', 'keys.view_admin', ADMIN_PERMS],
  ['t', 'keys.view_audit', 'audit.read'],
  ['/', 'keys.search'],
  ['j ↓', 'keys.down', 'status.read'],
  ['k ↑', 'keys.up', 'status.read'],
  ['PgDn PgUp', 'keys.page', 'status.read'],
  ['Home End', 'keys.ends', 'status.read'],
  ['Enter', 'keys.open', 'status.read'],
  ['v', 'keys.live', 'live.view'],
  ['w', 'keys.wall', 'live.view'],
  ['Esc', 'keys.close'],
  ['1–5', 'keys.status', 'status.read'],
  ['0', 'keys.clear_status', 'status.read'],
  ['m', 'keys.sound', 'status.read'],
  ['?', 'keys.help'],
  ...ALARM_SHORTCUTS,
];

// VIEW_KEYS switch views from anywhere.
const VIEW_KEYS = { d: 'console', p: 'map', o: 'work', r: 'reports', h: 'handover', i: 'admin', t: 'audit' };

// bind wires the shortcuts to app, which provides view, setView,
// focusSearch, move, moveTo, openSelected, openLiveSelected, toggleWall,
// escape, toggleStatus, setFilter, toggleSound, help. Keys of the device
// table act only while the monitoring view is on screen.
export function bind(app) {
  // A key that moved focus into the search box must not also type itself
  // there. Browsers drop the keypress after a cancelled keydown, but
  // synthetic input (DevTools protocol, some remote desktops) sends it
  // separately, so it is swallowed here too.
  let swallow = '';
  document.addEventListener('keypress', (e) => {
    if (swallow && e.key === swallow) e.preventDefault();
    swallow = '';
  }, true);
  document.addEventListener('keyup', () => { swallow = ''; }, true);

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (document.querySelector('dialog[open]')) return; // a dialog handles its own keys
    const el = e.target;
    const typing = el instanceof Element && el.matches('input, select, textarea, [contenteditable]');
    const console = app.view === 'console';
    if (e.key === 'Escape') {
      if (typing) { el.blur(); if (console) app.focusTable(); } else if (console || app.view === 'map' || app.view === 'work') app.escape();
      e.preventDefault();
      return;
    }
    if (typing) return;
    const onButton = el instanceof Element && el.matches('button, a[href], summary');
    let handled = true;
    if (VIEW_KEYS[e.key]) handled = app.setView(VIEW_KEYS[e.key]);
    else if (e.key === '/') { app.focusSearch(); swallow = '/'; }
    else if (e.key === '?') app.help();
    else if (!console) handled = false;
    else {
      switch (e.key) {
        case 'j': case 'ArrowDown': app.move(1); break;
        case 'k': case 'ArrowUp': app.move(-1); break;
        case 'PageDown': app.move(app.table.pageSize()); break;
        case 'PageUp': app.move(-app.table.pageSize()); break;
        case 'Home': app.moveTo(0); break;
        case 'End': app.moveTo(-1); break;
        case 'Enter':
          if (onButton) handled = false; // let the focused button act
          else app.openSelected();
          break;
        case 'v': app.openLiveSelected(); break;
        case 'w': app.toggleWall(); break;
        case '0': app.setFilter({ status: '' }); break;
        case 'm': app.toggleSound(); break;
        default:
          if (e.key >= '1' && e.key <= String(STATUSES.length)) app.toggleStatus(STATUSES[Number(e.key) - 1]);
          else handled = false;
      }
    }
    if (handled) e.preventDefault();
  });
}
