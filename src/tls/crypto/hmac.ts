/**
 * HMAC (RFC 2104) for the per-session key schedule (HKDF-Expand-Label, the TLS 1.0-1.2 PRF), built
 * from node's one-shot `crypto.hash` (Node >= 20.12) instead of `createHmac`.
 *
 * Why: the inputs are a few dozen bytes, so the cost of `createHmac(...).update().digest()` is the
 * Hmac object and its OpenSSL 3 context (~3.5-4.5 us on the bench machine), not the hashing.
 * HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) with two one-shot hashes costs ~2 us, and the
 * padded key blocks are prepared once per key and reused for every HMAC under it (the two HKDF
 * expansions of a traffic secret, every P_hash step). Digests travel as latin1 strings (one
 * char per byte, exact) because `crypto.hash` is markedly slower with Buffer output.
 *
 * Without `crypto.hash` (Node 20 before 20.12; src/util/oneShotHash.ts) this falls back to
 * `createHmac`. Checked against `createHmac` in test/tls-crypto/hmac.test.ts.
 */
import * as nodeCrypto from 'node:crypto';
import { oneShotHash } from '../../util/oneShotHash.js';

export type HmacHash = 'md5' | 'sha1' | 'sha256' | 'sha384';

const BLOCK: Record<HmacHash, number> = { md5: 64, sha1: 64, sha256: 64, sha384: 128 };
const OUT: Record<HmacHash, number> = { md5: 16, sha1: 20, sha256: 32, sha384: 48 };

/** A key ready for any number of HMACs. */
export class HmacKey {
  private readonly ipad: Buffer | undefined;
  /** opad block followed by room for the inner digest (reused: every call is synchronous). */
  private readonly outer: Buffer | undefined;
  private readonly block: number;

  constructor(
    readonly hash: HmacHash,
    private readonly key: Buffer,
    oneShot: boolean = oneShotHash !== undefined,
  ) {
    this.block = BLOCK[hash];
    if (!oneShot || !oneShotHash) return;
    const k = key.length > this.block ? nodeCrypto.createHash(hash).update(key).digest() : key;
    // One pooled allocation for both pads (Buffer.alloc would make a new ArrayBuffer for each:
    // a key is prepared per traffic secret, several times per session).
    const b = this.block;
    const both = Buffer.allocUnsafe(2 * b + OUT[hash]);
    for (let i = 0; i < b; i++) {
      const ki = i < k.length ? k[i] : 0;
      both[i] = ki ^ 0x36;
      both[b + i] = ki ^ 0x5c;
    }
    this.ipad = both.subarray(0, b);
    this.outer = both.subarray(b);
  }

  /** HMAC of the concatenation of `parts`. */
  mac(...parts: Buffer[]): Buffer {
    const ipad = this.ipad;
    const outer = this.outer;
    if (!ipad || !outer || !oneShotHash) {
      const h = nodeCrypto.createHmac(this.hash, this.key);
      for (const p of parts) h.update(p);
      return h.digest();
    }
    let len = this.block;
    for (const p of parts) len += p.length;
    const inner = Buffer.allocUnsafe(len);
    ipad.copy(inner, 0);
    let off = this.block;
    for (const p of parts) off += p.copy(inner, off);
    outer.write(oneShotHash(this.hash, inner, 'latin1'), this.block, 'latin1');
    return Buffer.from(oneShotHash(this.hash, outer, 'latin1'), 'latin1');
  }
}
