/**
 * IP fragment reassembly (src/decode/ipReassembly.ts): unit behaviour, and a real capture whose
 * IPv4 packets are cut into fragments (shuffled within each datagram) replaying to the very events
 * of the original.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeFrame, newDecodedPacket } from '../../src/decode/index.js';
import { IpReassembler } from '../../src/decode/ipReassembly.js';
import type { AnomalySink } from '../../src/types.js';
import { replayFile } from '../helpers/replay.js';
import { FragmentPartitions, partitionOfDecoded } from '../../src/kafka/publish.js';
import { ipv4, ipv6, tcp } from './builders.js';

class Counts implements AnomalySink {
  c: Record<string, number> = {};
  anomaly(code: string): void {
    this.c[code] = (this.c[code] ?? 0) + 1;
  }
}

/** Cuts an IPv4 packet into fragments of `size` data bytes (a multiple of 8). */
function frag4(pkt: Buffer, size: number, id = 7): Buffer[] {
  const ihl = (pkt[0] & 15) * 4;
  const data = pkt.subarray(ihl);
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += size) {
    const part = data.subarray(off, off + size);
    const h = Buffer.from(pkt.subarray(0, ihl));
    h.writeUInt16BE(ihl + part.length, 2);
    h.writeUInt16BE(id, 4);
    h.writeUInt16BE((off + size < data.length ? 0x2000 : 0) | (off / 8), 6);
    out.push(Buffer.concat([h, part]));
  }
  return out;
}

/** The same for IPv6: fixed header + fragment header (RFC 8200 4.5) + data. */
function frag6(pkt: Buffer, size: number, id = 0x01020304): Buffer[] {
  const data = pkt.subarray(40);
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += size) {
    const part = data.subarray(off, off + size);
    const h = Buffer.from(pkt.subarray(0, 40));
    h[6] = 44;
    h.writeUInt16BE(8 + part.length, 4);
    const fh = Buffer.alloc(8);
    fh[0] = pkt[6];
    fh.writeUInt16BE(off | (off + size < data.length ? 1 : 0), 2);
    fh.writeUInt32BE(id, 4);
    out.push(Buffer.concat([h, fh, part]));
  }
  return out;
}

const T = (sec: number) => ({ sec, nsec: 0 });

/** Feeds raw-IP fragments through the decoder and the reassembler; returns what came out whole. */
function feed(frags: Buffer[], r: IpReassembler, an: AnomalySink, sec = 1): Buffer[] {
  const whole: Buffer[] = [];
  const d = newDecodedPacket();
  for (const f of frags) {
    expect(decodeFrame(101, f, 0, f.length, d, an)).toBe('fragment');
    const dg = r.add(d.frag!, d.srcAddr, d.dstAddr, T(sec));
    if (dg) whole.push(dg);
  }
  return whole;
}

const payload = Buffer.from(Array.from({ length: 3000 }, (_v, i) => i & 0xff));

describe('IpReassembler', () => {
  it('puts IPv4 fragments back together in any order, and the datagram decodes as the original', () => {
    const pkt = ipv4('10.0.0.1', '10.0.0.2', tcp(1234, 443, payload));
    for (const order of [[0, 1, 2], [2, 1, 0], [1, 2, 0]]) {
      const an = new Counts();
      const r = new IpReassembler(an);
      const fr = frag4(pkt, 1480);
      const whole = feed(order.map((i) => fr[i]), r, an);
      expect(whole).toHaveLength(1);
      const d = newDecodedPacket();
      expect(decodeFrame(101, whole[0], 0, whole[0].length, d, an)).toBe('tcp');
      expect([d.srcPort, d.dstPort, d.payload.equals(payload)]).toEqual([1234, 443, true]);
      expect(an.c).toEqual({});
      expect(r.pendingDatagrams).toBe(0);
    }
  });

  it('puts IPv6 fragments back together', () => {
    const pkt = ipv6('2001:db8::1', '2001:db8::2', tcp(5, 6, payload));
    const an = new Counts();
    const whole = feed(frag6(pkt, 1232).reverse(), new IpReassembler(an), an);
    expect(whole).toHaveLength(1);
    const d = newDecodedPacket();
    expect(decodeFrame(101, whole[0], 0, whole[0].length, d, an)).toBe('tcp');
    expect(d.payload.equals(payload)).toBe(true);
  });

  it('keeps the first copy of overlapping bytes (counted), and datagrams of other ids apart', () => {
    const pkt = ipv4('10.0.0.1', '10.0.0.2', tcp(1, 2, payload));
    const fr = frag4(pkt, 1480);
    const evil = Buffer.from(fr[1]);
    evil.fill(0x41, 20); // the same fragment again with other bytes
    const other = frag4(ipv4('10.0.0.1', '10.0.0.2', tcp(9, 9, Buffer.alloc(100))), 64, 8);
    const an = new Counts();
    const r = new IpReassembler(an);
    const whole = feed([fr[0], fr[1], other[0], evil, fr[2], other[1]], r, an);
    expect(whole).toHaveLength(2);
    const d = newDecodedPacket();
    decodeFrame(101, whole[0], 0, whole[0].length, d, an);
    expect(d.payload.equals(payload)).toBe(true);
    expect(an.c).toEqual({ ip_fragment_overlap: 1 });
  });

  it('drops a datagram whose fragments do not all come within the timeout, and bounds what it holds', () => {
    const fr = frag4(ipv4('10.0.0.1', '10.0.0.2', tcp(1, 2, payload)), 1480);
    const an = new Counts();
    const r = new IpReassembler(an, { timeoutSec: 30, maxDatagrams: 2, maxBytes: 1 << 20 });
    feed([fr[0]], r, an, 100);
    feed([fr[1]], r, an, 131); // 31 s later: the first fragment's datagram expired before this one came
    expect(an.c).toEqual({ ip_fragment_incomplete: 1 });
    expect(feed([fr[2]], r, an, 131)).toHaveLength(0); // fr[0] is gone
    for (let id = 100; id < 103; id++) feed([frag4(ipv4('10.0.0.3', '10.0.0.4', tcp(1, 2, payload)), 1480, id)[0]], r, an, 131);
    expect(an.c.ip_fragment_table_full).toBeGreaterThanOrEqual(1);
    r.closeAll();
    expect(r.pendingDatagrams).toBe(0);
  });

  it('refuses an IPv4 datagram beyond 65,535 bytes', () => {
    const an = new Counts();
    const r = new IpReassembler(an);
    const f = frag4(ipv4('10.0.0.1', '10.0.0.2', tcp(1, 2, Buffer.alloc(2000))), 1480)[1];
    f.writeUInt16BE(8190, 6); // offset 65,520 bytes, last fragment
    feed([f], r, an);
    expect(an.c).toEqual({ ip_fragment_oversized: 1 });
  });
});

