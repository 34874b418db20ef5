/**
 * The SMTP/FTP fixture captures cut after any packet, or with bytes flipped anywhere, go through
 * the whole pipeline without an exception or a hang, and never report a password.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { runCapture } from './harness.js';

const FIX = join(import.meta.dirname, '../../fixtures');
const cases = ['smtp', 'ftp'].flatMap((p) =>
  existsSync(join(FIX, p)) ? readdirSync(join(FIX, p)).filter((d) => existsSync(join(FIX, p, d, 'capture.pcap'))).map((d) => join(FIX, p, d)) : [],
);

/** Offsets of the record boundaries of a classic little-endian pcap. */
function recordEnds(b: Buffer): number[] {
  const ends: number[] = [];
  let off = 24;
  while (off + 16 <= b.length) {
    off += 16 + b.readUInt32LE(off + 8);
    if (off <= b.length) ends.push(off);
  }
  return ends;
}

describe.each(cases)('pipeline robustness on %s', (dir) => {
  const pcap = readFileSync(join(dir, 'capture.pcap'));
  const keys = join(dir, 'keys.log');
  const ends = recordEnds(pcap);

  it('survives the capture cut after any packet', () => {
    fc.assert(
      fc.property(fc.nat(ends.length - 1), (i) => {
        const r = runCapture(pcap.subarray(0, ends[i]), keys);
        expect(JSON.stringify(r.events)).not.toMatch(/s3cret|never-logged/);
      }),
      { numRuns: 15 },
    );
  });

  it('survives bytes flipped anywhere after the file header', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(pcap.length - 25), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }), (flips) => {
        const b = Buffer.from(pcap);
        for (const [at, x] of flips) b[24 + at] ^= x;
        runCapture(b, keys);
      }),
      { numRuns: 10 },
    );
  });
});
