// /signin.html: a token in the fragment (#token=…, kept out of server logs
// and Referer) or pasted is stored as the insite_token cookie, then back to
// ?next= (a path on this site only) or the dashboard.
import { signIn } from '/account.js';

const status = document.getElementById('status');
const next = (() => {
  const n = new URLSearchParams(location.search).get('next') || '/';
  return n.startsWith('/') && !n.startsWith('//') ? n : '/';
})();

function use(token) {
  try {
    const c = signIn(token);
    status.className = 'status ok';
    status.textContent = `Signed in as ${c.sub}.`;
    location.replace(next);
  } catch (e) {
    status.className = 'status error';
    status.textContent = `Cannot sign in: ${e.message}.`;
  }
}

const frag = new URLSearchParams(location.hash.slice(1)).get('token');
if (frag) {
  history.replaceState(null, '', location.pathname + location.search);
  use(frag);
}
document.getElementById('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  use(document.getElementById('token').value);
});
