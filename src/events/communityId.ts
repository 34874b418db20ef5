import { digest } from './digest.js';

/**
 * Community ID flow hashing, version 1 (https://github.com/corelight/community-id-spec):
 * base64(SHA-1(seed:u16be | src addr | dst addr | proto:u8 | 0:u8 | src port:u16be | dst port:u16be))
 * with the endpoints ordered so both directions give the same value (the smaller address first;
 * on equal addresses, the smaller port first).
 */
export function communityId(
  addrA: Uint8Array,
  portA: number,
  addrB: Uint8Array,
  portB: number,
  protocol: number,
  seed = 0,
): string {
  let swap = compareBytes(addrA, addrB);
  if (swap === 0) swap = portA - portB;
  // Plain stores, no destructuring or writeUInt16BE: this runs once per flow, mostly before V8
  // has optimised it, where an array destructure (iterator protocol) and Buffer's checked writers
  // (checkInt / checkBounds wrappers) cost several times the hash itself.
  const sa = swap > 0 ? addrB : addrA;
  const da = swap > 0 ? addrA : addrB;
  const sp = swap > 0 ? portB : portA;
  const dp = swap > 0 ? portA : portB;
  const buf = Buffer.allocUnsafe(2 + sa.length + da.length + 2 + 4);
  buf[0] = (seed >>> 8) & 0xff;
  buf[1] = seed & 0xff;
  let o = 2;
  buf.set(sa, o);
  o += sa.length;
  buf.set(da, o);
  o += da.length;
  buf[o++] = protocol;
  buf[o++] = 0;
  buf[o++] = (sp >>> 8) & 0xff;
  buf[o++] = sp & 0xff;
  buf[o++] = (dp >>> 8) & 0xff;
  buf[o] = dp & 0xff;
  return '1:' + digest('sha1', buf, 'base64');
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
