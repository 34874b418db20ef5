import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CaptureFileError, CaptureFormatError, CaptureReader, readCaptureFile } from '../../src/capture/index.js';
import {
  buildPcap,
  dsb,
  epb,
  idb,
  obsoletePb,
  RecordingSink,
  shb,
  spb,
  block,
  type PcapRecord,
} from './helpers.js';

const DATA = new URL('./data/', import.meta.url).pathname;
const require = createRequire(import.meta.url);

interface RefPacket {
  header: { timestampSeconds: number; timestampMicroseconds: number; capturedLength: number; originalLength: number };
  data: Buffer;
}

/** pcap-parser (independent, old-style streaming parser) as the reference for microsecond pcap. */
function parseWithReference(buf: Buffer): Promise<RefPacket[]> {
  const pcapp = require('pcap-parser') as { parse(s: Readable): NodeJS.EventEmitter };
  return new Promise((resolve, reject) => {
    const out: RefPacket[] = [];
    const p = pcapp.parse(Readable.from([buf]));
    p.on('packet', (pkt: RefPacket) => out.push(pkt));
    p.on('error', reject);
    p.on('end', () => resolve(out));
  });
}

function readAll(buf: Buffer, splits?: number[], opts?: ConstructorParameters<typeof CaptureReader>[1]): RecordingSink {
  const sink = new RecordingSink();
  const r = new CaptureReader(sink, opts);
  let off = 0;
  for (const s of splits ?? []) {
    const to = Math.min(buf.length, off + s);
    r.push(buf.subarray(off, to));
    off = to;
  }
  r.push(buf.subarray(off));
  r.end();
  return sink;
}

function oneByteAtATime(buf: Buffer): RecordingSink {
  const sink = new RecordingSink();
  const r = new CaptureReader(sink);
  // Fresh copies: the reader must not rely on a chunk staying around after push() returns.
  for (let i = 0; i < buf.length; i++) r.push(Buffer.from(buf.subarray(i, i + 1)));
  r.end();
  return sink;
}

const arbRecord: fc.Arbitrary<PcapRecord> = fc.record({
  sec: fc.nat({ max: 0xffffffff }),
  frac: fc.nat({ max: 999_999 }),
  data: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
});

