/**
 * Worker shards keep each shard's tasks in order even when many are queued (Piscina 5.3 alone does
 * not: with more than two tasks waiting for a one-thread pool it ran them out of order, which
 * split flows and broke decryption). No broker needed.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { InProcessShards, WorkerShards, type ShardOutput, type Shards } from '../../src/kafka/shards.js';
import type { RawPacket, Timestamp } from '../../src/types.js';
import { ensureBuilt, REPO } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-shards-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fixture = ['tls13-parallel-http11', 'tls12-resumption-ticket', 'tls13-aes128gcm-h2'].find((f) => existsSync(join(REPO, 'fixtures/https', f, 'capture.pcap')));

async function events(shards: Shards, packets: RawPacket[], flushEvery: number): Promise<string[]> {
  const outs: Promise<ShardOutput>[] = [];
  let max: Timestamp = { sec: 0, nsec: 0 };
  packets.forEach((p, i) => {
    if (p.ts.sec > max.sec || (p.ts.sec === max.sec && p.ts.nsec > max.nsec)) max = p.ts;
    shards.packet(p);
    if ((i + 1) % flushEvery === 0) outs.push(shards.flush(max)); // not awaited: tasks pile up
  });
  outs.push(shards.finish());
  const all = (await Promise.all(outs)).flatMap((o) => o.values);
  await shards.close();
  return all.map((v) => JSON.parse(v).event.id as string).sort();
}

describe('worker shards', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  it.runIf(fixture !== undefined)('many queued tiny tasks give the same events as one in-process engine', async () => {
    const cap = join(dir, 'c.pcap');
    const keys = join(dir, 'k.log');
    copyFileSync(join(REPO, 'fixtures/https', fixture!, 'capture.pcap'), cap);
    copyFileSync(join(REPO, 'fixtures/https', fixture!, 'keys.log'), keys);
    const packets: RawPacket[] = [];
    new CaptureReader({ packet: (p) => void packets.push({ ...p, data: Buffer.from(p.data) }), secrets() {}, anomaly() {} }).push(readFileSync(cap));
    const cfg = { keylogs: [keys], rsaKeys: [], engine: {} };
    const want = await events(new InProcessShards(cfg), packets, 3);
    expect(want.length).toBeGreaterThan(0);
    // 256-byte batches: a task per packet or two, dozens queued per shard
    expect(await events(new WorkerShards(2, cfg, 256), packets, 3)).toEqual(want);
    expect(await events(new WorkerShards(3, cfg, 256), packets, 1000)).toEqual(want);
  });
});
