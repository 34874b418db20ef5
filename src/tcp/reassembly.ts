import type { AnomalySink, Dir, EndReason, Timestamp } from '../types.js';

/**
 * Per-direction TCP stream reassembly ("half stream"): turns the segments of one direction of a
 * connection into the stream contract of src/types.ts (in-order data, gaps, end).
 *
 * Policies (RFC 9293 terms; sequence numbers are unsigned 32-bit and compared modulo 2^32,
 * RFC 9293 §3.4 / RFC 1982, with `seqLt(a, b) = ((a - b) | 0) < 0`):
 *
 * - Start. A SYN fixes the initial sequence number: ISN + 1 is the first data byte (RFC 9293
 *   §3.4.1). Without a SYN (the capture started mid-connection) the stream starts at the first
 *   data (or FIN) segment seen in this direction; nothing is reported as a gap for the unseen
 *   past — the consumer (TLS) knows it started mid-stream.
 * - In-order data is handed over at once, without copying: `onData` receives a view into the
 *   packet's payload, valid only during the call. A consumer that keeps bytes must copy them.
 * - Out-of-order data (starting after the next expected byte) is copied into a small sorted array
 *   of non-overlapping pieces and delivered when the hole before it is filled.
 * - Retransmissions: bytes before the next expected byte were already delivered; they are dropped
 *   and counted (`retransmittedBytes`). Delivered bytes are not kept, so a retransmission that
 *   differs from what was delivered cannot be detected; buffered bytes can (next point).
 * - Overlaps: FIRST-WINS. Bytes already received (buffered) are kept; the overlapping bytes of a
 *   later copy are ignored, and if they differ the conflict is counted (`tcp_overlap_conflict`).
 *   This is Suricata's/Snort's "first" policy. Real stacks differ (Windows and the BSDs prefer the
 *   new copy in some overlap shapes, Linux in others), which is exactly what evasion exploits; a
 *   passive monitor that does not know the receiver's OS cannot be right for all of them, so we
 *   choose the deterministic policy that Wireshark also uses by default and flag the conflict.
 * - Snap-truncated segments (fewer bytes captured than were on the wire): the captured part is
 *   delivered, the missing part becomes a gap. Out of order, the missing part is buffered as a
 *   "marker" piece (no bytes) that turns into a gap when delivered.
 * - Gaps (holes never filled) are declared: when the peer acknowledges bytes we never saw while
 *   data or the FIN after the hole is known (ACK-based capture-loss detection, RFC 9293 §3.4: an ACK
 *   covers every byte before it, so the sender did send them); when the buffered data exceeds
 *   `maxBufferedPerDirection` bytes or `maxSegmentsPerDirection` pieces (skip ahead to the first
 *   buffered piece, as often as needed); and when the stream is finished (FIN/RST/timeout/end of
 *   input/eviction) — remaining holes become gaps and the buffered data is delivered.
 * - FIN: its sequence number (after the last data byte) is remembered (the first FIN wins; data
 *   beyond it is dropped and counted). `onEnd(dir, 'fin')` is sent once every byte before the FIN
 *   was delivered or declared a gap.
 * - Segments that start more than `maxSeqJump` bytes ahead of the next expected byte cannot belong
 *   to this stream (TCP's window is at most 2^30, RFC 7323 §2.3); they are dropped and counted
 *   (`tcp_seq_out_of_window`) instead of turning into a giant gap.
 */

/** Limits of one half stream (see TcpOptions for their meaning and defaults). */
export interface ReassemblyLimits {
  maxBufferedPerDirection: number;
  maxSegmentsPerDirection: number;
  maxSeqJump: number;
}

/** Counters shared by all half streams of one flow table (mutated in place). */
export interface ReassemblyStats {
  gaps: number;
  gapBytes: number;
  retransmittedBytes: number;
  overlapConflicts: number;
  outOfOrderSegments: number;
  snappedSegments: number;
  segmentsOutOfWindow: number;
  dataAfterEnd: number;
  bufferLimitHits: number;
  captureLossGaps: number;
  bytesDelivered: number;
  /** Bytes currently held in out-of-order buffers and cross-direction holds, all flows together. */
  bufferedBytes: number;
  /** Times a direction's data waited for the other direction (src/tcp/flowTable.ts: order across the two directions). */
  crossDirHolds: number;
  /** Of those, holds released before the other direction caught up (limit, time, close). */
  crossDirHoldsExpired: number;
}

