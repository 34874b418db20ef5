/**
 * Hostile and broken input through the whole pipeline: byte flips anywhere in a real capture,
 * captures cut at any point, and random junk must never make the engine throw; what cannot be
 * used is counted.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';

const DEMO = 'fixtures/https/tls13-aes128gcm-h2';
const capture = readFileSync(`${DEMO}/capture.pcap`);
const keys = () => loadKeys([`${DEMO}/keys.log`], []);

function runBytes(bytes: Buffer, chunk = 4096) {
  const events: unknown[] = [];
  const engine = new Engine((e) => events.push(e), keys());
  const reader = new CaptureReader(engine);
  for (let o = 0; o < bytes.length; o += chunk) reader.push(bytes.subarray(o, o + chunk));
  reader.end();
  engine.finish();
  return { events, stats: engine.stats };
}

describe('pipeline robustness', () => {
  it('decrypts the untouched capture (the baseline the mutations start from)', () => {
    const { stats } = runBytes(capture);
    expect(stats.sessionsByStatus.decrypted).toBe(1);
  });

  it('survives byte flips anywhere after the file header', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 24, max: capture.length - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 30 }), (flips) => {
        const b = Buffer.from(capture);
        for (const [pos, x] of flips) b[pos] ^= x;
        const { stats } = runBytes(b);
        // Either packets were read, or the damage (e.g. an impossible record length) was reported.
        expect(stats.packets > 0 || Object.keys(stats.anomalies).length > 0).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('survives the capture cut at any point', () => {
    const full = runBytes(capture).stats;
    for (let cut = 24; cut < capture.length; cut += Math.max(1, Math.floor(capture.length / 97))) {
      const { stats } = runBytes(capture.subarray(0, cut));
      // Every whole record before the cut is read; a cut inside a record is reported.
      expect(stats.packets).toBeLessThanOrEqual(full.packets);
      if (stats.packets < full.packets) expect(stats.anomalies.capture_truncated ?? 0).toBeLessThanOrEqual(1);
    }
  });

  it('survives random payloads inside valid pcap records', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 200 }), { maxLength: 50 }), (frames) => {
        const parts: Buffer[] = [capture.subarray(0, 24)];
        for (const f of frames) {
          const h = Buffer.alloc(16);
          h.writeUInt32LE(1_700_000_000, 0);
          h.writeUInt32LE(f.length, 8);
          h.writeUInt32LE(f.length, 12);
          parts.push(h, Buffer.from(f));
        }
        const { stats } = runBytes(Buffer.concat(parts));
        expect(stats.packets).toBe(frames.length);
      }),
      { numRuns: 100 },
    );
  });
});
