// Desktop notifications for critical alarms while the console's tab is in
// the background (Notification API). The browser asks the operator once,
// after a click on the console's offer; an operator who says "not now" is
// not asked again on this browser.

const DISMISS_KEY = 'citywatch.notify';

export class DesktopAlerts {
  constructor() {
    this.api = window.Notification;
    let dismissed = null;
    try { dismissed = localStorage.getItem(DISMISS_KEY); } catch { /* ignore */ }
    this.dismissed = dismissed === 'no';
  }

  // offer: the console should offer to turn them on.
  get offer() { return !!this.api && this.api.permission === 'default' && !this.dismissed; }

  // request asks the browser for permission (call it from a click).
  async request() {
    if (!this.api) return false;
    try {
      return (await this.api.requestPermission()) === 'granted';
    } catch (err) {
      console.warn('notify:', err);
      return false;
    }
  }

  dismiss() {
    this.dismissed = true;
    try { localStorage.setItem(DISMISS_KEY, 'no'); } catch { /* ignore */ }
  }

  // show notifies when the page is hidden and the operator allowed it;
  // one notification per alarm (tag), which brings the console forward
  // and calls onClick when clicked. It reports whether it showed one.
  show(tag, title, body, onClick = () => {}) {
    if (!this.api || this.api.permission !== 'granted' || !document.hidden) return false;
    try {
      const n = new this.api(title, { body, tag, requireInteraction: true });
      n.onclick = () => { window.focus(); onClick(); n.close(); };
      return true;
    } catch (err) {
      console.warn('notify:', err);
      return false;
    }
  }
}