export function newReassemblyStats(): ReassemblyStats {
  return {
    gaps: 0,
    gapBytes: 0,
    retransmittedBytes: 0,
    overlapConflicts: 0,
    outOfOrderSegments: 0,
    snappedSegments: 0,
    segmentsOutOfWindow: 0,
    dataAfterEnd: 0,
    bufferLimitHits: 0,
    captureLossGaps: 0,
    bytesDelivered: 0,
    bufferedBytes: 0,
    crossDirHolds: 0,
    crossDirHoldsExpired: 0,
  };
}

/** Where a half stream sends its output (the flow, which guards the handler). */
export interface HalfStreamOwner {
  streamData(dir: Dir, data: Buffer, ts: Timestamp): void;
  streamGap(dir: Dir, length: number, ts: Timestamp): void;
  streamEnd(dir: Dir, reason: EndReason, ts: Timestamp): void;
}

/** 32-bit modular "a before b" (RFC 1982 serial number arithmetic, as TCP uses it). */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** Signed distance from a to b modulo 2^32 (b - a as int32). */
export function seqDiff(b: number, a: number): number {
  return (b - a) | 0;
}

/** One buffered out-of-order piece: bytes (owned copy), or null for bytes on the wire but not captured. */
class Piece {
  constructor(
    public seq: number,
    public data: Buffer | null,
    public len: number,
  ) {}
}

export class HalfStream {
  /** True once the stream's position is known (SYN or first data/FIN segment). */
  seqKnown = false;
  /** Next expected sequence number (unsigned 32-bit). */
  nextSeq = 0;
  synSeen = false;
  isn = 0;
  finSeen = false;
  /** Sequence number of the FIN (one past the last data byte). */
  finSeq = 0;
  /** onEnd was sent; nothing more is delivered. */
  ended = false;
  /** Bytes held in `pieces` (captured bytes only; markers hold none). */
  bufferedBytes = 0;
  /** Sorted by sequence, non-overlapping; at rest every piece starts after nextSeq. */
  private pieces: Piece[] = [];

  constructor(
    readonly dir: Dir,
    private readonly owner: HalfStreamOwner,
    private readonly stats: ReassemblyStats,
    private readonly anomalies: AnomalySink,
    private readonly limits: ReassemblyLimits,
  ) {}

  get bufferedPieces(): number {
    return this.pieces.length;
  }

  /** A SYN from this side: ISN + 1 is the first data byte (RFC 9293 §3.4.1). */
  syn(seq: number): void {
    if (this.synSeen) return;
    this.synSeen = true;
    this.isn = seq >>> 0;
    if (!this.seqKnown) {
      this.seqKnown = true;
      this.nextSeq = (seq + 1) >>> 0;
    }
  }

