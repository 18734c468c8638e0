// The reports page: the daily reports, newest first, each opening its HTML report in a tab
// of its own (through a one-time download link: the token stays in this tab).

import { api, download } from './api.js';
import { el } from './dom.js';

export async function render(main) {
  const { reports } = await api('GET', '/api/v1/reports');
  if (!reports.length) {
    main.replaceChildren(el('h2', {}, 'Reports'),
      el('p', { class: 'muted' }, 'No reports yet. The daily report runs after midnight UTC (logyard report daily, or the chart\'s CronJob).'));
    return;
  }
  const problem = el('p', { class: 'error', role: 'alert' });
  const open = (report, file, newTab) => download({ report: { kind: report.kind, date: report.date, file } }, newTab)
    .catch((e) => { problem.textContent = e.message; });
  const rows = reports.map((r) => el('tr', {},
    el('td', {}, el('button', { type: 'button', class: 'quiet', onclick: () => open(r, 'report.html', true) }, r.date)),
    el('td', {}, r.kind),
    el('td', { class: 'muted' }, r.generated_at),
    el('td', {}, r.files.filter((f) => f.name !== 'report.html').map((f) => el('button', {
      type: 'button', class: 'quiet small', title: `Download ${f.name}`, onclick: () => open(r, f.name, false),
    }, f.name)))));
  main.replaceChildren(el('h2', {}, 'Reports'), problem,
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, el('th', {}, 'date'), el('th', {}, 'kind'), el('th', {}, 'generated'), el('th', {}, 'files'))),
      el('tbody', {}, rows)));
}