describe('classic pcap', () => {
  it('reads microsecond pcap in both byte orders like pcap-parser does', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(arbRecord, { maxLength: 20 }), async (le, records) => {
        const file = buildPcap({ le, records });
        const ref = await parseWithReference(file);
        const ours = readAll(file);
        expect(ours.anomalies).toEqual([]);
        expect(ours.packets.length).toBe(ref.length);
        ours.packets.forEach((p, i) => {
          const r = ref[i];
          expect(p.sec).toBe(r.header.timestampSeconds);
          expect(p.nsec).toBe(r.header.timestampMicroseconds * 1000);
          expect(p.data).toBe(r.data.toString('hex'));
          expect(p.origLen).toBe(r.header.originalLength);
          expect(p.linktype).toBe(1);
        });
      }),
      { numRuns: 50 },
    );
  });

  it('reads nanosecond pcap in both byte orders', () => {
    for (const le of [true, false]) {
      const file = buildPcap({
        le,
        nano: true,
        linktype: 101,
        records: [{ sec: 1_700_000_000, frac: 999_999_999, data: Buffer.from('abc') }],
      });
      const s = readAll(file);
      expect(s.packets).toEqual([
        { linktype: 101, sec: 1_700_000_000, nsec: 999_999_999, data: '616263', origLen: 3, ifIndex: 0 },
      ]);
    }
  });

  it('ignores the FCS bits above the low 16 bits of the link type', () => {
    const file = buildPcap({ linktype: 0x10000001 | (4 << 28), records: [{ sec: 1, frac: 2, data: Buffer.from([1]) }] });
    expect(readAll(file).packets[0].linktype).toBe(1);
  });

  it('gives the same packets whatever the chunk boundaries', () => {
    fc.assert(
      fc.property(
        fc.array(arbRecord, { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 64 }), { maxLength: 60 }),
        (records, splits) => {
          const file = buildPcap({ records });
          const whole = readAll(file);
          expect(readAll(file, splits).packets).toEqual(whole.packets);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('stops and reports a caplen above the packet limit (a desynchronised stream)', () => {
    const file = buildPcap({
      records: [
        { sec: 1, frac: 0, data: Buffer.alloc(10) },
        { sec: 2, frac: 0, data: Buffer.alloc(100) },
        { sec: 3, frac: 0, data: Buffer.alloc(10) },
      ],
    });
    const s = readAll(file, undefined, { maxPacketBytes: 50 });
    expect(s.packets.map((p) => p.sec)).toEqual([1]);
    expect(s.anomalies).toEqual(['capture_oversized_packet']);
  });

  it('reports a record cut short at the end as capture_truncated', () => {
    const file = buildPcap({ records: [{ sec: 1, frac: 0, data: Buffer.alloc(10) }, { sec: 2, frac: 0, data: Buffer.alloc(10) }] });
    for (const cut of [1, 5, 16, 25]) {
      const s = readAll(file.subarray(0, file.length - cut));
      expect(s.packets.map((p) => p.sec)).toEqual([1]);
      expect(s.anomalies).toEqual(['capture_truncated']);
    }
  });

  it('never throws and yields a prefix of the packets for every prefix of a valid file', () => {
    const file = readFileSync(join(DATA, 'lo-http.ns.pcap'));
    const all = readAll(file).packets;
    for (let n = 0; n <= file.length; n++) {
      const s = readAll(file.subarray(0, n));
      expect(all.slice(0, s.packets.length)).toEqual(s.packets);
      expect(s.anomalies.length).toBeLessThanOrEqual(1);
    }
  });

  it('carries an out-of-range microsecond field into the seconds', () => {
    const s = readAll(buildPcap({ records: [{ sec: 10, frac: 2_500_000, data: Buffer.alloc(1) }] }));
    expect([s.packets[0].sec, s.packets[0].nsec]).toEqual([12, 500_000_000]);
  });

  it('hands on packet views that stay valid after later pushes', () => {
    const file = buildPcap({
      records: Array.from({ length: 5 }, (_, i) => ({ sec: i, frac: 0, data: Buffer.alloc(7, i + 1) })),
    });
    const s = new RecordingSink();
    const r = new CaptureReader(s);
    for (let i = 0; i < file.length; i += 13) r.push(Buffer.from(file.subarray(i, i + 13)));
    r.end();
    expect(s.raw.map((p) => p.data.toString('hex'))).toEqual(s.packets.map((p) => p.data));
  });
});

describe('format detection', () => {
  it('throws CaptureFormatError naming the magic for anything else', () => {
    const r = new CaptureReader(new RecordingSink());
    expect(() => r.push(Buffer.from('7f454c4602010100', 'hex'))).toThrow(CaptureFormatError);
    expect(() => new CaptureReader(new RecordingSink()).push(Buffer.from('GET / HTTP/1.1'))).toThrow(
      /not a pcap or pcapng file \(magic 0x47455420\)/,
    );
  });

  it('detects the format from a magic split over several chunks', () => {
    const file = buildPcap({ records: [{ sec: 5, frac: 6, data: Buffer.from([9]) }] });
    const s = new RecordingSink();
    const r = new CaptureReader(s);
    r.push(file.subarray(0, 1));
    expect(r.format).toBeUndefined();
    r.push(file.subarray(1, 3));
    r.push(file.subarray(3));
    r.end();
    expect(r.format).toBe('pcap');
    expect(s.packets.length).toBe(1);
  });

  it('never throws anything but CaptureFormatError, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.constantFrom(0xa1b2c3d4, 0xd4c3b2a1, 0x0a0d0d0a, 0x4d3cb2a1, 0x12345678), (bytes, magic) => {
        const b = Buffer.concat([Buffer.alloc(4), Buffer.from(bytes)]);
        b.writeUInt32BE(magic, 0);
        const r = new CaptureReader(new RecordingSink(), { maxBlockBytes: 1024 });
        try {
          r.push(b);
          r.end();
        } catch (e) {
          expect(e).toBeInstanceOf(CaptureFormatError);
          expect(magic).toBe(0x12345678);
        }
      }),
      { numRuns: 500 },
    );
  });
});

