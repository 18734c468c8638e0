// The search page: streams, a time range, the search language; the histogram of matches and
// the newest events, older ones loaded as the table is scrolled (keyset pages). The URL holds
// the search (streams, range, query, columns), never the token.

import { api, download } from './api.js';
import { histogram } from './chart.js';
import { copyButton, el, shortTime, text } from './dom.js';
import { navigate } from './nav.js';
import { openTail } from './tail.js';

const RANGES = [['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['custom', 'Between…']];
const PAGE = 100;
const HIDDEN = new Set(['timestamp', '_stream', 'date']);
// Rows the table keeps while live (the oldest go first).
const LIVE_ROWS = 1000;
// Fields that tie an event to others around it, the first one present wins.
const CONTEXT = ['session_id', 'trace_id', 'kubernetes.pod_name', 'pod', 'pod_name', 'host', 'customer_id'];
const AROUND_MS = 5 * 60e3;

// A field name as the search language writes it, and a value as a phrase or a number.
function fieldName(name) {
  return name.replace(/[\s()":*\\]/g, (c) => `\\${c}`).replace(/^-/, '\\-');
}

function literal(value) {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `"${text(value).replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

export function term(field, value, negate) {
  return `${negate ? '-' : ''}${fieldName(field)}:${literal(value)}`;
}

function columnsKey(streams) {
  return `logyard.columns.${streams.join(',')}`;
}

// The search the URL names.
function stateOf(params, session) {
  const streams = (params.get('streams') || '').split(',').filter(Boolean);
  const saved = localStorage.getItem(columnsKey(streams));
  return {
    streams,
    q: params.get('q') || '',
    since: params.get('since') || (params.get('from') ? null : '15m'),
    from: params.get('from'),
    to: params.get('to'),
    columns: (params.get('columns') || saved || '').split(',').filter(Boolean),
    session,
  };
}

function urlOf(state) {
  const p = new URLSearchParams();
  if (state.streams.length) p.set('streams', state.streams.join(','));
  if (state.q) p.set('q', state.q);
  if (state.since) p.set('since', state.since);
  else {
    p.set('from', state.from);
    p.set('to', state.to);
  }
  if (state.columns.length) p.set('columns', state.columns.join(','));
  return `/ui/search?${p}`;
}

// datetime-local values are local time; the API takes RFC 3339.
function toInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function fromInput(value) {
  return value ? new Date(value).toISOString() : null;
}

export async function render(main, params, session) {
  const { streams: available } = await api('GET', '/api/v1/streams');
  const state = stateOf(params, session);
  if (!state.streams.length && available.length) {
    const preferred = available.find((s) => s.name === 'storefront') || available.find((s) => !s.name.startsWith('logyard-')) || available[0];
    state.streams = [preferred.name];
  }

  const query = el('input', { type: 'search', class: 'query', value: state.q, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'status:>=500 checkout  ·  "payment declined"  ·  -level:debug  ·  http.method:POST' });
  const range = el('select', { class: 'range', 'aria-label': 'Time range' },
    RANGES.map(([value, label]) => el('option', { value, selected: (state.since || 'custom') === value }, label)));
  const from = el('input', { type: 'datetime-local', step: '1', value: toInput(state.from), 'aria-label': 'From' });
  const to = el('input', { type: 'datetime-local', step: '1', value: toInput(state.to), 'aria-label': 'To' });
  const custom = el('span', { class: 'custom', hidden: range.value !== 'custom' }, from, ' – ', to);
  range.addEventListener('change', () => {
    custom.hidden = range.value !== 'custom';
    if (range.value !== 'custom') submit();
    else if (!from.value) {
      to.value = toInput(new Date().toISOString());
      from.value = toInput(new Date(Date.now() - 3600e3).toISOString());
    }
  });
  const picker = streamPicker(available, state.streams, () => submit());
  const form = el('form', { class: 'searchbar', onsubmit: (e) => { e.preventDefault(); submit(); } },
    picker, range, custom, query, el('button', { type: 'submit' }, 'Search'));

  const error = el('div', { class: 'search-error', hidden: true });
  const sqlBox = el('details', { class: 'sql' }, el('summary', {}, 'Show SQL'));
  const chart = el('div', { class: 'histogram' });
  const summary = el('p', { class: 'muted summary' });
  const table = el('table', { class: 'events' });
  const more = el('p', { class: 'muted more' });
  const tools = el('div', { class: 'toolbar result-tools' });
  main.replaceChildren(form, error, summary, chart, sqlBox, tools, table, more);

  function submit() {
    const next = {
      ...state,
      streams: picker.selected(),
      q: query.value.trim(),
      since: range.value === 'custom' ? null : range.value,
      from: range.value === 'custom' ? fromInput(from.value) : null,
      to: range.value === 'custom' ? fromInput(to.value) : null,
    };
    navigate(urlOf(next));
  }

  if (!state.streams.length) {
    summary.textContent = 'No streams yet: send some events first (README: "A five-minute tour").';
    return;
  }

  const request = { streams: state.streams, query: state.q, limit: PAGE };
  if (state.since) request.since = state.since;
  else Object.assign(request, { from: state.from, to: state.to });

  let result;
  try {
    result = await api('POST', '/api/v1/search', { ...request, histogram: true });
  } catch (e) {
    showError(error, e, state.q);
    return;
  }
  // Later pages keep the range of the first, also when it was "the last hour".
  delete request.since;
  Object.assign(request, { from: result.from, to: result.to });
  summary.textContent = `${result.histogram.total.toLocaleString()} events in ${state.streams.join(', ')}`;
  histogram(chart, result.histogram, (zoomFrom, zoomTo) => {
    navigate(urlOf({ ...state, since: null, from: new Date(zoomFrom).toISOString(), to: new Date(zoomTo).toISOString() }));
  });
  legend(chart, result.histogram);
  showSql(sqlBox, result.sql);

  const columns = state.columns.length ? state.columns : defaultColumns(result.events);
  const multi = state.streams.length > 1;
  const searched = { streams: state.streams, query: state.q, from: result.from, to: result.to };
  const head = el('tr', {}, el('th', { class: 'time' }, 'time'), multi && el('th', {}, 'stream'),
    columns.map((c) => el('th', {}, c, el('button', { type: 'button', class: 'quiet small', title: `Remove the column ${c}`,
      onclick: () => setColumns(columns.filter((x) => x !== c)) }, '×'))));
  const body = el('tbody');
  table.replaceChildren(el('thead', {}, head), body);
  const rowsOf = (event) => eventRows(event, columns, multi, state, setColumns, addTerm);
  const addRows = (events) => {
    for (const event of events) body.append(...rowsOf(event));
  };
  addRows(result.events);

  function setColumns(list) {
    localStorage.setItem(columnsKey(state.streams), list.join(','));
    navigate(urlOf({ ...state, columns: list }), true);
  }
  function addTerm(t) {
    navigate(urlOf({ ...state, q: state.q ? `${state.q} ${t}` : t }));
  }

  // Older pages as the end of the table comes into view.
  let next = result.next;
  let loading = false;
  const done = () => { more.textContent = result.events.length ? 'No older events in this range.' : 'No events match.'; };
  if (!next) done();
  else more.textContent = 'Scroll for older events…';
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries.some((e) => e.isIntersecting) || !next || loading || !more.isConnected) return;
    loading = true;
    more.textContent = 'Loading older events…';
    try {
      const page = await api('POST', '/api/v1/search', { ...request, before: next });
      addRows(page.events);
      next = page.next;
      if (!next) {
        observer.disconnect();
        done();
      } else more.textContent = 'Scroll for older events…';
    } catch (e) {
      more.textContent = e.message;
    } finally {
      loading = false;
    }
  });
  if (next) observer.observe(more);

  const live = liveControls(state, body, rowsOf, () => {
    observer.disconnect();
    more.textContent = '';
  });
  tools.replaceChildren(...live,
    el('span', { class: 'spacer' }),
    el('button', { type: 'button', class: 'quiet', onclick: () => download({ search: searched, format: 'ndjson' }).catch(alertError) }, 'Download NDJSON'),
    !multi && el('button', { type: 'button', class: 'quiet', onclick: () => download({ search: searched, format: 'csv' }).catch(alertError) }, 'Download CSV'),
    saveControl(state),
    savedMenu(state.session));
}

function alertError(e) {
  window.alert(e.message);
}

// Live: matching events as they become durable, newest on top; pause keeps them aside so
// that the view does not move, resume shows them, clear empties the table.
function liveControls(state, body, rowsOf, onStart) {
  const button = el('button', { type: 'button', class: 'live' }, 'Live');
  const pause = el('button', { type: 'button', class: 'quiet', hidden: true }, 'Pause');
  const clear = el('button', { type: 'button', class: 'quiet', hidden: true }, 'Clear');
  const status = el('span', { class: 'muted live-status', role: 'status' });
  let tail = null;
  let paused = false;
  let waiting = [];
  let received = 0;
  let dropped = 0;
  let condition = '';

  const show = () => {
    const parts = [condition, `${received.toLocaleString()} new`];
    if (waiting.length) parts.push(`${waiting.length.toLocaleString()} waiting`);
    if (dropped) parts.push(`${dropped.toLocaleString()} dropped (sampled)`);
    status.textContent = tail ? parts.filter(Boolean).join(' · ') : '';
  };
  const prepend = (events) => {
    // Events come oldest first; the table shows the newest on top.
    const rows = events.slice().reverse().flatMap(rowsOf);
    body.prepend(...rows);
    while (body.rows.length > LIVE_ROWS * 2) body.lastElementChild.remove();
  };
  const stop = () => {
    if (tail) tail.stop();
    tail = null;
    button.textContent = 'Live';
    button.classList.remove('on');
    pause.hidden = true;
    clear.hidden = true;
    show();
  };
  button.addEventListener('click', () => {
    if (tail) return stop();
    onStart();
    paused = false;
    waiting = [];
    received = 0;
    dropped = 0;
    button.textContent = 'Stop';
    button.classList.add('on');
    pause.textContent = 'Pause';
    pause.hidden = false;
    clear.hidden = false;
    tail = openTail(state.streams, state.q, {
      event: (event) => {
        received += 1;
        if (paused) waiting.push(event);
        else prepend([event]);
        show();
      },
      dropped: (n) => { dropped += n; show(); },
      gap: () => { condition = 'some events could not be replayed after reconnecting'; show(); },
      state: (name, message) => {
        condition = name === 'live' ? 'live' : `${name}${message ? `: ${message}` : ''}`;
        if (name === 'failed') stop();
        show();
      },
    });
    show();
  });
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
      prepend(waiting);
      waiting = [];
    }
    show();
  });
  clear.addEventListener('click', () => {
    body.replaceChildren();
    waiting = [];
    show();
  });
  // Leaving the page ends the tail.
  window.addEventListener('logyard:route', stop, { once: true });
  return [button, pause, clear, status];
}

// Saves the search under a name (shared with everyone on this server).
function saveControl(state) {
  const name = el('input', { type: 'text', placeholder: 'Name of this search', 'aria-label': 'Name of this search', required: true, maxlength: '200' });
  const message = el('span', { class: 'muted' });
  const form = el('form', { class: 'save', hidden: true }, name, el('button', { type: 'submit' }, 'Save'), message);
  const open = el('button', { type: 'button', class: 'quiet' }, 'Save search…');
  open.addEventListener('click', () => {
    form.hidden = !form.hidden;
    if (!form.hidden) name.focus();
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const search = { streams: state.streams, query: state.q, columns: state.columns };
    if (state.since) search.since = state.since;
    else Object.assign(search, { from: state.from, to: state.to });
    try {
      await api('POST', '/api/v1/saved-searches', { name: name.value.trim(), search });
      message.textContent = 'Saved.';
      setTimeout(() => { form.hidden = true; message.textContent = ''; }, 1200);
    } catch (err) {
      message.textContent = err.message;
    }
  });
  return el('span', { class: 'save-control' }, open, form);
}

// The saved searches menu: open one, delete one's own (an admin token deletes any).
function savedMenu(session) {
  const list = el('div', { class: 'menu' });
  const menu = el('details', { class: 'saved' }, el('summary', {}, 'Saved searches'), list);
  const load = async () => {
    list.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    try {
      const { saved_searches: saved } = await api('GET', '/api/v1/saved-searches');
      if (!saved.length) return list.replaceChildren(el('p', { class: 'muted' }, 'None yet.'));
      list.replaceChildren(...saved.map((s) => el('div', { class: 'saved-item' },
        el('a', { href: urlOf({ ...s.search, q: s.search.query, columns: s.search.columns || [] }), title: s.search.query }, s.name),
        el('span', { class: 'muted' }, ` ${s.owner}`),
        (s.owner === session.name || session.scopes.includes('admin')) && el('button', {
          type: 'button', class: 'quiet small', title: `Delete ${s.name}`,
          onclick: async () => {
            try {
              await api('DELETE', `/api/v1/saved-searches/${s.id}`);
              load();
            } catch (e) { alertError(e); }
          },
        }, '×'))));
    } catch (e) {
      list.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  };
  menu.addEventListener('toggle', () => { if (menu.open) load(); });
  return menu;
}

// A dropdown of checkboxes, one per stream.
function streamPicker(available, chosen, onChange) {
  const boxes = available.map((s) => el('label', {}, el('input', { type: 'checkbox', value: s.name, checked: chosen.includes(s.name) }), ` ${s.name}`));
  const label = el('summary', {}, chosen.join(', ') || 'Streams');
  const picker = el('details', { class: 'streams' }, label, el('div', { class: 'menu' }, boxes));
  picker.addEventListener('toggle', () => {
    if (!picker.open && picker.selected().join(',') !== chosen.join(',')) onChange();
  });
  picker.selected = () => boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
  return picker;
}

function defaultColumns(events) {
  const keys = new Set();
  for (const e of events.slice(0, 50)) for (const k of Object.keys(e)) if (!HIDDEN.has(k)) keys.add(k);
  if (keys.has('message')) return ['message'];
  return [...keys].slice(0, 4);
}

// An event's row, and the row that shows it whole when it is clicked.
function eventRows(event, columns, multi, state, setColumns, addTerm) {
  const row = el('tr', { class: 'event', tabindex: '0' },
    el('td', { class: 'time' }, shortTime(event.timestamp)),
    multi && el('td', {}, event._stream),
    columns.map((c) => el('td', {}, text(event[c]))));
  const detail = el('tr', { class: 'detail', hidden: true });
  const toggle = () => {
    if (!detail.firstChild) detail.append(el('td', { colspan: columns.length + (multi ? 2 : 1) }, eventView(event, columns, setColumns, addTerm)));
    detail.hidden = !detail.hidden;
    row.classList.toggle('open', !detail.hidden);
  };
  row.addEventListener('click', toggle);
  row.addEventListener('keydown', (e) => { if (e.key === 'Enter') toggle(); });
  return [row, detail];
}

// The whole event: each field with buttons that filter by it (or out), show it as a column.
function eventView(event, columns, setColumns, addTerm) {
  const fields = Object.keys(event).sort().map((key) => el('tr', {},
    el('td', { class: 'actions' },
      key !== '_stream' && el('button', { type: 'button', class: 'quiet small', title: `Only events with ${key} = this`, onclick: () => addTerm(term(key, event[key], false)) }, '+'),
      key !== '_stream' && el('button', { type: 'button', class: 'quiet small', title: `Leave out events with ${key} = this`, onclick: () => addTerm(term(key, event[key], true)) }, '−'),
      !columns.includes(key) && !HIDDEN.has(key) && el('button', { type: 'button', class: 'quiet small', title: 'Show as a column', onclick: () => setColumns([...columns, key]) }, '▦')),
    el('th', {}, key),
    el('td', { class: 'value' }, typeof event[key] === 'string' ? event[key] : JSON.stringify(event[key]))));
  const context = CONTEXT.find((f) => event[f] !== undefined && event[f] !== null);
  return el('div', { class: 'event-view' },
    el('div', { class: 'toolbar' }, copyButton(() => JSON.stringify(event, null, 2), 'Copy JSON'),
      context && event.timestamp && el('a', { href: surrounding(event, context), title: `Events of the same ${context} five minutes either side` }, `Surrounding events (same ${context})`)),
    el('table', { class: 'fields' }, fields),
    el('details', { class: 'json' }, el('summary', {}, 'JSON'), el('pre', {}, JSON.stringify(event, null, 2))));
}

// The search for the events around one: the same stream and context value, ±5 minutes.
function surrounding(event, field) {
  const at = new Date(event.timestamp).getTime();
  return urlOf({
    streams: [event._stream], q: term(field, event[field], false), since: null,
    from: new Date(at - AROUND_MS).toISOString(), to: new Date(at + AROUND_MS).toISOString(), columns: [],
  });
}

function legend(chart, h) {
  if (!h.series_by) return;
  const totals = h.series.map((_, i) => h.buckets.reduce((a, b) => a + b.counts[i], 0));
  chart.append(el('p', { class: 'legend muted' }, `by ${h.series_by}: `,
    h.series.map((s, i) => el('span', { class: `swatch s${i}`, dataset: { series: s } }, `${s || '(none)'} ${totals[i].toLocaleString()}`))));
}

function showSql(box, statements) {
  const sql = statements.map((s) => `${s};`).join('\n\n');
  box.replaceChildren(el('summary', {}, 'Show SQL'), el('pre', {}, sql),
    el('div', { class: 'toolbar' }, copyButton(() => sql),
      el('a', { href: `/ui/sql?q=${encodeURIComponent(statements[0])}` }, 'Open in the SQL tab')));
}

// A search error, with a caret under the character it names.
function showError(box, e, query) {
  box.hidden = false;
  const m = /\(at character (\d+)\)$/.exec(e.message);
  const children = [el('p', { class: 'error' }, e.message.replace(/^search: /, '').replace(/ \(at character \d+\)$/, ''))];
  if (m) {
    const at = Number(m[1]);
    children.push(el('pre', { class: 'caret' }, `${query}\n${' '.repeat(at)}^`));
  }
  box.replaceChildren(...children);
}
