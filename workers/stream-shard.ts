/**
 * Piscina worker for `tlsdecrypt run --workers N` (src/kafka/partitionShards.ts: one packets-topic
 * partition per worker). Each pool
 * loading this file has exactly one thread, so the Engine (flow table, SecretsStore fed by broadcast
 * secrets entries) lives across tasks: src/kafka/shardWorker.ts.
 */
import { workerData } from 'node:worker_threads';
import { StreamShardWorker } from '../src/kafka/shardWorker.js';
import type { StreamShardConfig, StreamShardResult, StreamShardTask } from '../src/kafka/shards.js';

let worker: StreamShardWorker | undefined;

export default function run(task: StreamShardTask): StreamShardResult {
  return (worker ??= new StreamShardWorker(workerData as StreamShardConfig)).run(task);
}
