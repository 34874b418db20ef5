import type { CaptureSink } from '../types.js';
import type { CaptureLimits, RecordFramer } from './framer.js';
import { TsResolution } from './timestamp.js';

/** Block types (draft-ietf-opsawg-pcapng section 4 and 10.1). */
export const PCAPNG_SHB = 0x0a0d0d0a;
export const PCAPNG_IDB = 0x00000001;
export const PCAPNG_PB_OBSOLETE = 0x00000002;
export const PCAPNG_SPB = 0x00000003;
export const PCAPNG_EPB = 0x00000006;
export const PCAPNG_DSB = 0x0000000a;
/** Byte-order magic of the Section Header Block, as written by the section's writer. */
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const BYTE_ORDER_MAGIC_SWAPPED = 0x4d3c2b1a;

/** Smallest block: type, total length, trailing total length (section 3.1). */
const MIN_BLOCK = 12;
const OPT_END = 0;
/** IDB options (section 4.2). */
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;

interface Iface {
  linktype: number;
  snaplen: number;
  ts: TsResolution;
}

const DEFAULT_RESOLUTION = new TsResolution();
/** Packet times from 0000-01-01 to 9999-12-31 (four-digit ISO 8601 years), in seconds since 1970. */
const MIN_TS_SEC = -62_167_219_200;
const MAX_TS_SEC = 253_402_300_799;

/**
 * pcapng reader (draft-ietf-opsawg-pcapng). Every section (SHB) has its own byte order and its own
 * interface list; packet blocks refer to interfaces by their index within the section. Blocks are
 * self-delimiting, so a malformed block is reported and skipped by its length; only a block length
 * that cannot be followed (below 12 or not a multiple of 4, section 3.1) ends the stream.
 *
 * RawPacket.ifIndex is the interface number counted across all sections (as Wireshark's
 * frame.interface_id), so interfaces of different sections stay distinct.
 */
export class PcapngFramer implements RecordFramer {
  readonly maxRecordBytes: number;
  packets = 0;
  headerDone = false;
  /** Section Header Block without options (section 4.1). */
  readonly minHeaderBytes = 28;
  private le = false;
  private ifaces: Iface[] = [];
  /** Interfaces of the previous sections (for the global interface number). */
  private ifBase = 0;
  /** IDBs beyond the limit dropped in this section (they still take an interface number). */
  private droppedIfaces = 0;
  /** Time of the last timestamped packet: stands in for the missing time of Simple Packet Blocks. */
  private lastSec = 0;
  private lastNsec = 0;

  constructor(
    private readonly sink: CaptureSink,
    private readonly limits: CaptureLimits,
  ) {
    this.maxRecordBytes = limits.maxBlockBytes;
  }

  headerSize(): number {
    // Type and length, plus the SHB's byte-order magic that tells how to read its length.
    return MIN_BLOCK;
  }

  recordLength(buf: Buffer, off: number): number {
    if (buf.readUInt32BE(off) === PCAPNG_SHB) {
      // A new section: its byte-order magic decides how this and every later block is read.
      const bom = buf.readUInt32BE(off + 8);
      if (bom === BYTE_ORDER_MAGIC) this.le = false;
      else if (bom === BYTE_ORDER_MAGIC_SWAPPED) this.le = true;
      else {
        this.sink.anomaly('pcapng_bad_block', 'section header byte-order magic');
        return -1;
      }
      this.ifBase += this.ifaces.length + this.droppedIfaces;
      this.ifaces = [];
      this.droppedIfaces = 0;
    }
    const len = this.le ? buf.readUInt32LE(off + 4) : buf.readUInt32BE(off + 4);
    if (len < MIN_BLOCK || (len & 3) !== 0) {
      this.sink.anomaly('pcapng_bad_block', `block length ${len}`);
      return -1;
    }
    if (len > this.limits.maxBlockBytes) this.sink.anomaly('pcapng_oversized_block', `block length ${len}`);
    return len;
  }

