import type { CaptureSink, PcapLayout } from '../types.js';
import type { CaptureLimits, RecordFramer } from './framer.js';

/** Classic libpcap magic numbers as read big-endian from the first 4 bytes. */
export const PCAP_MAGIC_US_BE = 0xa1b2c3d4;
export const PCAP_MAGIC_US_LE = 0xd4c3b2a1;
export const PCAP_MAGIC_NS_BE = 0xa1b23c4d;
export const PCAP_MAGIC_NS_LE = 0x4d3cb2a1;

const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;

/**
 * Unsigned 32-bit reads by byte arithmetic: Buffer.readUInt32LE/BE validate their argument on
 * every call, several times per record on the hot path (the record is known to be complete here).
 */
export function u32le(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}
export function u32be(b: Uint8Array, o: number): number {
  return b[o] * 0x1000000 + ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]);
}

/** True when the big-endian first word of a stream is a classic pcap magic. */
export function isPcapMagic(magic: number): boolean {
  return (
    magic === PCAP_MAGIC_US_BE || magic === PCAP_MAGIC_US_LE || magic === PCAP_MAGIC_NS_BE || magic === PCAP_MAGIC_NS_LE
  );
}

/**
 * Classic pcap (draft-ietf-opsawg-pcap section 4 and 5): a 24-byte file header, then records of a
 * 16-byte header (ts seconds, ts micro- or nanoseconds, captured length, original length) and the
 * captured bytes. Records have no framing of their own, so a captured length beyond the limit means
 * the stream is desynchronised (corrupt or not pcap after all): it is reported once and the rest
 * of the stream is ignored, as Wireshark does.
 */
export class PcapFramer implements RecordFramer {
  readonly maxRecordBytes: number;
  private count = 0;
  /** For CaptureSink.pcapRecords (set with the file header). */
  private layout: PcapLayout | undefined;
  private readonly le: boolean;
  private readonly nano: boolean;
  private gotHeader = false;
  private linktype = 0;

  constructor(
    magic: number,
    private readonly sink: CaptureSink,
    private readonly limits: CaptureLimits,
  ) {
    this.le = magic === PCAP_MAGIC_US_LE || magic === PCAP_MAGIC_NS_LE;
    this.nano = magic === PCAP_MAGIC_NS_BE || magic === PCAP_MAGIC_NS_LE;
    this.maxRecordBytes = RECORD_HEADER_BYTES + limits.maxPacketBytes;
    const take = sink.pcapRecords?.bind(sink);
    // Complete records taken by the sink in one loop of its own (after the file header).
    this.run = take && ((buf, off, end) => (this.layout === undefined ? off : take(buf, off, end, this.layout)));
  }

  readonly run: ((buf: Buffer, off: number, end: number) => number) | undefined;

  readonly minHeaderBytes = GLOBAL_HEADER_BYTES;

  get packets(): number {
    return this.count + (this.layout?.packets ?? 0);
  }

  get headerDone(): boolean {
    return this.gotHeader;
  }

  headerSize(): number {
    return this.gotHeader ? RECORD_HEADER_BYTES : GLOBAL_HEADER_BYTES;
  }

  recordLength(buf: Buffer, off: number): number {
    if (!this.gotHeader) return GLOBAL_HEADER_BYTES;
    const caplen = this.le ? u32le(buf, off + 8) : u32be(buf, off + 8);
    if (caplen > this.limits.maxPacketBytes) {
      this.sink.anomaly('capture_oversized_packet', `pcap record caplen ${caplen}`);
      return -1;
    }
    return RECORD_HEADER_BYTES + caplen;
  }

  record(buf: Buffer, off: number, len: number): void {
    const le = this.le;
    if (!this.gotHeader) {
      this.gotHeader = true;
      const major = le ? buf.readUInt16LE(off + 4) : buf.readUInt16BE(off + 4);
      if (major !== 2) this.sink.anomaly('pcap_bad_version', `major version ${major}`);
      // The link type is the low 16 bits; the upper bits carry the FCS length (section 4.1).
      this.linktype = (le ? buf.readUInt32LE(off + 20) : buf.readUInt32BE(off + 20)) & 0xffff;
      if (this.sink.pcapRecords) this.layout = { le, nano: this.nano, linktype: this.linktype, maxCaplen: this.limits.maxPacketBytes, packets: 0 };
      return;
    }
    const u32 = le ? u32le : u32be;
    let sec = u32(buf, off);
    const frac = u32(buf, off + 4);
    const origLen = u32(buf, off + 12);
    let nsec = this.nano ? frac : frac * 1000;
    if (nsec >= 1_000_000_000) {
      // Out-of-range fraction (some writers): carry it into the seconds rather than drop the packet.
      sec += Math.floor(nsec / 1_000_000_000);
      nsec %= 1_000_000_000;
    }
    this.count++;
    const sink = this.sink;
    if (sink.packetAt) {
      sink.packetAt(buf, off + RECORD_HEADER_BYTES, len - RECORD_HEADER_BYTES, origLen, sec, nsec, this.linktype);
      return;
    }
    sink.packet({
      linktype: this.linktype,
      ts: { sec, nsec },
      data: buf.subarray(off + RECORD_HEADER_BYTES, off + len),
      origLen,
      ifIndex: 0,
    });
  }
}
