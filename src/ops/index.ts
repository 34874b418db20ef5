/**
 * Operations for the streaming engine, in one object the `run` command owns:
 *
 *   const ops = new Ops(opsOptionsFromConfig(vals, configFile));
 *   await ops.start();                                  // governor, HTTP server, config watch
 *   new PartitionShards(n, { ...shardCfg, ops: ops.shardConfig() }, ...)
 *   ops.shardReport(i, report)                          // with every shard result
 *   ops.secretsReceived(countKeylogEntries(value))      // secrets topic records
 *   ops.setKafka({ connected, lag }); ops.setWorkers(up, expected)
 *   ops.onGovernorEvent((ev) => produce ev to the events topic)
 *   ops.assets.onReload((p) => broadcast p.rules to the shards)
 *   await ops.stop();
 *
 * See metrics.ts (aggregation), governor.ts, assets.ts, server.ts, shard.ts.
 */
import type { AddressInfo } from 'node:net';
import { AssetTracker, watchAssetsConfig, type AssetRule, type ObservationSummary, type SessionObservation } from './assets.js';
import { governorEvent, ResourceGovernor, SharedDecryptionGate, type GovernorChange, type ResourceReadings } from './governor.js';
import { VolumeHistory } from './history.js';
import { MetricsAggregator, OpsMetrics, type ShardSnapshot } from './metrics.js';
import { OpsServer, type Readiness } from './server.js';
import type { ShardOpsConfig, ShardOpsReport } from './shard.js';
import type { StatusSummary } from './statusPage.js';
import { opsLog, type Logger } from './log.js';
import { RecentEvents, DEFAULT_LOG_VIEW_EVENTS } from './eventLog.js';

export * from './assets.js';
export * from './governor.js';
export * from './history.js';
export * from './metrics.js';
export * from './server.js';
export * from './shard.js';
export * from './statusPage.js';
export * from './options.js';
export * from './eventLog.js';
export { isLoopbackHost, TokenCheck } from './auth.js';
import type { OpsOptions } from './options.js';
export { Logger, opsLog, isRedactedName, type LogLevel } from './log.js';

export class Ops {
  readonly metrics: OpsMetrics;
  readonly aggregator: MetricsAggregator;
  readonly governor: ResourceGovernor | undefined;
  /** The cross-thread gate the shards read (mirrors the governor). */
  readonly gate = new SharedDecryptionGate();
  readonly assets: AssetTracker;
  readonly history = new VolumeHistory();
  /** The log view's ring of recent events (see eventLog.ts). */
  readonly events: RecentEvents;
  private server: OpsServer | undefined;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly startedAt: number;
  private decryptedTotal = 0;
  private kafka: { connected: boolean | null; lag: number | null } = { connected: null, lag: null };
  private workers: { up: number; expected: number } | undefined;
  private readinessProvider: (() => Readiness | Promise<Readiness>) | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private readonly governorListeners: ((ev: Record<string, unknown>, change: GovernorChange) => void)[] = [];

  constructor(private readonly o: OpsOptions = {}) {
    // Only a served log view needs the events in memory.
    this.events = new RecentEvents(o.metricsPort === undefined ? 0 : (o.logViewEvents ?? DEFAULT_LOG_VIEW_EVENTS));
    this.now = o.now ?? Date.now;
    this.log = o.log ?? opsLog;
    this.startedAt = this.now();
    this.metrics = new OpsMetrics({ defaultMetrics: o.defaultMetrics });
    this.aggregator = new MetricsAggregator(this.metrics);
    if (o.governor !== false) {
      this.governor = new ResourceGovernor({
        maxCpuPercent: o.maxCpuPercent,
        maxMemoryMb: o.maxMemoryMb,
        resumeIntervalMs: o.resumeIntervalSec !== undefined ? o.resumeIntervalSec * 1000 : undefined,
        windowMs: o.cpuWindowSec !== undefined ? o.cpuWindowSec * 1000 : undefined,
        now: o.now,
        readings: o.readings,
        log: this.log.child('tlsdecrypt.governor'),
      });
      this.governor.onChange((c) => this.onGovernorChange(c));
    }
    this.assets = new AssetTracker({
      rules: o.assets,
      defaultEnabled: o.assetsDefaultEnabled,
      now: o.now,
      agentAbnormalAfterMs: o.agentAbnormalAfterSec !== undefined ? o.agentAbnormalAfterSec * 1000 : undefined,
      activeWindowMs: o.activeWindowSec !== undefined ? o.activeWindowSec * 1000 : undefined,
      gate: this.governor ?? this.gate,
      metrics: this.metrics,
      log: this.log.child('tlsdecrypt.assets'),
    });
    this.assets.updateMetrics();
  }

