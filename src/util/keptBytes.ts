/**
 * Room for small byte strings that live long: key-log secrets once decoded, the TLS 1.2 master
 * secrets of the resumption cache. They are tens of bytes each, kept for the whole replay (or the
 * secrets TTL), and made one per session among the session's short-lived buffers.
 *
 * Why not `Buffer.from`: a small Buffer is a slice of node's shared 8 KiB pool, and a slice keeps
 * its whole pool alive. A secret decoded between two sessions' records was nearly always the last
 * live slice of its pool, so each kept secret held ~8 KiB: replaying sessions-16k left ~116 MB of
 * ArrayBuffers alive for ~2 MB of secrets (bench/RESULTS.md, round 9). Here they are packed side by
 * side in slabs of their own, which hold nothing else.
 */

/** One slab; a request above a quarter of it gets its own allocation (not expected for secrets). */
const SLAB_BYTES = 16 * 1024;
let slab: Buffer = Buffer.alloc(0);
let used = 0;

function room(n: number): Buffer | undefined {
  if (n > SLAB_BYTES / 4) return undefined;
  if (used + n > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    used = 0;
  }
  return slab;
}

/** A copy of `src` in long-lived room (never a view of `src`). */
export function keepCopy(src: Buffer): Buffer {
  const n = src.length;
  const s = room(n);
  if (s === undefined) return Buffer.from(src);
  const at = used;
  src.copy(s, at);
  used += n;
  return s.subarray(at, at + n);
}

/** `Buffer.from(hex, 'hex')` in long-lived room (the same bytes: decoding stops at the first pair that is not hex). */
export function keepHex(hex: string): Buffer {
  const max = hex.length >>> 1;
  const s = room(max);
  if (s === undefined) return Buffer.from(hex, 'hex');
  const at = used;
  const n = s.write(hex, at, max, 'hex');
  used += n;
  return s.subarray(at, at + n);
}
