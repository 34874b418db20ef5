/**
 * `replay --workers N`: one reader dispatching to N engine threads (src/pipeline/fanout.ts) gives
 * the events and the stats of one engine, for every fixture and N in 1, 2, 3, 8. The engines run
 * in one pool of 8 threads for the whole file (a thread serves one replay after another).
 *
 * The shared chunks are small here (4 KiB instead of 4 MiB), so that records straddle chunks and
 * chunks go round many times even in a small capture, and every chunk and index is overwritten
 * once it is answered (`poison`): an engine that kept a view of packet bytes past the call would
 * then decrypt garbage and the events would differ. Some fixtures also go through 40-byte chunks
 * (every record straddles: each packet travels inline) and through the stdin path, in pieces of
 * odd sizes. With 3 engines the engines' index slots are tiny, so that indexes go both ways: in
 * their chunk's slot, and (those that do not fit) in buffers of their own.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnginePool, replayFanout } from '../../src/pipeline/fanout.js';
import { InputError, replay, type ReplayOptions } from '../../src/pipeline/replay.js';
import { NdjsonWriter } from '../../src/pipeline/output.js';
import type { EngineStats } from '../../src/pipeline/engine.js';
import { captures } from '../helpers/replay.js';

function optionsFor(capture: string): ReplayOptions {
  const dir = capture.slice(0, capture.lastIndexOf('/'));
  const keylogs = existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
  const rsaKeys = keylogs.length === 0 && existsSync(join(dir, 'server.key')) ? [{ path: join(dir, 'server.key') }] : [];
  return { capture, keylogs, rsaKeys, engine: {} };
}

/** Stats with every count table's keys in one order (shards add them up in another). */
function normal(s: EngineStats): unknown {
  const sorted = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)));
  return { ...s, sessionsByStatus: sorted(s.sessionsByStatus), eventsByDataset: sorted(s.eventsByDataset), anomalies: sorted(s.anomalies), notDecoded: sorted(s.notDecoded) };
}

const tmp = mkdtempSync(join(tmpdir(), 'tlsd-fanout-'));
let seq = 0;

/** Runs `fn` with a writer to a new file; returns the sorted NDJSON lines, the event count and the result. */
async function collect(fn: (out: NdjsonWriter) => Promise<EngineStats>): Promise<{ lines: string[]; count: number; stats: EngineStats }> {
  const path = join(tmp, `out-${seq++}.ndjson`);
  const out = await NdjsonWriter.toFile(path);
  const stats = await fn(out);
  await out.close();
  const text = readFileSync(path, 'utf8');
  return { lines: text.split('\n').filter(Boolean).sort(), count: out.count, stats };
}

const all = captures('fixtures');
let pool: EnginePool;

beforeAll(() => {
  pool = new EnginePool(8);
});
afterAll(async () => {
  await pool.close();
});

