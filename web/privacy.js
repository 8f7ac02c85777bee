// The privacy page: consents (first-visit banner + switches), a panel that
// needs the analytics consent, "download my data" and "delete my account".
// Talks to insite-gdpr through nginx (docs/gdpr-rights.md); the user is the
// JWT nginx verifies (the insite_token cookie, insite_gateway_jwt_cookie),
// never a parameter of these requests.
//
// window.__insitePrivacy exposes the page's state for tests.

const $ = (id) => document.getElementById(id);
const state = { consents: [], insights: 'idle', exportId: null, deleteId: null };
window.__insitePrivacy = state;

const INSIGHTS_EVERY_MS = 5000;
const POLL_MS = 1000;

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try { data = await r.json(); } catch (_) { /* an empty or non-JSON body */ }
  return { status: r.status, data: data || {} };
}

const reason = (res) => (res.data && (res.data.message || res.data.error)) || `HTTP ${res.status}`;

// ---- consents

function typeRow(c, control) {
  const li = document.createElement('li');
  li.dataset.type = c.consent_type;
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = c.consent_type;
  const ver = document.createElement('span');
  ver.className = 'ver';
  ver.textContent = `policy ${c.current_policy_version}`;
  const when = document.createElement('span');
  when.className = 'when';
  when.textContent = c.updated_at ? `${c.granted ? 'granted' : 'withdrawn'} ${new Date(c.updated_at).toLocaleString()}`
    : 'not decided';
  li.append(control, name, ver, when);
  return li;
}

function checkbox(c, checked, role) {
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.checked = checked;
  box.dataset.type = c.consent_type;
  if (role) box.setAttribute('role', role);
  box.setAttribute('aria-label', `${c.consent_type} (policy ${c.current_policy_version})`);
  return box;
}

function renderConsents() {
  const list = $('consents');
  list.replaceChildren(...state.consents.map((c) => {
    const sw = checkbox(c, c.current, 'switch');
    sw.addEventListener('change', () => setConsents([[c.consent_type, sw.checked]]));
    return typeRow(c, sw);
  }));
  // first visit: a type nobody decided yet; nothing is pre-ticked
  const open = state.consents.some((c) => !c.updated_at);
  $('banner').hidden = !open;
  if (open) {
    $('banner-types').replaceChildren(...state.consents.map((c) => typeRow(c, checkbox(c, c.current))));
  }
}

async function loadConsents() {
  const res = await api('GET', '/api/v1/gdpr/consents');
  if (res.status === 401) {
    $('who').textContent = 'Not signed in';
    $('consent-status').textContent = 'Sign in to see and change your choices.';
    return false;
  }
  if (res.status !== 200) {
    $('consent-status').textContent = `Could not load your choices: ${reason(res)}`;
    return false;
  }
  state.consents = res.data.consents || [];
  renderConsents();
  return true;
}

async function setConsents(pairs) {
  $('consent-status').textContent = 'Saving…';
  let edge = true;
  for (const [type, granted] of pairs) {
    const res = await api('POST', '/api/v1/gdpr/consents', { consent_type: type, granted });
    if (res.status !== 200) {
      $('consent-status').textContent = `Not saved (${type}): ${reason(res)}`;
      await loadConsents();
      return;
    }
    edge = edge && res.data.enforced_at_edge !== false;
  }
  await loadConsents();
  $('consent-status').textContent = edge ? 'Saved.' : 'Saved; it takes effect in a moment.';
  loadInsights();
}

function bannerChoice(all) {
  const boxes = [...$('banner-types').querySelectorAll('input[type=checkbox]')];
  setConsents(boxes.map((b) => [b.dataset.type, all === undefined ? b.checked : all]));
}

// ---- the consent-gated panel

async function loadInsights() {
  const el = $('insights');
  let res;
  try {
    res = await api('POST', '/api/v1/analyze/sentiment', { text: 'Shares of AAPL rallied after strong earnings.' });
  } catch (e) {
    res = { status: 0, data: { message: String(e) } };
  }
  if (res.status === 200) {
    const s = res.data.scores || res.data;
    el.dataset.state = 'loaded';
    el.textContent = `Sentiment: ${typeof s.compound === 'number' ? s.compound.toFixed(3) : JSON.stringify(s)}`;
  } else if (res.status === 403 && res.data.error === 'consent_required') {
    el.dataset.state = 'refused';
    el.textContent = `Not loaded: this panel needs your consent for ${(res.data.consent_types || []).join(', ')}`
      + ` (${res.data.error}). Switch it on above to see it.`;
  } else {
    el.dataset.state = 'error';
    el.textContent = `Not loaded: ${reason(res)}`;
  }
  state.insights = el.dataset.state;
}

