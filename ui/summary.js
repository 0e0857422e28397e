// The summary strip: devices by status (clickable quick filters), the city's
// online and intact rates, agents, and districts worst first.

import { t, label, num, pct, clock } from './i18n.js';
import { STATUSES, Store } from './store.js';
import { html } from './html.js';

// Below these a rate is shown as a problem; 98 % is the 雪亮工程 target.
export const WARN_RATE = 0.98;
export const BAD_RATE = 0.95;

export function rateClass(r) {
  if (Number.isNaN(r)) return '';
  return r < BAD_RATE ? 'r-bad' : r < WARN_RATE ? 'r-warn' : 'r-ok';
}

export class Summary {
  // onStatus(status) and onDistrict(name) toggle the table's filters.
  constructor(root, { onStatus, onDistrict }) {
    this.root = root;
    this.counters = root.querySelector('#counters');
    this.rates = root.querySelector('#rates');
    this.list = root.querySelector('#districts');
    this.counters.addEventListener('click', (e) => {
      const b = e.target.closest('[data-status-filter]');
      if (b) onStatus(b.dataset.statusFilter);
    });
    this.list.addEventListener('click', (e) => {
      const b = e.target.closest('[data-district]');
      if (b) onDistrict(b.dataset.district);
    });
    this.build();
  }

  build() {
    this.counters.replaceChildren();
    this.cells = {};
    STATUSES.forEach((s, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `counter s-${s}`;
      b.dataset.statusFilter = s;
      b.setAttribute('aria-pressed', 'false');
      b.innerHTML = `<span class="dot" aria-hidden="true"></span><span class="lbl"></span><span class="n" data-count="${s}" data-value="0">–</span><kbd aria-hidden="true">${i + 1}</kbd>`;
      this.counters.append(b);
      this.cells[s] = b;
    });
    const total = document.createElement('div');
    total.className = 'counter total';
    total.innerHTML = '<span class="lbl" data-i18n="summary.total"></span><span class="n" data-count="total" data-value="0">–</span>';
    this.counters.append(total);
  }

  render(store, filters) {
    const c = store.counts;
    for (const s of STATUSES) {
      const b = this.cells[s];
      const n = c.by[s] || 0;
      b.querySelector('.lbl').textContent = label('status', s);
      const el = b.querySelector('.n');
      el.textContent = num(n);
      el.dataset.value = n;
      b.setAttribute('aria-pressed', String(filters.status === s));
      b.title = t('summary.filter_hint', { status: label('status', s), key: STATUSES.indexOf(s) + 1 });
      b.classList.toggle('zero', n === 0);
    }
    const tot = this.counters.querySelector('[data-count="total"]');
    tot.textContent = num(c.devices);
    tot.dataset.value = c.devices;
    tot.previousElementSibling.textContent = t('summary.total');

    const r = Store.rates(c);
    const ag = store.agentCounts();
    const agTotal = Object.values(ag).reduce((a, b) => a + b, 0);
    this.rates.innerHTML = html`
      <div class="rate ${rateClass(r.online)}"><span class="lbl">${t('summary.online_rate')}</span><span class="v" data-rate="online" data-value="${r.online}">${pct(r.online)}</span></div>
      <div class="rate ${rateClass(r.intact)}"><span class="lbl">${t('summary.intact_rate')}</span><span class="v" data-rate="intact" data-value="${r.intact}">${pct(r.intact)}</span></div>
      <div class="rate agents"><span class="lbl">${t('summary.agents')}</span><span class="v"><span data-agents="online">${num(ag.online || 0)}</span><span class="of">/${num(agTotal)}</span>${
        (ag.offline || 0) ? html` <span class="bad" data-agents="offline">${t('summary.agents_offline', { n: num(ag.offline) })}</span>` : ''
      }</span></div>
      <div class="rate asof"><span class="lbl">${t('summary.updated')}</span><span class="v">${clock(store.at)}</span></div>`;

    this.renderDistricts(store, filters);
  }

  renderDistricts(store, filters) {
    const rows = [...store.districts.entries()]
      .filter(([, c]) => c.devices > 0)
      .map(([name, c]) => ({ name, c, r: Store.rates(c) }))
      .sort((a, b) => a.r.online - b.r.online || a.r.intact - b.r.intact || store.districtLabel(a.name).localeCompare(store.districtLabel(b.name)));
    const frag = document.createDocumentFragment();
    for (const { name, c, r } of rows) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.district = name;
      b.className = rateClass(r.online);
      b.setAttribute('aria-pressed', String(filters.district === name));
      const down = (c.by.offline || 0) + (c.by.unreachable || 0);
      const shown = store.districtLabel(name);
      b.title = t('summary.district_title', {
        district: shown, devices: num(c.devices), online: pct(r.online), intact: pct(r.intact), down: num(down),
      });
      const w = Number.isNaN(r.online) ? 0 : Math.round(r.online * 100);
      b.innerHTML = `<span class="dn"></span><span class="bar" aria-hidden="true"><span style="width:${w}%"></span></span><span class="dr">${pct(r.online)}</span><span class="dd">${down ? `▼${num(down)}` : ''}</span>`;
      b.querySelector('.dn').textContent = shown;
      li.append(b);
      frag.append(li);
    }
    // Rebuilding must not steal keyboard focus from a district button.
    const focused = this.list.contains(document.activeElement) ? document.activeElement.dataset.district : null;
    this.list.replaceChildren(frag);
    if (focused != null) this.list.querySelector(`[data-district="${CSS.escape(focused)}"]`)?.focus();
  }
}