describe('replay --workers N: one reader, N engine threads', () => {
  it('has the fixtures', () => {
    expect(all.length).toBeGreaterThanOrEqual(80);
  });

  for (const capture of all) {
    it(`${capture}: the same sorted events and stats for 1, 2, 3 and 8 engines as one engine in-process`, async () => {
      const opts = optionsFor(capture);
      let whole: unknown;
      const one = await collect((out) => replay(opts, out)).catch((e: unknown) => {
        whole = e;
        return undefined;
      });
      if (one === undefined) {
        // unusable input (e.g. fixtures/bad/short-header): every N refuses it with the same one line
        expect(whole).toBeInstanceOf(InputError);
        for (const shards of [1, 2, 3, 8]) {
          await expect(collect((out) => replayFanout(opts, out, pool, { shards, chunkBytes: 4096, poison: true })), `${shards} engines`).rejects.toThrow((whole as Error).message);
        }
        return;
      }
      for (const shards of [1, 2, 3, 8]) {
        // with 3 engines, index slots for 4 entries: indexes that do not fit go in buffers of their own
        const slotEntries = shards === 3 ? 4 : undefined;
        const got = await collect((out) => replayFanout(opts, out, pool, { shards, chunkBytes: 4096, poison: true, slotEntries }));
        expect(got.lines, `${shards} engines`).toEqual(one.lines);
        expect(got.count).toBe(one.count);
        expect(normal(got.stats), `${shards} engines`).toEqual(normal(one.stats));
      }
    });
  }

  /** The capture in pieces of `size` bytes, as a pipe delivers it. */
  async function* pieces(path: string, size: number): AsyncGenerator<Buffer> {
    const b = readFileSync(path);
    for (let o = 0; o < b.length; o += size) yield b.subarray(o, Math.min(b.length, o + size));
  }

  // pcap and pcapng (with a secrets block), TLS 1.2 and 1.3, several connections
  const straddling = [
    'fixtures/https/tls13-aes128gcm-h2/capture.pcap',
    'fixtures/https/variant-pcapng-dsb/capture.pcapng',
    'fixtures/ftp/ftps-explicit-active-python/capture.pcap',
    'fixtures/detect/smtp-clear-auth/capture.pcap',
  ];

  it('has the fixtures for the straddling cases', () => {
    for (const c of straddling) expect(all).toContain(c);
  });

  for (const capture of straddling) {
    it(`${capture}: the same events through tiny chunks (every record straddles) and through the stdin path`, async () => {
      const opts = optionsFor(capture);
      const one = await collect((out) => replay(opts, out));
      for (const shards of [2, 3]) {
        const tiny = await collect((out) => replayFanout(opts, out, pool, { shards, chunkBytes: 40, poison: true, slotEntries: shards === 3 ? 1 : undefined }));
        expect(tiny.lines, `${shards} engines, 40-byte chunks`).toEqual(one.lines);
        expect(normal(tiny.stats)).toEqual(normal(one.stats));
        for (const [piece, chunkBytes] of [[1000, 4096], [7, 300], [65536, 1 << 20]]) {
          const got = await collect((out) => replayFanout({ ...opts, capture: '-' }, out, pool, { shards, chunkBytes, poison: true, input: pieces(capture, piece) }));
          expect(got.lines, `${shards} engines, stdin in ${piece}-byte pieces, ${chunkBytes}-byte chunks`).toEqual(one.lines);
          expect(normal(got.stats)).toEqual(normal(one.stats));
        }
      }
    });
  }

  /**
   * A little-endian microsecond pcap rewritten: big-endian with nanosecond timestamps, or with each
   * record's microseconds pushed out of range (one second fewer, 1,000,000 more microseconds, which
   * readers carry back into the seconds): the same packets at the same times either way.
   */
  function rewritePcap(src: Buffer, how: 'be-nano' | 'us-overflow'): Buffer {
    expect(src.readUInt32LE(0)).toBe(0xa1b2c3d4);
    const out = Buffer.from(src);
    if (how === 'be-nano') {
      out.writeUInt32BE(0xa1b23c4d, 0);
      out.writeUInt16BE(src.readUInt16LE(4), 4);
      out.writeUInt16BE(src.readUInt16LE(6), 6);
      for (const o of [8, 12, 16, 20]) out.writeUInt32BE(src.readUInt32LE(o), o);
    }
    for (let o = 24; o + 16 <= src.length; ) {
      const [sec, us, caplen, orig] = [0, 4, 8, 12].map((k) => src.readUInt32LE(o + k));
      if (how === 'be-nano') {
        for (const [k, v] of [[0, sec], [4, us * 1000], [8, caplen], [12, orig]]) out.writeUInt32BE(v, o + k);
      } else if (sec > 0) {
        out.writeUInt32LE(sec - 1, o);
        out.writeUInt32LE(us + 1_000_000, o + 4);
      }
      o += 16 + caplen;
    }
    return out;
  }

  it('gives the same events from a capture rewritten big-endian with nanoseconds, or with out-of-range microseconds', async () => {
    const capture = 'fixtures/ftp/ftps-explicit-active-python/capture.pcap';
    const opts = optionsFor(capture);
    const one = await collect((out) => replay(opts, out));
    for (const how of ['be-nano', 'us-overflow'] as const) {
      const path = join(tmp, `${how}.pcap`);
      writeFileSync(path, rewritePcap(readFileSync(capture), how));
      for (const shards of [2, 3]) {
        const got = await collect((out) => replayFanout({ ...opts, capture: path }, out, pool, { shards, chunkBytes: 4096, poison: true }));
        expect(got.lines, `${how}, ${shards} engines`).toEqual(one.lines);
        expect(normal(got.stats)).toEqual(normal(one.stats));
      }
    }
  });

  it('answers an unreadable capture with an InputError naming it, and the pool serves the next replay', async () => {
    const missing = join(tmp, 'nope.pcap');
    await expect(collect((out) => replayFanout({ capture: missing, keylogs: [], rsaKeys: [], engine: {} }, out, pool, { shards: 3 }))).rejects.toThrow(InputError);
    const notPcap = join(tmp, 'not.pcap');
    writeFileSync(notPcap, 'this is not a capture file at all');
    await expect(collect((out) => replayFanout({ capture: notPcap, keylogs: [], rsaKeys: [], engine: {} }, out, pool, { shards: 3 }))).rejects.toThrow(/not\.pcap/);
    const opts = optionsFor('fixtures/https/tls13-aes128gcm-h2/capture.pcap');
    const one = await collect((out) => replay(opts, out));
    const again = await collect((out) => replayFanout(opts, out, pool, { shards: 3 }));
    expect(again.lines).toEqual(one.lines);
  });
});