  /**
   * One segment's data (seq of its first data byte, i.e. after the SYN if it carries one).
   * @param payload  captured bytes (view into the packet, not kept)
   * @param wireLen  payload length on the wire (may exceed payload.length when snapped)
   */
  segment(seq: number, payload: Buffer, wireLen: number, fin: boolean, ts: Timestamp): void {
    let len = wireLen;
    let cap = payload.length < len ? payload.length : len;
    if (!this.seqKnown) {
      if (len === 0 && !fin) return;
      this.seqKnown = true;
      this.nextSeq = seq >>> 0;
    }
    if (this.ended) {
      if (len > 0) {
        if (((seq - this.nextSeq) | 0) + len <= 0) this.stats.retransmittedBytes += len;
        else this.stats.dataAfterEnd += len;
      }
      return;
    }
    const rel = (seq - this.nextSeq) | 0;
    if (rel > this.limits.maxSeqJump) {
      this.stats.segmentsOutOfWindow++;
      this.anomalies.anomaly('tcp_seq_out_of_window');
      return;
    }
    if (this.finSeen) {
      // Nothing exists after the FIN (RFC 9293 §3.10.7.4: FIN is the last sequence number).
      const room = (this.finSeq - seq) | 0;
      if (len > room) {
        const cut = room > 0 ? room : 0;
        this.stats.dataAfterEnd += len - cut;
        len = cut;
        if (cap > len) cap = len;
      }
    } else if (fin && rel + len >= 0) {
      // A FIN before what was already delivered is inconsistent and ignored.
      this.finSeen = true;
      this.finSeq = (seq + len) >>> 0;
      if (this.pieces.length > 0) this.dropBeyondFin();
    }

    if (len > 0) {
      if (cap < len) {
        this.stats.snappedSegments++;
        this.anomalies.anomaly('tcp_snapped_segment');
      }
      const end = rel + len;
      if (end <= 0) {
        this.stats.retransmittedBytes += len;
      } else if (rel <= 0) {
        if (rel < 0) this.stats.retransmittedBytes -= rel;
        if (this.pieces.length === 0 && cap === len) {
          // Fast path: the next expected bytes, nothing buffered: hand over the packet's view.
          const view = rel === 0 && cap === payload.length ? payload : payload.subarray(-rel, cap);
          this.emitData(view, ts);
        } else {
          this.mergeInOrder(seq, payload, cap, len, ts);
          this.drain(ts);
        }
      } else {
        this.stats.outOfOrderSegments++;
        this.insert(seq, payload, cap, len, rel);
        this.enforceLimits(ts);
      }
    }
    this.checkFin(ts);
  }

  /**
   * The peer acknowledged `ack`: every byte of this direction before it was sent. If we are
   * waiting on a hole with data (or the FIN) known after it, the hole's acknowledged part was
   * lost by the capture: declare it a gap and go on (this is how capture loss is detected).
   */
  peerAck(ack: number, ts: Timestamp): void {
    // Only when something after the hole is known (buffered data, or a FIN): with nothing after it
    // the missing bytes may still arrive (the ACK may have been captured before the data).
    if (!this.seqKnown || this.ended || (this.pieces.length === 0 && !this.finSeen)) return;
    let rel = (ack - this.nextSeq) | 0;
    if (rel <= 0 || rel > this.limits.maxSeqJump) return;
    if (this.finSeen) {
      // The FIN itself occupies one sequence number; an ACK of it covers only up to the FIN.
      const relFin = (this.finSeq - this.nextSeq) | 0;
      if (rel > relFin) rel = relFin;
      if (rel <= 0) return;
    }
    this.stats.captureLossGaps++;
    this.anomalies.anomaly('tcp_capture_loss');
    this.advanceTo((this.nextSeq + rel) >>> 0, ts);
    this.checkFin(ts);
  }

  /** Deliver everything buffered; holes before buffered pieces become gaps. */
  flushBuffered(ts: Timestamp): void {
    const pieces = this.pieces;
    while (!this.ended && pieces.length > 0) {
      const hrel = (pieces[0].seq - this.nextSeq) | 0;
      if (hrel > 0) this.emitGap(hrel, ts);
      this.drain(ts);
    }
    this.checkFin(ts);
  }

  /**
   * The stream is over (FIN/RST/timeout/eof/eviction): flush buffered data, turn the hole before
   * a known FIN into a gap, and send onEnd once ('fin' when a FIN was seen, else `reason`).
   */
  finish(reason: EndReason, ts: Timestamp): void {
    if (this.ended) return;
    this.flushBuffered(ts);
    if (this.ended) return;
    if (this.finSeen) {
      const rel = (this.finSeq - this.nextSeq) | 0;
      if (rel > 0) this.emitGap(rel, ts);
      this.end('fin', ts);
    } else {
      this.end(reason, ts);
    }
  }

  // ---- internals -------------------------------------------------------------------------

  private emitData(data: Buffer, ts: Timestamp): void {
    this.nextSeq = (this.nextSeq + data.length) >>> 0;
    this.stats.bytesDelivered += data.length;
    this.owner.streamData(this.dir, data, ts);
  }

  private emitGap(length: number, ts: Timestamp): void {
    this.nextSeq = (this.nextSeq + length) >>> 0;
    this.stats.gaps++;
    this.stats.gapBytes += length;
    this.owner.streamGap(this.dir, length, ts);
  }