  private onGovernorChange(c: GovernorChange): void {
    const paused = c.action !== 'resumed';
    this.gate.set(paused);
    this.metrics.paused.set(paused ? 1 : 0);
    if (c.action === 'paused' && c.resource) this.metrics.pauses.inc({ resource: c.resource });
    if (c.figures.cpuPercent !== undefined) this.metrics.cpuPercent.set(c.figures.cpuPercent);
    this.assets.updateMetrics();
    const ev = governorEvent(c);
    for (const f of this.governorListeners) f(ev, c);
  }

  /** Pause/resume decisions as ECS events (dataset tlsdecrypt.governor) for the events topic. */
  onGovernorEvent(f: (ev: Record<string, unknown>, change: GovernorChange) => void): void {
    this.governorListeners.push(f);
  }

  /** workerData-safe config for each shard's ShardOps. */
  shardConfig(): ShardOpsConfig {
    return { gate: this.gate.buffer, assets: this.assets.policy.rules, assetsDefaultEnabled: this.assets.policy.defaultEnabled };
  }

  /** One shard's report (ShardOps.report) or a bare EngineStats snapshot. */
  shardReport(shardId: string | number, r: ShardOpsReport | ShardSnapshot): void {
    const report: ShardOpsReport = 'observations' in r ? (r as ShardOpsReport) : { stats: r as ShardSnapshot, observations: [] };
    this.decryptedTotal += this.aggregator.update(shardId, report.stats);
    for (const s of report.observations) this.assets.observeSummary(s);
  }

  /** Sessions observed in the main thread (in-process engine without ShardOps). */
  observeSession(o: SessionObservation): void {
    this.assets.observe(o);
  }

  observeSummaries(list: ObservationSummary[]): void {
    for (const s of list) this.assets.observeSummary(s);
  }

  /** Events delivered to the events topic (serialized as sent), for the log view. */
  recentEvents(lines: readonly string[]): void {
    this.events.add(lines);
  }

  secretsReceived(entries: number): void {
    this.aggregator.secretsReceived(entries);
  }

  setKafka(k: { connected?: boolean; lag?: number }): void {
    if (k.connected !== undefined) {
      this.kafka.connected = k.connected;
      this.metrics.kafkaConnected.set(k.connected ? 1 : 0);
    }
    if (k.lag !== undefined && Number.isFinite(k.lag)) {
      this.kafka.lag = Math.max(0, k.lag);
      this.aggregator.setKafkaLag(k.lag);
    }
  }

  setWorkers(up: number, expected: number): void {
    this.workers = { up, expected };
    this.metrics.workersUp.set(up);
  }

  /** Overrides the default readiness (Kafka connected and all workers up). */
  setReadiness(f: () => Readiness | Promise<Readiness>): void {
    this.readinessProvider = f;
  }

  async readiness(): Promise<Readiness> {
    if (this.readinessProvider) return this.readinessProvider();
    const checks = {
      kafka: this.kafka.connected === true,
      workers: this.workers !== undefined && this.workers.up >= this.workers.expected && this.workers.expected > 0,
    };
    const failing = Object.entries(checks).filter(([, v]) => !v).map(([k]) => k);
    return { ready: failing.length === 0, checks, ...(failing.length ? { reason: `not ready: ${failing.join(', ')}` } : {}) };
  }

