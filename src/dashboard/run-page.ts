/**
 * The run page: one table of runs (shards, pairs/s, ETA, kept ratios, shards in flight, failures
 * with reasons), drawn in the browser from `/api/runs` and refreshed every 2 s. Text is only ever
 * set through textContent, and the page allows no inline script (CSP): run ids, paths and error
 * messages come from input data.
 */
export const RUN_PAGE_PATH = '/runs';

export const RUN_PAGE_CSP =
  "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; " +
  "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export const RUN_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>capfilt runs</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 .3em; }
  nav a { margin-right: 1em; }
  table { border-collapse: collapse; margin-top: 1em; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: .35em .6em; text-align: left; vertical-align: top; }
  th { background: #f4f4f4; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .state-running { color: #0a58ca; } .state-complete { color: #146c43; }
  .state-done-with-failures, .failure { color: #b02a37; }
  .small { color: #666; font-size: .9em; }
  progress { width: 8em; }
</style>
</head>
<body>
<h1>capfilt runs</h1>
<nav><a href="/admin/queues">Bull Board (queues and jobs)</a><a href="/api/runs">JSON</a><a href="/metrics">metrics</a></nav>
<p id="status" class="small">loading…</p>
<table>
  <thead><tr>
    <th>run</th><th>state</th><th>shards done / total</th><th>failed</th><th>pairs</th>
    <th>pairs/s</th><th>ETA</th><th>kept (web / synthetic)</th><th>in flight</th>
  </tr></thead>
  <tbody id="runs"></tbody>
</table>
<script src="${RUN_PAGE_PATH}.js"></script>
</body>
</html>
`;

export const RUN_PAGE_SCRIPT = `'use strict';
const $ = (tag, text, cls) => {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = String(text);
  if (cls) el.className = cls;
  return el;
};
const pct = (x) => (100 * x).toFixed(1) + ' %';
const duration = (s) => {
  if (s === null) return '–';
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  return (s / 3600).toFixed(1) + ' h';
};
function row(run) {
  const tr = $('tr');
  tr.dataset.run = run.runId;
  const name = $('td');
  name.append($('div', run.runId), $('div', run.mode + ': ' + run.input + ' → ' + run.output, 'small'));
  const done = $('td', '', 'num shards');
  const bar = $('progress');
  bar.max = Math.max(run.shardsTotal, 1);
  bar.value = run.shardsDone + run.shardsFailed;
  done.append(bar, $('span', ' ' + run.shardsDone + ' / ' + run.shardsTotal));
  const flight = $('td');
  for (const a of run.active) {
    const of = a.pairsTotal === null ? '' : ' / ' + a.pairsTotal;
    flight.append($('div', a.stage + ' ' + a.shard + ': ' + a.pairsDone + of + ' pairs', 'small'));
  }
  tr.append(
    name,
    $('td', run.state, 'state state-' + run.state.replace(/ /g, '-')),
    done,
    $('td', run.shardsFailed, 'num failed'),
    $('td', run.pairsDone, 'num pairs'),
    $('td', run.pairsPerSecond.toFixed(1), 'num rate'),
    $('td', duration(run.etaSeconds), 'num eta'),
    $('td', pct(run.keptRatio.web) + ' / ' + pct(run.keptRatio.synthetic), 'num kept'),
    flight,
  );
  const rows = [tr];
  for (const f of run.failures) {
    const fr = $('tr', undefined, 'failure');
    const cell = $('td', 'failed ' + f.shardId + ': ' + f.error, 'failure');
    cell.colSpan = 9;
    fr.append(cell);
    rows.push(fr);
  }
  return rows;
}
async function refresh() {
  const status = document.getElementById('status');
  try {
    const res = await fetch('/api/runs', { credentials: 'same-origin' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const runs = await res.json();
    document.getElementById('runs').replaceChildren(...runs.flatMap(row));
    status.textContent = runs.length + ' runs, updated ' + new Date().toLocaleTimeString();
  } catch (err) {
    status.textContent = 'could not read the runs: ' + err.message;
  }
}
refresh();
setInterval(refresh, 2000);
`;
