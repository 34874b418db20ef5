/**
 * Prometheus metrics (CONTRACT.md "Metrics": names are contract, prefix `tlsdecrypt_`).
 *
 * One prom-client Registry lives in the main thread (`OpsMetrics`). Engines run in worker threads
 * (one per shard) and cannot touch it, so the flow is:
 *
 *   worker Engine.stats (EngineStats, cumulative since that engine started, + optional
 *   OpsShardExtras: secret-wait histogram counts, paused bytes, an epoch id)
 *     --(task results, structured clone)--> main thread
 *     --> MetricsAggregator.update(shardId, snapshot)
 *           keeps the previous snapshot of that shard, computes per-counter deltas
 *           (cur - prev; a smaller value or a new epoch means the engine restarted: delta = cur),
 *           and increments the registry's counters by the deltas; gauges (flows_active) are the
 *           sum of each shard's latest value.
 *
 * So the registry's counters are the sum over shards, each increment counted once, however often
 * (or rarely) snapshots arrive, and they survive a worker restart without going backwards.
 * Main-thread facts (Kafka lag, secrets received, paused, assets) are set directly.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EngineStats } from '../pipeline/engine.js';

export const PREFIX = 'tlsdecrypt_';

/** Bucket upper bounds (seconds) of `tlsdecrypt_secret_wait_seconds`. */
export const SECRET_WAIT_BUCKETS = [0, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/**
 * Cumulative histogram counts that a worker can keep without prom-client (plain, cloneable).
 * `counts[i]` = observations <= SECRET_WAIT_BUCKETS[i] and > the previous bound (NOT cumulative);
 * `counts[SECRET_WAIT_BUCKETS.length]` = observations above the last bound (+Inf).
 */
export interface HistogramCounts {
  counts: number[];
  sum: number;
  count: number;
}

export function newHistogramCounts(bounds: number[] = SECRET_WAIT_BUCKETS): HistogramCounts {
  return { counts: new Array(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

/**
 * Records one secret wait: seconds from the session's first encrypted record to the arrival of
 * the key material that decrypted it (0 when the key was already there; negative values clamp
 * to 0). Call it once per session, when keys are first found.
 */
export function observeSecretWait(h: HistogramCounts, seconds: number, bounds: number[] = SECRET_WAIT_BUCKETS): void {
  const v = Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
  let i = 0;
  while (i < bounds.length && v > bounds[i]) i++;
  h.counts[i]++;
  h.sum += v;
  h.count++;
}

/** Optional fields a shard adds to its EngineStats snapshot (all cumulative). */
export interface OpsShardExtras {
  /** Identifies one engine instance: a new epoch for the same shard id means "counters restarted". */
  epoch?: string;
  /** Open flows right now (a gauge). */
  activeFlows?: number;
  secretWait?: HistogramCounts;
  /** Sessions whose decryption was skipped because the governor had paused decryption. */
  pausedSessions?: number;
  /** Ciphertext application bytes not decrypted because of a pause. */
  pausedBytes?: number;
}

export type ShardSnapshot = EngineStats & OpsShardExtras;

/** A histogram whose buckets are set from merged counts (prom-client's Histogram can only observe). */
export class MergedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: string[] = [];
  private readonly h: HistogramCounts;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: number[],
    registry: Registry,
  ) {
    this.h = newHistogramCounts(bounds);
    registry.registerMetric(this as unknown as Histogram);
  }

  /** Adds per-bucket (non-cumulative) counts. */
  add(counts: number[], sum: number, count: number): void {
    for (let i = 0; i < this.h.counts.length && i < counts.length; i++) this.h.counts[i] += counts[i];
    this.h.sum += sum;
    this.h.count += count;
  }

  observe(v: number): void {
    observeSecretWait(this.h, v, this.bounds);
  }

  snapshot(): HistogramCounts {
    return { counts: [...this.h.counts], sum: this.h.sum, count: this.h.count };
  }

  reset(): void {
    this.h.counts.fill(0);
    this.h.sum = 0;
    this.h.count = 0;
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { metricName: string; labels: Record<string, string | number>; value: number }[] }> {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.h.counts[i];
      values.push({ metricName: `${this.name}_bucket`, labels: { le: this.bounds[i] }, value: acc });
    }
    acc += this.h.counts[this.bounds.length];
    values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf' }, value: acc });
    values.push({ metricName: `${this.name}_sum`, labels: {}, value: this.h.sum });
    values.push({ metricName: `${this.name}_count`, labels: {}, value: this.h.count });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export interface OpsMetricsOptions {
  /** Register prom-client's process/Node.js metrics (default true). */
  defaultMetrics?: boolean;
  /** Prefix of the default metrics (default '': the standard `process_*`/`nodejs_*` names that existing dashboards and alerts use). */
  defaultMetricsPrefix?: string;
}

/** The registry and every metric of the engine. */
export class OpsMetrics {
  readonly registry = new Registry();
  readonly packets: Counter;
  readonly bytes: Counter;
  readonly tcpPackets: Counter;
  readonly flows: Counter;
  readonly tlsFlows: Counter;
  readonly decryptedBytes: Counter;
  readonly tlsSessions: Counter<'status'>;
  readonly events: Counter<'protocol'>;
  readonly anomalies: Counter<'code'>;
  readonly notDecoded: Counter<'kind'>;
  readonly flowsActive: Gauge;
  readonly secrets: Counter;
  readonly secretWait: MergedHistogram;
  readonly assetsDecrypting: Gauge;
  readonly assetStatus: Gauge<'asset' | 'status'>;
  readonly paused: Gauge;
  readonly pauses: Counter<'resource'>;
  readonly pausedSessions: Counter;
  readonly pausedBytes: Counter;
  readonly cpuPercent: Gauge;
  readonly kafkaLag: Gauge;
  readonly kafkaConnected: Gauge;
  readonly workersUp: Gauge;
  readonly configReloads: Counter<'result'>;
  readonly alerts: Counter<'rule'>;
  readonly alertsHeldBack: Counter;
  readonly alertSummaries: Counter;
  readonly detectionEvictions: Counter<'table'>;
  readonly detectionRuleErrors: Counter;

  constructor(opts: OpsMetricsOptions = {}) {
    const r = [this.registry];
    const c = <L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> =>
      new Counter<L>({ name: PREFIX + name, help, labelNames, registers: r });
    const g = <L extends string>(name: string, help: string, labelNames: L[] = []): Gauge<L> =>
      new Gauge<L>({ name: PREFIX + name, help, labelNames, registers: r });
    this.packets = c('packets_total', 'Captured packets received');
    this.bytes = c('bytes_total', 'Captured bytes received (original length on the wire)');
    this.tcpPackets = c('tcp_packets_total', 'Packets decoded down to TCP');
    this.flows = c('flows_total', 'TCP flows seen');
    this.tlsFlows = c('tls_flows_total', 'TCP flows recognised as TLS');
    this.decryptedBytes = c('decrypted_bytes_total', 'Cumulative volume of encrypted traffic parsed: plaintext bytes produced by decryption');
    this.tlsSessions = c('tls_sessions_total', 'TLS sessions ended, by decryption status', ['status']);
    this.events = c('events_total', 'Events emitted, by protocol', ['protocol']);
    this.anomalies = c('anomalies_total', 'Anomalies counted by the pipeline, by code', ['code']);
    this.notDecoded = c('not_decoded_total', 'Packets not decoded down to TCP, by kind', ['kind']);
    this.flowsActive = g('flows_active', 'TCP flows currently tracked');
    this.secrets = c('secrets_total', 'TLS key-log entries received');
    this.secretWait = new MergedHistogram(PREFIX + 'secret_wait_seconds', 'Key arrival relative to the first encrypted record of the session (seconds; 0 = key was already there)', SECRET_WAIT_BUCKETS, this.registry);
    this.assetsDecrypting = g('assets_decrypting', 'Servers or configured assets with decryption active');
    this.assetStatus = g('asset_status', 'Decryption status per configured asset (1 for the current status)', ['asset', 'status']);
    this.paused = g('paused', '1 while decryption is paused by the resource governor');
    this.pauses = c('governor_pauses_total', 'Times the resource governor paused decryption, by exceeded resource', ['resource']);
    this.pausedSessions = c('paused_sessions_total', 'TLS sessions not decrypted because decryption was paused');
    this.pausedBytes = c('paused_bytes_total', 'Encrypted application bytes not decrypted because decryption was paused');
    this.cpuPercent = g('cpu_percent', 'Process CPU use over the governor window, percent of one core (worker threads included)');
    this.kafkaLag = g('kafka_consumer_lag', 'Records of the packets topic not yet consumed by the group');
    this.kafkaConnected = g('kafka_connected', '1 while the consumer is connected to Kafka');
    this.workersUp = g('workers_up', 'Engine shards (worker threads) up');
    this.configReloads = c('config_reloads_total', 'Asset policy reloads, by result', ['result']);
    this.alerts = c('alerts_total', 'Alerts written (summary alerts included), by rule id', ['rule']);
    this.alertsHeldBack = c('alerts_held_back_total', 'Rule hits held back by alert thresholding (each is counted in a summary alert)');
    this.alertSummaries = c('alert_summaries_total', 'Summary alerts written for threshold windows that held hits back');
    this.detectionEvictions = c('detection_evictions_total', 'Detector state dropped at its bound, by table (flows, series, threshold_keys: their summaries are written early)', ['table']);
    this.detectionRuleErrors = c('detection_rule_errors_total', 'Rule predicates that threw (a bug; the other rules still ran)');
    this.paused.set(0);
    this.kafkaLag.set(0);
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: opts.defaultMetricsPrefix ?? '' });
  }

  /** Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Names of every metric family the registry exposes (for dashboard validation). */
  metricNames(): string[] {
    return this.registry.getMetricsAsArray().map((m) => (m as { name: string }).name);
  }

  /** Current value of an unlabelled counter/gauge, or the sum over label sets. */
  async value(metric: Counter<string> | Gauge<string>, labels?: Record<string, string>): Promise<number> {
    const m = await metric.get();
    let t = 0;
    for (const v of m.values) {
      if (labels && !Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x)) continue;
      t += v.value;
    }
    return t;
  }
}