  private end(reason: EndReason, ts: Timestamp): void {
    this.ended = true;
    if (this.pieces.length > 0) {
      for (const p of this.pieces) this.release(p);
      this.pieces.length = 0;
    }
    this.owner.streamEnd(this.dir, reason, ts);
  }

  private checkFin(ts: Timestamp): void {
    if (this.finSeen && !this.ended && this.nextSeq === this.finSeq) this.end('fin', ts);
  }

  private release(p: Piece): void {
    if (p.data !== null) {
      this.bufferedBytes -= p.data.length;
      this.stats.bufferedBytes -= p.data.length;
    }
  }

  /** Deliver `p` from byte `off` on (data, or a gap for a marker). */
  private deliverPiece(p: Piece, off: number, ts: Timestamp): void {
    if (p.data === null) this.emitGap(p.len - off, ts);
    else this.emitData(off === 0 ? p.data : p.data.subarray(off), ts);
  }

  /** Deliver every buffered piece that starts at or before nextSeq (contiguous data). */
  private drain(ts: Timestamp): void {
    const pieces = this.pieces;
    let k = 0;
    while (k < pieces.length && !this.ended) {
      const p = pieces[k];
      const hrel = (p.seq - this.nextSeq) | 0;
      if (hrel > 0) break;
      const off = -hrel;
      if (off < p.len) this.deliverPiece(p, off, ts);
      this.release(p);
      k++;
    }
    if (k > 0) pieces.splice(0, k);
  }

  /**
   * An in-order segment while pieces are buffered (or snapped): walk it alongside the buffer;
   * where a buffered piece covers the same bytes the buffered copy wins (first-wins).
   */
  private mergeInOrder(seq: number, payload: Buffer, cap: number, len: number, ts: Timestamp): void {
    const pieces = this.pieces;
    let i = (this.nextSeq - seq) | 0;
    let k = 0;
    while (i < len && !this.ended) {
      let n = len - i;
      if (k < pieces.length) {
        const p = pieces[k];
        const hrel = (p.seq - this.nextSeq) | 0;
        if (hrel <= 0) {
          const off = -hrel;
          if (off < p.len) {
            this.checkConflict(p, off, payload, i, Math.min(p.len - off, cap - i));
            this.deliverPiece(p, off, ts);
          }
          this.release(p);
          k++;
          i = (this.nextSeq - seq) | 0;
          continue;
        }
        if (hrel < n) n = hrel;
      }
      // Incoming bytes [i, i + n): captured part as data, the rest (snapped) as a gap.
      const capEnd = i + n < cap ? i + n : cap;
      if (capEnd > i) {
        this.emitData(i === 0 && capEnd === payload.length ? payload : payload.subarray(i, capEnd), ts);
      }
      const missing = i + n - (capEnd > i ? capEnd : i);
      if (missing > 0) this.emitGap(missing, ts);
      i += n;
    }
    if (k > 0) pieces.splice(0, k);
  }

  /** Count a conflict when buffered bytes p[off, off+n) differ from payload[pOff, pOff+n). */
  private checkConflict(p: Piece, off: number, payload: Buffer, pOff: number, n: number): boolean {
    if (p.data === null || n <= 0) return false;
    if (p.data.compare(payload, pOff, pOff + n, off, off + n) === 0) return false;
    this.stats.overlapConflicts++;
    this.anomalies.anomaly('tcp_overlap_conflict');
    return true;
  }

