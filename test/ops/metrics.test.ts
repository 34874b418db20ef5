import { describe, expect, it } from 'vitest';
import { MetricsAggregator, OpsMetrics, countKeylogEntries, newHistogramCounts, observeSecretWait, protocolOfDataset, SECRET_WAIT_BUCKETS, type ShardSnapshot } from '../../src/ops/metrics.js';

function snap(p: Partial<ShardSnapshot> = {}): ShardSnapshot {
  return {
    packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0,
    sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {}, ...p,
  };
}

/** Parses the Prometheus text exposition into name{labels} -> value. */
function parse(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

describe('OpsMetrics', () => {
  it('exposes every contract metric with the tlsdecrypt_ prefix, plus process metrics', async () => {
    const m = new OpsMetrics();
    const names = m.metricNames();
    for (const n of ['packets_total', 'bytes_total', 'decrypted_bytes_total', 'tls_sessions_total', 'events_total', 'flows_active', 'secrets_total', 'secret_wait_seconds', 'assets_decrypting', 'paused', 'kafka_consumer_lag', 'anomalies_total']) {
      expect(names).toContain('tlsdecrypt_' + n);
    }
    expect(names).toContain('process_cpu_seconds_total');
    expect(names).toContain('process_resident_memory_bytes');
    const text = await m.text();
    expect(text).toContain('# TYPE tlsdecrypt_secret_wait_seconds histogram');
    expect(text).toContain('# TYPE tlsdecrypt_packets_total counter');
    expect(text).toMatch(/^tlsdecrypt_paused 0$/m);
  });
});

describe('MetricsAggregator', () => {
  it('adds shards up from cumulative snapshots without double counting', async () => {
    const m = new OpsMetrics({ defaultMetrics: false });
    const a = new MetricsAggregator(m);
    a.update(0, snap({ packets: 10, bytes: 1000, decryptedBytes: 500, sessionsByStatus: { decrypted: 2 }, eventsByDataset: { 'tls.session': 2, http: 3 }, anomalies: { tcp_gap: 1 }, activeFlows: 4 }));
    a.update(1, snap({ packets: 5, bytes: 400, decryptedBytes: 100, sessionsByStatus: { no_key: 1 }, eventsByDataset: { 'tls.session': 1 }, activeFlows: 2 }));
    // The same snapshot again (a stats task with no new work): nothing changes.
    a.update(0, snap({ packets: 10, bytes: 1000, decryptedBytes: 500, sessionsByStatus: { decrypted: 2 }, eventsByDataset: { 'tls.session': 2, http: 3 }, anomalies: { tcp_gap: 1 }, activeFlows: 4 }));
    // Shard 0 progresses.
    a.update(0, snap({ packets: 16, bytes: 1600, decryptedBytes: 900, sessionsByStatus: { decrypted: 3, partial: 1 }, eventsByDataset: { 'tls.session': 4, http: 5 }, anomalies: { tcp_gap: 1 }, activeFlows: 1 }));
    const v = parse(await m.text());
    expect(v.get('tlsdecrypt_packets_total')).toBe(21);
    expect(v.get('tlsdecrypt_bytes_total')).toBe(2000);
    expect(v.get('tlsdecrypt_decrypted_bytes_total')).toBe(1000);
    expect(v.get('tlsdecrypt_tls_sessions_total{status="decrypted"}')).toBe(3);
    expect(v.get('tlsdecrypt_tls_sessions_total{status="partial"}')).toBe(1);
    expect(v.get('tlsdecrypt_tls_sessions_total{status="no_key"}')).toBe(1);
    expect(v.get('tlsdecrypt_events_total{protocol="tls"}')).toBe(5);
    expect(v.get('tlsdecrypt_events_total{protocol="http"}')).toBe(5);
    expect(v.get('tlsdecrypt_anomalies_total{code="tcp_gap"}')).toBe(1);
    expect(v.get('tlsdecrypt_flows_active')).toBe(3);
  });

  it('treats a new epoch or smaller counters as a restarted engine (counters never go back)', async () => {
    const m = new OpsMetrics({ defaultMetrics: false });
    const a = new MetricsAggregator(m);
    a.update('s', snap({ epoch: 'A', packets: 100, decryptedBytes: 1000, sessionsByStatus: { decrypted: 10 } }));
    // Worker died and came back: new engine, new epoch, counting from zero again.
    a.update('s', snap({ epoch: 'B', packets: 150, decryptedBytes: 50, sessionsByStatus: { decrypted: 1 } }));
    // No epoch, but counters went down: also a restart.
    a.update('t', snap({ packets: 30 }));
    a.update('t', snap({ packets: 7 }));
    const v = parse(await m.text());
    expect(v.get('tlsdecrypt_packets_total')).toBe(100 + 150 + 30 + 7);
    expect(v.get('tlsdecrypt_decrypted_bytes_total')).toBe(1050);
    expect(v.get('tlsdecrypt_tls_sessions_total{status="decrypted"}')).toBe(11);
  });

  it('merges per-shard secret-wait histograms into one Prometheus histogram', async () => {
    const m = new OpsMetrics({ defaultMetrics: false });
    const a = new MetricsAggregator(m);
    const h0 = newHistogramCounts();
    const h1 = newHistogramCounts();
    observeSecretWait(h0, 0); // key already there
    observeSecretWait(h0, 3);
    a.update(0, snap({ secretWait: structuredClone(h0) }));
    observeSecretWait(h0, 7200); // beyond the last bucket
    observeSecretWait(h1, -5); // clamps to 0
    a.update(0, snap({ secretWait: structuredClone(h0) }));
    a.update(1, snap({ secretWait: structuredClone(h1) }));
    a.update(1, snap({ secretWait: structuredClone(h1) })); // repeated: no double count
    const v = parse(await m.text());
    expect(v.get('tlsdecrypt_secret_wait_seconds_count')).toBe(4);
    expect(v.get('tlsdecrypt_secret_wait_seconds_sum')).toBe(7203);
    expect(v.get('tlsdecrypt_secret_wait_seconds_bucket{le="0"}')).toBe(2);
    expect(v.get('tlsdecrypt_secret_wait_seconds_bucket{le="2"}')).toBe(2);
    expect(v.get('tlsdecrypt_secret_wait_seconds_bucket{le="5"}')).toBe(3);
    expect(v.get(`tlsdecrypt_secret_wait_seconds_bucket{le="${SECRET_WAIT_BUCKETS.at(-1)}"}`)).toBe(3);
    expect(v.get('tlsdecrypt_secret_wait_seconds_bucket{le="+Inf"}')).toBe(4);
  });

  it('sets main-thread facts directly', async () => {
    const m = new OpsMetrics({ defaultMetrics: false });
    const a = new MetricsAggregator(m);
    a.secretsReceived(countKeylogEntries(Buffer.from('# comment\nCLIENT_RANDOM aa bb\n\nCLIENT_TRAFFIC_SECRET_0 aa cc\n')));
    a.setKafkaLag(42);
    a.setActiveFlows(0, 5);
    a.setActiveFlows(1, 6);
    a.removeShard(1);
    const v = parse(await m.text());
    expect(v.get('tlsdecrypt_secrets_total')).toBe(2);
    expect(v.get('tlsdecrypt_kafka_consumer_lag')).toBe(42);
    expect(v.get('tlsdecrypt_flows_active')).toBe(5);
  });

  it('maps datasets to protocols', () => {
    expect(protocolOfDataset('tls.session')).toBe('tls');
    expect(protocolOfDataset('http')).toBe('http');
  });
});

describe('detector counters in /metrics', () => {
  it('alerts by rule, held-back hits and summaries equal the alert events of every fixtures/detect capture (merged over shards as run does)', async () => {
    const { readdirSync, existsSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { CaptureReader } = await import('../../src/capture/index.js');
    const { Engine } = await import('../../src/pipeline/engine.js');
    const { loadKeys } = await import('../../src/pipeline/replay.js');
    const { mergeStats } = await import('../../src/pipeline/sharded.js');
    const fx = join(import.meta.dirname, '../../fixtures/detect');
    const m = new OpsMetrics({ defaultMetrics: false });
    const agg = new MetricsAggregator(m);
    const byRule: Record<string, number> = {};
    let heldBack = 0;
    let summaries = 0;
    const stats = [];
    let shard = 0;
    for (const name of readdirSync(fx)) {
      const dir = join(fx, name);
      const capture = ['capture.pcap', 'capture.pcapng'].map((f) => join(dir, f)).find(existsSync);
      if (!capture) continue;
      const keylogs = existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
      const e = new Engine(
        (ev: any) => {
          if (ev.event.kind !== 'alert') return;
          byRule[ev.rule.id] = (byRule[ev.rule.id] ?? 0) + 1;
          if (ev.detection?.threshold?.summary) {
            summaries++;
            heldBack += ev.detection.threshold.suppressed;
          }
        },
        loadKeys(keylogs, []),
        {},
      );
      const r = new CaptureReader(e);
      r.push(readFileSync(capture));
      r.end();
      e.finish();
      agg.update(shard++, e.stats); // one shard per capture, as run's shards report
      stats.push(e.stats);
    }
    expect(Object.keys(byRule).length).toBeGreaterThan(10);
    expect(heldBack).toBeGreaterThan(0); // some fixture repeats a rule and key
    const v = parse(await m.text());
    for (const [rule, n] of Object.entries(byRule)) expect(v.get(`tlsdecrypt_alerts_total{rule="${rule}"}`), rule).toBe(n);
    expect(v.get('tlsdecrypt_alerts_held_back_total')).toBe(heldBack);
    expect(v.get('tlsdecrypt_alert_summaries_total')).toBe(summaries);
    expect(v.get('tlsdecrypt_detection_rule_errors_total')).toBe(0);
    const merged = mergeStats(stats).detection!;
    expect(merged.alertsByRule).toEqual(byRule);
    expect(merged.thresholdSuppressed).toBe(heldBack);
  });
});