/** event.dataset -> network.protocol label (`tls.session` -> `tls`, `http` -> `http`). */
export function protocolOfDataset(dataset: string): string {
  const i = dataset.indexOf('.');
  return i > 0 ? dataset.slice(0, i) : dataset;
}

interface Prev {
  epoch?: string;
  scalars: Record<string, number>;
  maps: Record<string, Record<string, number>>;
  detection?: { scalars: Record<string, number>; byRule: Record<string, number> };
  secretWait?: HistogramCounts;
}

const SCALARS = ['packets', 'bytes', 'tcpPackets', 'flows', 'tlsFlows', 'decryptedBytes', 'pausedSessions', 'pausedBytes'] as const;
const MAPS = ['sessionsByStatus', 'eventsByDataset', 'anomalies', 'notDecoded'] as const;

function delta(cur: number, prev: number | undefined, restarted: boolean): number {
  if (!Number.isFinite(cur) || cur <= 0) return 0;
  if (restarted || prev === undefined) return cur;
  return cur >= prev ? cur - prev : cur; // smaller: the engine restarted from zero
}

/**
 * Turns per-shard cumulative snapshots into registry increments (see the module comment).
 * Shard ids are any stable string/number (e.g. the shard index).
 */
export class MetricsAggregator {
  private readonly prev = new Map<string, Prev>();
  private readonly activeFlows = new Map<string, number>();

