import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OpsMetrics } from '../../src/ops/metrics.js';

const dash = JSON.parse(readFileSync(new URL('../../src/ops/grafana/tlsdecrypt-dashboard.json', import.meta.url), 'utf8'));

interface Panel { id: number; type: string; title: string; datasource?: { type: string; uid: string }; gridPos: { x: number; y: number; w: number; h: number }; targets: { expr: string; refId: string; datasource?: { uid: string } }[] }

/** Metric names in a PromQL expression: identifiers not followed by '(' that are not keywords, labels or functions' arguments. */
function metricNames(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}').replace(/\[[^\]]*\]/g, '[]');
  const noGroupings = noStrings.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const ids: string[] = [];
  for (const m of noGroupings.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = noGroupings.slice(m.index! + m[0].length).trimStart();
    if (!after.startsWith('(')) ids.push(m[0]); // a function call is not a metric
  }
  const KEYWORDS = new Set(['sum', 'max', 'min', 'avg', 'count', 'topk', 'bottomk', 'rate', 'increase', 'histogram_quantile', 'and', 'or', 'unless', 'offset', 'bool']);
  return ids.filter((id) => !KEYWORDS.has(id) && !/^\d/.test(id));
}

describe('Grafana dashboard', () => {
  it('is an importable dashboard with a Prometheus datasource variable', () => {
    expect(dash.title).toMatch(/tlsdecrypt/);
    expect(dash.uid).toBe('tlsdecrypt-ops');
    expect(typeof dash.schemaVersion).toBe('number');
    expect(dash.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    const ds = dash.templating.list.find((v: { name: string }) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus', current: { value: '${DS_PROMETHEUS}' } });
    const ids = new Set<number>();
    for (const p of dash.panels as Panel[]) {
      expect(ids.has(p.id), `duplicate panel id ${p.id}`).toBe(false);
      ids.add(p.id);
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      expect(p.targets.length).toBeGreaterThan(0);
      for (const t of p.targets) {
        expect(t.datasource?.uid).toBe('${datasource}');
        expect(t.expr.length).toBeGreaterThan(0);
      }
    }
  });

  it('has the required panels', () => {
    const panels = dash.panels as Panel[];
    const find = (re: RegExp) => panels.filter((p) => p.targets.some((t) => re.test(t.expr)));
    expect(find(/^sum\(tlsdecrypt_decrypted_bytes_total\{/).length).toBeGreaterThan(0); // cumulative volume
    expect(find(/tlsdecrypt_assets_decrypting/).length).toBeGreaterThan(0);
    expect(find(/sum by \(status\) \(rate\(tlsdecrypt_tls_sessions_total/).length).toBeGreaterThan(0); // outcomes
    expect(find(/tlsdecrypt_kafka_consumer_lag/).length).toBeGreaterThan(0);
    expect(find(/tlsdecrypt_paused\{/).length).toBeGreaterThan(0);
    const trend = panels.find((p) => p.targets.some((t) => /increase\(tlsdecrypt_decrypted_bytes_total\{[^}]*\}\[1d\]\)/.test(t.expr)));
    expect(trend, '7-day trend of the decrypted volume').toBeDefined();
    expect((trend as unknown as { timeFrom: string }).timeFrom).toBe('7d');
  });

  it('extracts metric names from PromQL (the checker itself)', () => {
    expect(metricNames('topk(10, sum by (code) (rate(tlsdecrypt_typo_total{instance=~"$instance"}[$__rate_interval])))')).toEqual(['tlsdecrypt_typo_total']);
    expect(metricNames('max by (asset, status) (tlsdecrypt_asset_status{a="sum(x)"}) == 1')).toEqual(['tlsdecrypt_asset_status']);
  });

  it('references only metric names the registry exposes', () => {
    const m = new OpsMetrics();
    const exposed = new Set<string>();
    for (const n of m.metricNames()) {
      exposed.add(n);
      for (const s of ['_bucket', '_sum', '_count']) exposed.add(n + s);
    }
    const used = new Set<string>();
    const exprs = [...(dash.panels as Panel[]).flatMap((p) => p.targets.map((t) => t.expr)), ...dash.templating.list.filter((v: { definition?: string }) => v.definition).map((v: { definition: string }) => v.definition)];
    for (const e of exprs) for (const n of metricNames(e)) used.add(n);
    expect(used.size).toBeGreaterThan(10);
    const unknown = [...used].filter((n) => !exposed.has(n) && n !== 'instance' /* label_values(metric, instance) */);
    expect(unknown).toEqual([]);
    // Histogram-only suffixes are only used on the histogram.
    for (const n of used) if (/_bucket$/.test(n)) expect(n).toBe('tlsdecrypt_secret_wait_seconds_bucket');
  });
});
