// Keyboard shortcuts. Operators keep their hands on the keyboard for a
// 12-hour shift; every action in the table has a key. The help dialog lists
// them (SHORTCUTS feeds it, so the two cannot drift apart).

import { STATUSES } from './store.js';
import { ALARM_SHORTCUTS } from './alarms.js';

export const SHORTCUTS = [
  ['/', 'keys.search'],
  ['j ↓', 'keys.down'],
  ['k ↑', 'keys.up'],
  ['PgDn PgUp', 'keys.page'],
  ['Home End', 'keys.ends'],
  ['Enter', 'keys.open'],
  ['v', 'keys.live'],
  ['w', 'keys.wall'],
  ['Esc', 'keys.close'],
  ['1–5', 'keys.status'],
  ['0', 'keys.clear_status'],
  ['m', 'keys.sound'],
  ['?', 'keys.help'],
  ...ALARM_SHORTCUTS,
];

// bind wires the shortcuts to app, which provides focusSearch, move,
// moveTo, openSelected, openLiveSelected, toggleWall, escape, toggleStatus,
// setFilter, toggleSound, help.
export function bind(app, dialog) {
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
    if (dialog.open) return; // the dialog handles its own Esc
    const el = e.target;
    const typing = el instanceof Element && el.matches('input, select, textarea, [contenteditable]');
    if (e.key === 'Escape') {
      if (typing) { el.blur(); app.focusTable(); } else app.escape();
      e.preventDefault();
      return;
    }
    if (typing) return;
    const onButton = el instanceof Element && el.matches('button, a[href], summary');
    let handled = true;
    switch (e.key) {
      case '/': app.focusSearch(); swallow = '/'; break;
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
      case '?': app.help(); break;
      default:
        if (e.key >= '1' && e.key <= String(STATUSES.length)) app.toggleStatus(STATUSES[Number(e.key) - 1]);
        else handled = false;
    }
    if (handled) e.preventDefault();
  });
}