/** A pcapng file exercising every block the reader knows, two sections of opposite byte order. */
function richPcapng(): Buffer {
  return Buffer.concat([
    shb(true),
    idb(true, 1),
    idb(true, 101, { tsresol: 9, tsoffset: 100n }),
    epb(true, 0, 1_700_000_000_123_456n, Buffer.from('aa', 'hex')),
    block(0x00000004, Buffer.alloc(8), true), // Name Resolution Block: skipped
    epb(true, 1, 1_700_000_000_987_654_321n, Buffer.from('bbbb', 'hex'), 1500),
    dsb(true, 0x544c534b, Buffer.from('CLIENT_RANDOM 00 11\n')),
    spb(true, Buffer.from('cccccc', 'hex')),
    obsoletePb(true, 1, 5_000_000_001n, Buffer.from('dd', 'hex')),
    shb(false),
    idb(false, 113, { tsresol: 0x80 | 20 }),
    epb(false, 0, (3n << 20n) + (1n << 19n), Buffer.from('ee', 'hex')),
  ]);
}

const RICH_EXPECTED = [
  { linktype: 1, sec: 1_700_000_000, nsec: 123_456_000, data: 'aa', origLen: 1, ifIndex: 0 },
  { linktype: 101, sec: 1_700_000_100, nsec: 987_654_321, data: 'bbbb', origLen: 1500, ifIndex: 1 },
  { linktype: 1, sec: 1_700_000_100, nsec: 987_654_321, data: 'cccccc', origLen: 3, ifIndex: 0 },
  { linktype: 101, sec: 105, nsec: 1, data: 'dd', origLen: 1, ifIndex: 1 },
  { linktype: 113, sec: 3, nsec: 500_000_000, data: 'ee', origLen: 1, ifIndex: 2 },
];

