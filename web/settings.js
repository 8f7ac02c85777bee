// /settings.html: the user's alert settings (GET/PUT /api/v1/alerts/settings,
// docs/notify.md "Settings"): language and a fallback, time zone, quiet
// hours, channels and their addresses, the hourly cap.
import { api, currentUser } from '/account.js';

// the languages insite-notify ships, named in their own language
export const LANGUAGES = [
  ['en', 'English'], ['ko', '한국어'], ['ja', '日本語'], ['zh-Hans', '简体中文'], ['zh-Hant', '繁體中文'],
  ['es', 'Español'], ['fr', 'Français'], ['de', 'Deutsch'], ['pt-BR', 'Português (Brasil)'],
  ['it', 'Italiano'], ['ru', 'Русский'], ['ar', 'العربية'], ['hi', 'हिन्दी'],
];

const form = document.getElementById('settings-form');
const status = document.getElementById('status');
const say = (text, cls) => { status.className = `status ${cls || ''}`; status.textContent = text; };

function fillLanguages() {
  for (const sel of [form.lang, form.lang2]) {
    if (sel === form.lang2) sel.append(new Option('—', ''));
    for (const [code, name] of LANGUAGES) sel.append(new Option(`${name} (${code})`, code));
  }
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : ['UTC'];
  document.getElementById('zones').append(...zones.map((z) => new Option(z)));
}

function show(s) {
  form.enabled.checked = s.enabled !== false;
  form.lang.value = (s.languages && s.languages[0]) || 'en';
  form.lang2.value = (s.languages && s.languages[1]) || '';
  form.time_zone.value = s.time_zone || 'UTC';
  const q = s.quiet_hours;
  form.quiet.checked = !!q;
  form.quiet_start.value = q ? q.start : '22:00';
  form.quiet_end.value = q ? q.end : '07:00';
  const ch = new Set(s.channels || ['websocket']);
  for (const c of ['websocket', 'email', 'webhook']) form[`ch_${c}`].checked = ch.has(c);
  form.email.value = s.email || '';
  form.webhook_url.value = s.webhook_url || '';
  document.getElementById('secret-state').textContent = s.webhook_secret_set ? 'set; leave empty to keep it'
                                                                             : 'not set';
  form.rate_per_hour.value = s.rate_per_hour || 60;
}

function collect() {
  const languages = [form.lang.value];
  if (form.lang2.value && form.lang2.value !== form.lang.value) languages.push(form.lang2.value);
  const s = {
    enabled: form.enabled.checked,
    languages,
    time_zone: form.time_zone.value.trim(),
    channels: ['websocket', 'email', 'webhook'].filter((c) => form[`ch_${c}`].checked),
    quiet_hours: form.quiet.checked ? { start: form.quiet_start.value, end: form.quiet_end.value } : null,
    rate_per_hour: Number(form.rate_per_hour.value),
  };
  s.email = form.email.value.trim() || null;
  s.webhook_url = form.webhook_url.value.trim() || null;
  if (form.webhook_secret.value) s.webhook_secret = form.webhook_secret.value;
  return s;
}

async function main() {
  const user = currentUser();
  if (!user) {
    document.getElementById('who').innerHTML = '';
    const a = document.createElement('a');
    a.href = `/signin.html?next=${encodeURIComponent('/settings.html')}`;
    a.id = 'signin-link';
    a.textContent = 'Sign in';
    document.getElementById('who').append(a, ' to change your alert settings.');
    return;
  }
  document.getElementById('who').textContent = `Signed in as ${user.sub}.`;
  fillLanguages();
  try {
    show(await api('GET', '/api/v1/alerts/settings'));
    form.hidden = false;
  } catch (e) {
    say(`Cannot read your settings: ${e.message}`, 'error');
    return;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    say('Saving…');
    try {
      show(await api('PUT', '/api/v1/alerts/settings', collect()));
      form.webhook_secret.value = '';
      say('Saved.', 'ok');
    } catch (e) {
      say(`Not saved: ${e.message}`, 'error');
    }
  });
}
main();
