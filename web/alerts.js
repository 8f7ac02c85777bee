// The dashboard's alerts (docs/notify.md, "On the page"): the account area
// (sign-in link, or the user with Settings and Sign out), an alerts panel
// with the unread count, toasts as alerts arrive on the user's private
// channel `alert:<user>`, and the rule editor (create / list / delete
// through /api/v1/alerts/rules).  Separate from dashboard.js: its own
// WebSocket connection, its own DOM under #account and #alerts-panel.
import { InsiteClient } from '/clients/js/insite-client.js';
import { api, currentUser, signOut, wsUrl } from '/account.js';

const TOAST_MS = 8000;            // CRITICAL toasts stay until closed

// rule types: the value field and the extra fields each takes (the API's
// validation is the authority; this only shapes the form)
export const RULE_TYPES = {
  price_above: { field: 'price', label: 'Price above', unit: 'price' },
  price_below: { field: 'price', label: 'Price below', unit: 'price' },
  percent_change: { field: 'percent', label: '% change within', unit: '%', window: true, direction: true },
  volume_spike: { field: 'factor', label: 'Volume spike ×', unit: '× average', window: true },
  sentiment_above: { field: 'level', label: 'Sentiment above', unit: '−1 … 1' },
  sentiment_below: { field: 'level', label: 'Sentiment below', unit: '−1 … 1' },
  sentiment_shift: { field: 'delta', label: 'Sentiment shift by', unit: 'Δ', window: true, direction: true },
};

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
};

// a rule in words: "AAPL price above 200 · cooldown 300 s · one-shot"
export function describeRule(r) {
  const t = RULE_TYPES[r.type];
  const v = t ? r[t.field] : '';
  const parts = [`${r.symbol} ${t ? t.label.toLowerCase() : r.type} ${v}`];
  if (r.window_seconds) parts.push(`window ${r.window_seconds} s`);
  if (r.direction && r.direction !== 'any') parts.push(r.direction);
  if (r.cooldown_seconds) parts.push(`cooldown ${r.cooldown_seconds} s`);
  if (r.recurring === false) parts.push('one-shot');
  parts.push(r.priority || 'HIGH');
  return parts.join(' · ');
}

