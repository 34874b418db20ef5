import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { digest } from '../../src/events/digest.js';

describe('digest (one-shot) equals createHash', () => {
  it('for strings (UTF-8) and buffers, every algorithm and encoding used', () => {
    const inputs: (string | Buffer)[] = ['', 'abc', '1:b9XoZ2CiyHcaF2nhALC4gDGSzms=|1700000000.5|http|3', 'héllo ✓ \u{1F600}', randomBytes(0), randomBytes(40), randomBytes(1000)];
    for (const alg of ['md5', 'sha1', 'sha256'] as const) {
      for (const enc of ['hex', 'base64', 'base64url'] as const) {
        for (const d of inputs) expect(digest(alg, d, enc)).toBe(createHash(alg).update(d).digest(enc));
      }
    }
  });
});
