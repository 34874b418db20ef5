/**
 * The status page (GET /): one self-contained HTML document — inline CSS and JS, no external
 * asset, no CDN — that polls `api/summary` (relative, so it works behind a path-prefixing reverse
 * proxy) every 10 s and renders the headline figures and an inline-SVG trend chart.
 * All data is put into the DOM with textContent / setAttribute (never innerHTML): asset names, SNI
 * and reasons cannot inject markup. Served with a strict CSP (nonce for the inline script/style).
 *
 * The log view (bottom card) polls `api/events` with its filters (Show only Decryption Detection,
 * dataset, server, free text): newest first, one row per event, a click expands the whole event
 * as it went to the events topic (credentials redacted as there). Wire text is shown as text.
 */
import type { TrendSeries } from './history.js';
import type { GovernorState } from './governor.js';

export interface StatusSummary {
  generated: string;
  uptimeSec: number;
  decryptedBytes: number;
  packets: number;
  bytes: number;
  flowsActive: number;
  eventsByProtocol: Record<string, number>;
  sessionsByStatus: Record<string, number>;
  assets: { decrypting: number; total: number; byStatus: Record<string, number>; top: { name: string; status: string; statusLabel: string; reason: string; decrypting: boolean; decryptedBytes: number }[] };
  kafka: { lag: number | null; connected: boolean | null };
  paused: boolean;
  pausedReason?: string;
  governor?: Omit<GovernorState, 'reason'>;
  notDecrypted: { sessions: number; bytes: number };
  trend: { fine: TrendSeries; coarse: TrendSeries };
}

