/**
 * The packets-topic fetch path of `run --workers N` fed from a file, with no broker and no network:
 * for bench/run-workers.mjs (the 16-core kit has Node but no Java) and the tests that compare
 * `run --workers N` with `replay` for every fixture.
 *
 * `captureRecords` cuts a capture into the records `publish pcap` would produce (packets partitioned
 * by the 5-tuple flow hash, each partition's packets in pcap-stream records of up to `batchBytes`).
 * `fetchFromRecords` then hands them to PartitionShards as `run` does with what kafkajs fetched: one
 * batch per partition in turn (up to `fetchBytes` of records, kafkajs's bytes per partition), each
 * record with its watermark origin, a flush per batch, and the same bound on outputs in flight
 * (--max-in-flight per worker) before it waits, in order, for the oldest.
 */
import { readFileSync } from 'node:fs';
import { CaptureReader } from '../capture/index.js';
import { newDecodedPacket } from '../decode/index.js';
import type { RawPacket } from '../types.js';
import type { InRecord } from './adapter.js';
import { PCAP_CONTENT_TYPE, PcapStreamBuilder } from './formats.js';
import type { PartitionShards } from './partitionShards.js';
import { FragmentPartitions, packetPartition } from './publish.js';
import type { ShardOutput } from './shards.js';

export interface FileRecords {
  /** Records per partition, offsets from 0. */
  partitions: InRecord[][];
  /** Key-log entries embedded in the capture (pcapng DSB), in order. */
  secrets: { type: number; data: Buffer }[];
  packets: number;
  /** Bytes of all record values. */
  bytes: number;
}

export function captureRecords(capture: string | Buffer, partitions: number, batchBytes = 1 << 20): FileRecords {
  const out: FileRecords = { partitions: Array.from({ length: partitions }, () => []), secrets: [], packets: 0, bytes: 0 };
  const builders = out.partitions.map(() => new PcapStreamBuilder());
  const decoded = newDecodedPacket();
  const frags = new FragmentPartitions();
  const close = (i: number): void => {
    const b = builders[i];
    if (!b.count) return;
    const value = b.take();
    out.bytes += value.length;
    const recs = out.partitions[i];
    recs.push({ topic: '', partition: i, offset: String(recs.length), key: null, value, headers: { 'content-type': Buffer.from(PCAP_CONTENT_TYPE) }, timestamp: 0 });
  };
  const reader = new CaptureReader({
    packet(p: RawPacket) {
      out.packets++;
      const i = packetPartition(p, decoded, partitions, frags);
      const b = builders[i];
      // one stream holds one link type (formats.ts)
      if (b.count && (b.linktype !== p.linktype || b.bytes + 16 + p.data.length > batchBytes)) close(i);
      b.add(p);
    },
    secrets: (type, data) => out.secrets.push({ type, data: Buffer.from(data) }),
    anomaly: () => {},
  });
  reader.push(typeof capture === 'string' ? readFileSync(capture) : capture);
  reader.end();
  for (let i = 0; i < partitions; i++) close(i);
  return out;
}

export interface FetchOptions {
  /** Bytes of records per partition per fetched batch (kafkajs maxBytesPerPartition). */
  fetchBytes?: number;
  /** Outputs in flight per worker before waiting (`run --max-in-flight`). */
  maxInFlight?: number;
  /** Each output, in order (events and watermarks). */
  onOutput?: (o: ShardOutput) => void;
}

/** Feeds every record to `shards` as `run` would, then finishes; resolves once every output is in. */
export async function fetchFromRecords(shards: PartitionShards, recs: FileRecords, o: FetchOptions = {}): Promise<void> {
  const fetchBytes = o.fetchBytes ?? 4 << 20;
  const bound = (o.maxInFlight ?? 4) * shards.n;
  for (const s of recs.secrets) shards.secrets(s.type, s.data);
  shards.assign(recs.partitions.map((_, i) => i));
  const next = recs.partitions.map(() => 0);
  const pos = recs.partitions.map(() => 0);
  const pending: Promise<ShardOutput>[] = [];
  const drain = async (to: number): Promise<void> => {
    while (pending.length > to) o.onOutput?.(await pending.shift()!);
  };
  for (let more = true; more; ) {
    more = false;
    for (let p = 0; p < recs.partitions.length; p++) {
      const list = recs.partitions[p];
      let bytes = 0;
      let fed = 0;
      while (next[p] < list.length && (fed === 0 || bytes < fetchBytes)) {
        const r = list[next[p]];
        shards.record(r, { offset: next[p], pos: pos[p], until: 0, reread: false });
        pos[p] += r.value?.length ?? 0;
        bytes += r.value?.length ?? 0;
        next[p]++;
        fed++;
      }
      if (!fed) continue;
      more = true;
      pending.push(shards.flush());
      if (pending.length > bound) await drain(bound >> 1);
    }
  }
  pending.push(shards.finish());
  await drain(0);
}