  constructor(private readonly m: OpsMetrics) {}

  /** Feeds one shard's cumulative snapshot. Returns the decrypted-bytes delta (for the trend). */
  update(shardId: string | number, s: ShardSnapshot): number {
    const id = String(shardId);
    const p = this.prev.get(id);
    const restarted = p !== undefined && s.epoch !== undefined && p.epoch !== undefined && s.epoch !== p.epoch;
    const base = restarted ? undefined : p;
    // A shard whose total packets went down restarted, whatever its epoch says.
    const reset = base !== undefined && (s.packets ?? 0) < (base.scalars.packets ?? 0);
    const prevOf = (k: string): number | undefined => (reset ? undefined : base?.scalars[k]);
    const next: Prev = { epoch: s.epoch, scalars: {}, maps: {} };
    const d: Record<string, number> = {};
    for (const k of SCALARS) {
      const cur = Number((s as unknown as Record<string, unknown>)[k] ?? 0);
      d[k] = delta(cur, prevOf(k), reset);
      next.scalars[k] = cur;
    }
    this.m.packets.inc(d.packets);
    this.m.bytes.inc(d.bytes);
    this.m.tcpPackets.inc(d.tcpPackets);
    this.m.flows.inc(d.flows);
    this.m.tlsFlows.inc(d.tlsFlows);
    this.m.decryptedBytes.inc(d.decryptedBytes);
    this.m.pausedSessions.inc(d.pausedSessions);
    this.m.pausedBytes.inc(d.pausedBytes);
    for (const k of MAPS) {
      const cur = (s[k] ?? {}) as Record<string, number>;
      const pm = reset ? undefined : base?.maps[k];
      const copy: Record<string, number> = {};
      for (const [label, v] of Object.entries(cur)) {
        copy[label] = v;
        const dv = delta(v, pm?.[label], reset);
        if (dv <= 0) continue;
        switch (k) {
          case 'sessionsByStatus':
            this.m.tlsSessions.inc({ status: label }, dv);
            break;
          case 'eventsByDataset':
            this.m.events.inc({ protocol: protocolOfDataset(label) }, dv);
            break;
          case 'anomalies':
            this.m.anomalies.inc({ code: label }, dv);
            break;
          case 'notDecoded':
            this.m.notDecoded.inc({ kind: label }, dv);
            break;
        }
      }
      next.maps[k] = copy;
    }
    if (s.secretWait) {
      const ph = reset ? undefined : base?.secretWait;
      const cur = s.secretWait;
      const histReset = ph !== undefined && cur.count < ph.count;
      const counts = cur.counts.map((v, i) => (ph && !histReset ? Math.max(0, v - (ph.counts[i] ?? 0)) : v));
      const count = ph && !histReset ? cur.count - ph.count : cur.count;
      const sum = ph && !histReset ? cur.sum - ph.sum : cur.sum;
      if (count > 0) this.m.secretWait.add(counts, Math.max(0, sum), count);
      next.secretWait = { counts: [...cur.counts], sum: cur.sum, count: cur.count };
    }
    if (s.detection) next.detection = this.detection(s.detection, reset ? undefined : base?.detection, reset);
    this.prev.set(id, next);
    if (s.activeFlows !== undefined) {
      this.activeFlows.set(id, s.activeFlows);
      this.m.flowsActive.set([...this.activeFlows.values()].reduce((a, b) => a + b, 0));
    }
    return d.decryptedBytes;
  }