// ---- export

async function startExport() {
  $('export-start').disabled = true;
  $('export-link').hidden = true;
  const bar = $('export-progress');
  bar.hidden = false;
  bar.value = 1;
  $('export-status').textContent = 'Requested…';
  const res = await api('POST', '/api/v1/gdpr/export');
  if (res.status !== 202) {
    $('export-status').textContent = `Not started: ${reason(res)}`;
    $('export-start').disabled = false;
    bar.hidden = true;
    return;
  }
  state.exportId = res.data.request_id;
  const t0 = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    const got = await api('GET', `/api/v1/gdpr/export/${encodeURIComponent(state.exportId)}`);
    if (got.status === 200 && got.data.schema) {
      bar.value = 3;
      const n = Object.values(got.data.postgresql || {}).reduce((a, rows) => a + rows.length, 0);
      const blob = new Blob([JSON.stringify(got.data, null, 2)], { type: 'application/json' });
      const a = $('export-link');
      a.href = URL.createObjectURL(blob);
      a.download = `insite-export-${state.exportId}.json`;
      a.hidden = false;
      $('export-status').textContent = `Ready: ${n} records.`;
      a.click();
      break;
    }
    if (got.status !== 200) {
      $('export-status').textContent = `Failed: ${reason(got)}`;
      break;
    }
    bar.value = 2;
    $('export-status').textContent = `Collecting your data… ${Math.round((Date.now() - t0) / 1000)} s`;
  }
  $('export-start').disabled = false;
}

// ---- erasure

function showDeletion(d) {
  const targets = d.targets || [];
  const done = targets.filter((t) => t.done).length;
  const lines = [`Deletion request ${d.request_id}: ${d.status}`];
  if (targets.length) lines.push(`${done} of ${targets.length} places erased`);
  if (d.error) lines.push(`last error: ${d.error}`);
  if (d.status === 'completed') lines.push('Your data is erased; a signed receipt is kept.');
  $('delete-status').textContent = lines.join(' — ');
  $('delete-status').dataset.status = d.status;
}

async function followDeletion() {
  for (;;) {
    const got = await api('GET', `/api/v1/gdpr/deletion-status/${encodeURIComponent(state.deleteId)}`);
    if (got.status !== 200) {
      $('delete-status').textContent = `Status unavailable: ${reason(got)}`;
    } else {
      showDeletion(got.data);
      if (['completed', 'failed', 'cancelled'].includes(got.data.status)) return;
    }
    await new Promise((r) => setTimeout(r, POLL_MS * 2));
  }
}

async function confirmDeletion(ev) {
  ev.preventDefault();
  $('delete-go').disabled = true;
  const res = await api('POST', '/api/v1/gdpr/delete', { confirmation: $('delete-word').value });
  if (res.status !== 202) {
    $('delete-status').textContent = `Not requested: ${reason(res)}`;
    $('delete-go').disabled = false;
    return;
  }
  $('delete-confirm').hidden = true;
  $('delete-start').hidden = true;
  state.deleteId = res.data.request_id;
  showDeletion(res.data);
  followDeletion();
}

// ---- wiring

$('accept-all').addEventListener('click', () => bannerChoice(true));
$('reject-all').addEventListener('click', () => bannerChoice(false));
$('banner-form').addEventListener('submit', (ev) => { ev.preventDefault(); bannerChoice(); });
$('export-start').addEventListener('click', startExport);
$('delete-start').addEventListener('click', () => { $('delete-confirm').hidden = false; $('delete-word').focus(); });
$('delete-back').addEventListener('click', () => { $('delete-confirm').hidden = true; $('delete-word').value = ''; });
$('delete-word').addEventListener('input', () => { $('delete-go').disabled = $('delete-word').value !== 'DELETE_MY_DATA'; });
$('delete-confirm').addEventListener('submit', confirmDeletion);

if (await loadConsents()) {
  loadInsights();
  setInterval(loadInsights, INSIGHTS_EVERY_MS);
}
