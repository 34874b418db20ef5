/**
 * The ops side of one engine shard (in-process or inside a worker thread). No prom-client here:
 * plain counters that travel to the main thread with task results.
 *
 *   main thread                                   worker thread (ShardCore)
 *   Ops.shardConfig() -> workerData.ops ------->  new ShardOps(workerData.ops)
 *   governor -> SharedDecryptionGate (SAB) ~~~~~>  ShardOps.gate (Atomics.load, no message)
 *   AssetTracker.onReload -> task {policy} ---->  ShardOps.setPolicy(rules)
 *   Ops.shardReport(i, report) <--------------  ShardOps.report(engine.stats, activeFlows)
 *
 * The Engine consults `decide()` once per TLS session or QUIC connection (before deriving keys) and calls
 * `onSession()` for every tls.session it emits and `onSecretWait()` when a session's keys are
 * first found (see EngineOpsHooks).
 */
import { randomUUID } from 'node:crypto';
import type { EngineStats } from '../pipeline/engine.js';
import type { DecryptionDecision, EngineOpsHooks } from '../pipeline/hooks.js';
import { AssetPolicy, SessionObservationBuffer, type AssetRule, type ObservationSummary, type SessionObservation } from './assets.js';
import { OPEN_GATE, SharedDecryptionGate, type DecryptionGate } from './governor.js';
import { newHistogramCounts, observeSecretWait, type HistogramCounts, type ShardSnapshot } from './metrics.js';

/** Serializable (workerData-safe) configuration of a shard's ops state. */
export interface ShardOpsConfig {
  /** SharedDecryptionGate.buffer of the main thread's gate. */
  gate?: SharedArrayBuffer;
  assets?: AssetRule[];
  assetsDefaultEnabled?: boolean;
}

export type { DecryptionDecision, EngineOpsHooks } from '../pipeline/hooks.js';

/** Everything a shard reports with a task result. */
export interface ShardOpsReport {
  stats: ShardSnapshot;
  observations: ObservationSummary[];
}

export class ShardOps implements EngineOpsHooks {
  /** New per engine instance: lets the aggregator tell a restarted worker from a slow one. */
  readonly epoch = randomUUID();
  readonly gate: DecryptionGate;
  private policy: AssetPolicy;
  readonly observations = new SessionObservationBuffer();
  readonly secretWait: HistogramCounts = newHistogramCounts();
  pausedSessions = 0;
  pausedBytes = 0;

  constructor(cfg: ShardOpsConfig = {}) {
    this.gate = cfg.gate ? new SharedDecryptionGate(cfg.gate) : OPEN_GATE;
    this.policy = new AssetPolicy(cfg.assets ?? [], cfg.assetsDefaultEnabled ?? true);
  }

  /** A reloaded asset policy (rules as JSON, from AssetTracker.onReload in the main thread). */
  setPolicy(rules: AssetRule[], defaultEnabled = true): void {
    this.policy = new AssetPolicy(rules, defaultEnabled);
  }

  decide(serverIp: string, serverPort: number, sni: string | undefined, sensor: string | undefined): DecryptionDecision {
    if (!this.policy.isDecryptionEnabled(serverIp, serverPort, sni, sensor)) return 'disabled';
    if (this.gate.paused) return 'paused';
    return 'decrypt';
  }

  onSession(o: SessionObservation & { skippedBytes?: number }): void {
    if (o.status === 'paused') {
      this.pausedSessions++;
    }
    if (o.skippedBytes && o.skippedBytes > 0) this.pausedBytes += o.skippedBytes;
    const { skippedBytes: _s, ...obs } = o;
    this.observations.add(obs);
  }

  onSecretWait(seconds: number): void {
    observeSecretWait(this.secretWait, seconds);
  }

  /** Snapshot for the main thread (cumulative stats + observations since the last report). */
  report(stats: EngineStats, activeFlows: number): ShardOpsReport {
    return {
      stats: {
        ...stats,
        sessionsByStatus: { ...stats.sessionsByStatus },
        eventsByDataset: { ...stats.eventsByDataset },
        anomalies: { ...stats.anomalies },
        notDecoded: { ...stats.notDecoded },
        epoch: this.epoch,
        activeFlows,
        secretWait: { counts: [...this.secretWait.counts], sum: this.secretWait.sum, count: this.secretWait.count },
        pausedSessions: this.pausedSessions,
        pausedBytes: this.pausedBytes,
      },
      observations: this.observations.take(),
    };
  }
}
