// The public API, as the console calls it: a Bearer token from this tab's sessionStorage
// (never in a URL), JSON in and out, errors as ApiError with the server's code and message.

const KEY = 'logyard.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// The Authorization header, when signed in.
export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function headers(json) {
  const h = { Accept: 'application/json', ...authHeaders() };
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

async function failure(response) {
  let code = 'error';
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) { /* not JSON */ }
  return new ApiError(response.status, code, message);
}

// Calls the API; on 401 asks for a token once and tries again.
export async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.ok) return response.status === 204 ? null : response.json();
    const error = await failure(response);
    if (response.status === 401 && attempt === 0 && (await signIn(token() ? 'That token is not valid.' : ''))) continue;
    throw error;
  }
}

let pending = null;

// Shows the sign-in dialog; resolves true once a token was entered.
export function signIn(message) {
  if (pending) return pending;
  const dialog = document.getElementById('signin');
  const form = document.getElementById('signin-form');
  const input = document.getElementById('signin-token');
  document.getElementById('signin-error').textContent = message || '';
  pending = new Promise((resolve) => {
    const done = (ok) => {
      form.removeEventListener('submit', submit);
      dialog.removeEventListener('cancel', cancel);
      pending = null;
      resolve(ok);
    };
    const submit = () => {
      setToken(input.value.trim());
      input.value = '';
      done(true);
    };
    const cancel = () => done(false);
    form.addEventListener('submit', submit);
    dialog.addEventListener('cancel', cancel);
    dialog.showModal();
    input.focus();
  });
  return pending;
}

// Opens a one-time download link (POST /api/v1/downloads): a file to save, or a page in a new
// tab. The link carries a ticket that works once, for a minute; never the token.
export async function download(what, newTab) {
  // A tab opened before the await is not taken for a pop-up.
  const tab = newTab ? window.open('', '_blank') : null;
  try {
    const { url } = await api('POST', '/api/v1/downloads', what);
    if (tab) {
      tab.opener = null;
      tab.location = url;
    } else {
      const a = document.createElement('a');
      a.href = url;
      a.download = '';
      document.body.append(a);
      a.click();
      a.remove();
    }
  } catch (e) {
    if (tab) tab.close();
    throw e;
  }
}