  /** The detector's counters of one shard snapshot: increments since `prev`. */
  private detection(d: NonNullable<EngineStats['detection']>, prev: Prev['detection'], reset: boolean): NonNullable<Prev['detection']> {
    const scalars: Record<string, number> = {
      thresholdSuppressed: d.thresholdSuppressed,
      thresholdSummaries: d.thresholdSummaries,
      flowEvictions: d.flowEvictions,
      seriesEvictions: d.seriesEvictions,
      thresholdEvictions: d.thresholdEvictions,
      ruleErrors: d.ruleErrors,
    };
    const dd = (k: string): number => delta(scalars[k], prev?.scalars[k], reset);
    this.m.alertsHeldBack.inc(dd('thresholdSuppressed'));
    this.m.alertSummaries.inc(dd('thresholdSummaries'));
    this.m.detectionEvictions.inc({ table: 'flows' }, dd('flowEvictions'));
    this.m.detectionEvictions.inc({ table: 'series' }, dd('seriesEvictions'));
    this.m.detectionEvictions.inc({ table: 'threshold_keys' }, dd('thresholdEvictions'));
    this.m.detectionRuleErrors.inc(dd('ruleErrors'));
    for (const [rule, v] of Object.entries(d.alertsByRule)) {
      const dv = delta(v, prev?.byRule[rule], reset);
      if (dv > 0) this.m.alerts.inc({ rule }, dv);
    }
    return { scalars, byRule: { ...d.alertsByRule } };
  }

  /** Sets a shard's open-flow gauge when it comes without a stats snapshot. */
  setActiveFlows(shardId: string | number, n: number): void {
    this.activeFlows.set(String(shardId), n);
    this.m.flowsActive.set([...this.activeFlows.values()].reduce((a, b) => a + b, 0));
  }

  /** A shard is gone for good (pool closed): its gauge contribution is dropped, counters stay. */
  removeShard(shardId: string | number): void {
    this.activeFlows.delete(String(shardId));
    this.m.flowsActive.set([...this.activeFlows.values()].reduce((a, b) => a + b, 0));
  }

  /** Key-log entries received (main thread: secrets topic records, key-log files). */
  secretsReceived(entries: number): void {
    if (entries > 0) this.m.secrets.inc(entries);
  }

  setKafkaLag(lag: number | undefined): void {
    if (lag !== undefined && Number.isFinite(lag)) this.m.kafkaLag.set(Math.max(0, lag));
  }
}

/** Counts NSS key-log entries in a secrets record (non-empty lines that are not `#` comments). */
export function countKeylogEntries(data: Buffer | string): number {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  let n = 0;
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t && !t.startsWith('#')) n++;
  }
  return n;
}
