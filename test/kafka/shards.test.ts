/**
 * `run --workers N` workers keep each worker's tasks in order even when many are queued (Piscina 5.3
 * alone does not: with more than two tasks waiting for a one-thread pool it ran them out of order,
 * which split flows and broke decryption). Tiny records and tiny tasks (one per record), none
 * awaited until the end, through real worker threads. No broker needed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { captureRecords, fetchFromRecords } from '../../src/kafka/fileFetch.js';
import { PartitionShards } from '../../src/kafka/partitionShards.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';
import { ensureBuilt, REPO } from './helpers.js';

const fixture = ['tls13-parallel-http11', 'tls12-resumption-ticket', 'tls13-aes128gcm-h2'].find((f) => existsSync(join(REPO, 'fixtures/https', f, 'capture.pcap')));

describe('worker shards', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  it.runIf(fixture !== undefined)('many queued tiny tasks give the same events as one in-process engine', async () => {
    const cap = join(REPO, 'fixtures/https', fixture!, 'capture.pcap');
    const keys = join(REPO, 'fixtures/https', fixture!, 'keys.log');
    const want: string[] = [];
    const engine = new Engine((ev) => want.push(ev.event.id), loadKeys([keys], []), {});
    const r = new CaptureReader(engine);
    r.push(readFileSync(cap));
    r.end();
    engine.finish();
    expect(want.length).toBeGreaterThan(0);
    // records of about one packet, a task per record, and no waiting for outputs until the end
    const recs = captureRecords(cap, 3, 256);
    for (const n of [2, 3]) {
      const shards = new PartitionShards(n, { keylogs: [keys], rsaKeys: [], engine: {} }, 256);
      const got: string[] = [];
      try {
        await fetchFromRecords(shards, recs, { fetchBytes: 1, maxInFlight: 1000, onOutput: (o) => got.push(...o.values.map((v) => JSON.parse(v).event.id as string)) });
      } finally {
        await shards.close();
      }
      expect(got.sort(), `--workers ${n}`).toEqual(want.sort());
    }
  });
});