describe('pcapng', () => {
  it('reads EPB, SPB, obsolete PB and DSB across sections of both byte orders', () => {
    const s = readAll(richPcapng());
    expect(s.anomalies).toEqual([]);
    expect(s.packets).toEqual(RICH_EXPECTED);
    expect(s.secretBlocks).toEqual([{ type: 0x544c534b, data: 'CLIENT_RANDOM 00 11\n' }]);
  });

  it('gives the same result fed one byte at a time or in random splits', () => {
    const file = richPcapng();
    expect(oneByteAtATime(file).packets).toEqual(RICH_EXPECTED);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 80 }), (splits) => {
        const s = readAll(file, splits);
        expect(s.packets).toEqual(RICH_EXPECTED);
        expect(s.secretBlocks.length).toBe(1);
        expect(s.anomalies).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it('truncates the captured length of a simple packet block to the snap length', () => {
    const file = Buffer.concat([shb(true), idb(true, 1, { snaplen: 2 }), spb(true, Buffer.from('01020304', 'hex'), 4)]);
    expect(readAll(file).packets).toEqual([{ linktype: 1, sec: 0, nsec: 0, data: '0102', origLen: 4, ifIndex: 0 }]);
  });

  it('ignores interfaces beyond the limit and counts them', () => {
    const file = Buffer.concat([shb(true), idb(true, 1), idb(true, 101), idb(true, 113), epb(true, 1, 0n, Buffer.from('aa', 'hex')), epb(true, 2, 0n, Buffer.from('bb', 'hex'))]);
    const s = readAll(file, undefined, { maxInterfaces: 2 });
    expect(s.anomalies).toEqual(['pcapng_too_many_interfaces', 'pcapng_unknown_interface']);
    expect(s.packets.map((p) => [p.linktype, p.data])).toEqual([[101, 'aa']]);
  });

  it('applies a negative if_tsoffset', () => {
    const file = Buffer.concat([shb(false), idb(false, 1, { tsresol: 3, tsoffset: -10n }), epb(false, 0, 20_500n, Buffer.from('aa', 'hex'))]);
    expect(readAll(file).packets[0]).toMatchObject({ sec: 10, nsec: 500_000_000 });
  });

  it('counts a timestamp beyond year 9999 and gives the packet the last good time', () => {
    // 2^63 microseconds (a damaged block or if_tsresol) has no ISO 8601 time: the packet is kept.
    const file = Buffer.concat([
      shb(true),
      idb(true, 1),
      epb(true, 0, 1_700_000_000_250_000n, Buffer.from('aa', 'hex')),
      epb(true, 0, 1n << 63n, Buffer.from('bb', 'hex')),
      epb(true, 0, 1_700_000_001_000_000n, Buffer.from('cc', 'hex')),
    ]);
    const s = readAll(file);
    expect(s.anomalies).toEqual(['pcapng_bad_timestamp']);
    expect(s.packets.map((p) => [p.data, p.sec, p.nsec])).toEqual([
      ['aa', 1_700_000_000, 250_000_000],
      ['bb', 1_700_000_000, 250_000_000],
      ['cc', 1_700_000_001, 0],
    ]);
  });

  it('reports a packet for an undeclared interface and goes on', () => {
    const file = Buffer.concat([
      shb(true),
      idb(true, 1),
      epb(true, 3, 0n, Buffer.from('aa', 'hex')),
      epb(true, 0, 0n, Buffer.from('bb', 'hex')),
    ]);
    const s = readAll(file);
    expect(s.anomalies).toEqual(['pcapng_unknown_interface']);
    expect(s.packets.map((p) => p.data)).toEqual(['bb']);
  });

  it('skips a block whose trailing length differs, and one whose caplen exceeds the block', () => {
    const bad = epb(true, 0, 0n, Buffer.from('aa', 'hex'));
    bad.writeUInt32LE(0x40, bad.length - 4);
    const overlong = epb(true, 0, 0n, Buffer.from('aa', 'hex'));
    overlong.writeUInt32LE(200, 20);
    const file = Buffer.concat([shb(true), idb(true, 1), bad, overlong, epb(true, 0, 0n, Buffer.from('cc', 'hex'))]);
    const s = readAll(file);
    expect(s.anomalies).toEqual(['pcapng_bad_block', 'pcapng_bad_block']);
    expect(s.packets.map((p) => p.data)).toEqual(['cc']);
  });

  it('skips an oversized packet or block by its length without buffering it', () => {
    const big = epb(true, 0, 0n, Buffer.alloc(3000, 1));
    const file = Buffer.concat([shb(true), idb(true, 1), big, epb(true, 0, 0n, Buffer.from('cc', 'hex'))]);
    const byPacket = readAll(file, [50, 100, 1000], { maxPacketBytes: 1000 });
    expect(byPacket.anomalies).toEqual(['capture_oversized_packet']);
    expect(byPacket.packets.map((p) => p.data)).toEqual(['cc']);
    const byBlock = readAll(file, [50, 100, 1000], { maxBlockBytes: 1000 });
    expect(byBlock.anomalies).toEqual(['pcapng_oversized_block']);
    expect(byBlock.packets.map((p) => p.data)).toEqual(['cc']);
  });

  it('stops at a block length that cannot be followed', () => {
    const broken = Buffer.alloc(12);
    broken.writeUInt32LE(6, 0);
    broken.writeUInt32LE(13, 4);
    const file = Buffer.concat([shb(true), idb(true, 1), broken, epb(true, 0, 0n, Buffer.from('cc', 'hex'))]);
    const s = readAll(file);
    expect(s.anomalies).toEqual(['pcapng_bad_block']);
    expect(s.packets).toEqual([]);
  });

  it('reports a block cut short at the end as capture_truncated', () => {
    const file = richPcapng();
    const s = readAll(file.subarray(0, file.length - 3));
    expect(s.packets.length).toBe(RICH_EXPECTED.length - 1);
    expect(s.anomalies).toEqual(['capture_truncated']);
  });

  it('never throws and yields a prefix of the packets for every prefix of a valid file', () => {
    const file = richPcapng();
    for (let n = 0; n <= file.length; n++) {
      const s = readAll(file.subarray(0, n));
      expect(RICH_EXPECTED.slice(0, s.packets.length)).toEqual(s.packets);
    }
  });

  it('survives random corruption of a valid file', () => {
    const file = richPcapng();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: file.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 20 }),
        (edits, splits) => {
          const b = Buffer.from(file);
          for (const [i, v] of edits) if (i >= 4) b[i] = v;
          const s = readAll(b, splits, { maxBlockBytes: 4096 });
          expect(s.packets.length).toBeLessThanOrEqual(64);
        },
      ),
      { numRuns: 300 },
    );
  });
});

interface TsharkRow {
  time: string;
  frameLen: number;
  capLen: number;
}

function tsharkRows(name: string): TsharkRow[] {
  return readFileSync(join(DATA, name), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const f = l.split('\t');
      return { time: f[0], frameLen: Number(f[1]), capLen: Number(f[2]) };
    });
}

function fmtTime(sec: number, nsec: number): string {
  return `${sec}.${String(nsec).padStart(9, '0')}`;
}

