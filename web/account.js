// The signed-in user of the page: the JWT in the `insite_token` cookie
// (the gateway's insite_gateway_jwt_cookie), and the JSON API calls made
// with it.  Sign-in: /signin.html stores a token given in its fragment
// (#token=…, what scripts/run.sh prints for a local demo user; in production
// the identity provider's redirect) or pasted; sign-out clears it.
//
// The page never verifies the token (nginx does, on every request); it
// reads `sub` and `exp` only to show who is signed in and until when.

export const COOKIE = 'insite_token';

export function readToken(cookie = document.cookie) {
  const m = cookie.match(/(?:^|;\s*)insite_token=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}

// {sub, exp, scope…} from a token's payload, or null when it is not a JWT
export function claims(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1])) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const text = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const c = JSON.parse(text);
    return c && typeof c === 'object' && typeof c.sub === 'string' && c.sub ? c : null;
  } catch (_) {
    return null;
  }
}

// the current user {sub, exp, token}, or null (no token, or expired)
export function currentUser(now = Date.now()) {
  const token = readToken();
  const c = token && claims(token);
  if (!c || (typeof c.exp === 'number' && c.exp * 1000 <= now)) return null;
  return { ...c, token };
}

// stores the token as the gateway's cookie; an Error naming what is wrong
export function signIn(token, now = Date.now()) {
  const t = String(token || '').trim();
  const c = claims(t);
  if (!c) throw new Error('not a JWT with a "sub" claim');
  if (typeof c.exp === 'number' && c.exp * 1000 <= now) throw new Error('this token has expired');
  const maxAge = typeof c.exp === 'number' ? Math.floor(c.exp - now / 1000) : 86400;
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `${COOKIE}=${encodeURIComponent(t)}; Path=/; Max-Age=${maxAge}; SameSite=Strict${secure}`;
  return c;
}

export function signOut() {
  document.cookie = `${COOKIE}=; Path=/; Max-Age=0; SameSite=Strict`;
}

// A JSON call to the API through the gateway (the cookie authenticates it).
// Resolves with the parsed body; rejects with an Error carrying the
// gateway's/worker's {error, message, reasons} and the status.
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let j = null;
  try { j = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const e = new Error((j && (j.reasons ? j.reasons.join('; ') : j.message || j.error)) || `HTTP ${r.status}`);
    e.status = r.status;
    e.body = j;
    throw e;
  }
  return j;
}

// the WebSocket URL of the page's host (the `ws` URL parameter wins)
export function wsUrl() {
  const p = new URLSearchParams(location.search).get('ws');
  if (p) return p;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}
