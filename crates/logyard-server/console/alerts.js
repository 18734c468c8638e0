// The alerts page: every rule the token may see, with its pending and firing alerts
// (acknowledge one, silence one for an hour), the silences that cover it (end one), the
// notifications its receivers have not taken, its value over the last 6 hours and its latest
// evaluations, both from the logyard-alerts stream. An admin token also adds rules, previews
// them, and edits or deletes the ones added through the API (those of logyard.toml stay).

import { api } from './api.js';
import { sparkline } from './chart.js';
import { el, shortTime } from './dom.js';
import { navigate } from './nav.js';

const HISTORY = 'logyard-alerts';
const HOURS = 6;
const HISTORY_ROWS = 20;
const EMPTY = 'No alert rules. Add them in logyard.toml ([[alerts.rules]]) or with POST /api/v1/alerts — see docs/alerts.md';
const SEVERITIES = ['critical', 'warning', 'info'];
// The search page's ranges, and how many seconds each covers.
const RANGES = [['15m', 900], ['1h', 3600], ['24h', 86400], ['7d', 604800]];
// Units of durations as the server writes them (humantime: "10s", "1h 30m", "2days").
const UNITS = {
  ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, sec: 1, secs: 1, second: 1, seconds: 1,
  m: 60, min: 60, mins: 60, minute: 60, minutes: 60, h: 3600, hr: 3600, hrs: 3600, hour: 3600, hours: 3600,
  d: 86400, day: 86400, days: 86400, w: 604800, week: 604800, weeks: 604800,
  M: 2630016, month: 2630016, months: 2630016, y: 31557600, year: 31557600, years: 31557600,
};

function seconds(span) {
  let total = 0;
  for (const [, n, unit] of String(span || '').matchAll(/(\d+(?:\.\d+)?)\s*([A-Za-zµ]+)/g)) total += Number(n) * (UNITS[unit] || 0);
  return total;
}

// RFC 3339 to milliseconds (a time without an offset is UTC, as everything the API returns).
function millis(value) {
  const s = String(value);
  return Date.parse(/(Z|[+-]\d\d:?\d\d)$/.test(s) ? s : `${s}Z`);
}

// A time as the console shows it (UTC), to the second.
function clock(value) {
  return shortTime(value).replace(/\.\d+$/, '');
}