export function renderStatusPage(nonce: string, title = 'tlsdecrypt'): string {
  const t = title.replace(/[<>&"']/g, '');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${t} — decryption status</title>
<style nonce="${nonce}">
:root { --bg:#0f172a; --card:#1e293b; --fg:#e2e8f0; --muted:#94a3b8; --ok:#22c55e; --warn:#f59e0b; --bad:#ef4444; --accent:#38bdf8; }
* { box-sizing:border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; align-items:center; gap:16px; padding:14px 24px; border-bottom:1px solid #334155; }
header h1 { font-size:18px; margin:0; font-weight:600; }
#updated { color:var(--muted); margin-left:auto; font-size:12px; }
.badge { padding:3px 10px; border-radius:999px; font-weight:700; font-size:12px; letter-spacing:.05em; }
.badge.running { background:#14532d; color:#bbf7d0; } .badge.paused { background:#7f1d1d; color:#fecaca; } .badge.unknown { background:#334155; }
main { padding:20px 24px; display:grid; gap:16px; grid-template-columns:repeat(auto-fit,minmax(230px,1fr)); }
.card { background:var(--card); border-radius:10px; padding:14px 16px; }
.card h2 { margin:0 0 6px; font-size:12px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); font-weight:600; }
.big { font-size:30px; font-weight:700; font-variant-numeric:tabular-nums; }
.sub { color:var(--muted); font-size:12px; margin-top:4px; }
.wide { grid-column:1/-1; }
#paused-reason { color:#fecaca; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
td, th { padding:4px 6px; text-align:left; border-bottom:1px solid #334155; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; }
td.num { text-align:right; white-space:nowrap; }
.span2 { grid-column:span 2; }
.barwrap { width:160px; background:#0f172a; border-radius:4px; }
.bar { height:8px; background:var(--accent); border-radius:4px; min-width:2px; }
.st-decrypted,.st-enabled { color:var(--ok); } .st-partial,.st-enabling,.st-no_key { color:var(--warn); }
.st-integrity_failure,.st-unsupported_cipher,.st-decryption_failing,.st-agent_abnormal,.st-auto_disabled,.st-paused { color:var(--bad); }
.st-disabled,.st-missing_handshake { color:var(--muted); }
.tabs button { background:#334155; color:var(--fg); border:0; border-radius:6px; padding:4px 10px; margin-right:6px; cursor:pointer; }
.tabs button.active { background:var(--accent); color:#0f172a; }
#trend { width:100%; height:220px; display:block; margin-top:8px; }
#trend .axis { fill:var(--muted); font-size:11px; }
#trend rect.b { fill:var(--accent); }
#error { color:var(--bad); }
.logbar { display:flex; flex-wrap:wrap; gap:10px; align-items:center; margin-bottom:8px; }
.logbar input[type=text], .logbar select { background:#0f172a; color:var(--fg); border:1px solid #334155; border-radius:6px; padding:4px 8px; }
.logbar label.switch { font-weight:600; cursor:pointer; }
#log tr.logrow { cursor:pointer; } #log tr.logrow:hover { background:#273449; }
#log td { font-size:12px; } #log td.when { white-space:nowrap; color:var(--muted); }
#log tr.detail pre { margin:0; padding:8px; background:#0f172a; border-radius:6px; white-space:pre-wrap; word-break:break-all; font-size:12px; max-height:420px; overflow:auto; }
.tag { background:#075985; color:#e0f2fe; border-radius:4px; padding:1px 6px; font-size:11px; white-space:nowrap; }
</style>
</head>
<body>
<header>
  <h1>${t} — TLS decryption status</h1>
  <span id="state-badge" class="badge unknown">…</span>
  <span id="updated">loading…</span>
</header>
<main>
  <section class="card"><h2>Decrypted volume (cumulative)</h2><div class="big" id="decrypted-volume">—</div><div class="sub" id="decrypted-bytes"></div></section>
  <section class="card"><h2>Assets with decryption active</h2><div class="big" id="assets-decrypting">—</div><div class="sub" id="assets-total"></div></section>
  <section class="card"><h2>Kafka consumer lag</h2><div class="big" id="kafka-lag">—</div><div class="sub" id="kafka-state"></div></section>
  <section class="card"><h2>Decryption</h2><div class="big" id="paused-state">—</div><div class="sub" id="paused-reason"></div><div class="sub" id="not-decrypted"></div></section>
  <section class="card wide"><h2>Decrypted volume — trend</h2>
    <div class="tabs"><button id="tab-fine" class="active" type="button">Last hour (10 s)</button><button id="tab-coarse" type="button">Last 7 days (1 h)</button><span class="sub" id="trend-caption"></span></div>
    <svg id="trend" viewBox="0 0 900 220" preserveAspectRatio="none" role="img" aria-label="decrypted bytes per interval"></svg>
  </section>
  <section class="card span2"><h2>Decryption outcomes (TLS sessions)</h2><table><thead><tr><th>status</th><th class="num">sessions</th><th></th></tr></thead><tbody id="outcomes"></tbody></table></section>
  <section class="card"><h2>Traffic</h2><table><tbody id="traffic"></tbody></table></section>
  <section class="card wide"><h2>Assets</h2><table><thead><tr><th>asset</th><th>status</th><th class="num">decrypted</th><th>reason</th></tr></thead><tbody id="assets"></tbody></table></section>
  <section class="card wide" id="logview"><h2>Log — recent events (troubleshooting view; the events topic is the record)</h2>
    <div class="logbar">
      <label class="switch"><input type="checkbox" id="log-decrypted"> Show only Decryption Detection</label>
      <select id="log-dataset" aria-label="dataset"><option value="">all datasets</option><option value="http">http</option><option value="smtp">smtp</option><option value="ftp">ftp</option><option value="tls.session">tls.session</option><option value="alert">alert</option></select>
      <input type="text" id="log-server" placeholder="server / asset (IP, IP:port, SNI)" aria-label="server">
      <input type="text" id="log-text" placeholder="search text" aria-label="search">
      <span class="sub" id="log-count"></span>
    </div>
    <table><thead><tr><th>time (UTC)</th><th>dataset</th><th>client → server</th><th>summary</th><th></th></tr></thead><tbody id="log"></tbody></table>
  </section>
  <div id="error" class="wide"></div>
</main>
<script nonce="${nonce}">
(function () {
  'use strict';
  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function bytes(n) {
    if (!(n > 0)) return '0 B';
    var i = 0; while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + UNITS[i];
  }
  function int(n) {
    if (n === null || n === undefined || !isFinite(n)) return '—';
    var s = String(Math.round(n)), out = '';
    while (s.length > 3) { out = ',' + s.slice(-3) + out; s = s.slice(0, -3); }
    return s + out;
  }
  function $(id) { return document.getElementById(id); }
  function text(id, v) { $(id).textContent = v; }
  function el(tag, cls, txt) { var e = document.createElement(tag); if (cls) e.className = cls; if (txt !== undefined) e.textContent = txt; return e; }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  var SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, txt) { var e = document.createElementNS(SVGNS, tag); for (var k in attrs) e.setAttribute(k, attrs[k]); if (txt !== undefined) e.textContent = txt; return e; }
  var mode = 'fine', last = null;
  function hhmm(t, withDay) {
    var d = new Date(t), p = function (x) { return (x < 10 ? '0' : '') + x; };
    return (withDay ? d.getUTCFullYear() + '-' + p(d.getUTCMonth() + 1) + '-' + p(d.getUTCDate()) + ' ' : '') + p(d.getUTCHours()) + ':' + p(d.getUTCMinutes()) + ' UTC';
  }
  function chart(series) {
    var g = $('trend'); clear(g);
    var pts = (series && series.points) || [];
    var W = 900, H = 220, L = 70, B = 22, T = 8;
    var max = 0, total = 0;
    pts.forEach(function (p) { if (p.bytes > max) max = p.bytes; total += p.bytes; });
    g.setAttribute('data-points', String(pts.length));
    g.setAttribute('data-total', String(total));
    g.appendChild(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, stroke: '#475569' }));
    g.appendChild(svg('text', { x: L - 6, y: T + 10, 'text-anchor': 'end', 'class': 'axis' }, bytes(max)));
    g.appendChild(svg('text', { x: L - 6, y: H - B, 'text-anchor': 'end', 'class': 'axis' }, '0'));
    if (!pts.length) { g.appendChild(svg('text', { x: (W + L) / 2, y: H / 2, 'text-anchor': 'middle', 'class': 'axis' }, 'no data yet')); }
    var n = Math.max(pts.length, series && series.intervalSec === 10 ? 360 : 168);
    var w = (W - L) / n;
    var x0 = W - pts.length * w;
    pts.forEach(function (p, i) {
      var h = max > 0 ? Math.max(p.bytes > 0 ? 1 : 0, (p.bytes / max) * (H - B - T)) : 0;
      var r = svg('rect', { 'class': 'b', x: (x0 + i * w).toFixed(2), y: (H - B - h).toFixed(2), width: Math.max(0.5, w - 0.5).toFixed(2), height: h.toFixed(2), 'data-bytes': String(p.bytes) });
      r.appendChild(svg('title', {}, hhmm(p.t, series.intervalSec >= 3600) + ': ' + bytes(p.bytes)));
      g.appendChild(r);
    });
    if (pts.length) {
      g.appendChild(svg('text', { x: x0, y: H - 6, 'class': 'axis' }, hhmm(pts[0].t - series.intervalSec * 1000, series.intervalSec >= 3600)));
      g.appendChild(svg('text', { x: W - 2, y: H - 6, 'text-anchor': 'end', 'class': 'axis' }, hhmm(pts[pts.length - 1].t, series.intervalSec >= 3600)));
    }
    text('trend-caption', ' ' + bytes(total) + ' decrypted in the period shown, peak ' + bytes(max) + ' per ' + (series && series.intervalSec >= 3600 ? 'hour' : (series ? series.intervalSec : 10) + ' s'));
  }
  function render(s) {
    last = s;
    text('decrypted-volume', bytes(s.decryptedBytes));
    text('decrypted-bytes', int(s.decryptedBytes) + ' bytes of plaintext');
    text('assets-decrypting', int(s.assets.decrypting));
    text('assets-total', 'of ' + int(s.assets.total) + ' assets seen or configured');
    text('kafka-lag', s.kafka.lag === null ? 'n/a' : int(s.kafka.lag));
    text('kafka-state', s.kafka.connected === null ? 'not consuming from Kafka' : s.kafka.connected ? 'connected' : 'NOT connected');
    var b = $('state-badge');
    b.className = 'badge ' + (s.paused ? 'paused' : 'running');
    b.textContent = s.paused ? 'PAUSED' : 'RUNNING';
    text('paused-state', s.paused ? 'Paused' : 'Active');
    $('paused-state').className = 'big ' + (s.paused ? 'st-paused' : 'st-decrypted');
    text('paused-reason', s.paused ? (s.pausedReason || 'paused by the resource governor') : '');
    text('not-decrypted', (s.notDecrypted.sessions || s.notDecrypted.bytes) ? 'not decrypted because of pauses: ' + int(s.notDecrypted.sessions) + ' sessions, ' + bytes(s.notDecrypted.bytes) : '');
    var o = $('outcomes'); clear(o);
    var keys = Object.keys(s.sessionsByStatus).sort(function (a, c) { return s.sessionsByStatus[c] - s.sessionsByStatus[a]; });
    var mx = 0; keys.forEach(function (k) { if (s.sessionsByStatus[k] > mx) mx = s.sessionsByStatus[k]; });
    keys.forEach(function (k) {
      var tr = el('tr'); tr.setAttribute('data-status', k);
      tr.appendChild(el('td', 'st-' + k, k));
      tr.appendChild(el('td', 'num', int(s.sessionsByStatus[k])));
      var td = el('td'), wrap = el('div', 'barwrap'), bar = el('div', 'bar'); wrap.appendChild(bar); bar.style.width = (mx ? Math.round(100 * s.sessionsByStatus[k] / mx) : 0) + '%';
      td.appendChild(wrap); tr.appendChild(td); o.appendChild(tr);
    });
    if (!keys.length) { var tr0 = el('tr'); tr0.appendChild(el('td', '', 'no TLS session ended yet')); o.appendChild(tr0); }
    var tb = $('traffic'); clear(tb);
    [['packets', int(s.packets)], ['captured volume', bytes(s.bytes)], ['open TCP flows', int(s.flowsActive)]].concat(
      Object.keys(s.eventsByProtocol).sort().map(function (p) { return ['events ' + p, int(s.eventsByProtocol[p])]; })
    ).forEach(function (r) { var tr = el('tr'); tr.appendChild(el('td', '', r[0])); tr.appendChild(el('td', 'num', r[1])); tb.appendChild(tr); });
    var at = $('assets'); clear(at);
    s.assets.top.forEach(function (a) {
      var tr = el('tr'); tr.setAttribute('data-asset', a.name);
      tr.appendChild(el('td', '', a.name)); tr.appendChild(el('td', 'st-' + a.status, a.statusLabel));
      tr.appendChild(el('td', 'num', bytes(a.decryptedBytes))); tr.appendChild(el('td', '', a.reason)); at.appendChild(tr);
    });
    if (!s.assets.top.length) { var tr1 = el('tr'); tr1.appendChild(el('td', '', 'no asset configured or seen yet')); at.appendChild(tr1); }
    chart(s.trend[mode]);
    text('updated', 'updated ' + hhmm(Date.parse(s.generated), true).replace(' UTC', ':' + ('0' + new Date(s.generated).getUTCSeconds()).slice(-2) + ' UTC'));
    text('error', '');
  }
  function poll() {
    fetch('api/summary', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(render).catch(function (e) { text('error', 'cannot load api/summary: ' + e.message); });
    loadLog();
  }
  // ---- log view ----
  var expanded = {}, logSeq = 0;
  function g(o, path) { var v = o; for (var i = 0; i < path.length; i++) { if (v === null || typeof v !== 'object') return undefined; v = v[path[i]]; } return v; }
  function s(v) { return v === undefined || v === null ? '' : String(v); }
  function endpoint(ip, port) { ip = s(ip); if (!ip) return ''; return port === undefined ? ip : (ip.indexOf(':') >= 0 ? '[' + ip + ']' : ip) + ':' + port; }
  function summaryOf(e) {
    var ds = s(g(e, ['event', 'dataset']));
    if (ds === 'http') return [s(g(e, ['http', 'request', 'method'])), s(g(e, ['url', 'original']) || g(e, ['url', 'path'])), g(e, ['http', 'response', 'status_code']) !== undefined ? '→ ' + g(e, ['http', 'response', 'status_code']) : ''].join(' ').trim();
    if (ds === 'smtp') { var to = g(e, ['email', 'to', 'address']); return (s(g(e, ['email', 'from', 'address'])) + ' → ' + (Array.isArray(to) ? to.join(', ') : s(to)) + (g(e, ['email', 'subject']) !== undefined ? ': ' + s(g(e, ['email', 'subject'])) : '')).trim(); }
    if (ds === 'ftp') return [s(g(e, ['ftp', 'request', 'command'])), s(g(e, ['ftp', 'request', 'arg'])), g(e, ['ftp', 'response', 'code']) !== undefined ? '→ ' + g(e, ['ftp', 'response', 'code']) : '', s(g(e, ['file', 'name']))].join(' ').trim();
    if (ds === 'tls.session') return [s(g(e, ['decryption', 'status'])), s(g(e, ['tls', 'client', 'server_name'])), s(g(e, ['tls', 'version'])), s(g(e, ['tls', 'cipher']))].join(' ').trim();
    if (ds === 'alert') return s(g(e, ['rule', 'name'])) + (g(e, ['event', 'reason']) ? ': ' + s(g(e, ['event', 'reason'])) : '');
    return s(g(e, ['event', 'action']) || g(e, ['message']));
  }
  function logQuery() {
    var q = [];
    if ($('log-decrypted').checked) q.push('decrypted=1');
    var ds = $('log-dataset').value; if (ds) q.push('dataset=' + encodeURIComponent(ds));
    var sv = $('log-server').value.trim(); if (sv) q.push('server=' + encodeURIComponent(sv));
    var tx = $('log-text').value.trim(); if (tx) q.push('q=' + encodeURIComponent(tx));
    q.push('limit=200');
    return 'api/events?' + q.join('&');
  }
  function renderLog(a) {
    var tb = $('log'); clear(tb);
    text('log-count', int(a.matched) + ' of ' + int(a.held) + ' recent events match' + (a.matched > a.events.length ? ' (newest ' + int(a.events.length) + ' shown)' : '') + '; the view keeps the last ' + int(a.capacity));
    a.events.forEach(function (e) {
      var id = s(g(e, ['event', 'id'])), ds = s(g(e, ['event', 'dataset']));
      var tr = el('tr', 'logrow'); tr.setAttribute('data-dataset', ds); tr.setAttribute('data-id', id);
      tr.appendChild(el('td', 'when', s(e['@timestamp']).replace('T', ' ').replace('Z', '')));
      tr.appendChild(el('td', '', ds));
      tr.appendChild(el('td', '', endpoint(g(e, ['source', 'ip']), g(e, ['source', 'port'])) + ' → ' + endpoint(g(e, ['destination', 'ip']), g(e, ['destination', 'port']))));
      tr.appendChild(el('td', 'summary', summaryOf(e)));
      var tags = el('td'); (Array.isArray(e.tags) ? e.tags : []).forEach(function (t) { tags.appendChild(el('span', 'tag', s(t))); }); tr.appendChild(tags);
      var det = el('tr', 'detail'); var td = el('td'); td.colSpan = 5; td.appendChild(el('pre', '', JSON.stringify(e, null, 2))); det.appendChild(td);
      det.hidden = !expanded[id];
      tr.addEventListener('click', function () { det.hidden = !det.hidden; if (det.hidden) delete expanded[id]; else expanded[id] = true; tr.setAttribute('aria-expanded', String(!det.hidden)); });
      tr.setAttribute('aria-expanded', String(!det.hidden));
      tb.appendChild(tr); tb.appendChild(det);
    });
    if (!a.events.length) { var tr0 = el('tr'); var td0 = el('td', '', a.held ? 'no recent event matches the filters' : 'no event yet'); td0.colSpan = 5; tr0.appendChild(td0); tb.appendChild(tr0); }
  }
  function loadLog() {
    var seq = ++logSeq;
    fetch(logQuery(), { cache: 'no-store' }).then(function (r) {
      if (r.status === 404) return null;
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (a) { if (seq === logSeq && a) renderLog(a); }).catch(function (e) { text('error', 'cannot load api/events: ' + e.message); });
  }
  var typing;
  function later() { clearTimeout(typing); typing = setTimeout(loadLog, 250); }
  $('log-decrypted').addEventListener('change', loadLog);
  $('log-dataset').addEventListener('change', loadLog);
  $('log-server').addEventListener('input', later);
  $('log-text').addEventListener('input', later);
  function tab(m) {
    mode = m;
    $('tab-fine').className = m === 'fine' ? 'active' : '';
    $('tab-coarse').className = m === 'coarse' ? 'active' : '';
    if (last) chart(last.trend[mode]);
  }
  $('tab-fine').addEventListener('click', function () { tab('fine'); });
  $('tab-coarse').addEventListener('click', function () { tab('coarse'); });
  poll();
  setInterval(poll, 10000);
})();
</script>
</body>
</html>
`;
}
