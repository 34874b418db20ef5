/**
 * The body of a `run --workers N` worker (workers/stream-shard.ts runs one per thread): one Engine
 * (ShardCore) that lives across tasks. Tasks are packets-topic record batches of the worker's
 * partitions (src/kafka/recordBatch.ts, decoded here) and finish tasks, run in their `seq` order,
 * plus stats and policy tasks. The result carries the events produced, as
 * (community_id, JSON, event.id), the shard's watermarks and its ops report.
 */
import { InOrder } from '../pipeline/inOrder.js';
import { ShardCore, type StreamShardConfig, type StreamShardResult, type StreamShardTask } from './shards.js';
import { readRecordBatch, RecordFeeder } from './recordBatch.js';
import type { Timestamp } from '../types.js';

export class StreamShardWorker {
  private core: ShardCore | undefined;
  /** One partition per worker: the records of this worker's partitions, decoded here. */
  private feeder: RecordFeeder | undefined;
  /** Batch, records and finish tasks, run in their `seq` order. */
  private readonly order = new InOrder<StreamShardTask>();
  /** Shared batch slots read since the last result (a task held for its turn is read later). */
  private released: number[] = [];

  constructor(private readonly cfg: StreamShardConfig) {}

  private execute(c: ShardCore, task: StreamShardTask): void {
    if (task.kind === 'records') {
      const f = (this.feeder ??= new RecordFeeder(c, this.cfg.records, this.cfg.failAfterRecords, this.cfg.failHow));
      // `run` (mainClock): the tick is the time this worker's partitions had reached BEFORE this
      // batch (computed from earlier results), so it runs first: flows it times out are gone before
      // the batch's packets come (the engine's flow tables time out only on ticks, TcpOptions.clock)
      if (this.cfg.mainClock && task.tick?.sec) c.tick(task.tick);
      if (task.data) readRecordBatch(task.data, f);
      // the batch's shared slot may be written again: the engine keeps no view of a packet
      if (task.slot !== undefined && task.slot >= 0) this.released.push(task.slot);
      if (task.revoke) {
        c.revoke(task.revoke);
        f.revoke(task.revoke);
      }
      // Capture time drives timeouts. `run` (mainClock): the tick the main thread computed, the time
      // every partition of this worker has reached (src/kafka/captureClock.ts), applied above — never
      // the newest time decoded here, which one partition far ahead of another would set. Otherwise
      // (file fetch, bench): this worker's own newest time, or the newest of all workers' (main thread).
      if (!this.cfg.mainClock) {
        const t = task.tick && later(task.tick, f.clock) ? task.tick : f.clock;
        if (t?.sec) c.tick(t);
      }
    } else if (task.kind === 'finish') {
      c.finish(task.leave);
    } else if (task.kind === 'policy') {
      c.ops.setPolicy(task.assets, task.defaultEnabled);
    }
  }

  private takeReleased(): number[] | undefined {
    if (!this.released.length) return undefined;
    const r = this.released;
    this.released = [];
    return r;
  }

  run(task: StreamShardTask): StreamShardResult {
    const c = (this.core ??= new ShardCore(this.cfg));
    const seq = task.kind === 'records' || task.kind === 'finish' ? task.seq : undefined;
    let finished = (task.kind === 'finish' && !task.leave) || task.kind === 'stats';
    if (seq === undefined) {
      this.execute(c, task);
    } else {
      this.order.offer(seq, task, (t) => {
        this.execute(c, t);
        if (t.kind === 'finish' && !t.leave) finished = true;
      });
    }
    // Events go out with records/finish results (those of every task run just now), never
    // with stats or policy results (nobody delivers those).
    const out = task.kind === 'stats' || task.kind === 'policy' ? { keys: [], values: [] } : c.take();
    const f = this.feeder;
    return {
      ...out,
      activeFlows: c.engine.activeFlows,
      stats: finished ? c.engine.stats : undefined,
      ops: c.report(),
      decoded: f ? { packets: f.packets, badRecords: f.badRecords, clock: f.clock, clocks: [...f.clocks] } : undefined,
      released: seq === undefined ? undefined : this.takeReleased(),
    };
  }
}

function later(a: Timestamp, b: Timestamp): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}
