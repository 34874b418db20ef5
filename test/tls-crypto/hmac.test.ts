import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacKey, type HmacHash } from '../../src/tls/crypto/hmac.js';

describe('HmacKey (one-shot hashes) equals createHmac', () => {
  for (const hash of ['md5', 'sha1', 'sha256', 'sha384'] as HmacHash[]) {
    it(`${hash}: key lengths 0..200, messages in 0..3 parts, the key reused`, () => {
      for (let kl = 0; kl <= 200; kl += kl < 140 ? 1 : 9) {
        const key = randomBytes(kl);
        const fast = new HmacKey(hash, key);
        const slow = new HmacKey(hash, key, false);
        for (const n of [0, 1, 13, 55, 56, 64, 77, 128, 300]) {
          const a = randomBytes(n);
          const b = randomBytes(n % 5);
          const want = createHmac(hash, key).update(a).update(b).digest();
          expect(fast.mac(a, b).equals(want)).toBe(true);
          expect(slow.mac(a, b).equals(want)).toBe(true);
          expect(fast.mac(Buffer.concat([a, b])).equals(want)).toBe(true);
        }
        expect(fast.mac().equals(createHmac(hash, key).digest())).toBe(true);
      }
    });
  }
});