  /** Buffer an out-of-order segment (rel > 0), keeping only bytes not already buffered. */
  private insert(seq: number, payload: Buffer, cap: number, len: number, rel: number): void {
    const pieces = this.pieces;
    const base = this.nextSeq;
    // First piece whose end is after the new segment's start (binary search; pieces are sorted).
    let lo = 0;
    let hi = pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = pieces[mid];
      if (((p.seq - base) | 0) + p.len <= rel) lo = mid + 1;
      else hi = mid;
    }
    const newEnd = rel + len;
    let cur = rel;
    let k = lo;
    let conflict = false;
    let overlapped = 0;
    while (k < pieces.length && cur < newEnd) {
      const p = pieces[k];
      const pStart = (p.seq - base) | 0;
      if (pStart >= newEnd) break;
      if (pStart > cur) {
        k += this.addPieces(k, seq, payload, cap, cur - rel, pStart - rel);
        cur = pStart;
      }
      const pEnd = pStart + p.len;
      const oEnd = pEnd < newEnd ? pEnd : newEnd;
      if (oEnd > cur) {
        overlapped += oEnd - cur;
        if (!conflict && p.data !== null) {
          const pOff = cur - rel;
          const n = Math.min(oEnd - cur, cap - pOff);
          if (n > 0 && p.data.compare(payload, pOff, pOff + n, cur - pStart, cur - pStart + n) !== 0) {
            conflict = true;
          }
        }
        cur = oEnd;
      }
      k++;
    }
    if (cur < newEnd) this.addPieces(k, seq, payload, cap, cur - rel, newEnd - rel);
    if (overlapped > 0) this.stats.retransmittedBytes += overlapped;
    if (conflict) {
      this.stats.overlapConflicts++;
      this.anomalies.anomaly('tcp_overlap_conflict');
    }
  }

  /** Insert copies of payload[a, b) at index k: captured bytes as data, the rest as a marker. */
  private addPieces(k: number, seq: number, payload: Buffer, cap: number, a: number, b: number): number {
    let added = 0;
    if (a < cap) {
      const e = b < cap ? b : cap;
      const copy = Buffer.allocUnsafe(e - a);
      payload.copy(copy, 0, a, e);
      this.pieces.splice(k, 0, new Piece((seq + a) >>> 0, copy, e - a));
      this.bufferedBytes += e - a;
      this.stats.bufferedBytes += e - a;
      added++;
      a = e;
    }
    if (a < b) {
      this.pieces.splice(k + added, 0, new Piece((seq + a) >>> 0, null, b - a));
      added++;
    }
    return added;
  }

  /** A FIN arrived after data beyond it was buffered: that data cannot exist; drop it. */
  private dropBeyondFin(): void {
    const pieces = this.pieces;
    const base = this.nextSeq;
    const finRel = (this.finSeq - base) | 0;
    while (pieces.length > 0) {
      const p = pieces[pieces.length - 1];
      const pStart = (p.seq - base) | 0;
      if (pStart + p.len <= finRel) break;
      if (pStart >= finRel) {
        this.stats.dataAfterEnd += p.len;
        this.release(p);
        pieces.pop();
      } else {
        const keep = finRel - pStart;
        this.stats.dataAfterEnd += p.len - keep;
        if (p.data !== null) {
          const freed = p.data.length - keep;
          this.bufferedBytes -= freed;
          this.stats.bufferedBytes -= freed;
          p.data = p.data.subarray(0, keep);
        }
        p.len = keep;
        break;
      }
    }
  }

  /** Declare the hole up to `target` (or up to the next buffered piece) a gap, deliver, repeat. */
  private advanceTo(target: number, ts: Timestamp): void {
    const pieces = this.pieces;
    while (!this.ended) {
      const rel = (target - this.nextSeq) | 0;
      if (rel <= 0) break;
      if (pieces.length > 0) {
        const hrel = (pieces[0].seq - this.nextSeq) | 0;
        if (hrel <= rel) {
          if (hrel > 0) this.emitGap(hrel, ts);
          this.drain(ts);
          continue;
        }
      }
      this.emitGap(rel, ts);
    }
    this.drain(ts);
  }

  /** Over the per-direction limits: skip ahead to the first buffered piece (gap) until under. */
  private enforceLimits(ts: Timestamp): void {
    const l = this.limits;
    if (this.bufferedBytes <= l.maxBufferedPerDirection && this.pieces.length <= l.maxSegmentsPerDirection) return;
    this.stats.bufferLimitHits++;
    this.anomalies.anomaly('tcp_buffer_limit');
    while (
      !this.ended &&
      this.pieces.length > 0 &&
      (this.bufferedBytes > l.maxBufferedPerDirection || this.pieces.length > l.maxSegmentsPerDirection)
    ) {
      const hrel = (this.pieces[0].seq - this.nextSeq) | 0;
      if (hrel > 0) this.emitGap(hrel, ts);
      this.drain(ts);
    }
  }
}
