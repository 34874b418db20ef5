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
import { InOrder } from '../src/pipeline/inOrder.js';

export interface ShardConfig {
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  engine: Partial<EngineOptions>;
}

/** `data`: a whole transferred ArrayBuffer, or a view of one (BatchBuilder.takeView). */
export type ShardTask = ({ kind: 'batch'; data: ArrayBuffer | Uint8Array } | { kind: 'finish' }) & {
  /**
   * Position in this shard's task sequence (0, 1, 2, ...). Piscina may start queued tasks out of
   * submission order, so a task that arrives early is kept until its predecessors have run; its
   * events and stats then come back in the result of the task that ran it. Without `seq` a task
   * runs at once.
   */
  seq?: number;
};
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

const order = new InOrder<ShardTask>();

function execute(e: Engine, task: ShardTask): boolean {
  if (task.kind === 'batch') readBatch(task.data, e);
  else e.finish();
  return task.kind === 'finish';
}

export default function run(task: ShardTask): ShardResult {
  const e = getEngine();
  let finished = false;
  if (task.seq === undefined) {
    finished = execute(e, task);
  } else {
    order.offer(task.seq, task, (t) => {
      finished = execute(e, t) || finished;
    });
  }
  const out = lines;
  lines = [];
  return {
    ndjson: out.length ? out.join('\n') + '\n' : '',
    events: out.length,
    stats: finished ? e.stats : undefined,
  };
}
