// The streams page: per stream its events, bytes, files, time range, events per minute over
// the last hour and the share of error-level events, and its columns.

import { api } from './api.js';
import { el } from './dom.js';

function bytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A sparkline of counts as an inline SVG.
function sparkline(counts) {
  const w = 120;
  const h = 24;
  const max = Math.max(1, ...counts);
  const points = counts.map((c, i) => `${(i / Math.max(1, counts.length - 1)) * w},${h - (c / max) * h}`).join(' ');
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('width', w);
  svg.setAttribute('height', h);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', points);
  line.setAttribute('class', 'spark');
  svg.append(line);
  return svg;
}

export async function render(main) {
  const { streams } = await api('GET', '/api/v1/streams');
  const rows = streams.map((s) => {
    const activity = el('td', { class: 'muted' }, '…');
    const errors = el('td', { class: 'num muted' }, '…');
    lastHour(s.name, activity, errors);
    return el('tr', {},
      el('td', {}, el('a', { href: `/ui/search?streams=${encodeURIComponent(s.name)}` }, s.name)),
      el('td', { class: 'num' }, s.rows.toLocaleString()),
      el('td', { class: 'num' }, bytes(s.bytes)),
      el('td', { class: 'num' }, s.files.toLocaleString()),
      el('td', {}, s.earliest || ''),
      el('td', {}, s.latest || ''),
      activity,
      errors,
      el('td', {}, el('details', {}, el('summary', {}, `${s.schema.length} columns`),
        el('ul', {}, s.schema.map((c) => el('li', {}, el('code', {}, c.name), ' ', el('span', { class: 'muted' }, c.type)))))));
  });
  main.replaceChildren(el('table', { class: 'grid streams-table' },
    el('thead', {}, el('tr', {}, ['stream', 'events', 'stored', 'files', 'oldest', 'newest', 'last hour', 'errors', 'schema'].map((h) => el('th', {}, h)))),
    el('tbody', {}, rows)));
}

async function lastHour(stream, activity, errors) {
  try {
    const r = await api('POST', '/api/v1/search', { streams: [stream], since: '1h', limit: 1, histogram: true });
    const h = r.histogram;
    activity.replaceChildren(sparkline(h.buckets.map((b) => b.counts.reduce((a, c) => a + c, 0))), ` ${h.total.toLocaleString()}`);
    const bad = h.series.map((s, i) => (/^(error|fatal|critical|5xx)$/.test(s) ? i : -1)).filter((i) => i >= 0);
    const n = h.buckets.reduce((a, b) => a + bad.reduce((x, i) => x + b.counts[i], 0), 0);
    errors.textContent = h.series_by && h.total ? `${((100 * n) / h.total).toFixed(1)} %` : '–';
  } catch (e) {
    activity.textContent = e.message;
  }
}
