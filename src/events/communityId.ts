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
  const [sa, sp, da, dp] = swap > 0 ? [addrB, portB, addrA, portA] : [addrA, portA, addrB, portB];
  const buf = Buffer.allocUnsafe(2 + sa.length + da.length + 2 + 4);
  let o = buf.writeUInt16BE(seed & 0xffff, 0);
  buf.set(sa, o);
  o += sa.length;
  buf.set(da, o);
  o += da.length;
  buf[o++] = protocol;
  buf[o++] = 0;
  o = buf.writeUInt16BE(sp, o);
  buf.writeUInt16BE(dp, o);
  return '1:' + digest('sha1', buf, 'base64');
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