  /** Periodic work: trend sample, asset gauges, CPU gauge. start() runs it every tickIntervalSec. */
  tick(): void {
    const now = this.now();
    this.history.record(now, this.decryptedTotal);
    this.assets.updateMetrics();
    const g = this.governor?.state();
    if (g?.cpuPercent !== undefined) this.metrics.cpuPercent.set(g.cpuPercent);
  }

  async summary(): Promise<StatusSummary> {
    const now = this.now();
    const m = this.metrics;
    const byLabel = async (metric: typeof m.tlsSessions | typeof m.events, label: string): Promise<Record<string, number>> => {
      const out: Record<string, number> = {};
      for (const v of (await metric.get()).values) {
        const k = String((v.labels as Record<string, string | number | undefined>)[label] ?? '');
        if (k) out[k] = (out[k] ?? 0) + v.value;
      }
      return out;
    };
    const assets = this.assets.list();
    const byStatus: Record<string, number> = {};
    for (const a of assets) byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
    const g = this.governor?.state();
    const paused = this.governor ? this.governor.paused : this.gate.paused;
    const { reason: _r, ...gov } = g ?? ({} as NonNullable<typeof g>);
    return {
      generated: new Date(now).toISOString(),
      uptimeSec: Math.round((now - this.startedAt) / 1000),
      decryptedBytes: await m.value(m.decryptedBytes),
      packets: await m.value(m.packets),
      bytes: await m.value(m.bytes),
      flowsActive: await m.value(m.flowsActive),
      eventsByProtocol: await byLabel(m.events, 'protocol'),
      sessionsByStatus: await byLabel(m.tlsSessions, 'status'),
      assets: {
        decrypting: assets.filter((a) => a.decrypting).length,
        total: assets.length,
        byStatus,
        top: assets.slice(0, 50).map((a) => ({ name: a.name, status: a.status, statusLabel: a.statusLabel, reason: a.reason, decrypting: a.decrypting, decryptedBytes: a.decryptedBytes })),
      },
      kafka: { ...this.kafka },
      paused,
      ...(paused ? { pausedReason: this.governor?.reason ?? 'paused' } : {}),
      ...(g ? { governor: gov } : {}),
      notDecrypted: { sessions: await m.value(m.pausedSessions), bytes: await m.value(m.pausedBytes) },
      trend: this.history.snapshot(now),
    };
  }

  /** Starts the governor, the tick timer, the config watch and (with metricsPort) the HTTP server. */
  async start(): Promise<AddressInfo | undefined> {
    this.governor?.start();
    this.tick();
    const every = (this.o.tickIntervalSec ?? 5) * 1000;
    this.tickTimer = setInterval(() => this.tick(), every);
    this.tickTimer.unref();
    if (this.o.configFile) this.unwatch = watchAssetsConfig(this.o.configFile, this.assets);
    if (this.o.metricsPort !== undefined) {
      this.server = new OpsServer({
        port: this.o.metricsPort,
        host: this.o.metricsHost,
        metrics: this.metrics,
        summary: () => this.summary(),
        assets: () => this.assets.toJSON(),
        ready: () => this.readiness(),
        title: this.o.title,
        log: this.log.child('tlsdecrypt.http'),
        events: (q) => this.events.query(q),
        token: this.o.metricsToken,
        protectAll: this.o.metricsAuthAll,
      });
      return this.server.listen();
    }
    return undefined;
  }

  get address(): AddressInfo | undefined {
    return this.server?.address;
  }

  async stop(): Promise<void> {
    this.governor?.stop();
    clearInterval(this.tickTimer);
    this.unwatch?.();
    await this.server?.close();
  }
}