  record(buf: Buffer, off: number, len: number): void {
    const le = this.le;
    const type = le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
    const trailer = le ? buf.readUInt32LE(off + len - 4) : buf.readUInt32BE(off + len - 4);
    if (trailer !== len) {
      this.sink.anomaly('pcapng_bad_block', 'trailing block length differs');
      return;
    }
    switch (type) {
      case PCAPNG_EPB:
        this.enhancedPacket(buf, off, len);
        return;
      case PCAPNG_SPB:
        this.simplePacket(buf, off, len);
        return;
      case PCAPNG_IDB:
        this.interfaceDescription(buf, off, len);
        return;
      case PCAPNG_PB_OBSOLETE:
        this.obsoletePacket(buf, off, len);
        return;
      case PCAPNG_DSB:
        this.decryptionSecrets(buf, off, len);
        return;
      case PCAPNG_SHB:
        this.headerDone = true;
        if (len < 28) this.sink.anomaly('pcapng_bad_block', 'short section header');
        else if ((le ? buf.readUInt16LE(off + 12) : buf.readUInt16BE(off + 12)) !== 1) {
          this.sink.anomaly('pcapng_bad_version', 'section major version');
        }
        return;
      default:
        // Name resolution, statistics, custom and unknown blocks: nothing for us (section 3.1:
        // readers skip blocks they do not understand).
        return;
    }
  }

  /** Enhanced Packet Block (section 4.3). */
  private enhancedPacket(buf: Buffer, off: number, len: number): void {
    if (len < 32) {
      this.sink.anomaly('pcapng_bad_block', 'short enhanced packet block');
      return;
    }
    const le = this.le;
    const ifId = le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
    const high = le ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
    const low = le ? buf.readUInt32LE(off + 16) : buf.readUInt32BE(off + 16);
    const caplen = le ? buf.readUInt32LE(off + 20) : buf.readUInt32BE(off + 20);
    const origLen = le ? buf.readUInt32LE(off + 24) : buf.readUInt32BE(off + 24);
    this.emit(buf, off + 28, caplen, len - 32, ifId, high, low, origLen);
  }

  /** Obsolete Packet Block (appendix A of the draft): like EPB with 16-bit interface id. */
  private obsoletePacket(buf: Buffer, off: number, len: number): void {
    if (len < 32) {
      this.sink.anomaly('pcapng_bad_block', 'short packet block');
      return;
    }
    const le = this.le;
    const ifId = le ? buf.readUInt16LE(off + 8) : buf.readUInt16BE(off + 8);
    const high = le ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
    const low = le ? buf.readUInt32LE(off + 16) : buf.readUInt32BE(off + 16);
    const caplen = le ? buf.readUInt32LE(off + 20) : buf.readUInt32BE(off + 20);
    const origLen = le ? buf.readUInt32LE(off + 24) : buf.readUInt32BE(off + 24);
    this.emit(buf, off + 28, caplen, len - 32, ifId, high, low, origLen);
  }

  private emit(
    buf: Buffer,
    dataOff: number,
    caplen: number,
    room: number,
    ifId: number,
    high: number,
    low: number,
    origLen: number,
  ): void {
    if (caplen > room) {
      this.sink.anomaly('pcapng_bad_block', 'captured length exceeds block');
      return;
    }
    if (caplen > this.limits.maxPacketBytes) {
      this.sink.anomaly('capture_oversized_packet', `pcapng caplen ${caplen}`);
      return;
    }
    const iface = this.ifaces[ifId];
    if (iface === undefined) {
      this.sink.anomaly('pcapng_unknown_interface', `interface ${ifId}`);
      return;
    }
    let ts = iface.ts.convert(high, low);
    if (ts.sec >= MIN_TS_SEC && ts.sec <= MAX_TS_SEC) {
      this.lastSec = ts.sec;
      this.lastNsec = ts.nsec;
    } else {
      // A damaged timestamp (or if_tsresol/if_tsoffset) far outside any capture's time: counted,
      // and the packet keeps its data with the time of the last good packet, as a Simple Packet
      // Block does (an event cannot carry a time that has no ISO 8601 form).
      this.sink.anomaly('pcapng_bad_timestamp', `interface ${ifId}`);
      ts = { sec: this.lastSec, nsec: this.lastNsec };
    }
    this.packets++;
    this.sink.packet({
      linktype: iface.linktype,
      ts,
      data: buf.subarray(dataOff, dataOff + caplen),
      origLen,
      ifIndex: this.ifBase + ifId,
    });
  }