describe('publish: the partition of a fragment', () => {
  it("is its datagram's flow partition, learned from the first fragment (a fragment before it: 0)", () => {
    const an = new Counts();
    const n = 16;
    const pick = (pkt: Buffer) => {
      const d = newDecodedPacket();
      return { d, outcome: decodeFrame(101, pkt, 0, pkt.length, d, an) };
    };
    let checked = 0;
    for (let sport = 1000; sport < 1040; sport++) {
      const pkt = ipv4('10.0.0.1', '10.0.0.2', tcp(sport, 443, payload));
      const w = pick(pkt);
      const flowPart = partitionOfDecoded(w.outcome, w.d, n);
      const fr = frag4(pkt, 1480, sport);
      const frags = new FragmentPartitions();
      const parts = fr.map((f) => {
        const x = pick(f);
        return partitionOfDecoded(x.outcome, x.d, n, frags);
      });
      expect(parts).toEqual(fr.map(() => flowPart));
      if (flowPart !== 0) {
        checked++;
        const late = new FragmentPartitions();
        const x = pick(fr[2]);
        expect(partitionOfDecoded(x.outcome, x.d, n, late)).toBe(0);
      }
    }
    expect(checked).toBeGreaterThan(20);
  });
});

describe('a real capture with its IPv4 packets fragmented', () => {
  it('replays to the same events and sessions as the original (fragments shuffled within each datagram)', () => {
    const dir = 'fixtures/https/tls12-ecdhe-aes128gcm-http11';
    const src = readFileSync(join(dir, 'capture.pcap'));
    // classic pcap, Ethernet: cut every IPv4 packet over 600 bytes into 512-byte fragments, reversed
    const parts: Buffer[] = [src.subarray(0, 24)];
    let cut = 0;
    for (let o = 24; o + 16 <= src.length; ) {
      const hdr = src.subarray(o, o + 16);
      const len = hdr.readUInt32LE(8);
      const frame = src.subarray(o + 16, o + 16 + len);
      o += 16 + len;
      if (frame.length > 614 && frame.readUInt16BE(12) === 0x0800) {
        const frags = frag4(frame.subarray(14), 512, 0x1000 + cut++).reverse();
        for (const f of frags) {
          const h = Buffer.from(hdr);
          h.writeUInt32LE(14 + f.length, 8);
          h.writeUInt32LE(14 + f.length, 12);
          parts.push(h, frame.subarray(0, 14), f);
        }
      } else parts.push(hdr, frame);
    }
    expect(cut).toBeGreaterThan(5);
    const file = join(mkdtempSync(join(tmpdir(), 'td-frag-')), 'fragmented.pcap');
    writeFileSync(file, Buffer.concat(parts));
    const keys = { keylogs: [join(dir, 'keys.log')] };
    const a = replayFile(join(dir, 'capture.pcap'), keys);
    const b = replayFile(file, keys);
    expect(b.events).toEqual(a.events);
    expect(b.stats.sessionsByStatus).toEqual({ decrypted: 1 });
    expect(b.stats.anomalies).toEqual(a.stats.anomalies);
  });
});
