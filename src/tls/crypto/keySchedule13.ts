/**
 * TLS 1.3 key derivation from traffic secrets (the key log gives us the traffic secrets, so the
 * Extract half of the schedule is only needed for resumption/PSK computations).
 *
 * - RFC 5869 §2.3 HKDF-Expand, RFC 8446 §7.1 HKDF-Expand-Label.
 * - RFC 8446 §7.3 traffic keys: key = Expand-Label(secret, "key", "", key_length),
 *   iv = Expand-Label(secret, "iv", "", iv_length).
 * - RFC 8446 §7.2 KeyUpdate: next = Expand-Label(secret, "traffic upd", "", Hash.length).
 */
import { HmacKey } from './hmac.js';
import type { CipherSuite } from './suites.js';
import type { TrafficKeys } from './prf.js';

const HASH_LEN = { sha256: 32, sha384: 48 } as const;
const LABEL_PREFIX = 'tls13 ';
/** RFC 8446 §5.3: the per-record nonce is max(8 bytes, N_MIN) = 12 bytes for all TLS 1.3 AEADs. */
export const TLS13_IV_LEN = 12;
const EMPTY = Buffer.alloc(0);

/** RFC 5869 §2.3 HKDF-Expand: T(i) = HMAC(PRK, T(i-1) | info | i). */
export function hkdfExpand(hash: 'sha256' | 'sha384', prk: Buffer, info: Buffer, length: number): Buffer {
  return hkdfExpandWith(new HmacKey(hash, prk), info, length);
}

function hkdfExpandWith(key: HmacKey, info: Buffer, length: number): Buffer {
  const hashLen = HASH_LEN[key.hash as 'sha256' | 'sha384'];
  if (length > 255 * hashLen) throw new RangeError('HKDF-Expand length too large');
  const out = Buffer.allocUnsafe(length);
  let t: Buffer = EMPTY;
  const counter = Buffer.alloc(1);
  let off = 0;
  for (let i = 1; off < length; i++) {
    counter[0] = i;
    t = key.mac(t, info, counter);
    off += t.copy(out, off, 0, Math.min(hashLen, length - off));
  }
  return out;
}

/** RFC 5869 §2.2 HKDF-Extract (used for PSK / resumption schedules). */
export function hkdfExtract(hash: 'sha256' | 'sha384', salt: Buffer, ikm: Buffer): Buffer {
  return new HmacKey(hash, salt.length ? salt : Buffer.alloc(HASH_LEN[hash])).mac(ikm);
}

/**
 * RFC 8446 §7.1: HkdfLabel = uint16 length || opaque label<7..255> ("tls13 " + label) ||
 * opaque context<0..255>; the "tls13 " prefix is added here.
 */
/** HkdfLabel structures with an empty context ('key', 'iv', 'traffic upd', ...), built once per (label, length). */
const emptyContextInfo = new Map<string, Buffer>();
const COUNTER_1 = Buffer.from([1]);

export function hkdfExpandLabel(hash: 'sha256' | 'sha384', secret: Buffer, label: string, context: Buffer, length: number): Buffer {
  return expandLabelWith(new HmacKey(hash, secret), label, context, length);
}

/** hkdfExpandLabel with the secret already prepared as an HMAC key (several labels, one secret). */
function expandLabelWith(key: HmacKey, label: string, context: Buffer, length: number): Buffer {
  const hash = key.hash as 'sha256' | 'sha384';
  if (context.length === 0 && length <= HASH_LEN[hash]) {
    // One HMAC block (every traffic key and IV): T(1) = HMAC(secret, info | 0x01).
    const k = label + '|' + length;
    let info = emptyContextInfo.get(k);
    if (!info) {
      info = hkdfLabel(label, context, length);
      if (emptyContextInfo.size < 64) emptyContextInfo.set(k, info);
    }
    const t = key.mac(info, COUNTER_1);
    return t.length === length ? t : t.subarray(0, length);
  }
  return hkdfExpandWith(key, hkdfLabel(label, context, length), length);
}

function hkdfLabel(label: string, context: Buffer, length: number): Buffer {
  const fullLabel = Buffer.from(LABEL_PREFIX + label, 'latin1');
  if (fullLabel.length > 255 || context.length > 255 || length > 0xffff) throw new RangeError('HkdfLabel field too long');
  const info = Buffer.allocUnsafe(2 + 1 + fullLabel.length + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = fullLabel.length;
  fullLabel.copy(info, 3);
  info[3 + fullLabel.length] = context.length;
  context.copy(info, 4 + fullLabel.length);
  return info;
}

/** RFC 8446 §7.3: write key and 12-byte IV of a traffic secret; TLS 1.3 has no MAC key. */
export function trafficKeys13(suite: CipherSuite, trafficSecret: Buffer): TrafficKeys {
  const secret = new HmacKey(suite.prfHash, trafficSecret);
  return {
    key: expandLabelWith(secret, 'key', EMPTY, suite.keyLen),
    iv: expandLabelWith(secret, 'iv', EMPTY, TLS13_IV_LEN),
    macKey: EMPTY,
  };
}

/** RFC 8446 §7.2: application_traffic_secret_N+1 after a KeyUpdate. */
export function nextTrafficSecret13(suite: CipherSuite, secret: Buffer): Buffer {
  return hkdfExpandLabel(suite.prfHash, secret, 'traffic upd', EMPTY, HASH_LEN[suite.prfHash]);
}
