// The SQL tab: an editor (Ctrl+Enter runs), the last queries, the streams' columns (and the
// orders database's tables when it is configured), results as a table and, when they have a
// time column and numeric columns, as a chart.

import { api } from './api.js';
import { timeChart } from './chart.js';
import { copyButton, el, text } from './dom.js';
import { navigate } from './nav.js';

const HISTORY = 'logyard.sql.history';

function history() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY) || '[]');
  } catch (_) {
    return [];
  }
}

function remember(sql) {
  const list = [sql, ...history().filter((s) => s !== sql)].slice(0, 50);
  localStorage.setItem(HISTORY, JSON.stringify(list));
}

export async function render(main, params) {
  const editor = el('textarea', { class: 'editor', spellcheck: 'false', rows: 8, 'aria-label': 'SQL' },
    params.get('q') || 'SELECT * FROM information_schema.tables');
  const run = el('button', { type: 'button' }, 'Run');
  const past = el('select', { 'aria-label': 'Earlier queries' }, el('option', { value: '' }, 'Earlier queries…'),
    history().map((s) => el('option', { value: s }, s.replace(/\s+/g, ' ').slice(0, 100))));
  past.addEventListener('change', () => { if (past.value) editor.value = past.value; });
  const output = el('div', { class: 'results' });
  const schema = el('aside', { class: 'schema' }, el('p', { class: 'muted' }, 'Loading columns…'));
  main.replaceChildren(el('div', { class: 'sql-page' },
    el('section', {}, editor, el('div', { class: 'toolbar' }, run, el('span', { class: 'muted' }, 'Ctrl+Enter runs'), past), output),
    schema));

  const execute = () => {
    navigate(`/ui/sql?q=${encodeURIComponent(editor.value)}`, true);
    runQuery(editor.value, output);
  };
  run.addEventListener('click', execute);
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      execute();
    }
  });
  loadSchema(schema, editor);
  if (params.get('q')) runQuery(editor.value, output);
}

async function runQuery(sql, output) {
  output.replaceChildren(el('p', { class: 'muted' }, 'Running…'));
  const started = performance.now();
  let result;
  try {
    result = await api('POST', '/api/v1/query', { sql, format: 'json' });
  } catch (e) {
    output.replaceChildren(el('pre', { class: 'error' }, e.message));
    return;
  }
  remember(sql);
  const ms = Math.round(performance.now() - started);
  const columns = result.columns.map((c) => c.name);
  const note = `${result.rows.length.toLocaleString()} row${result.rows.length === 1 ? '' : 's'} in ${ms} ms${result.truncated ? ' (truncated: use the API with format ndjson or csv for all)' : ''}`;
  const table = el('table', { class: 'grid' },
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', {}, c)))),
    el('tbody', {}, result.rows.map((row) => el('tr', {}, columns.map((c) => el('td', {}, text(row[c])))))));
  const parts = [el('div', { class: 'toolbar' }, el('span', { class: 'muted' }, note),
    copyButton(() => JSON.stringify(result.rows, null, 2), 'Copy rows as JSON'))];
  const chart = chartOf(result);
  if (chart) parts.push(chart);
  parts.push(el('div', { class: 'scroll' }, table));
  output.replaceChildren(...parts);
}

// A chart when the result has a time column and numeric ones.
function chartOf(result) {
  const time = result.columns.find((c) => /^Timestamp|^Date/.test(c.type));
  const numeric = result.columns.filter((c) => /^(Int|UInt|Float|Decimal)/.test(c.type));
  if (!time || !numeric.length || result.rows.length < 2) return null;
  const times = result.rows.map((r) => Date.parse(r[time.name]));
  if (times.some(Number.isNaN)) return null;
  const columns = numeric.map((c) => ({ name: c.name, values: result.rows.map((r) => (r[c.name] === null ? null : Number(r[c.name]))) }));
  const box = el('div', { class: 'chart' });
  const kind = el('select', { 'aria-label': 'Chart' }, el('option', { value: 'line' }, 'Line'), el('option', { value: 'bar' }, 'Bars'));
  const draw = () => timeChart(box, times, columns, kind.value);
  kind.addEventListener('change', draw);
  const wrapper = el('div', {}, el('div', { class: 'toolbar' }, kind), box);
  requestAnimationFrame(draw);
  return wrapper;
}

async function loadSchema(aside, editor) {
  try {
    const result = await api('POST', '/api/v1/query', {
      sql: "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns WHERE table_schema IN ('public', 'pg') ORDER BY table_schema, table_name, ordinal_position",
    });
    const tables = new Map();
    for (const r of result.rows) {
      const name = r.table_schema === 'public' ? r.table_name : `${r.table_schema}.${r.table_name}`;
      if (!tables.has(name)) tables.set(name, []);
      tables.get(name).push(r);
    }
    aside.replaceChildren(el('h3', {}, 'Tables'), ...[...tables].map(([name, cols]) => el('details', {},
      el('summary', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); editor.value = `SELECT * FROM "${name.replace('.', '"."')}" ORDER BY 1 DESC LIMIT 100`; } }, name)),
      el('ul', {}, cols.map((c) => el('li', {}, el('code', {}, c.column_name), ' ', el('span', { class: 'muted' }, c.data_type)))))));
  } catch (e) {
    aside.replaceChildren(el('p', { class: 'error' }, e.message));
  }
}
