import { describe, expect, it } from 'vitest';
import { PacketIndexBuilder, readIndex } from '../../src/pipeline/batch.js';
import type { CaptureSink, RawPacket } from '../../src/types.js';

function collect(): { sink: CaptureSink; got: { packets: RawPacket[]; secrets: [number, string][]; anomalies: string[] } } {
  const got = { packets: [] as RawPacket[], secrets: [] as [number, string][], anomalies: [] as string[] };
  const sink: CaptureSink = {
    packet: (p) => got.packets.push({ ...p, data: Buffer.from(p.data) }),
    secrets: (t, d) => got.secrets.push([t, d.toString()]),
    anomaly: (k) => got.anomalies.push(k),
  };
  return { sink, got };
}

describe('packet indexes into shared chunks for engine threads', () => {
  it('round-trips chunk references, inline packets and secrets in order', () => {
    const chunk = Buffer.from('....AAAA....BBBBBB');
    const b = new PacketIndexBuilder(() => new ArrayBuffer(7 * 4)); // room for one entry: it grows
    const pk = (data: Buffer, sec: number): RawPacket => ({ linktype: 101, ts: { sec, nsec: 7 }, data, origLen: data.length + 10, ifIndex: 3 });
    b.addRef(pk(chunk.subarray(4, 8), 1), 4);
    b.addInline(pk(Buffer.from('straddled'), 2));
    b.addSecrets(0x544c534b, Buffer.from('CLIENT_RANDOM x y'));
    b.addRefAt(12, 6, 60, 3, 9, 1);
    expect(b.count).toBe(4);
    expect(b.refs).toBe(2);
    const { index, inline } = b.take();
    expect(b.count).toBe(0);
    const { sink, got } = collect();
    readIndex(index, chunk, inline ? Buffer.from(inline) : undefined, sink);
    expect(got.packets.map((p) => [p.data.toString(), p.ts.sec, p.ts.nsec, p.origLen, p.linktype, p.ifIndex])).toEqual([
      ['AAAA', 1, 7, 14, 101, 3],
      ['straddled', 2, 7, 19, 101, 3],
      ['BBBBBB', 3, 9, 60, 1, 0],
    ]);
    expect(got.secrets).toEqual([[0x544c534b, 'CLIENT_RANDOM x y']]);
    expect(got.anomalies).toEqual([]);
  });

  it('reports an entry outside its chunk instead of throwing, and goes on', () => {
    const b = new PacketIndexBuilder();
    b.addRefAt(10, 100, 100, 1, 0, 1);
    b.addRefAt(0, 4, 4, 2, 0, 1);
    const { sink, got } = collect();
    readIndex(b.take().index, Buffer.alloc(16, 1), undefined, sink);
    expect(got.anomalies).toEqual(['batch_truncated']);
    expect(got.packets.map((p) => p.ts.sec)).toEqual([2]);
  });
});
