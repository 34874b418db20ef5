import type { Timestamp } from '../types.js';

/**
 * pcapng timestamps are one unsigned 64-bit count of "resolution units" split into two 32-bit
 * words (draft-ietf-opsawg-pcapng section 4.3, if_tsresol in 4.2). The unit is 10^-n s (MSB of
 * if_tsresol clear) or 2^-n s (MSB set); the default is 10^-6.
 *
 * A 64-bit count does not fit a double (nanosecond counts pass 2^53 after 104 days since 1970), so
 * the common decimal resolutions are divided with 16-bit long division in plain doubles: every
 * intermediate stays below 2^53 while the divisor is below 2^37 (10^11). Other resolutions (rare)
 * take a BigInt path.
 */
export class TsResolution {
  /** True when the fast long-division path applies (decimal exponent 0..11). */
  private readonly fast: boolean;
  /** Divisor 10^n for the fast path. */
  private readonly divisor: number;
  /** Multiplier (n <= 9) or divisor (n = 10, 11) turning the remainder into nanoseconds. */
  private readonly nsMul: number;
  private readonly nsDiv: number;
  private readonly pow2: boolean;
  private readonly exponent: number;
  /** if_tsoffset: whole seconds added to every timestamp of the interface. */
  readonly offsetSec: number;

  /** @param tsresol the if_tsresol option byte (default 6: microseconds) */
  constructor(tsresol = 6, offsetSec = 0) {
    this.pow2 = (tsresol & 0x80) !== 0;
    this.exponent = tsresol & 0x7f;
    this.offsetSec = offsetSec;
    this.fast = !this.pow2 && this.exponent <= 11;
    this.divisor = this.fast ? 10 ** this.exponent : 1;
    this.nsMul = this.fast && this.exponent <= 9 ? 10 ** (9 - this.exponent) : 1;
    this.nsDiv = this.fast && this.exponent > 9 ? 10 ** (this.exponent - 9) : 1;
  }

  /** Converts the (high, low) 32-bit words of a timestamp into seconds and nanoseconds. */
  convert(high: number, low: number): Timestamp {
    if (this.fast) {
      const d = this.divisor;
      // Long division of the 4 16-bit digits (most significant first) by d.
      let cur = high >>> 16;
      const q3 = Math.floor(cur / d);
      let r = cur - q3 * d;
      cur = r * 65536 + (high & 0xffff);
      const q2 = Math.floor(cur / d);
      r = cur - q2 * d;
      cur = r * 65536 + (low >>> 16);
      const q1 = Math.floor(cur / d);
      r = cur - q1 * d;
      cur = r * 65536 + (low & 0xffff);
      const q0 = Math.floor(cur / d);
      r = cur - q0 * d;
      const sec = ((q3 * 65536 + q2) * 65536 + q1) * 65536 + q0 + this.offsetSec;
      const nsec = this.nsDiv === 1 ? r * this.nsMul : Math.floor(r / this.nsDiv);
      return { sec, nsec };
    }
    const ts = (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
    const e = BigInt(this.exponent);
    if (this.pow2) {
      // 2^-n units cannot be expressed exactly in nanoseconds: truncate toward zero.
      const frac = ts & ((1n << e) - 1n);
      return { sec: Number(ts >> e) + this.offsetSec, nsec: Number((frac * 1_000_000_000n) >> e) };
    }
    const d = 10n ** e;
    return { sec: Number(ts / d) + this.offsetSec, nsec: Number(((ts % d) * 1_000_000_000n) / d) };
  }
}
