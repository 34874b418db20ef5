/**
 * IPv4 and IPv6 fragment reassembly (RFC 791 Section 3.2, RFC 8200 Section 4.5), as Wireshark and
 * Zeek do it, so that a datagram the network fragmented — typically a tunnelled packet (GRE,
 * ERSPAN, VXLAN) whose encapsulation made it larger than the path MTU, or a large UDP datagram —
 * is decoded like any other packet.
 *
 * A datagram is identified by (version, source, destination, protocol, identification). Fragments
 * are copied as they come; when the last fragment has given the total length and the bytes from 0
 * to it are all present, the datagram is rebuilt as one unfragmented IP packet (the first
 * fragment's header with the total length set and the fragment fields cleared; IPv6: the fixed
 * header with the fragment header's next header, extension headers before it dropped) and handed
 * back for decoding. Where fragments overlap, the bytes that came first stay (counted:
 * `ip_fragment_overlap`); datagrams not completed within `timeoutSec` of capture time after their
 * first fragment, or beyond the bounds on pending datagrams and bytes, are dropped and counted
 * (`ip_fragment_incomplete`, `ip_fragment_table_full`); a datagram over 65,535 bytes of payload
 * (IPv4) is dropped (`ip_fragment_oversized`).
 */
import type { AnomalySink, FragmentInfo, Timestamp } from '../types.js';

export type { FragmentInfo };

export interface ReassemblyOptions {
  /** Capture seconds a datagram may wait for its missing fragments (Linux ipfrag_time: 30). */
  timeoutSec: number;
  /** Datagrams pending at once. */
  maxDatagrams: number;
  /** Fragment bytes held over all pending datagrams. */
  maxBytes: number;
}

export const DEFAULT_REASSEMBLY_OPTIONS: ReassemblyOptions = { timeoutSec: 30, maxDatagrams: 4096, maxBytes: 16 << 20 };

interface Pending {
  header: Buffer | undefined;
  ipVersion: 4 | 6;
  nextHeader: number;
  /** Pieces sorted by offset, not overlapping (the first copy of any byte is kept). */
  pieces: { off: number; data: Buffer }[];
  bytes: number;
  /** Payload length, once the last fragment (MF clear) has been seen. */
  total: number;
  firstSec: number;
}

const MAX_IPV4_PAYLOAD = 65535 - 20;
const MAX_IPV6_PAYLOAD = 65535;

export class IpReassembler {
  private readonly pending = new Map<string, Pending>();
  private bytes = 0;
  /** Datagrams put back together (for the summary). */
  reassembled = 0;

  constructor(
    private readonly anomalies: AnomalySink,
    private readonly opts: ReassemblyOptions = DEFAULT_REASSEMBLY_OPTIONS,
  ) {}

  get pendingDatagrams(): number {
    return this.pending.size;
  }

  /**
   * Adds a fragment; returns the whole datagram as one unfragmented IP packet when this fragment
   * completed it, else undefined.
   */
  add(f: FragmentInfo, src: Uint8Array, dst: Uint8Array, ts: Timestamp): Buffer | undefined {
    this.expire(ts);
    const key = datagramKey(f, src, dst);
    let p = this.pending.get(key);
    if (p === undefined) {
      if (this.pending.size >= this.opts.maxDatagrams || this.bytes + f.data.length > this.opts.maxBytes) {
        this.anomalies.anomaly('ip_fragment_table_full');
        return undefined;
      }
      p = { header: undefined, ipVersion: f.ipVersion, nextHeader: f.nextHeader, pieces: [], bytes: 0, total: -1, firstSec: ts.sec };
      this.pending.set(key, p);
    } else if (this.bytes + f.data.length > this.opts.maxBytes) {
      this.drop(key, p, 'ip_fragment_table_full');
      return undefined;
    }
    const end = f.offset + f.data.length;
    if (end > (f.ipVersion === 4 ? MAX_IPV4_PAYLOAD : MAX_IPV6_PAYLOAD)) {
      this.drop(key, p, 'ip_fragment_oversized');
      return undefined;
    }
    if (f.offset === 0) p.header ??= Buffer.from(f.header);
    if (!f.more) {
      if (p.total >= 0 && p.total !== end) {
        this.drop(key, p, 'ip_fragment_inconsistent');
        return undefined;
      }
      p.total = end;
    }
    this.insert(p, f.offset, f.data);
    if (p.total < 0 || p.header === undefined || !complete(p)) return undefined;
    this.pending.delete(key);
    this.bytes -= p.bytes;
    this.reassembled++;
    return build(p);
  }

