/**
 * What the push-based reader needs from a capture format: both pcap and pcapng are sequences of
 * self-delimiting records whose total length is known from a fixed-size header, so one generic
 * reader (reader.ts) can do all buffering across chunk boundaries and the formats stay pure
 * "complete record in, packets out" functions.
 */
export interface RecordFramer {
  /** Bytes needed at the start of the next record before recordLength() can be called. */
  headerSize(): number;
  /**
   * Total length of the next record, given at least headerSize() bytes of it. Returns -1 when the
   * stream cannot be followed any further (already reported as an anomaly). A length above
   * maxRecordBytes means "skip this record without buffering it" (already reported too).
   * Called exactly once per record.
   */
  recordLength(buf: Buffer, off: number): number;
  /** Records longer than this are skipped rather than buffered. */
  readonly maxRecordBytes: number;
  /** Handles one complete record buf[off, off+len). Never throws on bad data. */
  record(buf: Buffer, off: number, len: number): void;
  /**
   * Optional: hands the complete records from buf[off, end) on in one loop where the sink allows
   * (classic pcap, CaptureSink.pcapRecords); returns the offset after the last one handled (`off`
   * when none). The record there, if any, goes the usual way.
   */
  readonly run?: ((buf: Buffer, off: number, end: number) => number) | undefined;
  /** Packets handed to the sink so far. */
  readonly packets: number;
  /** The file header (pcap's global header, pcapng's first Section Header Block) was read whole. */
  readonly headerDone: boolean;
  /** Bytes of the smallest valid file header of this format. */
  readonly minHeaderBytes: number;
}

/** Limits shared by the readers; every one counted when hit, never a crash. */
export interface CaptureLimits {
  /** Largest captured packet accepted (tcpdump's default snap length). */
  maxPacketBytes: number;
  /** Largest pcapng block buffered; larger blocks are skipped by their length. */
  maxBlockBytes: number;
  /** Interfaces per pcapng section kept; more IDBs are ignored. */
  maxInterfaces: number;
}

export const DEFAULT_CAPTURE_LIMITS: Readonly<CaptureLimits> = {
  maxPacketBytes: 262_144,
  maxBlockBytes: 16 * 1024 * 1024,
  maxInterfaces: 65_536,
};
