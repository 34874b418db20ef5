import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BatchBuilder, readBatch } from '../../src/pipeline/batch.js';
import type { CaptureSink, RawPacket } from '../../src/types.js';

function collect(ab: ArrayBuffer | Uint8Array) {
  const packets: RawPacket[] = [];
  const secrets: [number, string][] = [];
  const anomalies: string[] = [];
  const sink: CaptureSink = {
    packet: (p) => packets.push({ ...p, data: Buffer.from(p.data) }),
    secrets: (t, d) => secrets.push([t, d.toString()]),
    anomaly: (c) => anomalies.push(c),
  };
  readBatch(ab, sink);
  return { packets, secrets, anomalies };
}

describe('packet batches for worker threads', () => {
  it('round-trips packets and secrets in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ data: fc.uint8Array({ maxLength: 300 }), sec: fc.nat(), nsec: fc.integer({ min: 0, max: 999_999_999 }), linktype: fc.integer({ min: 0, max: 300 }) }), { maxLength: 40 }),
        (items) => {
          const b = new BatchBuilder(64);
          for (const it of items) b.addPacket({ linktype: it.linktype, ts: { sec: it.sec, nsec: it.nsec }, data: Buffer.from(it.data), origLen: it.data.length + 3, ifIndex: 1 });
          b.addSecrets(0x544c534b, Buffer.from('CLIENT_RANDOM aa bb'));
          const got = collect(b.take());
          expect(got.anomalies).toEqual([]);
          expect(got.packets.map((p) => [p.linktype, p.ts.sec, p.ts.nsec, [...p.data], p.origLen])).toEqual(
            items.map((it) => [it.linktype, it.sec, it.nsec, [...it.data], it.data.length + 3]),
          );
          expect(got.secrets).toEqual([[0x544c534b, 'CLIENT_RANDOM aa bb']]);
        },
      ),
    );
  });

  it('reports a truncated batch instead of throwing', () => {
    const b = new BatchBuilder();
    b.addPacket({ linktype: 1, ts: { sec: 1, nsec: 2 }, data: Buffer.alloc(100, 7), origLen: 100, ifIndex: 0 });
    const full = new Uint8Array(b.take());
    for (let cut = 1; cut < full.length; cut += 7) {
      const got = collect(full.subarray(0, cut));
      expect(got.packets).toHaveLength(0);
      expect(got.anomalies).toEqual(['batch_truncated']);
    }
  });
});
