/**
 * Piscina worker for `tlsdecrypt run --workers N`: one flow-affine shard of the streaming engine
 * (src/kafka/shards.ts). Each pool loading this file has exactly one thread, so the Engine (flow
 * table, SecretsStore fed by broadcast secrets entries) lives across tasks. A task is a binary
 * packet batch (src/pipeline/batch.ts, may be null) plus an optional capture-time tick; the result
 * carries the events produced, as (community_id, JSON) pairs.
 */
import { workerData } from 'node:worker_threads';
import { readBatch } from '../src/pipeline/batch.js';
import { ShardCore, type SensorRun, type StreamShardConfig, type StreamShardResult, type StreamShardTask } from '../src/kafka/shards.js';
import type { CaptureSink, RawPacket } from '../src/types.js';

let core: ShardCore | undefined;

export default function run(task: StreamShardTask): StreamShardResult {
  core ??= new ShardCore(workerData as StreamShardConfig);
  if (task.kind === 'batch') {
    if (task.data) readBatch(task.data, task.sensors ? withSensors(core, task.sensors) : core);
    if (task.tick) core.tick(task.tick);
  } else if (task.kind === 'finish') {
    core.finish();
  } else if (task.kind === 'policy') {
    core.ops.setPolicy(task.assets, task.defaultEnabled);
  }
  // events are always taken by their own task (batch/finish), never by stats or policy tasks
  const out = task.kind === 'stats' || task.kind === 'policy' ? { keys: [], values: [] } : core.take();
  return {
    ...out,
    activeFlows: core.engine.activeFlows,
    stats: task.kind === 'batch' || task.kind === 'policy' ? undefined : core.engine.stats,
    ops: core.report(),
  };
}

/** Restores each packet's sensor name from the task's runs (entry indices count secrets too). */
function withSensors(c: ShardCore, runs: SensorRun[]): CaptureSink {
  let idx = 0;
  let ri = 0;
  let sensor: string | undefined;
  return {
    packet(p: RawPacket) {
      while (ri < runs.length && runs[ri].from <= idx) sensor = runs[ri++].sensor;
      idx++;
      if (sensor !== undefined) p.sensor = sensor;
      c.packet(p);
    },
    secrets(type: number, data: Buffer) {
      idx++;
      c.secrets(type, data);
    },
    anomaly: (code: string) => c.anomaly(code),
  };
}
