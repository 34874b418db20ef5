/**
 * Batched AES-GCM packet protection (src/quic/gcmBatch.ts) against node:crypto's own AES-GCM:
 * packets sealed by createCipheriv open to the same plaintext and verify as a batch; one changed
 * bit anywhere (header, ciphertext, tag) makes the batch fail, and the payload handed to the
 * one-by-one fallback is the packet's own.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GcmBatchStream, GcmKey, gfMul } from '../../src/quic/gcmBatch.js';

type Aead = 'aes-128-gcm' | 'aes-256-gcm';

function seal(aead: Aead, key: Buffer, nonce: Buffer, aad: Buffer, plain: Buffer): Buffer {
  const c = createCipheriv(aead, key, nonce, { authTagLength: 16 });
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

interface Pkt {
  nonce: Buffer;
  aad: Buffer;
  plain: Buffer;
  payload: Buffer;
}

function packets(aead: Aead, key: Buffer, sizes: readonly [number, number][]): Pkt[] {
  return sizes.map(([aadLen, len]) => {
    const nonce = randomBytes(12);
    const aad = randomBytes(aadLen);
    const plain = randomBytes(len);
    return { nonce, aad, plain, payload: seal(aead, key, nonce, aad, plain) };
  });
}

function batch(aead: Aead, key: Buffer, pkts: Pkt[]): { ok: boolean; st: GcmBatchStream } {
  const st = new GcmBatchStream(1 << 20);
  st.key = new GcmKey(aead, key);
  for (const p of pkts) st.add(p.nonce, p.aad, p.payload);
  return { ok: st.open(), st };
}

describe('batched AES-GCM', () => {
  it('multiplies in GF(2^128) as GCM does (x * 1 = x, 1 being the bit-reflected unit)', () => {
    const one = [0x80000000, 0, 0, 0];
    const x = [0x12345678, 0x9abcdef0, 0x0fedcba9, 0x87654321];
    expect(gfMul(x, one)).toEqual(x);
    expect(gfMul(one, x)).toEqual(x);
  });

  for (const aead of ['aes-128-gcm', 'aes-256-gcm'] as const) {
    it(`${aead}: opens node's packets of any length to their plaintext and verifies the batch`, () => {
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 0, max: 1500 })), { minLength: 1, maxLength: 40 }), (sizes) => {
          const key = randomBytes(aead === 'aes-128-gcm' ? 16 : 32);
          const pkts = packets(aead, key, sizes);
          const { ok, st } = batch(aead, key, pkts);
          expect(ok).toBe(true);
          pkts.forEach((p, i) => expect(st.plain(i).equals(p.plain)).toBe(true));
        }),
        { numRuns: 40 },
      );
    });

    it(`${aead}: one flipped bit in a header, ciphertext or tag fails the batch; the fallback gets the packet as it was`, () => {
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 1300 })), { minLength: 1, maxLength: 20 }),
          fc.nat(),
          fc.nat(),
          fc.integer({ min: 0, max: 7 }),
          (sizes, which, where, bit) => {
            const key = randomBytes(aead === 'aes-128-gcm' ? 16 : 32);
            const pkts = packets(aead, key, sizes);
            const victim = pkts[which % pkts.length];
            const inAad = where % 3 === 0;
            const target = inAad ? victim.aad : victim.payload;
            const before = Buffer.from(victim.payload);
            target[where % target.length] ^= 1 << bit;
            const { ok, st } = batch(aead, key, pkts);
            expect(ok).toBe(false);
            pkts.forEach((p, i) => expect(st.payload(i).equals(p.payload)).toBe(true));
            if (!inAad) expect(victim.payload.equals(before)).toBe(false);
          },
        ),
        { numRuns: 60 },
      );
    });
  }

  it('fails a batch with a packet sealed under another key among good ones', () => {
    const key = randomBytes(16);
    const pkts = packets('aes-128-gcm', key, [
      [20, 1200],
      [20, 30],
      [20, 1200],
    ]);
    const other = packets('aes-128-gcm', randomBytes(16), [[20, 1200]])[0];
    expect(batch('aes-128-gcm', key, pkts).ok).toBe(true);
    expect(batch('aes-128-gcm', key, [pkts[0], other, pkts[2]]).ok).toBe(false);
  });
});
