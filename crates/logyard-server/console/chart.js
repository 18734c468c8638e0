// Charts with uPlot (vendored): the search histogram (stacked bars, drag to zoom), the
// SQL tab's chart of a time column against numeric columns and the alerts page's small
// chart of a rule's value.

import uPlot from './vendor/uPlot.esm.js';

const COLORS = ['#c0392b', '#2e86c1', '#d4ac0d', '#7d3c98', '#17a589', '#ca6f1e', '#566573', '#a93226', '#85929e'];
const SERIES_COLORS = { error: '#c0392b', fatal: '#922b21', critical: '#922b21', warn: '#d4ac0d', warning: '#d4ac0d',
  info: '#2e86c1', debug: '#85929e', trace: '#aab7b8', '5xx': '#c0392b', '4xx': '#d4ac0d', '3xx': '#7d3c98', '2xx': '#17a589' };

function color(name, i) {
  return SERIES_COLORS[name] || COLORS[i % COLORS.length];
}

// The chart's width: its box, but never wider than the window (a wide table beside it must
// not stretch it on a phone).
function width(node) {
  const view = document.documentElement.clientWidth - 24;
  return Math.max(280, Math.min(node.clientWidth || view, view));
}

// The histogram of a search: one stacked bar per bucket. `onZoom(from, to)` gets the range
// (milliseconds) a drag across it selected.
export function histogram(node, h, onZoom) {
  node.replaceChildren();
  const xs = h.buckets.map((b) => Date.parse(b.time) / 1000);
  const names = h.series.length ? h.series : ['events'];
  // Stacked: each series is drawn as the sum of itself and those after it, biggest first.
  const stacked = names.map((_, s) => h.buckets.map((b) => b.counts.slice(s).reduce((a, c) => a + c, 0)));
  const bars = uPlot.paths.bars({ size: [0.9, 64] });
  const opts = {
    width: width(node),
    height: 150,
    legend: { show: false },
    cursor: { drag: { x: true, y: false, setScale: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { size: 50 }],
    series: [{}, ...names.map((name, i) => ({ label: name || '(none)', fill: color(name, i), stroke: color(name, i), paths: bars, points: { show: false } }))],
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 3) return;
        const from = u.posToVal(u.select.left, 'x') * 1000;
        const to = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
        u.setSelect({ width: 0, height: 0 }, false);
        onZoom(Math.floor(from), Math.ceil(to));
      }],
    },
  };
  const plot = new uPlot(opts, [xs, ...stacked], node);
  return plot;
}

// A line (or bar) chart of numeric columns over a time column.
export function timeChart(node, times, columns, kind) {
  node.replaceChildren();
  const order = times.map((t, i) => [t, i]).sort((a, b) => a[0] - b[0]);
  const xs = order.map(([t]) => t / 1000);
  const series = columns.map((c) => order.map(([, i]) => c.values[i]));
  const paths = kind === 'bar' ? uPlot.paths.bars({ size: [0.8, 48] }) : undefined;
  const opts = {
    width: width(node),
    height: 260,
    scales: { x: { time: true } },
    series: [{}, ...columns.map((c, i) => ({ label: c.name, stroke: COLORS[i % COLORS.length], fill: kind === 'bar' ? COLORS[i % COLORS.length] : undefined, paths }))],
  };
  return new uPlot(opts, [xs, ...series], node);
}

// A small chart of one value over time (times in milliseconds), with the threshold as a
// dashed line when there is one, over `span` ([from, to] in milliseconds) when given.
export function sparkline(node, times, values, threshold, span) {
  node.replaceChildren();
  let xs = times.map((t) => t / 1000);
  let ys = values;
  // The span's ends as points without a value, so that the threshold crosses the chart.
  if (span && xs.length && span[0] / 1000 < xs[0]) {
    xs = [span[0] / 1000, ...xs];
    ys = [null, ...ys];
  }
  if (span && xs.length && span[1] / 1000 > xs[xs.length - 1]) {
    xs = [...xs, span[1] / 1000];
    ys = [...ys, null];
  }
  const font = '11px system-ui, sans-serif';
  const series = [{}, { label: 'value', stroke: COLORS[1], width: 1.5 }];
  const data = [xs, ys];
  if (threshold !== null && threshold !== undefined && Number.isFinite(threshold)) {
    series.push({ label: 'threshold', stroke: '#85929e', width: 1, dash: [4, 4], points: { show: false } });
    data.push(xs.map(() => threshold));
  }
  const opts = {
    width: width(node),
    height: 110,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: span ? { time: true, range: () => [span[0] / 1000, span[1] / 1000] } : { time: true },
      y: { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max(1, (max ?? 0) * 1.1)] },
    },
    axes: [{ font, size: 28 }, { font, size: 40 }],
    series,
  };
  return new uPlot(opts, data, node);
}
