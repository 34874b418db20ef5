/**
 * `run --workers N` (one packets partition per worker thread, src/kafka/partitionShards.ts) against
 * `replay`, for every fixture capture and N in 2, 3 and 8, without a broker: each capture is cut into
 * the records `publish pcap` makes (4 partitions by the 5-tuple flow hash, small pcap-stream records)
 * and fed through the same hand-off `run` uses (record batches transferred to the partitions'
 * workers, decoded there), as kafkajs would fetch them (src/kafka/fileFetch.ts). The real-broker
 * cases (N = 1, 2, 3, 8, rebalances, a failing worker) are in run-workers.test.ts.
 *
 * Expected: the same sorted events (byte-identical) and the same summary counts as `replay`, except
 * for captures whose connections are related across 5-tuples (CROSS_CONNECTION below).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { captureRecords, fetchFromRecords } from '../../src/kafka/fileFetch.js';
import { PartitionShards, type PartitionShardsOptions } from '../../src/kafka/partitionShards.js';
import { Engine, type EngineStats } from '../../src/pipeline/engine.js';
import { loadKeys, type RsaKeySpec } from '../../src/pipeline/replay.js';
import { CaptureReader } from '../../src/capture/index.js';
import { readFileSync } from 'node:fs';
import { ensureBuilt, REPO } from './helpers.js';

const PARTITIONS = 4;

interface Fx {
  name: string;
  capture: string;
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
}

function fixtures(): Fx[] {
  const out: Fx[] = [];
  for (const group of ['https', 'ftp', 'smtp', 'detect', 'quic']) {
    const base = join(REPO, 'fixtures', group);
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base).sort()) {
      const dir = join(base, name);
      const capture = ['capture.pcap', 'capture.pcapng'].map((f) => join(dir, f)).find(existsSync);
      if (!capture) continue;
      const keylogs = existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
      const rsaKeys = existsSync(join(dir, 'server.key')) ? [{ path: join(dir, 'server.key') }] : [];
      out.push({ name: `${group}/${name}`, capture, keylogs, rsaKeys });
    }
  }
  return out;
}

/** Replay's events (sorted JSON lines) and stats. */
function replayOf(f: Fx): { events: string[]; stats: EngineStats } {
  const events: string[] = [];
  const engine = new Engine((ev) => events.push(JSON.stringify(ev)), loadKeys(f.keylogs, f.rsaKeys), {});
  const r = new CaptureReader(engine);
  r.push(readFileSync(f.capture));
  r.end();
  engine.finish();
  return { events: events.sort(), stats: engine.stats };
}

/** The summary's counts (what `replay` and `run` print). */
function summary(s: EngineStats): Record<string, unknown> {
  return { flows: s.flows, tlsFlows: s.tlsFlows, decryptedBytes: s.decryptedBytes, sessionsByStatus: s.sessionsByStatus, eventsByDataset: s.eventsByDataset };
}

async function runWorkers(f: Fx, n: number, inProcess: boolean, opts: PartitionShardsOptions = {}, batchBytes = 1 << 20, recordBytes = 4096): Promise<{ events: string[]; stats: EngineStats }> {
  const recs = captureRecords(f.capture, PARTITIONS, recordBytes);
  // the variant below that is about records larger than a batch slot must have one
  if (recordBytes > batchBytes + (1 << 16)) expect(recs.partitions.flat().some((r) => r.value!.length > batchBytes + (1 << 16))).toBe(true);
  const shards = new PartitionShards(n, { keylogs: f.keylogs, rsaKeys: f.rsaKeys, engine: {}, watermark: { windowSec: 120, maxBytes: 256 << 20 } }, batchBytes, undefined, undefined, { inProcess, ...opts });
  const events: string[] = [];
  try {
    await fetchFromRecords(shards, recs, { onOutput: (o) => events.push(...o.values) });
    return { events: events.sort(), stats: await shards.stats() };
  } finally {
    await shards.close();
  }
}

