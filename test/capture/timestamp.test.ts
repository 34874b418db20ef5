import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TsResolution } from '../../src/capture/index.js';

/** Straightforward BigInt reference for draft-ietf-opsawg-pcapng if_tsresol. */
function reference(tsresol: number, high: number, low: number, offset = 0): { sec: number; nsec: number } {
  const ts = (BigInt(high) << 32n) | BigInt(low);
  const e = BigInt(tsresol & 0x7f);
  const units = (tsresol & 0x80) !== 0 ? 1n << e : 10n ** e;
  return { sec: Number(ts / units) + offset, nsec: Number(((ts % units) * 1_000_000_000n) / units) };
}

describe('pcapng timestamp resolution', () => {
  it('converts every 64-bit count exactly for decimal and binary resolutions', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 14 }), fc.integer({ min: 0x80, max: 0x80 + 40 }), fc.constantFrom(6, 9)),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.integer({ min: -1000, max: 1000 }),
        (res, high, low, offset) => {
          expect(new TsResolution(res, offset).convert(high, low)).toEqual(reference(res, high, low, offset));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('splits nanosecond counts beyond 2^53 without rounding', () => {
    // 2026-11-22T00:00:00.123456789Z in nanoseconds: 1795305600123456789 (> 2^60)
    const ns = 1_795_305_600_123_456_789n;
    const t = new TsResolution(9).convert(Number(ns >> 32n), Number(ns & 0xffffffffn));
    expect(t).toEqual({ sec: 1_795_305_600, nsec: 123_456_789 });
  });

  it('defaults to microseconds', () => {
    expect(new TsResolution().convert(0, 1_500_001)).toEqual({ sec: 1, nsec: 500_001_000 });
  });
});
