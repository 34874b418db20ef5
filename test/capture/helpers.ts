import type { CaptureSink, RawPacket } from '../../src/types.js';

export interface SeenPacket {
  linktype: number;
  sec: number;
  nsec: number;
  data: string;
  origLen: number;
  ifIndex: number;
}

/** A sink that records everything it is handed (packet bytes as hex, so later reuse would show). */
export class RecordingSink implements CaptureSink {
  packets: SeenPacket[] = [];
  secretBlocks: { type: number; data: string }[] = [];
  anomalies: string[] = [];
  raw: RawPacket[] = [];
  packet(p: RawPacket): void {
    this.raw.push(p);
    this.packets.push({
      linktype: p.linktype,
      sec: p.ts.sec,
      nsec: p.ts.nsec,
      data: p.data.toString('hex'),
      origLen: p.origLen,
      ifIndex: p.ifIndex,
    });
  }
  secrets(secretsType: number, data: Buffer): void {
    this.secretBlocks.push({ type: secretsType, data: data.toString('latin1') });
  }
  anomaly(code: string): void {
    this.anomalies.push(code);
  }
}

export interface PcapRecord {
  sec: number;
  frac: number;
  data: Buffer;
  origLen?: number;
}

/** Writes a classic pcap file (draft-ietf-opsawg-pcap) byte by byte. */
export function buildPcap(opts: { le?: boolean; nano?: boolean; linktype?: number; records: PcapRecord[] }): Buffer {
  const le = opts.le ?? true;
  const parts: Buffer[] = [];
  const h = Buffer.alloc(24);
  const magic = opts.nano ? 0xa1b23c4d : 0xa1b2c3d4;
  if (le) {
    h.writeUInt32LE(magic, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(262144, 16);
    h.writeUInt32LE(opts.linktype ?? 1, 20);
  } else {
    h.writeUInt32BE(magic, 0);
    h.writeUInt16BE(2, 4);
    h.writeUInt16BE(4, 6);
    h.writeUInt32BE(262144, 16);
    h.writeUInt32BE(opts.linktype ?? 1, 20);
  }
  parts.push(h);
  for (const r of opts.records) {
    const rh = Buffer.alloc(16);
    const w = (v: number, o: number) => (le ? rh.writeUInt32LE(v, o) : rh.writeUInt32BE(v, o));
    w(r.sec, 0);
    w(r.frac, 4);
    w(r.data.length, 8);
    w(r.origLen ?? r.data.length, 12);
    parts.push(rh, r.data);
  }
  return Buffer.concat(parts);
}

/** pcapng block writer (draft-ietf-opsawg-pcapng section 3.1): pads the body, adds both lengths. */
export function block(type: number, body: Buffer, le: boolean): Buffer {
  const padded = (body.length + 3) & ~3;
  const len = 12 + padded;
  const b = Buffer.alloc(len);
  if (le) {
    b.writeUInt32LE(type, 0);
    b.writeUInt32LE(len, 4);
    b.writeUInt32LE(len, len - 4);
  } else {
    b.writeUInt32BE(type, 0);
    b.writeUInt32BE(len, 4);
    b.writeUInt32BE(len, len - 4);
  }
  body.copy(b, 8);
  return b;
}

function u16(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  return b;
}
function u32(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v >>> 0);
  else b.writeUInt32BE(v >>> 0);
  return b;
}
function pad4(b: Buffer): Buffer {
  return Buffer.concat([b, Buffer.alloc(((b.length + 3) & ~3) - b.length)]);
}
function option(code: number, value: Buffer, le: boolean): Buffer {
  return Buffer.concat([u16(code, le), u16(value.length, le), pad4(value)]);
}

export function shb(le: boolean): Buffer {
  const body = Buffer.concat([u32(0x1a2b3c4d, le), u16(1, le), u16(0, le), Buffer.alloc(8, 0xff)]);
  return block(0x0a0d0d0a, body, le);
}

export function idb(le: boolean, linktype: number, opts: { snaplen?: number; tsresol?: number; tsoffset?: bigint } = {}): Buffer {
  const parts = [u16(linktype, le), u16(0, le), u32(opts.snaplen ?? 0, le)];
  if (opts.tsresol !== undefined) parts.push(option(9, Buffer.from([opts.tsresol]), le));
  if (opts.tsoffset !== undefined) {
    const v = Buffer.alloc(8);
    if (le) v.writeBigInt64LE(opts.tsoffset);
    else v.writeBigInt64BE(opts.tsoffset);
    parts.push(option(14, v, le));
  }
  if (parts.length > 3) parts.push(option(0, Buffer.alloc(0), le));
  return block(1, Buffer.concat(parts), le);
}

export function epb(le: boolean, ifId: number, ts: bigint, data: Buffer, origLen = data.length): Buffer {
  const body = Buffer.concat([
    u32(ifId, le),
    u32(Number(ts >> 32n), le),
    u32(Number(ts & 0xffffffffn), le),
    u32(data.length, le),
    u32(origLen, le),
    pad4(data),
  ]);
  return block(6, body, le);
}

export function obsoletePb(le: boolean, ifId: number, ts: bigint, data: Buffer): Buffer {
  const body = Buffer.concat([
    u16(ifId, le),
    u16(0, le),
    u32(Number(ts >> 32n), le),
    u32(Number(ts & 0xffffffffn), le),
    u32(data.length, le),
    u32(data.length, le),
    pad4(data),
  ]);
  return block(2, body, le);
}

export function spb(le: boolean, data: Buffer, origLen = data.length): Buffer {
  return block(3, Buffer.concat([u32(origLen, le), pad4(data)]), le);
}

export function dsb(le: boolean, type: number, data: Buffer): Buffer {
  return block(0x0a, Buffer.concat([u32(type, le), u32(data.length, le), pad4(data)]), le);
}
