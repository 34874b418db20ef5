import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { extendedMasterSecret12, keyBlock12, masterSecret12, prf10, prf12 } from '../../src/tls/crypto/prf.js';
import { suiteById } from '../../src/tls/crypto/suites.js';
import { forgeHmac, hex } from './reference.js';

/** RFC 5246 §5 P_hash written out independently on node-forge's HMAC. */
function referencePrf12(hash: 'sha256' | 'sha384', secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  const ls = Buffer.concat([Buffer.from(label), seed]);
  const chunks: Buffer[] = [];
  let a: Buffer = ls;
  let total = 0;
  while (total < length) {
    a = forgeHmac(hash, secret, a);
    const c = forgeHmac(hash, secret, a, ls);
    chunks.push(c);
    total += c.length;
  }
  return Buffer.concat(chunks).subarray(0, length);
}

describe('TLS 1.2 PRF (RFC 5246 §5)', () => {
  it('matches the published SHA-256 PRF test vector (IETF TLS list) and an independent HMAC implementation', () => {
    const secret = hex('9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35');
    const seed = hex('a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c');
    const out = prf12('sha256', secret, 'test label', seed, 100);
    expect(out).toEqual(referencePrf12('sha256', secret, 'test label', seed, 100));
    expect(out.subarray(0, 8).toString('hex')).toBe('e3f229ba727be17b');
    expect(out.toString('hex')).toBe(
      'e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66',
    );
  });

  it('agrees with the independent implementation for SHA-384 and odd lengths', () => {
    const secret = hex('b8 0b 73 3d 6c ee fc dc 71 56 6e a4 8e 55 67 df');
    const seed = hex('cd 66 5c f6 a8 44 7d d6 ff 8b 27 55 5e db 74 65');
    for (const len of [0, 1, 47, 48, 49, 148]) {
      expect(prf12('sha384', secret, 'test label', seed, len)).toEqual(referencePrf12('sha384', secret, 'test label', seed, len));
    }
  });
});

describe('TLS 1.0/1.1 PRF (RFC 2246 §5)', () => {
  it('matches node-forge prf_tls1 for even and odd secret lengths', () => {
    for (const secretLen of [48, 47, 1]) {
      const secret = Buffer.alloc(secretLen);
      for (let i = 0; i < secretLen; i++) secret[i] = (i * 37 + 11) & 0xff;
      const seed = Buffer.from('0123456789abcdef0123456789abcdef');
      const ref = Buffer.from(forge.tls.prf_tls1(secret.toString('binary'), 'key expansion', seed.toString('binary'), 104).getBytes(), 'binary');
      expect(prf10(secret, 'key expansion', seed, 104)).toEqual(ref);
    }
  });
});

describe('master secret and key block', () => {
  const cr = Buffer.alloc(32, 0x11);
  const sr = Buffer.alloc(32, 0x22);
  const pms = Buffer.alloc(48, 0x33);

  it('derives the master secret with the suite PRF hash (SHA-384 for *_SHA384 suites)', () => {
    const gcm128 = suiteById(0xc02f)!;
    const gcm256 = suiteById(0xc030)!;
    expect(masterSecret12(gcm128, pms, cr, sr)).toEqual(referencePrf12('sha256', pms, 'master secret', Buffer.concat([cr, sr]), 48));
    expect(masterSecret12(gcm256, pms, cr, sr)).toEqual(referencePrf12('sha384', pms, 'master secret', Buffer.concat([cr, sr]), 48));
  });

  it('derives the extended master secret from the session hash (RFC 7627 §4)', () => {
    const s = suiteById(0xc02f)!;
    const sessionHash = Buffer.alloc(32, 0x44);
    expect(extendedMasterSecret12(s, pms, sessionHash)).toEqual(referencePrf12('sha256', pms, 'extended master secret', sessionHash, 48));
  });

  it('splits the key block in RFC 5246 §6.3 order for CBC, GCM and ChaCha20 suites', () => {
    const master = Buffer.alloc(48, 0x55);
    const ref = (n: number) => referencePrf12('sha256', master, 'key expansion', Buffer.concat([sr, cr]), n);

    const cbc = suiteById(0xc013)!; // AES-128-CBC-SHA: 20-byte MACs, 16-byte keys, no IVs in TLS 1.2
    const kb = ref(2 * 20 + 2 * 16);
    const k = keyBlock12(cbc, master, cr, sr);
    expect(k.client).toEqual({ macKey: kb.subarray(0, 20), key: kb.subarray(40, 56), iv: Buffer.alloc(0) });
    expect(k.server).toEqual({ macKey: kb.subarray(20, 40), key: kb.subarray(56, 72), iv: Buffer.alloc(0) });

    const gcm = suiteById(0xc02f)!; // 16-byte keys, 4-byte salts
    const kg = ref(2 * 16 + 2 * 4);
    const g = keyBlock12(gcm, master, cr, sr);
    expect(g.client).toEqual({ macKey: Buffer.alloc(0), key: kg.subarray(0, 16), iv: kg.subarray(32, 36) });
    expect(g.server).toEqual({ macKey: Buffer.alloc(0), key: kg.subarray(16, 32), iv: kg.subarray(36, 40) });

    const cc = keyBlock12(suiteById(0xcca8)!, master, cr, sr); // 32-byte keys, 12-byte IVs
    expect(cc.client.key.length).toBe(32);
    expect(cc.server.iv).toEqual(ref(2 * 32 + 2 * 12).subarray(76, 88));
  });

  it('includes 16-byte CBC IVs in the TLS 1.0 key block and uses the MD5/SHA-1 PRF', () => {
    const cbc = suiteById(0x002f)!;
    const master = Buffer.alloc(48, 0x66);
    const k = keyBlock12(cbc, master, cr, sr, 0x0301);
    const ref = prf10(master, 'key expansion', Buffer.concat([sr, cr]), 2 * (20 + 16 + 16));
    expect(k.client.iv).toEqual(ref.subarray(72, 88));
    expect(k.server.iv).toEqual(ref.subarray(88, 104));
    expect(keyBlock12(cbc, master, cr, sr, 0x0302).client.iv.length).toBe(0);
  });
});
