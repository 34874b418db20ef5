/**
 * TLS 1.0-1.2 pseudo-random function and the secrets derived from it.
 *
 * - RFC 5246 §5: PRF(secret, label, seed) = P_<hash>(secret, label + seed) (TLS 1.2).
 * - RFC 2246 §5 / RFC 4346 §5: PRF = P_MD5(S1, label + seed) XOR P_SHA-1(S2, label + seed) (TLS 1.0/1.1).
 * - RFC 5246 §8.1: master_secret = PRF(pre_master_secret, "master secret", ClientHello.random + ServerHello.random)[0..47].
 * - RFC 7627 §4: extended master secret = PRF(pre_master_secret, "extended master secret", session_hash)[0..47].
 * - RFC 5246 §6.3: key_block = PRF(master, "key expansion", server_random + client_random).
 *
 * These run once per handshake, not per record, so clarity wins over allocation here.
 */
import { HmacKey } from './hmac.js';
import type { CipherSuite } from './suites.js';

/** TLS protocol versions as on the wire. */
export const TLS10 = 0x0301;
export const TLS11 = 0x0302;
export const TLS12 = 0x0303;

/** Keys of one direction. iv: the fixed/implicit part (TLS 1.2 CBC: empty; TLS 1.0 CBC: the initial IV). */
export interface TrafficKeys {
  key: Buffer;
  iv: Buffer;
  macKey: Buffer;
}

/** RFC 5246 §5 P_hash: A(0) = seed, A(i) = HMAC(secret, A(i-1)); output HMAC(secret, A(i) + seed) ... */
function pHash(hash: 'md5' | 'sha1' | 'sha256' | 'sha384', secret: Buffer, seed: Buffer, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  const key = new HmacKey(hash, secret);
  let a: Buffer = seed;
  let off = 0;
  while (off < length) {
    a = key.mac(a);
    const block = key.mac(a, seed);
    off += block.copy(out, off, 0, Math.min(block.length, length - off));
  }
  return out;
}

/** TLS 1.2 PRF (RFC 5246 §5). */
export function prf12(hash: 'sha256' | 'sha384', secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  return pHash(hash, secret, Buffer.concat([Buffer.from(label, 'latin1'), seed]), length);
}

/**
 * TLS 1.0/1.1 PRF (RFC 2246 §5): the secret is split in two halves (sharing the middle byte when
 * its length is odd); P_MD5 over the first half is XORed with P_SHA-1 over the second.
 */
export function prf10(secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  const half = Math.ceil(secret.length / 2);
  const s1 = secret.subarray(0, half);
  const s2 = secret.subarray(secret.length - half);
  const labelSeed = Buffer.concat([Buffer.from(label, 'latin1'), seed]);
  const md5 = pHash('md5', s1, labelSeed, length);
  const sha = pHash('sha1', s2, labelSeed, length);
  for (let i = 0; i < length; i++) md5[i] ^= sha[i];
  return md5;
}

/** The PRF of a protocol version: TLS 1.2 uses the suite's hash, TLS 1.0/1.1 the MD5/SHA-1 split. */
export function prfFor(suite: CipherSuite, version: number, secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  return version >= TLS12 ? prf12(suite.prfHash, secret, label, seed, length) : prf10(secret, label, seed, length);
}

/** RFC 5246 §8.1 master secret (48 bytes). `version` defaults to TLS 1.2. */
export function masterSecret12(suite: CipherSuite, preMaster: Buffer, clientRandom: Buffer, serverRandom: Buffer, version: number = TLS12): Buffer {
  return prfFor(suite, version, preMaster, 'master secret', Buffer.concat([clientRandom, serverRandom]), 48);
}

/**
 * RFC 7627 §4 extended master secret (48 bytes). sessionHash = Hash(handshake messages up to and
 * including ClientKeyExchange): the suite's PRF hash in TLS 1.2, MD5 || SHA-1 in TLS 1.0/1.1.
 */
export function extendedMasterSecret12(suite: CipherSuite, preMaster: Buffer, sessionHash: Buffer, version: number = TLS12): Buffer {
  return prfFor(suite, version, preMaster, 'extended master secret', sessionHash, 48);
}

/**
 * RFC 5246 §6.3 key block, split in the order client MAC key, server MAC key, client key, server
 * key, client IV, server IV. AEAD suites have no MAC key and a fixed IV of `fixedIvLen` bytes
 * (RFC 5288 §3, RFC 7905 §2). CBC suites have an explicit per-record IV from TLS 1.1 on (RFC 4346
 * §6.3 drops the IVs from the key block); TLS 1.0 (RFC 2246 §6.3) derives an initial IV of one
 * block. RC4 and NULL suites have MAC keys and no IV (NULL: no key either).
 */
export function keyBlock12(
  suite: CipherSuite,
  master: Buffer,
  clientRandom: Buffer,
  serverRandom: Buffer,
  version: number = TLS12,
): { client: TrafficKeys; server: TrafficKeys } {
  const macLen = suite.kind === 'aead' ? 0 : suite.macLen;
  const ivLen = suite.kind === 'cbc' ? (version <= TLS10 ? suite.blockLen : 0) : suite.fixedIvLen;
  const total = 2 * (macLen + suite.keyLen + ivLen);
  const block = prfFor(suite, version, master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), total);
  let off = 0;
  const take = (n: number): Buffer => {
    const b = block.subarray(off, off + n);
    off += n;
    return b;
  };
  const clientMac = take(macLen);
  const serverMac = take(macLen);
  const clientKey = take(suite.keyLen);
  const serverKey = take(suite.keyLen);
  const clientIv = take(ivLen);
  const serverIv = take(ivLen);
  return {
    client: { key: clientKey, iv: clientIv, macKey: clientMac },
    server: { key: serverKey, iv: serverIv, macKey: serverMac },
  };
}
