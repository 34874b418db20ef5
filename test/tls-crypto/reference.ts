/**
 * Slow, independent reference implementations used only by the tests: record *encryption*
 * built on @noble/ciphers (AES-GCM, ChaCha20-Poly1305, AES-CBC, AES block for CCM) and
 * node-forge (HMAC, 3DES-CBC), and a textbook RC4 written apart from src/tls/crypto/rc4.ts, so
 * RecordDecryptor (node:crypto) is checked against other code. Camellia and ARIA have no
 * implementation outside OpenSSL among the dependencies: their block encryption here is
 * node:crypto's (the record framing around it is still this file's); the fixtures made by
 * GnuTLS/OpenSSL and checked against tshark are their independent test.
 */
import { cbc, ecb, gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { createCipheriv } from 'node:crypto';
import forge from 'node-forge';
import type { CipherSuite } from '../../src/tls/crypto/suites.js';
import type { TrafficKeys } from '../../src/tls/crypto/prf.js';

export const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-fA-F]/g, ''), 'hex');

export function forgeHmac(hash: 'sha1' | 'sha256' | 'sha384' | 'md5', key: Buffer, ...data: Buffer[]): Buffer {
  const h = forge.hmac.create();
  h.start(hash, key.toString('binary'));
  for (const d of data) h.update(d.toString('binary'));
  return Buffer.from(h.digest().getBytes(), 'binary');
}

/** RFC 3610 AES-CCM encryption (ciphertext || tag) over noble's raw AES block. */
export function ccmEncrypt(key: Buffer, nonce: Buffer, aad: Buffer, pt: Buffer, tagLen: number): Buffer {
  // noble refuses to reuse a cipher instance, so one single-block ECB per AES call (slow, fine here)
  const E = (b: Uint8Array): Buffer => Buffer.from(ecb(key, { disablePadding: true }).encrypt(b));
  const L = 15 - nonce.length;
  // CBC-MAC input: B0 || encoded AAD (padded) || message (padded)
  const b0 = Buffer.alloc(16);
  b0[0] = (aad.length > 0 ? 64 : 0) | (((tagLen - 2) / 2) << 3) | (L - 1);
  nonce.copy(b0, 1);
  b0.writeUIntBE(pt.length, 16 - L, L);
  const pad16 = (b: Buffer): Buffer => (b.length % 16 === 0 ? b : Buffer.concat([b, Buffer.alloc(16 - (b.length % 16))]));
  const aadEnc = aad.length > 0 ? pad16(Buffer.concat([Buffer.from([aad.length >> 8, aad.length & 0xff]), aad])) : Buffer.alloc(0);
  const macIn = Buffer.concat([b0, aadEnc, pad16(pt)]);
  let x: Buffer = Buffer.alloc(16);
  for (let i = 0; i < macIn.length; i += 16) {
    const blk = Buffer.alloc(16);
    for (let j = 0; j < 16; j++) blk[j] = x[j] ^ macIn[i + j];
    x = E(blk);
  }
  const ctr = (i: number): Buffer => {
    const a = Buffer.alloc(16);
    a[0] = L - 1;
    nonce.copy(a, 1);
    a.writeUIntBE(i, 16 - L, L);
    return E(a);
  };
  const ct = Buffer.alloc(pt.length);
  for (let i = 0; i < pt.length; i += 16) {
    const s = ctr(i / 16 + 1);
    for (let j = 0; j < 16 && i + j < pt.length; j++) ct[i + j] = pt[i + j] ^ s[j];
  }
  const s0 = ctr(0);
  const tag = Buffer.alloc(tagLen);
  for (let j = 0; j < tagLen; j++) tag[j] = x[j] ^ s0[j];
  return Buffer.concat([ct, tag]);
}

