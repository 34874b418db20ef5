/**
 * Long-lived small byte strings (decoded key-log secrets, resumption master secrets) are packed in
 * slabs of their own instead of being slices of node's shared Buffer pool, each of which kept its
 * whole 8 KiB pool alive.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keepCopy, keepHex } from '../../src/util/keptBytes.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';

describe('keptBytes', () => {
  it('keepCopy and keepHex give the bytes Buffer.from gives, never a view of the source', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6000 }), fc.string({ maxLength: 40 }), (bytes, junk) => {
        const src = Buffer.from(bytes);
        const kept = keepCopy(src);
        expect(kept.equals(src)).toBe(true);
        src.fill(0x5a);
        expect(kept.equals(Buffer.from(bytes))).toBe(true);
        const hex = Buffer.from(bytes).toString('hex');
        for (const h of [hex, hex.toUpperCase(), hex + 'a', hex.slice(0, 10) + junk + hex.slice(10)]) expect(keepHex(h).equals(Buffer.from(h, 'hex'))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('secrets kept one per session, among other short-lived buffers, share a few slabs instead of holding one pool each', () => {
    const store = new SecretsStore();
    const randoms: Buffer[] = [];
    let text = '';
    for (let i = 0; i < 1000; i++) {
      const r = Buffer.alloc(32, 0);
      r.writeUInt32BE(i, 0);
      randoms.push(r);
      text += `CLIENT_TRAFFIC_SECRET_0 ${r.toString('hex')} ${Buffer.alloc(32, i & 0xff).toString('hex')}\n`;
    }
    store.addText(text);
    const pools = new Set<ArrayBufferLike>();
    for (let i = 0; i < 1000; i++) {
      Buffer.allocUnsafe(3000); // a session's records, copies, ... from the shared pool
      const s = store.get(randoms[i], 'CLIENT_TRAFFIC_SECRET_0')!;
      expect(s.equals(Buffer.alloc(32, i & 0xff))).toBe(true);
      pools.add(s.buffer);
    }
    // 32,000 bytes of secrets: two 16 KiB slabs (three with a partly used one), not ~1,000 pools
    expect(pools.size).toBeLessThanOrEqual(3);
  });
});