  /** Drops the datagrams whose time is up (counted as incomplete). */
  expire(now: Timestamp): void {
    if (this.pending.size === 0) return;
    const limit = now.sec - this.opts.timeoutSec;
    for (const [key, p] of this.pending) {
      // Map order is insertion order, i.e. by first fragment: stop at the first one still in time.
      if (p.firstSec > limit) break;
      this.drop(key, p, 'ip_fragment_incomplete');
    }
  }

  /** End of input: whatever is pending stays incomplete. */
  closeAll(): void {
    for (const [key, p] of this.pending) this.drop(key, p, 'ip_fragment_incomplete');
  }

  private drop(key: string, p: Pending, why: string): void {
    this.pending.delete(key);
    this.bytes -= p.bytes;
    this.anomalies.anomaly(why);
  }

  /** Copies the bytes of [off, off + data.length) that no earlier piece holds. */
  private insert(p: Pending, off: number, data: Buffer): void {
    let start = off;
    const end = off + data.length;
    let overlap = false;
    const out: { off: number; data: Buffer }[] = [];
    for (const q of p.pieces) {
      const qEnd = q.off + q.data.length;
      if (qEnd <= start || q.off >= end) continue;
      overlap = true;
      if (q.off > start) out.push({ off: start, data: Buffer.from(data.subarray(start - off, q.off - off)) });
      start = Math.max(start, qEnd);
    }
    if (start < end) out.push({ off: start, data: Buffer.from(data.subarray(start - off)) });
    if (overlap) this.anomalies.anomaly('ip_fragment_overlap');
    for (const piece of out) {
      p.pieces.push(piece);
      p.bytes += piece.data.length;
      this.bytes += piece.data.length;
    }
    p.pieces.sort((a, b) => a.off - b.off);
  }
}

function complete(p: Pending): boolean {
  let at = 0;
  for (const q of p.pieces) {
    if (q.off > at) return false;
    at = Math.max(at, q.off + q.data.length);
  }
  return at >= p.total;
}

function build(p: Pending): Buffer {
  const { out, at } = wholeDatagram(p.header as Buffer, p.ipVersion, p.nextHeader, p.total);
  for (const q of p.pieces) q.data.copy(out, at + q.off);
  return out;
}

/** How a rebuilt datagram is decoded: LINKTYPE_RAW (a bare IPv4 or IPv6 packet). */
export const LINKTYPE_RAW = 101;

/** The identity of a fragment's datagram: (version, source, destination, protocol, identification). */
export function datagramKey(f: FragmentInfo, src: Uint8Array, dst: Uint8Array): string {
  return `${f.ipVersion}|${Buffer.from(src.buffer, src.byteOffset, src.length).toString('hex')}|${Buffer.from(dst.buffer, dst.byteOffset, dst.length).toString('hex')}|${f.nextHeader}|${f.id}`;
}

/**
 * A zeroed packet of `payloadLen` payload bytes after a copy of a fragment's IP header made whole:
 * IPv4 with the total length set and the fragment fields cleared; IPv6 the fixed header with the
 * payload length and the fragment header's next header (extension headers before it dropped).
 * `at` is where the payload goes.
 */
export function wholeDatagram(header: Buffer, ipVersion: 4 | 6, nextHeader: number, payloadLen: number): { out: Buffer; at: number } {
  const at = ipVersion === 4 ? header.length : 40;
  const out = Buffer.alloc(at + payloadLen);
  header.copy(out, 0, 0, at);
  if (ipVersion === 4) {
    out.writeUInt16BE(at + payloadLen, 2);
    out[6] = 0;
    out[7] = 0;
  } else {
    out.writeUInt16BE(payloadLen, 4);
    out[6] = nextHeader;
  }
  return { out, at };
}
