/**
 * Piscina worker: one flow-affine shard of the replay pipeline. Each pool that loads this file has
 * exactly one thread, so module state (the Engine with its flow table) lives across tasks and every
 * packet of a flow reaches the same engine in order. Tasks carry binary packet batches
 * (src/pipeline/batch.ts) as transferred ArrayBuffers; results come back as NDJSON text.
 */
import { workerData } from 'node:worker_threads';
import { Engine, type EngineOptions, type EngineStats } from '../src/pipeline/engine.js';
import { loadKeys, type RsaKeySpec } from '../src/pipeline/replay.js';
import { readBatch } from '../src/pipeline/batch.js';

export interface ShardConfig {
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  engine: Partial<EngineOptions>;
}

export type ShardTask = { kind: 'batch'; data: ArrayBuffer } | { kind: 'finish' };
export interface ShardResult {
  ndjson: string;
  events: number;
  stats?: EngineStats;
}

let engine: Engine | undefined;
let lines: string[] = [];

function getEngine(): Engine {
  if (!engine) {
    const cfg = workerData as ShardConfig;
    engine = new Engine((ev) => lines.push(JSON.stringify(ev)), loadKeys(cfg.keylogs, cfg.rsaKeys), cfg.engine);
  }
  return engine;
}

export default function run(task: ShardTask): ShardResult {
  const e = getEngine();
  if (task.kind === 'batch') readBatch(task.data, e);
  else e.finish();
  const out = lines;
  lines = [];
  return {
    ndjson: out.length ? out.join('\n') + '\n' : '',
    events: out.length,
    stats: task.kind === 'finish' ? e.stats : undefined,
  };
}