function timeText(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

class AlertsUi {
  constructor(user) {
    this.user = user;
    this.alerts = [];             // newest first
    this.unread = 0;
    this.root = document.getElementById('account');
  }

  start() {
    this.renderAccount();
    this.renderPanel();
    this.toasts = el('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(this.toasts);
    this.connect();
    this.loadAlerts();
    this.loadRules();
    // the watchlist row a user picks is the editor's symbol ("alert me when…")
    const rows = document.getElementById('rows');
    if (rows) {
      rows.addEventListener('click', (ev) => {
        const tr = ev.target.closest('tr[data-symbol]');
        if (tr) this.form.symbol.value = tr.dataset.symbol;
      });
    }
    // a watchlist row's "alert me when…" button (web/dashboard.js)
    document.addEventListener('insite:alert-me', (ev) => this.alertMe(ev.detail));
  }

  // Opens the editor on a symbol; with its current price, a price rule at it.
  alertMe({ symbol, price }) {
    const f = this.form;
    f.symbol.value = symbol;
    if (Number.isFinite(price) && price > 0) {
      if (RULE_TYPES[f.type.value].field !== 'price') {
        f.type.value = 'price_above';
        f.type.dispatchEvent(new Event('change'));
      }
      f.value.value = String(price);
    }
    f.querySelector('#rule-error').textContent = '';
    this.toggle(true);
    f.value.focus();
  }

  renderAccount() {
    this.badge = el('span', { class: 'badge', id: 'alerts-unread', hidden: true }, '0');
    this.bell = el('button', { type: 'button', id: 'alerts-toggle', class: 'bell', 'aria-expanded': 'false',
      'aria-controls': 'alerts-panel', title: 'Alerts', onclick: () => this.toggle() }, 'Alerts ', this.badge);
    this.root.replaceChildren(
      this.bell,
      el('span', { class: 'who', id: 'account-user', title: 'signed in' }, this.user.sub),
      el('a', { href: '/settings.html', id: 'settings-link' }, 'Settings'),
      el('button', { type: 'button', class: 'link', id: 'signout',
        onclick: () => { signOut(); location.reload(); } }, 'Sign out'));
  }

  renderPanel() {
    const opts = Object.entries(RULE_TYPES).map(([k, t]) => el('option', { value: k }, t.label));
    const sel = new URLSearchParams(location.search).get('selected')
      || (new URLSearchParams(location.search).get('symbols') || 'AAPL').split(',')[0];
    const f = el('form', { id: 'rule-form', class: 'rule-form', autocomplete: 'off' },
      el('label', {}, 'Alert me when ', el('input', { name: 'symbol', required: true, maxlength: 32, size: 7,
        value: sel.toUpperCase(), spellcheck: 'false', 'aria-label': 'Symbol' })),
      el('select', { name: 'type', 'aria-label': 'Condition' }, opts),
      el('input', { name: 'value', required: true, inputmode: 'decimal', size: 8, 'aria-label': 'Value' }),
      el('span', { class: 'unit', id: 'rule-unit' }),
      el('label', { class: 'win' }, 'within ', el('input', { name: 'window_seconds', type: 'number', min: 60,
        max: 86400, value: 900, size: 6 }), ' s'),
      el('select', { name: 'direction', class: 'dir', 'aria-label': 'Direction' },
        el('option', { value: 'any' }, 'either way'), el('option', { value: 'up' }, 'up'),
        el('option', { value: 'down' }, 'down')),
      el('label', {}, 'cooldown ', el('input', { name: 'cooldown_seconds', type: 'number', min: 0, max: 604800,
        value: 0, size: 6 }), ' s'),
      el('select', { name: 'priority', 'aria-label': 'Priority' },
        ['HIGH', 'CRITICAL', 'MEDIUM', 'LOW'].map((p) => el('option', { value: p }, p))),
      el('label', {}, el('input', { name: 'recurring', type: 'checkbox', checked: true }), ' recurring'),
      el('button', { type: 'submit' }, 'Create rule'),
      el('div', { class: 'form-error', id: 'rule-error', role: 'alert' }));
    this.form = f;
    const shape = () => {
      const t = RULE_TYPES[f.type.value];
      f.querySelector('#rule-unit').textContent = t.unit;
      f.querySelector('.win').hidden = !t.window;
      f.direction.hidden = !t.direction;
    };
    f.type.addEventListener('change', shape);
    shape();
    f.addEventListener('submit', (ev) => { ev.preventDefault(); this.createRule(); });

    this.list = el('ol', { id: 'alerts-list', class: 'alerts-list' });
    this.rules = el('ul', { id: 'rules-list', class: 'rules-list' });
    this.panel = el('aside', { id: 'alerts-panel', class: 'alerts-panel', hidden: true, 'aria-label': 'Alerts' },
      el('div', { class: 'panel-head' }, el('h2', {}, 'Alerts'),
        el('button', { type: 'button', class: 'link', id: 'alerts-read-all', onclick: () => this.readAll() },
          'Mark all read')),
      this.list,
      el('h3', {}, 'Rules'), f, this.rules);
    document.body.append(this.panel);
  }

  toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.bell.setAttribute('aria-expanded', String(open));
  }

  setUnread(n) {
    this.unread = Math.max(0, n);
    this.badge.textContent = String(this.unread);
    this.badge.hidden = this.unread === 0;
  }

  alertItem(a) {
    const li = el('li', { class: `alert prio-${(a.priority || '').toLowerCase()}${a.read ? '' : ' unread'}`,
      lang: a.lang || null, dir: a.dir || null, 'data-id': a.id },
    el('div', { class: 'title' }, a.title || a.template),
    a.body ? el('div', { class: 'body' }, a.body) : null,
    el('time', { datetime: a.fired_at || a.created_at || '' }, timeText(a.fired_at || a.created_at)));
    li.addEventListener('click', () => this.markRead(a, li));
    return li;
  }

  async loadAlerts() {
    try {
      const j = await api('GET', '/api/v1/alerts?limit=50');
      const shown = new Set(this.alerts.map((a) => a.id));
      for (const a of j.alerts) {
        a.dir = a.dir || (a.lang === 'ar' ? 'rtl' : 'ltr');
        if (!shown.has(a.id)) this.alerts.push(a);
      }
      this.alerts.sort((x, y) => y.id - x.id);
      this.list.replaceChildren(...this.alerts.map((a) => this.alertItem(a)));
      this.setUnread(j.unread);
    } catch (e) {
      this.notice(`alerts: ${e.message}`);
    }
  }

  async markRead(a, li) {
    if (a.read) return;
    try {
      await api('POST', `/api/v1/alerts/${a.id}/read`);
      a.read = true;
      li.classList.remove('unread');
      this.setUnread(this.unread - 1);
    } catch (e) {
      this.notice(`alerts: ${e.message}`);
    }
  }

  async readAll() {
    for (const li of this.list.querySelectorAll('li.unread')) {
      const a = this.alerts.find((x) => String(x.id) === li.dataset.id);
      if (a) await this.markRead(a, li);
    }
  }

  connect() {
    this.client = new InsiteClient(wsUrl());
    this.client.on('message', (m) => {
      if (m.channel !== `alert:${this.user.sub}` || m.type !== 'alert') return;
      this.arrived(m.data);
    });
    this.client.on('error', (e) => this.notice(`alerts channel: ${e.message || e.code || 'error'}`));
    this.client.subscribe([`alert:${this.user.sub}`])
      .then(() => { this.subscribed = true; })
      .catch((e) => this.notice(`alerts channel: ${e.message}`));
    this.client.connect();
  }

  // a live alert: a toast, the top of the list, one more unread
  arrived(d) {
    if (this.alerts.some((a) => a.id === d.id)) return;
    const a = { ...d, read: false };
    this.alerts.unshift(a);
    this.list.prepend(this.alertItem(a));
    this.setUnread(this.unread + 1);
    this.toast(a);
  }

  toast(a) {
    const close = el('button', { type: 'button', class: 'close', 'aria-label': 'Close' }, '×');
    const t = el('div', { class: `toast prio-${(a.priority || '').toLowerCase()}`, lang: a.lang || null,
      dir: a.dir || null, 'data-id': a.id },
    el('div', { class: 'title' }, a.title), a.body ? el('div', { class: 'body' }, a.body) : null, close);
    close.addEventListener('click', () => t.remove());
    this.toasts.append(t);
    if (a.priority !== 'CRITICAL') setTimeout(() => t.remove(), TOAST_MS);
  }

  async loadRules() {
    try {
      const j = await api('GET', '/api/v1/alerts/rules');
      this.rules.replaceChildren(...j.rules.map((r) => el('li', { 'data-id': r.id },
        el('span', { class: r.enabled === false ? 'off' : '' }, describeRule(r)),
        el('button', { type: 'button', class: 'link delete', 'aria-label': `Delete rule ${r.id}`,
          onclick: () => this.deleteRule(r.id) }, 'Delete'))));
    } catch (e) {
      this.notice(`rules: ${e.message}`);
    }
  }

  async createRule() {
    const f = this.form;
    const t = RULE_TYPES[f.type.value];
    const body = { type: f.type.value, symbol: f.symbol.value.trim().toUpperCase(),
      [t.field]: Number(f.value.value), cooldown_seconds: Number(f.cooldown_seconds.value),
      priority: f.priority.value, recurring: f.recurring.checked };
    if (t.window) body.window_seconds = Number(f.window_seconds.value);
    if (t.direction) body.direction = f.direction.value;
    const err = f.querySelector('#rule-error');
    err.textContent = '';
    try {
      await api('POST', '/api/v1/alerts/rules', body);
      f.value.value = '';
      await this.loadRules();
    } catch (e) {
      err.textContent = e.message;
    }
  }

  async deleteRule(id) {
    try {
      await api('DELETE', `/api/v1/alerts/rules/${id}`);
      await this.loadRules();
    } catch (e) {
      this.notice(`rules: ${e.message}`);
    }
  }

  notice(text) {
    const ul = document.getElementById('notices');
    if (ul) ul.append(el('li', { class: 'notice' }, text));
  }
}

const account = document.getElementById('account');
if (account) {
  const user = currentUser();
  if (user) {
    const ui = new AlertsUi(user);
    ui.start();
    window.__insiteAlerts = ui;  // tests and the console
  } else {
    const signin = `/signin.html?next=${encodeURIComponent(location.pathname + location.search)}`;
    account.replaceChildren(el('a', { href: signin, id: 'signin-link' }, 'Sign in'),
      el('span', { class: 'hint' }, ' for alerts'));
    document.addEventListener('insite:alert-me', () => location.assign(signin));
  }
}
