/**
 * Piscina worker for `tlsdecrypt run --workers N`: one flow-affine shard of the streaming engine
 * (src/kafka/shards.ts). Each pool loading this file has exactly one thread, so the Engine (flow
 * table, SecretsStore fed by broadcast secrets entries) lives across tasks. A task is a binary
 * packet batch (src/pipeline/batch.ts, may be null) plus an optional capture-time tick; the result
 * carries the events produced, as (community_id, JSON) pairs.
 */
import { workerData } from 'node:worker_threads';
import { readBatch } from '../src/pipeline/batch.js';
import { InOrder } from '../src/pipeline/inOrder.js';
import { ShardCore, type OriginRun, type SensorRun, type StreamShardConfig, type StreamShardResult, type StreamShardTask } from '../src/kafka/shards.js';
import { readRecordBatch, RecordFeeder } from '../src/kafka/recordBatch.js';
import type { CaptureSink, RawPacket, Timestamp } from '../src/types.js';

let core: ShardCore | undefined;
/** `run --workers N` with one partition per worker: the records of this worker's partitions, decoded here. */
let feeder: RecordFeeder | undefined;
/** Batch and finish tasks, run in their `seq` order. */
const order = new InOrder<StreamShardTask>();

function execute(c: ShardCore, task: StreamShardTask): void {
  if (task.kind === 'batch') {
    if (task.data) readBatch(task.data, task.sensors || task.origins ? withRuns(c, task.sensors ?? [], task.origins ?? []) : c);
    if (task.revoke) c.revoke(task.revoke);
    if (task.tick) c.tick(task.tick);
  } else if (task.kind === 'records') {
    const cfg = workerData as StreamShardConfig;
    const f = (feeder ??= new RecordFeeder(c, cfg.records, cfg.failAfterRecords));
    if (task.data) readRecordBatch(task.data, f);
    if (task.revoke) c.revoke(task.revoke);
    // capture time drives timeouts: this worker's own clock, or the newest of all workers' (main thread)
    const t = task.tick && later(task.tick, f.clock) ? task.tick : f.clock;
    if (t.sec) c.tick(t);
  } else if (task.kind === 'finish') {
    c.finish(task.udpOnly);
  } else if (task.kind === 'policy') {
    c.ops.setPolicy(task.assets, task.defaultEnabled);
  }
}

export default function run(task: StreamShardTask): StreamShardResult {
  const c = (core ??= new ShardCore(workerData as StreamShardConfig));
  const seq = task.kind === 'batch' || task.kind === 'records' || task.kind === 'finish' ? task.seq : undefined;
  let finished = (task.kind === 'finish' && !task.udpOnly) || task.kind === 'stats';
  if (seq === undefined) {
    execute(c, task);
  } else {
    order.offer(seq, task, (t) => {
      execute(c, t);
      if (t.kind === 'finish' && !t.udpOnly) finished = true;
    });
  }
  // Events go out with batch/finish results (those of every task run just now), never with stats
  // or policy results (nobody delivers those).
  const out = task.kind === 'stats' || task.kind === 'policy' ? { keys: [], values: [] } : c.take();
  return {
    ...out,
    activeFlows: c.engine.activeFlows,
    stats: finished ? c.engine.stats : undefined,
    ops: c.report(),
    decoded: feeder ? { packets: feeder.packets, badRecords: feeder.badRecords, clock: feeder.clock } : undefined,
  };
}

function later(a: Timestamp, b: Timestamp): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}

/**
 * Restores each packet's sensor name and its packets-topic record (the watermark's origin) from the
 * task's runs (entry indices count secrets too).
 */
function withRuns(c: ShardCore, runs: SensorRun[], origins: OriginRun[]): CaptureSink {
  let idx = 0;
  let ri = 0;
  let oi = 0;
  let sensor: string | undefined;
  return {
    packet(p: RawPacket) {
      while (ri < runs.length && runs[ri].from <= idx) sensor = runs[ri++].sensor;
      while (oi < origins.length && origins[oi].from <= idx) {
        const o = origins[oi++];
        c.watermark.at(o.partition, o.offset, o.pos, o.until, o.mids ? new Set(o.mids) : undefined);
      }
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