const ALL = fixtures();
/**
 * Captures whose connections are related across 5-tuples: FTP data channels (matched to their
 * control connection), alerts about a host's many connections (beaconing, scanning, attack
 * bursts), a QUIC connection that migrates to another 5-tuple, a TLS 1.2 connection resumed with a
 * session ticket and decrypted with the RSA key alone (its master secret comes from the session cache
 * of the engine that saw the first connection; README "Not covered"). The packets topic is partitioned by
 * the 5-tuple flow hash, so these connections land in different partitions, which reach an engine
 * in no defined order or reach different engines: on different workers of one instance exactly as
 * on different instances (README "Scaling out and in", Not covered). For them the test asserts only
 * that nothing is duplicated; all other captures must equal replay exactly.
 */
const CROSS_CONNECTION = (name: string): boolean =>
  (name.startsWith('ftp/') && !['ftp/ftp-control-chars', 'ftp/ftp-data-orphan-active', 'ftp/ftps-data-orphan'].includes(name)) ||
  ['detect/beacon', 'detect/scanner-ua', 'detect/web-attacks', 'quic/migration-nat-rebinding', 'https/tls12-rsa-ticket-resumption'].includes(name);

describe('run --workers N (partition per worker) equals replay: every fixture, N = 1, 2, 3, 8, no broker', () => {
  for (const f of ALL) {
    it(f.name, async () => {
      const want = replayOf(f);
      for (const n of [1, 2, 3, 8]) {
        const got = await runWorkers(f, n, true);
        expect(new Set(got.events.map((e) => JSON.parse(e).event.id)).size, `${f.name} --workers ${n}: no duplicates`).toBe(got.events.length);
        if (CROSS_CONNECTION(f.name)) continue;
        expect(got.events, `${f.name} --workers ${n}`).toEqual(want.events);
        expect(summary(got.stats), `${f.name} --workers ${n}`).toEqual(summary(want.stats));
      }
    });
  }
});

describe('the same with worker threads (record batches transferred), a sample of fixtures', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const sample = ['https/tls13-parallel-http11', 'https/tls12-resumption-ticket', 'https/variant-pcapng-dsb', 'smtp/smtp-starttls-587-curl'];
  for (const name of sample) {
    const f = ALL.find((x) => x.name === name);
    it.runIf(f !== undefined)(name, async () => {
      const want = replayOf(f!);
      for (const n of [2, 3, 8]) {
        const got = await runWorkers(f!, n, false);
        expect(got.events, `${name} --workers ${n}`).toEqual(want.events);
        expect(summary(got.stats), `${name} --workers ${n}`).toEqual(summary(want.stats));
      }
    });
  }
});

/**
 * Batches are written into shared slots that are reused once the worker has read them: a slot
 * poisoned (0xee) on its release must never be read again, by the engine (no view of a packet kept)
 * or by a task held for its turn; with one slot per worker and small batches most batches take the
 * fallback (a buffer of their own, transferred), with none every batch does, and a batch larger
 * than its buffer grows out of its slot.
 */
describe('shared batch slots: released only once read, the fallbacks give the same events', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const sample = ['https/tls13-parallel-http11', 'https/tls12-resumption-ticket', 'https/variant-pcapng-dsb', 'smtp/smtp-starttls-587-curl', 'quic/aes128-download-keyupdate'];
  const variants: [string, PartitionShardsOptions, number, number][] = [
    ['8 poisoned slots', { poisonSlots: true }, 1 << 20, 4096],
    ['1 poisoned slot, 8 KiB batches', { poisonSlots: true, batchSlots: 1 }, 8192, 4096],
    ['no slots', { batchSlots: 0 }, 1 << 20, 4096],
  ];
  const big: [string, PartitionShardsOptions, number, number] = ['records larger than a slot', { poisonSlots: true }, 1024, 1 << 20];
  for (const name of sample) {
    const f = ALL.find((x) => x.name === name);
    it.runIf(f !== undefined)(name, async () => {
      const want = replayOf(f!);
      for (const [label, opts, batchBytes, recordBytes] of name === 'quic/aes128-download-keyupdate' ? [...variants, big] : variants) {
        for (const [n, inProcess] of [[2, true], [3, false]] as const) {
          const got = await runWorkers(f!, n, inProcess, opts, batchBytes, recordBytes);
          expect(got.events, `${name} ${label} --workers ${n}${inProcess ? ' (in process)' : ''}`).toEqual(want.events);
          expect(summary(got.stats), `${name} ${label} --workers ${n}`).toEqual(summary(want.stats));
        }
      }
    });
  }
});
