// The console's shell: who is signed in, the navigation, and which page the URL names.
// Pages live under /ui/<page>; their state (a search, a query) is in the URL's query string.

import { api, setToken, token } from './api.js';
import { navigate } from './nav.js';
import * as alerts from './alerts.js';
import * as search from './search.js';
import * as reports from './reports.js';
import * as sql from './sql.js';
import * as streams from './streams.js';

const pages = { search, sql, streams, alerts, reports };
let session = null;

async function loadSession() {
  session = await api('GET', '/api/v1/session');
  const who = document.getElementById('who');
  who.textContent = session.auth ? session.name : '';
  document.getElementById('signout').hidden = !session.auth || !token();
  // Pages a token's scopes do not allow are not shown.
  for (const page of ['sql', 'alerts', 'reports']) {
    document.querySelector(`nav a[data-page="${page}"]`).hidden = !session.scopes.includes('query');
  }
  return session;
}

async function route() {
  const main = document.getElementById('main');
  const name = location.pathname.replace(/^\/ui\/?/, '').split('/')[0] || 'search';
  const page = pages[name] || search;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === name);
  // Busy until the page has shown what it loaded (assistive technology, and tests, wait).
  main.setAttribute('aria-busy', 'true');
  try {
    if (!session) await loadSession();
    await page.render(main, new URLSearchParams(location.search), session);
  } catch (e) {
    main.replaceChildren(errorBox(e));
  } finally {
    main.removeAttribute('aria-busy');
  }
}

function errorBox(e) {
  const p = document.createElement('p');
  p.className = 'error';
  p.textContent = e.message || String(e);
  return p;
}

document.addEventListener('click', (event) => {
  const a = event.target.closest('a[href^="/ui/"]');
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || a.target) return;
  event.preventDefault();
  navigate(a.getAttribute('href'));
});

window.addEventListener('popstate', route);
window.addEventListener('logyard:route', route);

document.getElementById('signout').addEventListener('click', () => {
  setToken(null);
  session = null;
  navigate('/ui/search', true);
});

route();