/** Textbook RC4 (KSA + PRGA), the keystream XORed over `data`; `state` carries on across calls. */
export function rc4Reference(state: { S?: number[]; i: number; j: number; key: Buffer }, data: Buffer): Buffer {
  if (!state.S) {
    const S = Array.from({ length: 256 }, (_v, k) => k);
    let j = 0;
    for (let i = 0; i < 256; i++) {
      j = (j + S[i] + state.key[i % state.key.length]) % 256;
      [S[i], S[j]] = [S[j], S[i]];
    }
    state.S = S;
  }
  const S = state.S;
  const out = Buffer.alloc(data.length);
  for (let k = 0; k < data.length; k++) {
    state.i = (state.i + 1) % 256;
    state.j = (state.j + S[state.i]) % 256;
    [S[state.i], S[state.j]] = [S[state.j], S[state.i]];
    out[k] = data[k] ^ S[(S[state.i] + S[state.j]) % 256];
  }
  return out;
}

function cbcEncrypt(suite: CipherSuite, key: Buffer, iv: Buffer, data: Buffer): Buffer {
  if (suite.cipher.startsWith('aes-')) return Buffer.from(cbc(key, iv, { disablePadding: true }).encrypt(data));
  if (suite.cipher === 'des-ede3-cbc') {
    const c = forge.cipher.createCipher('3DES-CBC', forge.util.createBuffer(key.toString('binary')));
    c.start({ iv: forge.util.createBuffer(iv.toString('binary')) });
    c.update(forge.util.createBuffer(data.toString('binary')));
    (c.finish as unknown as (pad: () => boolean) => boolean)(() => true); // no padding: the record is block-aligned already
    return Buffer.from(c.output.getBytes(), 'binary').subarray(0, data.length);
  }
  const c = createCipheriv(suite.cipher, key, iv); // camellia, aria: see the file comment
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

function aeadSeal(suite: CipherSuite, key: Buffer, nonce: Buffer, aad: Buffer, pt: Buffer): Buffer {
  if (suite.cipher.startsWith('aria-') && suite.cipher.endsWith('-gcm')) {
    const c = createCipheriv(suite.cipher as 'aes-128-gcm', key, nonce); // see the file comment
    c.setAAD(aad);
    return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
  }
  if (suite.cipher.endsWith('-gcm')) return Buffer.from(gcm(key, nonce, aad).encrypt(pt));
  if (suite.cipher === 'chacha20-poly1305') return Buffer.from(chacha20poly1305(key, nonce, aad).encrypt(pt));
  if (suite.cipher.endsWith('-ccm')) return ccmEncrypt(key, nonce, aad, pt, suite.tagLen);
  throw new Error('no reference AEAD for ' + suite.cipher);
}

function seqBytes(seq: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(seq);
  return b;
}

function xorNonce(iv: Buffer, seq: bigint): Buffer {
  const n = Buffer.from(iv);
  const s = seqBytes(seq);
  for (let i = 0; i < 8; i++) n[4 + i] ^= s[i];
  return n;
}

function header(type: number, version: number, length: number): Buffer {
  return Buffer.from([type, version >> 8, version & 0xff, length >> 8, length & 0xff]);
}

export interface SealedRecord {
  header: Buffer;
  fragment: Buffer;
}

export interface SealOptions {
  version?: number;
  encryptThenMac?: boolean;
  /** TLS 1.3 zero padding after the content type. */
  padding?: number;
  /** TLS 1.0 CBC chain state: the IV to use, updated in place. */
  chainIv?: Buffer;
  /** Padding-length override for CBC (must keep block alignment). */
  cbcPadLen?: number;
  /** CBC: make the first padding byte disagree with the padding length (needs a padding length >= 1). */
  badPadding?: boolean;
  /** RC4 suites: the direction's keystream state (made on first use), carried from record to record. */
  rc4?: { S?: number[]; i: number; j: number; key: Buffer };
}

/** Protects one record the way a TLS sender would. */
export function sealRecord(suite: CipherSuite, keys: TrafficKeys, seq: bigint, type: number, pt: Buffer, o: SealOptions = {}): SealedRecord {
  const version = o.version ?? 0x0303;
  if (suite.tls13) {
    const inner = Buffer.concat([pt, Buffer.from([type]), Buffer.alloc(o.padding ?? 0)]);
    const hdr = header(23, 0x0303, inner.length + suite.tagLen);
    return { header: hdr, fragment: aeadSeal(suite, keys.key, xorNonce(keys.iv, seq), hdr, inner) };
  }
  if (suite.kind === 'aead') {
    const aad = Buffer.concat([seqBytes(seq), header(type, version, pt.length)]);
    if (suite.explicitNonceLen === 8) {
      const explicit = seqBytes(seq);
      const sealed = aeadSeal(suite, keys.key, Buffer.concat([keys.iv, explicit]), aad, pt);
      const fragment = Buffer.concat([explicit, sealed]);
      return { header: header(type, version, fragment.length), fragment };
    }
    const fragment = aeadSeal(suite, keys.key, xorNonce(keys.iv, seq), aad, pt);
    return { header: header(type, version, fragment.length), fragment };
  }
  const hash = suite.macHash as 'md5' | 'sha1' | 'sha256' | 'sha384';
  if (suite.kind === 'stream' || suite.kind === 'null') {
    // RFC 5246 §6.2.3.1: content || MAC, RC4-encrypted or (NULL) not at all
    const mac = forgeHmac(hash, keys.macKey, seqBytes(seq), header(type, version, pt.length), pt);
    const plain = Buffer.concat([pt, mac]);
    const fragment = suite.kind === 'stream' ? rc4Reference((o.rc4 ??= { i: 0, j: 0, key: keys.key }), plain) : plain;
    return { header: header(type, version, fragment.length), fragment };
  }
  // CBC
  const bl = suite.blockLen;
  const tls10 = version <= 0x0301;
  const iv = tls10 ? (o.chainIv as Buffer) : Buffer.from(forge.random.getBytesSync(bl), 'binary');
  const padFor = (n: number): Buffer => {
    const padLen = o.cbcPadLen ?? bl - 1 - (n % bl);
    const pad = Buffer.alloc(padLen + 1, padLen);
    if (o.badPadding) pad[0] ^= 0x01;
    return pad;
  };
  const enc = (data: Buffer): Buffer => cbcEncrypt(suite, keys.key, iv, data);
  let fragment: Buffer;
  if (o.encryptThenMac) {
    const ct = enc(Buffer.concat([pt, padFor(pt.length)]));
    const body = tls10 ? ct : Buffer.concat([iv, ct]);
    const mac = forgeHmac(hash, keys.macKey, seqBytes(seq), header(type, version, body.length), body);
    fragment = Buffer.concat([body, mac]);
  } else {
    const mac = forgeHmac(hash, keys.macKey, seqBytes(seq), header(type, version, pt.length), pt);
    const ct = enc(Buffer.concat([pt, mac, padFor(pt.length + mac.length)]));
    fragment = tls10 ? ct : Buffer.concat([iv, ct]);
  }
  if (tls10 && o.chainIv) {
    const ctEnd = o.encryptThenMac ? fragment.length - suite.macLen : fragment.length;
    fragment.copy(o.chainIv, 0, ctEnd - bl, ctEnd);
  }
  return { header: header(type, version, fragment.length), fragment };
}

export function randomKeys(suite: CipherSuite, version = 0x0303): TrafficKeys {
  const rnd = (n: number): Buffer => Buffer.from(forge.random.getBytesSync(n), 'binary');
  const ivLen = suite.tls13 ? 12 : suite.kind === 'cbc' ? (version <= 0x0301 ? suite.blockLen : 0) : suite.fixedIvLen;
  return { key: rnd(suite.keyLen), iv: rnd(ivLen), macKey: rnd(suite.kind === 'aead' ? 0 : suite.macLen) };
}