  /**
   * Simple Packet Block (section 4.4): no interface id (always interface 0), no timestamp; the
   * captured length is the smallest of the original length, the snap length and the block room.
   * The packet gets the time of the last timestamped packet (0 before any), so that downstream
   * timeouts do not see time jump back to 1970.
   */
  private simplePacket(buf: Buffer, off: number, len: number): void {
    if (len < 16) {
      this.sink.anomaly('pcapng_bad_block', 'short simple packet block');
      return;
    }
    const iface = this.ifaces[0];
    if (iface === undefined) {
      this.sink.anomaly('pcapng_unknown_interface', 'simple packet block without interface 0');
      return;
    }
    const origLen = this.le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
    let caplen = Math.min(origLen, len - 16);
    if (iface.snaplen > 0 && caplen > iface.snaplen) caplen = iface.snaplen;
    if (caplen > this.limits.maxPacketBytes) {
      this.sink.anomaly('capture_oversized_packet', `pcapng caplen ${caplen}`);
      return;
    }
    this.packets++;
    this.sink.packet({
      linktype: iface.linktype,
      ts: { sec: this.lastSec, nsec: this.lastNsec },
      data: buf.subarray(off + 12, off + 12 + caplen),
      origLen,
      ifIndex: this.ifBase,
    });
  }

  /** Interface Description Block (section 4.2) with its if_tsresol and if_tsoffset options. */
  private interfaceDescription(buf: Buffer, off: number, len: number): void {
    if (len < 20) {
      this.sink.anomaly('pcapng_bad_block', 'short interface description block');
      return;
    }
    if (this.ifaces.length >= this.limits.maxInterfaces) {
      this.droppedIfaces++;
      this.sink.anomaly('pcapng_too_many_interfaces');
      return;
    }
    const le = this.le;
    const linktype = le ? buf.readUInt16LE(off + 8) : buf.readUInt16BE(off + 8);
    const snaplen = le ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
    let tsresol = 6;
    let tsoffset = 0;
    // Options (section 3.5): code u16, length u16, value padded to 32 bits, until opt_endofopt.
    let p = off + 16;
    const end = off + len - 4;
    while (p + 4 <= end) {
      const code = le ? buf.readUInt16LE(p) : buf.readUInt16BE(p);
      const olen = le ? buf.readUInt16LE(p + 2) : buf.readUInt16BE(p + 2);
      if (code === OPT_END) break;
      if (p + 4 + olen > end) {
        this.sink.anomaly('pcapng_bad_option', 'option exceeds block');
        break;
      }
      if (code === OPT_IF_TSRESOL && olen >= 1) tsresol = buf[p + 4];
      else if (code === OPT_IF_TSOFFSET && olen >= 8) {
        tsoffset = Number(le ? buf.readBigInt64LE(p + 4) : buf.readBigInt64BE(p + 4));
      }
      p += 4 + ((olen + 3) & ~3);
    }
    const ts = tsresol === 6 && tsoffset === 0 ? DEFAULT_RESOLUTION : new TsResolution(tsresol, tsoffset);
    this.ifaces.push({ linktype, snaplen, ts });
  }

  /** Decryption Secrets Block (section 4.7): secrets type, length, data. */
  private decryptionSecrets(buf: Buffer, off: number, len: number): void {
    if (len < 20) {
      this.sink.anomaly('pcapng_bad_block', 'short decryption secrets block');
      return;
    }
    const le = this.le;
    const secretsType = le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
    const secretsLen = le ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
    if (secretsLen > len - 20) {
      this.sink.anomaly('pcapng_bad_block', 'secrets length exceeds block');
      return;
    }
    this.sink.secrets(secretsType, buf.subarray(off + 16, off + 16 + secretsLen));
  }
}
