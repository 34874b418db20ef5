/**
 * `publish mirror`'s run: the packets topic, the batcher and producer, and the receiver — in this
 * thread (src/kafka/mirror.ts MirrorReceiver) or in `--threads N` receive threads
 * (src/kafka/mirrorThreads.ts, loaded only then) — until the stop signal.
 */
import type { KafkaClient, ProducerOptions } from './adapter.js';
import { PartitionBatcher } from './batcher.js';
import { MirrorReceiver, type MirrorOptions, type MirrorResult } from './mirror.js';
import { openPacketsTopic } from './publish.js';

/** Runs the receiver until the stop signal; resolves with what it did (exit 0). */
export async function publishMirror(client: KafkaClient, o: MirrorOptions): Promise<MirrorResult> {
  const threads = o.threads ?? 1;
  const mt = threads > 1 ? await import('./mirrorThreads.js') : undefined;
  const budget = mt?.threadBudget(o.maxBufferBytes, threads);
  const producerOpts: ProducerOptions = { compression: o.compression, impl: o.producer ?? 'auto' };
  const { producer, partitions } = await openPacketsTopic(client, o.topic, o.partitions, producerOpts);
  const batcher = new PartitionBatcher(client, {
    topic: o.topic,
    partitions,
    batchBytes: o.batchBytes,
    lingerMs: o.lingerMs,
    maxBufferBytes: budget?.batcherBytes ?? o.maxBufferBytes,
    onKafkaError: 'reconnect',
    overflow: 'refuse',
    producer: producerOpts,
    observeLatency: o.observeLatency,
    maxInFlight: o.maxInFlight,
  }, producer);
  const rx = mt && budget ? new mt.ThreadedMirrorReceiver(batcher, o, partitions, threads, budget.perThreadBytes) : new MirrorReceiver(batcher, o, partitions);
  let onSig: (() => void) | undefined;
  let stop = o.stopSignal;
  if (!stop) {
    stop = new Promise<void>((r) => (onSig = r));
    process.once('SIGINT', onSig!);
    process.once('SIGTERM', onSig!);
  }
  try {
    await rx.bind();
    o.onStarted?.(rx);
    await Promise.race([stop, rx.failed]);
  } finally {
    if (onSig) {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
    }
    await rx.close();
    await batcher.close(o.flushTimeoutMs ?? 10_000);
  }
  return { mirror: rx.stats, publish: batcher.stats, partitions };
}

export function describeMirrorResult(r: MirrorResult, o: MirrorOptions): string {
  const dg = Object.values(r.mirror.datagrams).reduce((a, b) => a + b, 0);
  let s = `tlsdecrypt: received ${dg} datagrams, published ${r.publish.publishedPackets} packets in ${r.publish.publishedRecords} records to ${o.topic} (${r.partitions} partitions)`;
  const errs = Object.entries(r.mirror.decapErrors).map(([k, v]) => `${k} ${v}`).join(', ');
  if (errs) s += `; skipped: ${errs}`;
  if (r.mirror.vniFiltered) s += `; other VNIs ${r.mirror.vniFiltered}`;
  const drops = Object.entries(r.publish.drops).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`);
  if (r.mirror.kernelDrops) drops.push(`kernel_socket_buffer ${r.mirror.kernelDrops}`);
  if (drops.length) s += `; dropped: ${drops.join(', ')}`;
  return s + '\n';
}
