/**
 * In-order delivery of one QUIC byte stream (a CRYPTO stream of one encryption level, or one
 * direction of a STREAM) from frames that carry (offset, bytes): duplicates and overlaps from
 * retransmission are trimmed, data ahead of the next offset is held (views into the decrypted
 * packets, which are ours) until the hole fills, and at the end holes that never filled are
 * reported as gaps (RFC 9000 Sections 2.2, 19.6, 19.8).
 */
export interface OrderedSink {
  data(data: Buffer): void;
  gap(length: number): void;
  end(): void;
}

interface Seg {
  off: number;
  data: Buffer;
}

export class OrderedStream {
  /** Next offset to deliver. */
  next = 0;
  /** Out-of-order bytes held. */
  buffered = 0;
  private segs: Seg[] = [];
  private finAt = -1;
  ended = false;

  constructor(private readonly sink: OrderedSink) {}

  /** Returns the change in held bytes (for the caller's limits). */
  push(off: number, data: Buffer, fin: boolean): number {
    const before = this.buffered;
    if (fin) this.finAt = off + data.length;
    const end = off + data.length;
    if (end > this.next || (fin && data.length === 0)) {
      if (off <= this.next) {
        if (end > this.next) {
          this.sink.data(off === this.next ? data : data.subarray(this.next - off));
          this.next = end;
        }
        this.drain();
      } else {
        // insert sorted by offset
        let i = this.segs.length;
        while (i > 0 && this.segs[i - 1].off > off) i--;
        this.segs.splice(i, 0, { off, data });
        this.buffered += data.length;
      }
    }
    this.checkEnd();
    return this.buffered - before;
  }

  private drain(): void {
    while (this.segs.length > 0 && this.segs[0].off <= this.next) {
      const s = this.segs.shift() as Seg;
      this.buffered -= s.data.length;
      const end = s.off + s.data.length;
      if (end > this.next) {
        this.sink.data(s.data.subarray(this.next - s.off));
        this.next = end;
      }
    }
  }

  private checkEnd(): void {
    if (!this.ended && this.finAt >= 0 && this.next >= this.finAt && this.segs.length === 0) {
      this.ended = true;
      this.sink.end();
    }
  }

  /** No more frames will come: deliver what is held across its holes (as gaps). Returns the bytes released. */
  flush(): number {
    const released = this.buffered;
    while (this.segs.length > 0) {
      const s = this.segs[0];
      if (s.off > this.next) {
        this.sink.gap(s.off - this.next);
        this.next = s.off;
      }
      this.drain();
    }
    this.buffered = 0;
    if (this.finAt > this.next && !this.ended) {
      this.sink.gap(this.finAt - this.next);
      this.next = this.finAt;
    }
    this.checkEnd();
    return released;
  }

  /** RESET_STREAM: nothing more will come; held bytes are dropped. Returns the bytes released. */
  reset(): number {
    const released = this.buffered;
    this.segs = [];
    this.buffered = 0;
    if (!this.ended) {
      this.ended = true;
      this.sink.end();
    }
    return released;
  }
}
