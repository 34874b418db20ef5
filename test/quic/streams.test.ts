import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OrderedStream } from '../../src/quic/streams.js';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';
import type { EcsEvent } from '../../src/events/builder.js';
import type { RawPacket } from '../../src/types.js';

function collect(): { s: OrderedStream; log: string[] } {
  const log: string[] = [];
  const s = new OrderedStream({ data: (d) => log.push(`d:${d.toString()}`), gap: (n) => log.push(`g:${n}`), end: () => log.push('end') });
  return { s, log };
}

describe('QUIC stream reassembly (OrderedStream)', () => {
  it('delivers in order across reordering, duplicates and overlaps', () => {
    const { s, log } = collect();
    s.push(5, Buffer.from('fghij'), false);
    expect(log).toEqual([]);
    expect(s.buffered).toBe(5);
    s.push(0, Buffer.from('abcdefg'), false); // overlaps the held segment
    s.push(3, Buffer.from('def'), false); // duplicate
    s.push(10, Buffer.from('k'), true);
    expect(log).toEqual(['d:abcdefg', 'd:hij', 'd:k', 'end']);
    expect(s.buffered).toBe(0);
  });

  it('reports holes that never fill as gaps when flushed, then the end', () => {
    const { s, log } = collect();
    s.push(0, Buffer.from('ab'), false);
    s.push(6, Buffer.from('gh'), false);
    s.push(12, Buffer.alloc(0), true);
    expect(s.flush()).toBe(2);
    expect(log).toEqual(['d:ab', 'g:4', 'd:gh', 'g:4', 'end']);
  });

  it('drops held data on RESET_STREAM', () => {
    const { s, log } = collect();
    s.push(4, Buffer.from('x'), false);
    expect(s.reset()).toBe(1);
    expect(log).toEqual(['end']);
  });
});

describe('HTTP/3 over a capture with a lost packet', () => {
  it('counts the lost STREAM bytes as a gap in the body and keeps the exchange', () => {
    const dir = join(import.meta.dirname, '../../fixtures/quic/chacha20-download-keyupdate');
    const pkts: RawPacket[] = [];
    const r = new CaptureReader({ packet: (p: RawPacket) => pkts.push({ ...p, data: Buffer.from(p.data) }), secrets() {}, anomaly() {} });
    r.push(readFileSync(join(dir, 'capture.pcap')));
    r.end();
    // a full-size server packet in the middle of the download (1-RTT, short header)
    const mid = pkts.findIndex((p, i) => i > pkts.length / 2 && p.data.length > 1200 && (p.data[42] & 0x80) === 0 && p.data.readUInt16BE(34) === 443);
    expect(mid).toBeGreaterThan(0);
    const events: EcsEvent[] = [];
    const e = new Engine((ev) => events.push(JSON.parse(JSON.stringify(ev))), loadKeys([join(dir, 'keys.log')], []), {});
    pkts.forEach((p, i) => i !== mid && e.packet(p));
    e.finish();
    const http = events.filter((x) => x.event.dataset === 'http');
    expect(http).toHaveLength(1);
    const h = http[0] as unknown as { http: { response: { status_code: number; body: { bytes: number } } } };
    expect(h.http.response.status_code).toBe(200);
    // body.bytes counts the body as sent, lost bytes included (as for TCP gaps)
    expect(h.http.response.body.bytes).toBe(102400);
  });
});