describe('real captures (tcpdump, editcap; tshark as the oracle)', () => {
  const expected = tsharkRows('lo-http.tshark.tsv');
  for (const name of ['lo-http.pcap', 'lo-http.ns.pcap', 'lo-http.pcapng', 'lo-http.dsb.pcapng']) {
    it(`reads ${name} with the times and lengths tshark shows`, async () => {
      const sink = new RecordingSink();
      const res = await readCaptureFile(join(DATA, name), sink);
      expect(res.format).toBe(name.endsWith('.pcapng') ? 'pcapng' : 'pcap');
      expect(res.packets).toBe(expected.length);
      expect(sink.anomalies).toEqual([]);
      expect(sink.packets.map((p) => ({ time: fmtTime(p.sec, p.nsec), frameLen: p.origLen, capLen: p.data.length / 2 }))).toEqual(
        expected,
      );
      expect(new Set(sink.packets.map((p) => p.linktype))).toEqual(new Set([1]));
    });
  }

  it('hands on the key log of a Decryption Secrets Block made by editcap --inject-secrets', async () => {
    const sink = new RecordingSink();
    await readCaptureFile(join(DATA, 'lo-http.dsb.pcapng'), sink);
    expect(sink.secretBlocks).toEqual([{ type: 0x544c534b, data: readFileSync(join(DATA, 'keys.log'), 'latin1') }]);
  });

  it('reads the same packets from every format and from one-byte chunks', async () => {
    const base = new RecordingSink();
    await readCaptureFile(join(DATA, 'lo-http.pcap'), base);
    for (const name of ['lo-http.ns.pcap', 'lo-http.pcapng', 'lo-http.dsb.pcapng']) {
      const s = oneByteAtATime(readFileSync(join(DATA, name)));
      expect(s.packets).toEqual(base.packets);
    }
  });

  it('reads a Linux cooked v2 capture (tcpdump -i any)', async () => {
    const sink = new RecordingSink();
    const res = await readCaptureFile(join(DATA, 'any-http.pcap'), sink);
    expect(res.packets).toBe(tsharkRows('any-http.tshark.tsv').length);
    expect(sink.packets.every((p) => p.linktype === 276)).toBe(true);
  });
});

describe('readCaptureFile errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'capture-test-'));

  it('names the path and the errno of an unreadable file', async () => {
    const missing = join(dir, 'missing.pcap');
    const err = await readCaptureFile(missing, new RecordingSink()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaptureFileError);
    expect((err as Error).message).toBe(`cannot read capture ${missing}: ENOENT`);
    const isDir = await readCaptureFile(dir, new RecordingSink()).catch((e: unknown) => e);
    expect(isDir).toBeInstanceOf(CaptureFileError);
    expect((isDir as Error).message).toContain('EISDIR');
  });

  it('names the path of a file that is no capture, and of an empty one', async () => {
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello world\n');
    const err = await readCaptureFile(text, new RecordingSink()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaptureFormatError);
    expect((err as Error).message).toBe(`${text}: not a pcap or pcapng file (magic 0x68656c6c)`);
    const empty = join(dir, 'empty.pcap');
    writeFileSync(empty, '');
    const e2 = await readCaptureFile(empty, new RecordingSink()).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(CaptureFormatError);
    expect((e2 as Error).message).toContain(empty);
  });

  it("reads stdin for '-'", async () => {
    const saved = Object.getOwnPropertyDescriptor(process, 'stdin')!;
    const file = readFileSync(join(DATA, 'lo-http.pcapng'));
    Object.defineProperty(process, 'stdin', { value: Readable.from([file.subarray(0, 100), file.subarray(100)]), configurable: true });
    try {
      const sink = new RecordingSink();
      expect(await readCaptureFile('-', sink)).toEqual({ format: 'pcapng', packets: 25 });
      Object.defineProperty(process, 'stdin', { value: Readable.from([Buffer.from('nope')]), configurable: true });
      await expect(readCaptureFile('-', new RecordingSink())).rejects.toThrow('stdin: not a pcap or pcapng file (magic 0x6e6f7065)');
    } finally {
      Object.defineProperty(process, 'stdin', saved);
    }
  });

  it('lets errors of the sink itself pass unchanged', async () => {
    const sink = new RecordingSink();
    sink.packet = () => {
      throw new RangeError('downstream bug');
    };
    await expect(readCaptureFile(join(DATA, 'lo-http.pcap'), sink)).rejects.toThrow(RangeError);
  });
});
