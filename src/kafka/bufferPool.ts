// Its own module so that fetch.ts uses it without importing formats.ts (which imports adapter.ts).

/**
 * Buffers of pcap-stream records handed back once Kafka acknowledged them, for the next streams.
 * Why: a stream buffer is 64 KiB-1 MiB, above glibc's mmap threshold, so a fresh one is a fresh
 * mmap whose every page faults on first write and is unmapped again when the GC frees it; at
 * 1 Gbps that was several times the cost of producing the bytes (bench/RESULTS.md section 6:
 * 300 MiB through fresh 512 KiB buffers 600 ms of CPU, through a reused one 80 ms). Bounded:
 * at most maxBytes are kept; get() hands out a buffer of at least `min` and at most 2x that.
 */
export class BufferPool {
  private free: Buffer[] = [];
  private held = 0;
  constructor(private readonly maxBytes: number) {}

  get(min: number): Buffer | undefined {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const b = this.free[i];
      if (b.length >= min && b.length <= 2 * min) {
        this.free[i] = this.free[this.free.length - 1];
        this.free.pop();
        this.held -= b.length;
        return b;
      }
    }
    return undefined;
  }

  /** Takes a buffer nothing references any more (the caller's promise). */
  put(b: Buffer): void {
    if (this.held + b.length > this.maxBytes) return;
    this.free.push(b);
    this.held += b.length;
  }

  get bytes(): number {
    return this.held;
  }
}