function ago(value) {
  const s = Math.max(0, Math.round((Date.now() - millis(value)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function number(value) {
  if (value === null || value === undefined || value === '') return '–';
  const n = Number(value);
  return Number.isInteger(n) ? n.toLocaleString() : n.toLocaleString(undefined, { maximumFractionDigits: 3 });
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function groupName(group) {
  return group ? group : '(all)';
}

// A SQL string literal.
function literal(value) {
  return `'${String(value).replace(/'/g, "''")}'`;
}

async function sql(statement) {
  const result = await api('POST', '/api/v1/query', { sql: statement, format: 'json' });
  // An error met after the first rows comes at the end of a 200 answer.
  if (result.error) throw new Error(result.error.message);
  return result;
}

// The value of a label of a rule's alert, as a silence's matchers name it.
function label(rule, name, group) {
  if (name === 'rule' || name === 'alertname') return rule.name;
  if (name === 'group') return group;
  if (name === 'severity') return rule.severity || 'warning';
  return rule.labels ? rule.labels[name] : undefined;
}

// Whether a silence covers the rule's alert of `group` (any of its alerts when `group` is
// undefined): every matcher matches, a value ending in * by prefix (as the server decides).
function covers(silence, rule, group) {
  return Object.entries(silence.matchers || {}).every(([name, want]) => {
    if (name === 'group' && group === undefined) return true;
    const have = label(rule, name, group);
    if (have === undefined || have === null) return false;
    return want.endsWith('*') ? have.startsWith(want.slice(0, -1)) : have === want;
  });
}

function active(silence, now) {
  return millis(silence.starts_at) <= now && now < millis(silence.ends_at);
}

// The search page's URL for a search rule: its streams and query, over a range that shows
// a few of its windows.
function searchUrl(rule) {
  const window = seconds(rule.window || rule.every);
  const range = RANGES.find(([, s]) => s >= window * 4) || RANGES[RANGES.length - 1];
  const p = new URLSearchParams();
  p.set('streams', rule.search.streams.join(','));
  if (rule.search.query) p.set('q', rule.search.query);
  p.set('since', range[0]);
  return `/ui/search?${p}`;
}

// The threshold of a `value > N` condition, drawn on the chart (none for rows and change).
function threshold(condition) {
  const m = /^\s*value\s*(?:[<>]=?|[=!]=)\s*(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*$/i.exec(condition || '');
  return m ? Number(m[1]) : null;
}

export async function render(main, _params, session) {
  const [{ rules, receivers }, { silences }] = await Promise.all([api('GET', '/api/v1/alerts'), api('GET', '/api/v1/silences')]);
  const refresh = () => navigate(location.pathname + location.search, true);
  // Only an admin token adds, changes and deletes rules (and only those added through the API).
  const admin = !session.auth || session.scopes.includes('admin');
  const names = rules.map((r) => r.name);
  const edit = admin ? (entry) => openEditor(main, entry, receivers || [], names, refresh) : null;
  const newRule = edit && el('button', { type: 'button', class: 'new-rule', onclick: () => edit(null) }, 'New rule');
  if (!rules.length) {
    main.replaceChildren(
      el('div', { class: 'toolbar page-head' }, el('h2', {}, 'Alerts'), newRule),
      el('p', { class: 'muted empty' }, EMPTY));
    return;
  }
  const now = Date.now();
  const sections = rules.map((entry) => ruleSection(entry, silences, session, now, refresh, entry.source === 'api' ? edit : null));
  const firing = rules.reduce((n, r) => n + r.alerts.filter((a) => a.state === 'firing').length, 0);
  main.replaceChildren(
    el('div', { class: 'toolbar page-head' },
      el('h2', {}, 'Alerts'),
      el('span', { class: 'muted' }, `${plural(rules.length, 'rule')}, ${firing} firing · as of ${clock(new Date(now).toISOString())} UTC`),
      el('button', { type: 'button', class: 'quiet', onclick: refresh }, 'Refresh'),
      newRule),
    el('div', { class: 'alerts-page' }, sections.map((s) => s.node)));
  // Busy (see app.js) until the charts and histories are shown.
  const columns = await historyColumns();
  await Promise.all(sections.map((s) => s.load(columns)));
}

// The columns of the history stream: a Set, or the error that kept them from being read.
async function historyColumns() {
  try {
    const result = await sql(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ${literal(HISTORY)}`);
    return new Set(result.rows.map((r) => r.column_name));
  } catch (e) {
    return e;
  }
}

// `edit` opens the rule form (null: the token may not change this rule).
function ruleSection(entry, silences, session, now, refresh, edit) {
  const rule = entry.rule;
  const problem = el('p', { class: 'error', role: 'alert', hidden: true });
  // A button that calls the API, then shows the page again; a refusal is shown by the rule.
  const action = (label, title, call) => {
    const button = el('button', { type: 'button', class: 'small', title }, label);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await call();
        refresh();
      } catch (e) {
        button.disabled = false;
        problem.hidden = false;
        problem.textContent = e.message || String(e);
      }
    });
    return button;
  };
  const own = silences.filter((s) => covers(s, rule));
  const mayEnd = (s) => !session.auth || s.created_by === session.name || session.scopes.includes('admin');

  const order = { firing: 0, pending: 1 };
  const alerts = entry.alerts.slice().sort((a, b) => (order[a.state] ?? 2) - (order[b.state] ?? 2) || a.group.localeCompare(b.group));
  const alertList = alerts.length
    ? el('ul', { class: 'alerts' }, alerts.map((a) => alertItem(rule, a, own, now, action)))
    : el('p', { class: 'muted' }, 'Nothing pending or firing.');

  const silenceList = own.length > 0 && el('div', { class: 'silences' },
    el('h4', {}, 'Silences'),
    el('ul', {}, own.map((s) => el('li', { class: 'silence', dataset: { id: s.id } },
      el('code', {}, Object.entries(s.matchers).map(([k, v]) => `${k}=${v}`).join(', ')),
      active(s, now) ? ` until ${clock(s.ends_at)}` : ` from ${clock(s.starts_at)} until ${clock(s.ends_at)}`,
      ` by ${s.created_by}`,
      s.comment ? el('span', { class: 'muted' }, ` — ${s.comment}`) : null,
      mayEnd(s) && action('End', 'End this silence now', () => api('DELETE', `/api/v1/silences/${encodeURIComponent(s.id)}`))))));

  const undelivered = entry.undelivered.length > 0 && el('div', { class: 'undelivered' },
    el('strong', {}, `${plural(entry.undelivered.length, 'notification')} not delivered`),
    el('ul', {}, entry.undelivered.map((n) => el('li', {},
      `${n.state} of `, el('code', {}, groupName(n.group)), ` to ${n.receivers.join(', ')} · ${plural(n.attempts, 'attempt')}`,
      n.last_error ? [' · last error: ', el('span', { class: 'last-error' }, n.last_error)] : null,
      ` · next try ${clock(n.next_try)}`))));

  const spark = el('div', { class: 'trend-chart' }, el('p', { class: 'muted' }, 'Loading…'));
  const history = el('div', { class: 'history' }, el('p', { class: 'muted' }, 'Loading…'));
  const caption = rule.group_by
    ? `The largest value of its groups at each evaluation, last ${HOURS} hours`
    : `Its value at each evaluation, last ${HOURS} hours`;
  const line = threshold(rule.condition);

  // Edit, and Delete after a second step that says what goes and what stays.
  let changes = null;
  if (edit) {
    const ask = el('span', { class: 'confirm', hidden: true },
      el('span', {}, 'Delete this rule? Its history stays in logyard-alerts.'),
      action('Delete rule', `Delete ${rule.name} now`, () => api('DELETE', `/api/v1/alerts/${encodeURIComponent(rule.name)}`)),
      el('button', { type: 'button', class: 'small quiet', onclick: () => { ask.hidden = true; first.hidden = false; } }, 'Cancel'));
    ask.querySelector('button').classList.add('danger');
    const first = el('span', { class: 'rule-buttons' },
      el('button', { type: 'button', class: 'small quiet', title: 'Change this rule', onclick: () => edit(entry) }, 'Edit'),
      el('button', { type: 'button', class: 'small quiet', title: 'Delete this rule', onclick: () => { first.hidden = true; ask.hidden = false; } }, 'Delete'));
    changes = el('span', { class: 'rule-actions' }, first, ask);
  }

  const firing = entry.alerts.filter((a) => a.state === 'firing').length;
  const node = el('section', { class: 'rule', dataset: { rule: rule.name } },
    el('div', { class: 'rule-head' },
      el('h3', {}, rule.name),
      el('span', { class: `badge ${rule.severity}` }, rule.severity),
      firing > 0 && el('span', { class: 'state firing' }, `${firing} firing`),
      el('span', { class: 'muted source' }, entry.source === 'config' ? 'from logyard.toml' : 'added through the API'),
      changes),
    el('p', { class: 'rule-meta' },
      el('code', {}, rule.condition),
      ` · every ${rule.every} · window ${rule.window || rule.every}`,
      rule.for && ` · for ${rule.for}`,
      rule.group_by && [' · by ', el('code', {}, rule.group_by)],
      rule.notify && rule.notify.length > 0 && ` · notifies ${rule.notify.join(', ')}`,
      entry.evaluator
        ? el('span', { class: 'muted' }, ` · evaluated by ${entry.evaluator.replica}`)
        : el('span', { class: 'muted' }, ' · no replica evaluates it right now')),
    rule.search
      ? el('div', { class: 'rule-query' },
        el('span', { class: 'muted' }, `search in ${rule.search.streams.join(', ')}: `),
        el('code', { class: 'query' }, rule.search.query || '(every event)'),
        el('a', { href: searchUrl(rule) }, 'Open search'))
      : el('pre', { class: 'query' }, rule.sql),
    problem,
    undelivered,
    el('div', { class: 'rule-body' },
      el('div', {}, alertList, silenceList),
      el('div', {},
        el('figure', { class: 'trend' }, spark,
          el('figcaption', { class: 'muted' }, caption, line !== null ? '; dashed: the threshold.' : '.')),
        history)));

  const load = (columns) => Promise.all([
    loadSpark(spark, rule, columns, line),
    loadHistory(history, rule, columns),
  ]);
  return { node, load };
}

// The rule form, in a modal dialog: a new rule (entry null), or one added through the API
// filled from its JSON, its name kept. Preview asks the API what the rule says about its
// latest window (nothing kept or sent); Save adds or replaces it, then shows the page again.
// Empty optional fields are left out of the rule; labels (not in the form) are kept.
function openEditor(main, entry, receivers, names, refresh) {
  const editing = Boolean(entry);
  const rule = editing ? entry.rule : {};
  const input = (name, value, placeholder, attrs) =>
    el('input', { name, value: value || '', placeholder, autocomplete: 'off', spellcheck: 'false', ...attrs });
  const field = (cls, caption, control, hint) => el('label', { class: `field ${cls}` },
    el('span', { class: 'caption' }, caption), control, hint && el('small', { class: 'muted' }, hint));

  const f = {
    name: input('name', rule.name, 'lower-case-name', { readonly: editing }),
    kind: el('select', { name: 'kind' }, el('option', { value: 'search' }, 'search'), el('option', { value: 'sql' }, 'SQL')),
    streams: input('streams', rule.search && rule.search.streams.join(', '), 'web, storefront'),
    query: input('query', rule.search && rule.search.query, 'status:>=500 (empty: every event)'),
    sql: el('textarea', { name: 'sql', rows: 5, class: 'editor', spellcheck: 'false',
      placeholder: 'SELECT route, count(*) AS value FROM web WHERE $__timeFilter(timestamp) GROUP BY route' }, rule.sql || ''),
    group_by: input('group_by', rule.group_by, 'route'),
    every: input('every', rule.every, '1m'),
    window: input('window', rule.window, 'as every'),
    for: input('for', rule.for, '0s: at once'),
    condition: input('condition', rule.condition, 'value > 5'),
    severity: el('select', { name: 'severity' },
      SEVERITIES.map((s) => el('option', { value: s, selected: s === (rule.severity || 'warning') }, s))),
    message: input('message', rule.message, '{{value}} errors on {{group}}'),
  };
  f.kind.value = rule.sql ? 'sql' : 'search';
  // The receivers a rule may notify, and any it names that are gone (the server refuses them).
  const notified = new Set(rule.notify || []);
  const offered = receivers.concat([...notified].filter((n) => !receivers.includes(n)));
  const boxes = offered.map((name) => el('input', { type: 'checkbox', name: 'notify', value: name, checked: notified.has(name) }));
  const labels = rule.labels && Object.keys(rule.labels).length > 0 ? rule.labels : null;

  const searchFields = el('div', { class: 'field-group' },
    field('half', 'Streams', f.streams, 'comma-separated'),
    field('half', 'Query', f.query));
  const sqlFields = el('div', { class: 'field-group' },
    field('', 'SQL', f.sql, 'rows with a numeric value column; $__timeFilter(timestamp) names the window'));
  const showKind = () => {
    searchFields.hidden = f.kind.value !== 'search';
    sqlFields.hidden = f.kind.value === 'search';
  };
  f.kind.addEventListener('change', showKind);
  showKind();

  const fields = el('div', { class: 'fields' },
    field('two-thirds', 'Name', f.name, editing ? null : 'lower-case letters, digits, - and _'),
    field('third', 'Kind', f.kind),
    searchFields,
    sqlFields,
    field('third', 'Group by', f.group_by),
    el('div', { class: 'timing' },
      field('', 'Every', f.every),
      field('', 'Window', f.window),
      field('', 'For', f.for)),
    field('two-thirds', 'Condition', f.condition, 'value > 5, rows > 0 or change(1d) > 50%'),
    field('third', 'Severity', f.severity),
    field('', 'Message', f.message),
    el('fieldset', { class: 'field notify' }, el('legend', {}, 'Notify'),
      offered.length
        ? offered.map((name, i) => el('label', {}, boxes[i], ` ${name}`,
          receivers.includes(name) ? null : el('span', { class: 'error' }, ' (no such receiver)')))
        : el('span', { class: 'muted' }, 'No receivers configured ([[alerts.receivers]] in logyard.toml).')),
    labels && el('p', { class: 'field muted' }, 'Labels, kept as they are: ',
      el('code', {}, Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(', '))));

  const problem = el('p', { class: 'error form-error', role: 'alert', hidden: true });
  const result = el('div', { class: 'rule-preview', hidden: true });
  const preview = el('button', { type: 'button', class: 'quiet' }, 'Preview');
  const save = el('button', { type: 'submit' }, 'Save');
  const form = el('form', { class: 'rule-form', novalidate: true },
    el('h2', { id: 'rule-form-title' }, editing ? `Edit ${rule.name}` : 'New alert rule'),
    fields, problem, result,
    el('div', { class: 'form-actions' },
      preview,
      el('span', { class: 'spacer' }),
      el('button', { type: 'button', class: 'quiet', onclick: () => dialog.close() }, 'Cancel'),
      save));
  const dialog = el('dialog', { class: 'rule-dialog', 'aria-labelledby': 'rule-form-title' }, form);

  // The rule as the form says it.
  const read = () => {
    const v = (name) => f[name].value.trim();
    const out = { name: v('name') };
    if (f.kind.value === 'sql') {
      out.sql = v('sql');
    } else {
      out.search = { streams: v('streams').split(',').map((s) => s.trim()).filter(Boolean) };
      if (v('query')) out.search.query = v('query');
    }
    if (v('group_by')) out.group_by = v('group_by');
    out.every = v('every');
    if (v('window')) out.window = v('window');
    out.condition = v('condition');
    if (v('for')) out.for = v('for');
    out.severity = f.severity.value;
    if (labels) out.labels = labels;
    if (v('message')) out.message = v('message');
    const notify = boxes.filter((b) => b.checked).map((b) => b.value);
    if (notify.length) out.notify = notify;
    return out;
  };
  const busy = (on) => {
    preview.disabled = on;
    save.disabled = on;
  };
  const fail = (e) => {
    problem.hidden = false;
    problem.textContent = e.message || String(e);
    problem.scrollIntoView({ block: 'nearest' });
  };

  preview.addEventListener('click', async () => {
    const draft = read();
    // A preview needs a valid name, not yet the one it will be saved under.
    if (!draft.name) draft.name = 'preview';
    problem.hidden = true;
    busy(true);
    try {
      showPreview(result, await api('POST', '/api/v1/alerts/preview', { rule: draft }));
      result.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      result.hidden = true;
      fail(e);
    } finally {
      busy(false);
    }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const draft = read();
    problem.hidden = true;
    // Saving under the name of another rule would replace it without a word.
    if (!editing && names.includes(draft.name)) {
      fail(new Error(`There is a rule named ${draft.name} already: edit it, or choose another name.`));
      return;
    }
    busy(true);
    try {
      await api('POST', '/api/v1/alerts', draft);
      dialog.close();
      refresh();
    } catch (e) {
      busy(false);
      fail(e);
    }
  });
  dialog.addEventListener('close', () => dialog.remove());
  main.append(dialog);
  dialog.showModal();
}

// What a preview says: the window, and per group the value and whether the condition holds.
function showPreview(box, answer) {
  const groups = answer.groups || [];
  box.hidden = false;
  box.replaceChildren(
    el('p', { class: 'preview-window' },
      'Window ', el('time', { datetime: answer.window.from }, clock(answer.window.from)),
      ' – ', el('time', { datetime: answer.window.to }, clock(answer.window.to)), ' UTC · ',
      plural(answer.rows, 'row'), el('span', { class: 'muted' }, ' · a preview: nothing kept or sent')),
    groups.length
      ? el('div', { class: 'scroll' }, el('table', { class: 'grid' },
        el('thead', {}, el('tr', {}, el('th', {}, 'group'), el('th', {}, 'value'), el('th', {}, 'holds'))),
        el('tbody', {}, groups.map((g) => el('tr', { dataset: { group: g.group } },
          el('td', { class: 'group' }, el('code', {}, groupName(g.group))),
          el('td', { class: 'num value' }, number(g.value)),
          el('td', { class: 'holds' }, el('span', { class: g.holds ? 'holds yes' : 'holds no' }, g.holds ? 'yes' : 'no')))))))
      : el('p', { class: 'muted' }, 'No group in this window.'));
}

function alertItem(rule, a, silences, now, action) {
  const silence = silences.find((s) => active(s, now) && covers(s, rule, a.group));
  const since = a.state === 'firing' && a.fired_at ? a.fired_at : a.active_since;
  const marks = [];
  if (silence) marks.push(el('span', { class: 'mark silenced', title: `by ${silence.created_by}` }, `silenced until ${clock(silence.ends_at)}`));
  else if (a.silenced) marks.push(el('span', { class: 'mark silenced', title: 'It fired under a silence: its receivers were not told' }, 'silenced'));
  if (a.acknowledged) {
    const ack = a.acknowledged;
    marks.push(el('span', { class: 'mark acknowledged', title: `at ${clock(ack.at)} UTC` },
      `acknowledged by ${ack.by}`, ack.comment ? `: ${ack.comment}` : ''));
  }
  const actions = [];
  if (a.state === 'firing' && !a.acknowledged) {
    actions.push(action('Acknowledge', 'Tell the others someone is on it (until it resolves)',
      () => api('POST', `/api/v1/alerts/${encodeURIComponent(rule.name)}/ack`, { group: a.group, comment: '' })));
  }
  if (!silence) {
    const matchers = a.group ? { rule: rule.name, group: a.group } : { rule: rule.name };
    actions.push(action('Silence 1h', 'Tell its receivers nothing about it for an hour',
      () => api('POST', '/api/v1/silences', { matchers, duration: '1h', comment: 'silenced from the console' })));
  }
  return el('li', { class: `alert ${a.state}`, dataset: { group: a.group } },
    el('span', { class: `state ${a.state}` }, a.state),
    el('code', { class: 'group' }, groupName(a.group)),
    el('span', { class: 'value' }, `value ${number(a.value)}`),
    el('span', { class: 'muted', title: `${since} (active since ${a.active_since})` }, `since ${clock(since)} (${ago(since)})`),
    marks,
    actions.length > 0 && el('span', { class: 'actions' }, actions));
}

function unavailable(columns) {
  if (columns instanceof Error) return columns.message;
  if (!columns.size) return `No evaluations recorded in ${HISTORY} yet.`;
  return null;
}

async function loadSpark(box, rule, columns, line) {
  const why = unavailable(columns);
  if (why || !columns.has('value')) {
    box.replaceChildren(el('p', { class: 'muted' }, why || 'No values recorded yet.'));
    return;
  }
  // One point per evaluation (windows end together for every group), or per 10 s for
  // rules evaluated more often.
  const time = seconds(rule.every) >= 10 ? 'timestamp' : "date_bin(INTERVAL '10 seconds', timestamp)";
  try {
    const { rows } = await sql(`SELECT ${time} AS t, max(value) AS value FROM "${HISTORY}"
      WHERE rule = ${literal(rule.name)} AND timestamp >= now() - INTERVAL '${HOURS} hours' AND value IS NOT NULL
      GROUP BY 1 ORDER BY 1`);
    if (!rows.length) {
      box.replaceChildren(el('p', { class: 'muted' }, `No values in the last ${HOURS} hours.`));
      return;
    }
    const times = rows.map((r) => millis(r.t));
    // From the oldest point, at least the last 15 minutes, to now.
    const now = Date.now();
    sparkline(box, times, rows.map((r) => Number(r.value)), line, [Math.min(times[0], now - 15 * 60e3), now]);
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error' }, e.message));
  }
}

async function loadHistory(box, rule, columns) {
  const why = unavailable(columns);
  if (why) {
    box.replaceChildren(el('p', { class: 'muted' }, why));
    return;
  }
  try {
    const { rows } = await sql(`SELECT * FROM "${HISTORY}"
      WHERE rule = ${literal(rule.name)} AND state IN ('pending', 'firing', 'resolved')
      ORDER BY timestamp DESC LIMIT ${HISTORY_ROWS}`);
    if (!rows.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'Never pending, firing or resolved.'));
      return;
    }
    const grouped = Boolean(rule.group_by);
    box.replaceChildren(el('h4', {}, `Latest ${plural(rows.length, 'evaluation')} pending, firing or resolved`),
      el('div', { class: 'scroll' }, el('table', { class: 'grid' },
        el('thead', {}, el('tr', {}, el('th', {}, 'time (UTC)'), grouped && el('th', {}, 'group'), el('th', {}, 'state'), el('th', {}, 'value'))),
        el('tbody', {}, rows.map((r) => el('tr', { title: r.message || undefined },
          el('td', { class: 'time', title: r.timestamp }, clock(r.timestamp).slice(5)),
          grouped && el('td', {}, el('code', {}, groupName(r.group))),
          el('td', {}, el('span', { class: `state ${r.state}` }, r.state), r.silenced ? el('span', { class: 'mark silenced' }, 'silenced') : null),
          el('td', { class: 'num' }, number(r.value))))))));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error' }, e.message));
  }
}
